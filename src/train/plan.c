/* moe-train --plan (see plan.h). */
#include "train/plan.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "data/vocab.h"
#include "dist/grad_sync.h"
#include "model/model_cfg.h"
#include "text/spm.h"
#include "train/checkpoint.h"
#include "train/optim.h"
#include "train/trainer.h"

#define GIB 1073741824.0

double plan_parse_bytes(const char *s) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || !(v > 0)) return -1;
    while (isspace((unsigned char)*end)) end++;
    double mult = 1;
    switch (toupper((unsigned char)*end)) {
    case 'K': mult = 1024.0; break;
    case 'M': mult = 1048576.0; break;
    case 'G': mult = GIB; break;
    case 'T': mult = GIB * 1024; break;
    case 0: return v;
    default: return -1;
    }
    end++;
    if (*end == 'i' || *end == 'I') end++;
    if (*end == 'B' || *end == 'b') end++;
    return *end ? -1 : v * mult;
}

/* ---- activation memory (f32 values per token; see the layers in src/nn) ---- */

/* Pairs (token, expert) an MoE row is routed to. */
static double routed(const MoeConfig *m) {
    if (m->experts == 1) return 1;
    if (m->gating == MOE_GATE_SOFTMAX) return m->experts;
    return m->groups ? (double)m->k * m->k : m->k;
}

/* An MoE layer's rows: what stays for the backward, and the largest
 * temporary of its backward. */
static void moe_act(const MoeConfig *m, int sharded, double *keep, double *temp) {
    double d = (double)m->dim, h = (double)m->hidden, L = m->hidden_layers, K = routed(m), k = m->k;
    double n1 = m->groups ? m->groups : m->experts, b = m->groups ? (double)m->experts / m->groups : 0;
    double gate = m->experts == 1 ? 2 : m->gating == MOE_GATE_NOISY_TOPK ? 4 * n1 + 3 * k + 2 : 4 * n1 + 2 * K + 1;
    double hier = m->groups ? k * (d + 6) + k * (4 * b + 3 * k + 2) + k * b : 0;
    double route = 4 * K + 1 + (sharded ? 4 * K : 0);
    double experts = K * d * 2 + (m->recompute ? 0 : K * h * L);   /* xe, ye (+ hidden layers) */
    double block = 3 * d;                                            /* MoE input rows, sigmoid, output */
    *keep = gate + hier + route + experts + block;
    /* backward: output gradients, recomputed and gradient hidden layers,
     * the exchange buffers, the gates' gradients */
    *temp = K * d * 2 + K + K * h * L * (m->recompute ? 2 : 1) + K * d + (sharded ? 3 * K * d : 0) + 2 * n1 +
            (m->groups ? k * (d + 2 * b + 2) + d : 0) + 2 * d;
}

static double lstm_keep(int64_t d, int64_t H, int64_t P) { return 2.0 * d + 5.0 * H + (P ? H : 0); }

static double lm_act(const LmConfig *c, int sharded, double tok) {
    double d = (double)c->dim, keep = 5 + d + d, temp = 0; /* batch arrays, embedding, top gradient */
    for (int l = 0; l < c->n_layers; l++) {
        if (c->kind[l] == LM_LAYER_LSTM) {
            keep += lstm_keep(c->dim, c->rnn, c->proj) + 2 * d; /* + its output gradient and dropout's */
            temp = fmax(temp, d + 8);
        } else {
            double k, t;
            MoeConfig m = c->moe;
            m.dim = c->dim;
            moe_act(&m, sharded, &k, &t);
            keep += k + d;
            temp = fmax(temp, t);
        }
    }
    double per_batch = 0;
    if (c->sampled) {
        keep += d + c->samples + 2;                      /* W_y rows, sampled logits, target logits */
        temp = fmax(temp, d);
        per_batch = 2.0 * c->samples * d + c->samples;   /* W_S and its gradient */
    } else {
        int64_t C = c->chunk > 0 ? c->chunk : 8192;
        keep += 1;
        temp = fmax(temp, (double)(C < c->vocab ? C : c->vocab) + 4);
    }
    return 4.0 * ((keep + temp) * tok + per_batch);
}

