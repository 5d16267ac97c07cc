/* moe-train --plan (see plan.h). */
#include "train/plan.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "comm/grad_sync.h"
#include "model/act.h"
#include "model/model.h"
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

/* ---- the plan ------------------------------------------------------------------ */

static int64_t vocab_size_of(const Config *cfg, const ModelOps *ops, char *err, size_t n) {
    size_t nd = 0, nv = 0;
    const int64_t *dims = cfg_list_int(cfg, "dim-vocabs", &nd);
    const char *const *vocabs = cfg_list(cfg, "vocabs", &nv);
    if (nd && dims[0] > 0) return dims[0];
    if (nv && train_file_exists(vocabs[0])) {
        void *v;
        if (ops->vocab_from_file(&v, vocabs[0], err, n)) return -1;
        int64_t size = ops->vocab_size(v);
        ops->vocab_free(v);
        return size;
    }
    snprintf(err, n, "--plan needs the vocabulary size: set --dim-vocabs, or --vocabs to an existing file");
    return -1;
}

int plan_compute(const Config *cfg, int world, double gpu_bytes, int64_t vocab, PlanResult *r, char *err, size_t n) {
    memset(r, 0, sizeof *r);
    if (world < 1) world = 1;
    r->world = world;
    r->gpu_bytes = gpu_bytes;
    const ModelOps *ops = model_ops_find(cfg_str(cfg, "type"));
    if (!ops) {
        snprintf(err, n, "--type %s: no such model type", cfg_str(cfg, "type"));
        return -1;
    }
    int64_t V = vocab > 0 ? vocab : vocab_size_of(cfg, ops, err, n);
    if (V < 0) return -1;
    r->vocab = V;

    Model md;
    const char *e = model_config(&md, ops, cfg, V);
    if (e) {
        snprintf(err, n, "%s", e);
        model_free(&md);
        return -1;
    }
    const ModelCommon *mc = model_common(ops, md.cfg);

    /* the model registered as training would place it on rank 0 */
    ParamStore ps;
    params_init(&ps, NULL);
    ps.dist = world > 1;
    ps.world = world;
    ps.rank = 0;
    model_init(&md, &ps, NULL);
    ops->describe(md.cfg, r->model, sizeof r->model);
    r->ops_token = (double)ops->macs_per_token(md.cfg);
    const Moe *moe[MODEL_MAX_LAYERS];
    r->moe_layers = model_moe_layers(ops, md.net, moe, MODEL_MAX_LAYERS);
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
    if (ops->stream_batches && !strcmp(cfg_str(cfg, "batching"), "stream"))
        tok = (double)cfg_int(cfg, "mini-batch") * (double)cfg_int(cfg, "bptt");
    else
        tok = (double)cfg_int(cfg, "mini-batch-words");
    if (!(tok > 0)) {
        snprintf(err, n, "--plan needs the batch size in tokens: set --mini-batch-words");
        model_free(&md);
        return -1;
    }
    int64_t delay = cfg_int(cfg, "optimizer-delay");
    r->tokens_step = tok * (double)(delay > 0 ? delay : 1);
    r->tokens_rank = tok / world;

    /* compute: 2 FLOPs per multiply-add, backward twice the forward (the paper's count) */
    int64_t D = ops->dim(md.cfg);
    int sampled = mc->sampled;
    double sm = (double)D * (sampled ? (double)mc->samples + 1 : (double)V);
    r->flops_token = 6.0 * (r->ops_token + sm);
    r->step_flops_rank = r->flops_token * r->tokens_step / world;
    MoeConfig m = mc->moe;
    m.dim = D;
    double pair_macs = (double)D * m.hidden * 2 + (double)(m.hidden_layers - 1) * m.hidden * m.hidden;
    double pairs_rank = r->tokens_step / world * act_moe_routed(&m) * r->moe_layers;
    r->expert_flops_rank = r->moe_layers ? 6.0 * pair_macs * pairs_rank : 0;
    r->expert_hidden = m.hidden * m.hidden_layers;
    if (r->experts_sharded && world > 1) {
        /* to the experts and back, in the forward and in the backward; 1/world stay local */
        r->a2a_bytes_rank = 4.0 * pairs_rank * (double)(world - 1) / world * (double)D * sizeof(real);
        r->flop_per_byte = r->expert_flops_rank / r->a2a_bytes_rank;
    }
    /* sparse tables: rows a step touches, at most one per target token and sample */
    double rows = fmin((double)V, r->tokens_step + (sampled ? (double)mc->samples : 0));
    if (!sampled) rows = (double)V;
    r->allreduce_bytes_rank = dense_sync + (world > 1 ? rows * sparse_cols * sizeof(real) * 2.0 * (world - 1) / world : 0);

    /* memory per process */
    r->state_bytes = (2.0 * r->params_rank + r->opt_rank) * sizeof(real);
    r->act_bytes = ops->act_bytes(md.cfg, r->experts_sharded, r->tokens_rank);
    r->overhead_bytes = 1.5 * GIB;
    r->fits = r->state_bytes + r->act_bytes + r->overhead_bytes <= gpu_bytes;
    model_free(&md);
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