static double s2s_act(const S2sConfig *c, int sharded, double tok) {
    /* per target token, with as many source tokens and sentences of ~25 tokens */
    double d = (double)c->dim, H = (double)c->rnn, n = (double)c->att_dim, S = 25;
    double keep = 8, temp = 0;
    keep += d + c->enc_depth * (lstm_keep(c->dim, c->rnn, c->proj) + 2 * d) + 2 * n + 2 * n; /* encoder, keys */
    keep += d + 2 * d + d + H + d + 4 * H + 2 * H + n + S;                                  /* decoder layer 1 */
    keep += (c->dec_depth - 1) * (2 * d + lstm_keep(c->dim, c->rnn, c->proj) + 4 * d);       /* layers above */
    keep += 6 * d;                                                                         /* backward */
    MoeConfig m = c->moe;
    m.dim = c->dim;
    for (int i = 0; i < (c->enc_moe_after > 0) + (c->dec_moe_after > 0); i++) {
        double k, t;
        moe_act(&m, sharded, &k, &t);
        keep += k + d;
        temp = fmax(temp, t);
    }
    double per_batch = 0;
    if (c->sampled) {
        keep += d + c->samples + 2;
        per_batch = 2.0 * c->samples * d;
    } else {
        int64_t C = c->chunk > 0 ? c->chunk : 8192;
        temp = fmax(temp, (double)(C < c->vocab ? C : c->vocab) + 4);
    }
    return 4.0 * ((keep + temp) * tok + per_batch);
}

/* ---- the plan ------------------------------------------------------------------ */

static int64_t vocab_size_of(const Config *cfg, int s2s, char *err, size_t n) {
    size_t nd = 0, nv = 0;
    const int64_t *dims = cfg_list_int(cfg, "dim-vocabs", &nd);
    const char *const *vocabs = cfg_list(cfg, "vocabs", &nv);
    if (nd && dims[0] > 0) return dims[0];
    if (nv && train_file_exists(vocabs[0])) {
        if (s2s) {
            Spm *spm;
            if (spm_load_file(vocabs[0], &spm, err, n)) return -1;
            int64_t v = spm_vocab_size(spm);
            spm_free(spm);
            return v;
        }
        Vocab *v;
        if (vocab_read(&v, vocabs[0], 0, err, n)) return -1;
        int64_t s = vocab_size(v);
        vocab_free(v);
        return s;
    }
    snprintf(err, n, "--plan needs the vocabulary size: set --dim-vocabs, or --vocabs to an existing file");
    return -1;
}

int plan_compute(const Config *cfg, int world, double gpu_bytes, int64_t vocab, PlanResult *r, char *err, size_t n) {
    memset(r, 0, sizeof *r);
    if (world < 1) world = 1;
    r->world = world;
    r->gpu_bytes = gpu_bytes;
    r->s2s = !strcmp(cfg_str(cfg, "type"), "s2s");
    int64_t V = vocab > 0 ? vocab : vocab_size_of(cfg, r->s2s, err, n);
    if (V < 0) return -1;
    r->vocab = V;

    LmConfig lc;
    S2sConfig sc;
    const MoeConfig *mc;
    const char *e;
    if (r->s2s) {
        e = s2s_config_from_options(cfg, V, &sc);
        if (!e) e = s2s_config_error(&sc);
        mc = &sc.moe;
    } else {
        e = lm_config_from_options(cfg, V, &lc);
        mc = &lc.moe;
    }
    if (e) {
        snprintf(err, n, "%s", e);
        return -1;
    }

    /* the model registered as training would place it on rank 0 */
    ParamStore ps;
    params_init(&ps, NULL);
    ps.dist = world > 1;
    ps.world = world;
    ps.rank = 0;
    Lm lm;
    S2s s2m;
    if (r->s2s) {
        s2s_init(&s2m, &ps, &sc);
        s2s_config_describe(&sc, r->model, sizeof r->model);
        r->ops_token = (double)s2s_macs_per_token(&sc);
        r->moe_layers = (sc.enc_moe_after > 0) + (sc.dec_moe_after > 0);
    } else {
        lm_init(&lm, &ps, &lc);
        lm_config_describe(&lc, r->model, sizeof r->model);
        r->ops_token = (double)lm_macs_per_token(&lc);
        for (int l = 0; l < lc.n_layers; l++) r->moe_layers += lc.kind[l] == LM_LAYER_MOE;
    }
    OptConfig oc;
    optim_config_from_options(cfg, &oc);
    Optimizer opt;
    optim_init(&opt, &oc);
    r->params_all = params_count(&ps, 0);
    r->params_paper = params_count(&ps, 1);
    double sparse_cols = 0; /* columns of the sparse tables (embeddings, softmax) */
    for (int i = 0; i < ps.n; i++) {
        const Param *p = &ps.p[i];
        int64_t local = p->b * p->r * p->c;
        r->params_rank += local;
        r->opt_rank += optim_state_size(p, &opt);
        if (p->kind == PARAM_EXPERT) {
            r->experts_rank += local;
            r->experts_all += local * p->expert_world;
            r->experts_sharded |= param_sharded(p);
        }
        if (p->sparse) sparse_cols += (double)p->c;
    }
    double dense_sync = dist_sync_bytes(&ps, world);
    for (int i = 0; i < ps.n; i++)
        if (ps.p[i].sparse) dense_sync -= (double)ps.p[i].r * ps.p[i].c * sizeof(real) * 2.0 * (world - 1) / world;
    params_destroy(&ps);

    /* the batch: tokens per micro-batch over all processes */
    double tok;
    if (!r->s2s && !strcmp(cfg_str(cfg, "batching"), "stream"))
        tok = (double)cfg_int(cfg, "mini-batch") * (double)cfg_int(cfg, "bptt");
    else
        tok = (double)cfg_int(cfg, "mini-batch-words");
    if (!(tok > 0)) {
        snprintf(err, n, "--plan needs the batch size in tokens: set --mini-batch-words");
        return -1;
    }
    int64_t delay = cfg_int(cfg, "optimizer-delay");
    r->tokens_step = tok * (double)(delay > 0 ? delay : 1);
    r->tokens_rank = tok / world;

    /* compute: 2 FLOPs per multiply-add, backward twice the forward (the paper's count) */
    int64_t D = r->s2s ? sc.dim : lc.dim;
    int sampled = r->s2s ? sc.sampled : lc.sampled;
    double sm = (double)D * (sampled ? (double)(r->s2s ? sc.samples : lc.samples) + 1 : (double)V);
    r->flops_token = 6.0 * (r->ops_token + sm);
    r->step_flops_rank = r->flops_token * r->tokens_step / world;
    MoeConfig m = *mc;
    m.dim = D;
    double pair_macs = (double)D * m.hidden * 2 + (double)(m.hidden_layers - 1) * m.hidden * m.hidden;
    double pairs_rank = r->tokens_step / world * routed(&m) * r->moe_layers;
    r->expert_flops_rank = r->moe_layers ? 6.0 * pair_macs * pairs_rank : 0;
    r->expert_hidden = m.hidden * m.hidden_layers;
    if (r->experts_sharded && world > 1) {
        /* to the experts and back, in the forward and in the backward; 1/world stay local */
        r->a2a_bytes_rank = 4.0 * pairs_rank * (double)(world - 1) / world * (double)D * sizeof(real);
        r->flop_per_byte = r->expert_flops_rank / r->a2a_bytes_rank;
    }
    /* sparse tables: rows a step touches, at most one per target token and sample */
    double rows = fmin((double)V, r->tokens_step + (sampled ? (double)(r->s2s ? sc.samples : lc.samples) : 0));
    if (!sampled) rows = (double)V;
    r->allreduce_bytes_rank = dense_sync + (world > 1 ? rows * sparse_cols * sizeof(real) * 2.0 * (world - 1) / world : 0);

    /* memory per process */
    r->state_bytes = (2.0 * r->params_rank + r->opt_rank) * sizeof(real);
    r->act_bytes = r->s2s ? s2s_act(&sc, r->experts_sharded, r->tokens_rank) : lm_act(&lc, r->experts_sharded, r->tokens_rank);
    r->overhead_bytes = 1.5 * GIB;
    r->fits = r->state_bytes + r->act_bytes + r->overhead_bytes <= gpu_bytes;
    return 0;
}

static void human(double v, const char *unit, char *buf, size_t n) {
    const char *p[] = {"", "K", "M", "G", "T", "P", "E"};
    int i = 0;
    while (fabs(v) >= 1000 && i < 6) {
        v /= 1000;
        i++;
    }
    snprintf(buf, n, "%.2f %s%s", v, p[i], unit);
}

/* Binary sizes: "512.0 MiB", "10.61 GiB". */
static const char *size_str(double v, char *buf, size_t n) {
    if (v < GIB)
        snprintf(buf, n, "%.1f MiB", v / 1048576.0);
    else
        snprintf(buf, n, "%.2f GiB", v / GIB);
    return buf;
}

void plan_print(const PlanResult *r, FILE *f) {
    char s1[32], s2[32], s3[32], s4[32], s5[32];
    char a[64], b[64], c[64];
    fprintf(f, "model        %s\n", r->model);
    fprintf(f, "parameters   %.1fM without embeddings and softmax (the paper's count) | %.1fM in all | experts %.1fM\n",
            r->params_paper / 1e6, r->params_all / 1e6, r->experts_all / 1e6);
    fprintf(f, "processes    %d | experts %s\n", r->world,
            r->world == 1 ? "all on one process"
            : r->experts_sharded ? "spread over the processes (expert parallel), the rest replicated (data parallel)"
                                 : "replicated: their number is not a multiple of the processes");
    fprintf(f, "per process  parameters %.1fM (experts %.1fM) | optimizer state %.1fM values | parameters, gradients "
            "and optimizer state %s\n",
            r->params_rank / 1e6, r->experts_rank / 1e6, r->opt_rank / 1e6, size_str(r->state_bytes, s1, sizeof s1));
    fprintf(f, "batch        %.0f tokens per step | %.0f per process and micro-batch | activations %s per process "
            "(estimate, f32)\n",
            r->tokens_step, r->tokens_rank, size_str(r->act_bytes, s1, sizeof s1));
    human(r->flops_token, "FLOP", a, sizeof a);
    human(r->step_flops_rank, "FLOP", b, sizeof b);
    human(r->expert_flops_rank, "FLOP", c, sizeof c);
    fprintf(f, "compute      ops/timestep %.2fM | training %s per token (2 x 3 x multiply-adds, softmax included) | "
            "%s per step and process, %s in experts\n",
            r->ops_token / 1e6, a, b, c);
    if (r->world > 1) {
        human(r->a2a_bytes_rank, "B", a, sizeof a);
        human(r->allreduce_bytes_rank, "B", b, sizeof b);
        fprintf(f, "network      all-to-all %s per step and process (%d MoE layer%s, forward and backward) | gradient "
                "all-reduce %s per step and process\n",
                a, r->moe_layers, r->moe_layers == 1 ? "" : "s", b);
    }
    if (r->moe_layers)
        fprintf(f, "ratio (§3.2) an expert does %lld multiply-adds per value it receives or sends (its hidden size)%s\n",
                (long long)r->expert_hidden, r->flop_per_byte > 0 ? "" : "; nothing crosses the network");
    if (r->flop_per_byte > 0)
        fprintf(f, "             %.0f expert FLOP per all-to-all byte (f32); hiding the exchange at 790 TFLOP/s takes "
                "~2.1 kFLOP/B over NVLink (370 GB/s) and ~17 kFLOP/B over one 400 Gb/s NIC (46 GB/s): %s\n",
                r->flop_per_byte,
                r->flop_per_byte >= 17000 ? "compute-bound on both"
                : r->flop_per_byte >= 2100 ? "compute-bound within a node, network-bound across nodes"
                                           : "at full GPU speed the exchange, not the experts, sets the pace");
    double need = r->state_bytes + r->act_bytes + r->overhead_bytes;
    fprintf(f, "fits         %s: %s needed per process (state %s + activations %s + runtime %s) of %s\n",
            r->fits ? "yes" : "NO", size_str(need, s1, sizeof s1), size_str(r->state_bytes, s2, sizeof s2),
            size_str(r->act_bytes, s3, sizeof s3), size_str(r->overhead_bytes, s4, sizeof s4),
            size_str(r->gpu_bytes, s5, sizeof s5));
}
