/* The MoE layer: gating levels, dispatch, experts, combine, balancing losses. */
#include "nn/moe.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/check.h"
#include "core/prof.h"
#include "comm/comm.h"
#include "nn/moe_dist.h"
#include "nn/moe_tally.h"

#define HIER(m) ((m)->cfg.groups > 0)

MoeConfig moe_config_default(int64_t dim, int experts, int k) {
    MoeConfig c = {0};
    c.dim = dim;
    c.hidden = 2 * dim;
    c.hidden_layers = 1;
    c.experts = experts;
    c.k = k;
    c.gating = experts == 1 ? MOE_GATE_NONE : MOE_GATE_NOISY_TOPK;
    c.w_importance = (real)0.1;
    c.w_load = (real)0.1;
    c.w_threshold = 1;
    c.noise_eps = (real)0.01;
    return c;
}

const char *moe_config_error(const MoeConfig *c) {
    static char msg[200];
    if (c->dim <= 0 || c->hidden <= 0) return "expert sizes must be positive";
    if (c->hidden_layers < 1 || c->hidden_layers > MOE_MAX_HIDDEN) {
        snprintf(msg, sizeof msg, "--moe-expert-layers %d must be in [1, %d]", c->hidden_layers, MOE_MAX_HIDDEN);
        return msg;
    }
    if (c->experts < 1) return "--moe-expert-count must be at least 1";
    if (c->experts == 1) return c->groups ? "a single expert cannot be hierarchical" : NULL;
    if (c->gating == MOE_GATE_NONE) return "several experts need a gate";
    if (c->groups < 0) return "--moe-groups must be >= 0";
    int n1 = c->groups ? c->groups : c->experts;
    if (c->groups) {
        if (c->groups < 2 || c->experts % c->groups) {
            snprintf(msg, sizeof msg, "--moe-groups %d must be >= 2 and divide --moe-expert-count %d", c->groups,
                     c->experts);
            return msg;
        }
        if (c->gating == MOE_GATE_SOFTMAX) return "softmax gating is flat only (use --moe-groups 0)";
        int b = c->experts / c->groups;
        if (c->k > b) {
            snprintf(msg, sizeof msg, "--moe-top-k %d exceeds the %d experts per group", c->k, b);
            return msg;
        }
    }
    if (c->k < 1 || c->k > n1) {
        snprintf(msg, sizeof msg, "--moe-top-k %d must be in [1, %d]", c->k, n1);
        return msg;
    }
    if (c->gating == MOE_GATE_NOISY_TOPK && c->noise_eps < 0) return "--moe-noise-epsilon must be >= 0";
    if (c->w_importance < 0 || c->w_load < 0 || c->w_threshold < 0) return "balancing-loss weights must be >= 0";
    return NULL;
}

const char *moe_config_train_error(const MoeConfig *c) {
    if (c->experts > 1 && c->gating == MOE_GATE_NOISY_TOPK && c->k == 1)
        return "--moe-top-k 1 with --moe-gating noisy-topk: the gate is the softmax over the one kept logit, always 1, "
               "so the task loss never trains the gating network; use --moe-gating switch (the softmax over all "
               "experts, the top one's probability as its gate), or --moe-top-k 2";
    return NULL;
}

const char *moe_gating_name(MoeGating g) {
    switch (g) {
    case MOE_GATE_NOISY_TOPK: return "noisy-topk";
    case MOE_GATE_BATCHWISE: return "batchwise";
    case MOE_GATE_SOFTMAX: return "softmax";
    case MOE_GATE_SWITCH: return "switch";
    case MOE_GATE_NONE: return "none";
    }
    return "?";
}

int64_t moe_param_count(const MoeConfig *c) {
    int64_t d = c->dim, h = c->hidden, E = c->experts;
    int64_t expert = d * h + (int64_t)(c->hidden_layers - 1) * h * h + h * d;
    int64_t gates = 0;
    if (c->experts > 1) {
        int per = c->gating == MOE_GATE_NOISY_TOPK ? 2 : 1; /* W_g (+ W_noise) */
        int64_t n1 = c->groups ? c->groups : E;
        gates = per * d * n1 + (c->gating == MOE_GATE_BATCHWISE ? n1 : 0);
        if (c->groups) gates += per * d * E + (c->gating == MOE_GATE_BATCHWISE ? E : 0);
    }
    return E * expert + gates;
}

int64_t moe_macs_per_token(const MoeConfig *c) {
    int64_t d = c->dim, h = c->hidden;
    int64_t expert = d * h + (int64_t)(c->hidden_layers - 1) * h * h + h * d;
    if (c->experts == 1) return expert;
    int per = c->gating == MOE_GATE_NOISY_TOPK ? 2 : 1;
    if (c->gating == MOE_GATE_SOFTMAX) return per * d * c->experts + (int64_t)c->experts * expert;
    if (!c->groups) return per * d * c->experts + (int64_t)c->k * expert;
    int64_t b = c->experts / c->groups;
    /* primary gate, k secondary gates, k*k experts */
    return per * d * c->groups + (int64_t)c->k * per * d * b + (int64_t)c->k * c->k * expert;
}

void moe_init(Moe *m, ParamStore *ps, const char *name, const MoeConfig *cfg) {
    const char *err = moe_config_error(cfg);
    if (err) FATAL(EXIT_USAGE, "MoE layer '%s': %s", name, err);
    *m = (Moe){0};
    m->cfg = *cfg;
    snprintf(m->name, sizeof m->name, "%s", name);
    m->wg = m->wn = m->thr = m->wg2 = m->wn2 = m->thr2 = -1;
    int64_t d = cfg->dim, h = cfg->hidden, E = cfg->experts;
    char buf[160];
    m->n1 = cfg->groups ? cfg->groups : cfg->experts;
    m->b = cfg->groups ? cfg->experts / cfg->groups : cfg->experts;
    if (cfg->gating != MOE_GATE_NONE) {
        /* Switch's router starts small and random: zero logits would tie every expert */
        InitKind gi = cfg->gating == MOE_GATE_SWITCH ? INIT_NORMAL : INIT_ZERO;
        real ga = cfg->gating == MOE_GATE_SWITCH ? (real)sqrt(0.1 / (double)d) : 0;
        snprintf(buf, sizeof buf, "%s.gate.wg", name);
        m->wg = params_add(ps, buf, PARAM_GATE, 1, d, m->n1, gi, ga);
        if (cfg->gating == MOE_GATE_NOISY_TOPK) {
            snprintf(buf, sizeof buf, "%s.gate.wn", name);
            m->wn = params_add(ps, buf, PARAM_GATE, 1, d, m->n1, INIT_ZERO, 0);
        }
        if (cfg->gating == MOE_GATE_BATCHWISE) {
            snprintf(buf, sizeof buf, "%s.gate.thr", name);
            m->thr = params_add(ps, buf, PARAM_GATE, 1, 1, m->n1, INIT_ZERO, 0);
        }
        if (HIER(m)) {
            snprintf(buf, sizeof buf, "%s.gate2.wg", name);
            m->wg2 = params_add(ps, buf, PARAM_GATE, cfg->groups, d, m->b, gi, ga);
            if (cfg->gating == MOE_GATE_NOISY_TOPK) {
                snprintf(buf, sizeof buf, "%s.gate2.wn", name);
                m->wn2 = params_add(ps, buf, PARAM_GATE, cfg->groups, d, m->b, INIT_ZERO, 0);
            }
            if (cfg->gating == MOE_GATE_BATCHWISE) {
                snprintf(buf, sizeof buf, "%s.gate2.thr", name);
                m->thr2 = params_add(ps, buf, PARAM_GATE, cfg->groups, 1, m->b, INIT_ZERO, 0);
            }
        }
    }
    /* expert parallelism: whole secondary groups per process when they divide
     * evenly, else single experts; replicated when neither does */
    CHECK_ARG(ps->world <= MOE_MAX_WORLD, "MoE '%s': at most %d processes", name, MOE_MAX_WORLD);
    int W = ps->world > 1 ? ps->world : 1;
    m->blk = cfg->groups && cfg->groups % W == 0 ? m->b : 1;
    int L = cfg->hidden_layers;
    m->nw = L + 1;
    for (int l = 0; l <= L; l++) {
        int64_t r = l == 0 ? d : h, cc = l == L ? d : h;
        if (l == 0)
            snprintf(buf, sizeof buf, "%s.expert.w_in", name);
        else if (l == L)
            snprintf(buf, sizeof buf, "%s.expert.w_out", name);
        else
            snprintf(buf, sizeof buf, "%s.expert.w_hid%d", name, l);
        m->w[l] = params_add_sharded(ps, buf, PARAM_EXPERT, E, r, cc, INIT_GLOROT, 0, m->blk);
    }
    m->el = (int)ps->p[m->w[0]].b;
    m->shard = ps->p[m->w[0]].placed; /* experts reached through the communicator */
    m->site1 = nn_site(name, 1);
    m->site2 = nn_site(name, 2);
}

/* ---- gating levels ------------------------------------------------------- */

/* Gate parameters of a level: the first level uses plain products, the
 * secondary level per-group products over the group-major rows (offs). */
typedef struct {
    int wg, wn, thr;
    int n;           /* experts at this level */
    Tensor offs;     /* secondary: I32 [a+1] row offsets per group; else none */
    Tensor group;    /* secondary: I32 [rows] group of each row; else none */
    Tensor rowids;   /* noise keys of the rows, or none (0..N-1) */
    uint32_t site;
    int64_t m_rows;  /* batchwise training: rows per segment (host-known), or -1 */
} LevelSpec;

static void level_logits(Ctx *c, const LevelSpec *ls, int pid, Tensor xin, Tensor out) {
    if (tnull(ls->offs))
        OP(c->be, gemm, 0, 0, 1, xin, param_val(c->ps, pid), 0, out);
    else
        OP(c->be, gemm_grouped, 0, 1, xin, param_val(c->ps, pid), ls->offs, 0, out);
}

/* dxin += dlogits W^T; dW += xin^T dlogits. */
static void level_logits_bwd(Ctx *c, const LevelSpec *ls, int pid, Tensor xin, Tensor dlogits, Tensor dxin) {
    if (tnull(ls->offs)) {
        OP(c->be, gemm, 1, 0, 1, xin, dlogits, 1, param_grad(c->ps, pid));
        OP(c->be, gemm, 0, 1, 1, dlogits, param_val(c->ps, pid), 1, dxin);
    } else {
        OP(c->be, gemm_grouped_wgrad, 1, xin, dlogits, ls->offs, 1, param_grad(c->ps, pid), tnone());
        OP(c->be, gemm_grouped, 1, 1, dlogits, param_val(c->ps, pid), ls->offs, 1, dxin);
    }
}

static int64_t download_count(Ctx *c, Tensor tok_offs, int64_t N) {
    int32_t v;
    OP(c->be, download, &v, (int32_t *)tok_offs.p + N, sizeof v);
    return v;
}

/* Switch gating's mask [N x n]: 1 at each row's top k logits (ties to the lower
 * index), from the noiseless top-k of gate_topk_fwd scattered by route_dense_bwd.
 * Its temporaries go back to the arena. */
static void switch_mask(Ctx *c, Tensor logits, int k, Tensor mask) {
    Backend *be = c->be;
    int64_t N = logits.r, n = logits.c;
    size_t mk = arena_mark(c->arena);
    int K1 = k < n ? k + 1 : k;
    Tensor H = nn_tensor(c, DT_F32, N, n), idx = nn_tensor(c, DT_I32, N, K1), g = nn_tensor(c, DT_F32, N, k);
    OP(be, gate_topk_fwd, logits, tnone(), k, 0, 0, c->seed, 0, tnone(), 0, H, idx, g, tnone());
    Tensor offs = nn_tensor(c, DT_I32, 1, N + 1), exp = nn_tensor(c, DT_I32, N, k), ones = nn_tensor(c, DT_F32, 1, N * k);
    OP(be, iota, offs, 0, k);
    OP(be, copy, exp, tcols(idx, 0, k));
    OP(be, fill, ones, 1.0);
    OP(be, route_dense_bwd, ones, offs, tflat(exp), mask);
    arena_release(c->arena, mk);
}

static void level_forward(Ctx *c, const Moe *m, const LevelSpec *ls, Tensor xin, MoeLevel *L) {
    Backend *be = c->be;
    int64_t N = xin.r;
    int n = ls->n, k = m->cfg.k;
    *L = (MoeLevel){0};
    L->N = N;
    L->tok_offs = nn_tensor(c, DT_I32, 1, N + 1);
    switch (m->cfg.gating) {
    case MOE_GATE_NOISY_TOPK: {
        int noisy = c->train;
        int K1 = k < n ? k + 1 : k;
        L->clean = nn_tensor(c, DT_F32, N, n);
        level_logits(c, ls, ls->wg, xin, L->clean);
        if (noisy) {
            L->raw = nn_tensor(c, DT_F32, N, n);
            level_logits(c, ls, ls->wn, xin, L->raw);
        }
        L->H = nn_tensor(c, DT_F32, N, n);
        L->idx = nn_tensor(c, DT_I32, N, K1);
        L->gates = nn_tensor(c, DT_F32, N, k);
        if (noisy && k < n) L->P = nn_tensor(c, DT_F32, N, n);
        OP(be, gate_topk_fwd, L->clean, L->raw, k, m->cfg.noise_eps, noisy, c->seed, nn_stream(c, ls->site), ls->rowids,
           0, L->H, L->idx, L->gates, L->P);
        L->M = N * k;
        OP(be, iota, L->tok_offs, 0, k);
        L->slot_exp = nn_tensor(c, DT_I32, N, k);
        OP(be, copy, L->slot_exp, tcols(L->idx, 0, k));
        L->slot_exp = tflat(L->slot_exp);
        L->slot_gate = tflat(L->gates);
        return;
    }
    case MOE_GATE_BATCHWISE:
    case MOE_GATE_SOFTMAX:
    case MOE_GATE_SWITCH: {
        Tensor logits = nn_tensor(c, DT_F32, N, n);
        level_logits(c, ls, ls->wg, xin, logits);
        L->probs = nn_tensor(c, DT_F32, N, n);
        OP(be, softmax_fwd, logits, tnone(), L->probs);
        L->mask = nn_tensor(c, DT_F32, N, n);
        if (m->cfg.gating == MOE_GATE_SOFTMAX) {
            OP(be, fill, L->mask, 1.0);
            L->gates = L->probs;
            L->M = N * n;
        } else if (m->cfg.gating == MOE_GATE_SWITCH) {
            switch_mask(c, logits, k, L->mask);
            L->gates = nn_tensor(c, DT_F32, N, n);
            OP(be, mul, L->probs, L->mask, L->gates); /* the kept probabilities, not renormalised */
            L->M = N * k;
        } else {
            /* thresholds: the first level's [1 x n]; the secondary's per group, gathered per row */
            Tensor T = param_val(c->ps, ls->thr);
            if (!tnull(ls->group)) {
                L->thr_rows = nn_tensor(c, DT_F32, N, n);
                OP(be, gather_rows, treshape(T, T.b, n), ls->group, 0, L->thr_rows);
                T = L->thr_rows;
            } else {
                T = treshape(T, 1, n);
            }
            if (c->train) {
                OP(be, gate_batchwise_mask, L->probs, ls->offs, k, tnone(), L->mask);
                L->dT = nn_tensor(c, DT_F32, T.r, n);
                L->thr_loss = nn_tensor(c, DT_F32, 1, 1);
                OP(be, threshold_loss, L->probs, L->mask, T, m->cfg.w_threshold, L->thr_loss, L->dT);
                /* every segment gives floor(k * rows / n) rows to each expert */
                L->M = (int64_t)((k * ls->m_rows) / n) * n * (tnull(ls->offs) ? 1 : tnumel(ls->offs) - 1);
            } else {
                OP(be, gate_batchwise_mask, L->probs, tnone(), k, T, L->mask);
            }
            L->gates = nn_tensor(c, DT_F32, N, n);
            OP(be, gate_masknorm_fwd, L->probs, L->mask, L->gates);
        }
        OP(be, route_dense_count, L->mask, L->tok_offs);
        if (m->cfg.gating == MOE_GATE_BATCHWISE && !c->train) L->M = download_count(c, L->tok_offs, N);
        L->slot_exp = nn_tensor(c, DT_I32, 1, L->M);
        L->slot_gate = nn_tensor(c, DT_F32, 1, L->M);
        OP(be, route_dense_fill, L->mask, L->gates, L->tok_offs, L->slot_exp, L->slot_gate);
        return;
    }
    case MOE_GATE_NONE:
        L->M = N;
        OP(be, iota, L->tok_offs, 0, 1);
        L->slot_exp = nn_zeros(c, DT_I32, 1, N);
        L->slot_gate = nn_tensor(c, DT_F32, 1, N);
        OP(be, fill, L->slot_gate, 1.0);
        return;
    }
}

/* dslot_gate: gradient wrt this level's slot gates. dxin is accumulated (+=). */
static void level_backward(Ctx *c, const Moe *m, const LevelSpec *ls, Tensor xin, MoeLevel *L, Tensor dslot_gate,
                           Tensor dxin) {
    Backend *be = c->be;
    int64_t N = L->N;
    int n = ls->n, k = m->cfg.k;
    switch (m->cfg.gating) {
    case MOE_GATE_NOISY_TOPK: {
        int noisy = c->train;
        Tensor dclean = nn_tensor(c, DT_F32, N, n);
        Tensor draw = noisy ? nn_tensor(c, DT_F32, N, n) : tnone();
        OP(be, gate_topk_bwd, L->clean, L->raw, L->H, L->idx, L->gates, k, m->cfg.noise_eps, noisy, c->seed,
           nn_stream(c, ls->site), ls->rowids, 0, treshape(dslot_gate, N, k), L->dload, dclean, draw);
        level_logits_bwd(c, ls, ls->wg, xin, dclean, dxin);
        if (noisy) level_logits_bwd(c, ls, ls->wn, xin, draw, dxin);
        return;
    }
    case MOE_GATE_BATCHWISE:
    case MOE_GATE_SOFTMAX:
    case MOE_GATE_SWITCH: {
        /* switch: gates = probs .* mask, and dg is 0 off the mask: dprobs = dg */
        Tensor dg = nn_tensor(c, DT_F32, N, n);
        OP(be, route_dense_bwd, dslot_gate, L->tok_offs, L->slot_exp, dg);
        Tensor dprobs = dg;
        if (m->cfg.gating == MOE_GATE_BATCHWISE) {
            dprobs = nn_tensor(c, DT_F32, N, n);
            OP(be, gate_masknorm_bwd, L->probs, L->mask, L->gates, dg, dprobs);
            if (!tnull(L->dT)) {
                Tensor tg = param_grad(c->ps, ls->thr);
                if (tnull(ls->group))
                    OP(be, axpby, 1, L->dT, 1, treshape(tg, 1, n));
                else
                    OP(be, scatter_add_rows, 1, L->dT, ls->group, treshape(tg, tg.b, n));
            }
        }
        OP(be, softmax_bwd, L->probs, dprobs, dprobs);
        level_logits_bwd(c, ls, ls->wg, xin, dprobs, dxin);
        return;
    }
    case MOE_GATE_NONE: return;
    }
}

static LevelSpec spec_first(const Moe *m, const MoeCache *mc) {
    LevelSpec s = {.wg = m->wg, .wn = m->wn, .thr = m->thr, .n = m->n1, .site = m->site1, .m_rows = mc->N};
    s.rowids = mc->keys;
    return s;
}

static LevelSpec spec_second(const Moe *m, const MoeCache *mc) {
    LevelSpec s = {.wg = m->wg2, .wn = m->wn2, .thr = m->thr2, .n = m->b, .site = m->site2};
    s.offs = mc->offs1;
    s.group = mc->pair_group1;
    s.rowids = mc->keys2;
    /* batchwise: the primary gives each group exactly floor(k N / a) rows */
    s.m_rows = (m->cfg.k * mc->N) / m->n1;
    return s;
}

/* ---- experts ------------------------------------------------------------- */

static void experts_hidden(Ctx *c, const Moe *m, MoeCache *mc, Tensor *h) {
    Tensor in = mc->xe;
    for (int l = 0; l < m->nw - 1; l++) {
        h[l] = nn_tensor(c, DT_F32, mc->R, m->cfg.hidden);
        if (!mc->R) continue;
        OP(c->be, gemm_grouped, 0, 1, in, param_val(c->ps, m->w[l]), mc->eoffs, 0, h[l]);
        OP(c->be, act_fwd, ACT_RELU, h[l], h[l]);
        in = h[l];
    }
}

/* ---- forward ---------------------------------------------------------------- */

void moe_forward(Ctx *c, const Moe *m, Tensor x, Tensor keys, Tensor y, MoeCache *mc) {
    Backend *be = c->be;
    int64_t N = x.r, d = m->cfg.dim;
    int E = m->cfg.experts;
    CHECK_ARG(x.c == d && y.c == d && y.r == N && x.b == 1, "MoE '%s': x is %lldx%lld, y %lldx%lld, layer width %lld",
              m->name, (long long)x.r, (long long)x.c, (long long)y.r, (long long)y.c, (long long)d);
    CHECK_ARG(tnull(keys) || tnumel(keys) == N, "MoE '%s': %lld noise keys for %lld rows", m->name,
              (long long)tnumel(keys), (long long)N);
    CHECK_ARG(!m->shard || (c->comm && (int64_t)comm_world(c->comm) * m->el == m->cfg.experts),
              "MoE '%s': its experts are placed for %s", m->name, c->comm ? "another number of processes" : "a communicator, and the context has none");
    *mc = (MoeCache){0};
    mc->x = x;
    mc->N = N;
    mc->keys = keys;
    mc->losses = nn_zeros(c, DT_F32, 1, MOE_LOSS_N);

    int pt = prof_begin(PROF_GATE);
    LevelSpec s1 = spec_first(m, mc);
    level_forward(c, m, &s1, x, &mc->l1);
    if (!HIER(m)) {
        mc->tok_offs = mc->l1.tok_offs;
        mc->slot_exp = mc->l1.slot_exp;
        mc->slot_gate = mc->l1.slot_gate;
        mc->M = mc->l1.M;
    } else {
        /* dispatch every token to its groups (group-major rows) */
        int64_t M1 = mc->l1.M;
        mc->offs1 = nn_tensor(c, DT_I32, 1, m->n1 + 1);
        mc->slot_pair1 = nn_tensor(c, DT_I32, 1, M1);
        mc->pair_tok1 = nn_tensor(c, DT_I32, 1, M1);
        OP(be, route_build, mc->l1.tok_offs, mc->l1.slot_exp, m->n1, mc->offs1, mc->slot_pair1, mc->pair_tok1);
        mc->x1 = nn_tensor(c, DT_F32, M1, d);
        OP(be, gather_rows, x, mc->pair_tok1, 0, mc->x1);
        mc->pair_group1 = nn_tensor(c, DT_I32, 1, M1);
        OP(be, segment_ids, mc->offs1, mc->pair_group1);
        mc->pair_slot1 = nn_tensor(c, DT_I32, 1, M1);
        OP(be, index_invert, mc->slot_pair1, mc->pair_slot1);
        /* a pair's noise key: its token's key * k + its primary slot */
        mc->keys2 = mc->pair_slot1;
        if (!tnull(keys) && c->train && m->cfg.gating == MOE_GATE_NOISY_TOPK) {
            mc->keys2 = nn_tensor(c, DT_I32, 1, M1);
            OP(be, noise_keys, keys, mc->pair_tok1, mc->pair_slot1, m->cfg.k, mc->keys2);
        }
        LevelSpec s2 = spec_second(m, mc);
        level_forward(c, m, &s2, mc->x1, &mc->l2);
        mc->M = mc->l2.M;
        mc->tok_offs = nn_tensor(c, DT_I32, 1, N + 1);
        mc->slot_exp = nn_tensor(c, DT_I32, 1, mc->M);
        mc->slot_gate = nn_tensor(c, DT_F32, 1, mc->M);
        OP(be, hier_compose, mc->l1.tok_offs, mc->l1.slot_exp, mc->l1.slot_gate, mc->slot_pair1, mc->l2.tok_offs,
           mc->l2.slot_exp, mc->l2.slot_gate, m->b, mc->tok_offs, mc->slot_exp, mc->slot_gate);
    }

    prof_end(pt);
    /* dispatch (expert-major), experts, combine (per token, fixed order) */
    pt = prof_begin(PROF_DISPATCH);
    int64_t M = mc->M;
    mc->exp_offs = nn_tensor(c, DT_I32, 1, E + 1);
    mc->slot_pair = nn_tensor(c, DT_I32, 1, M);
    mc->pair_tok = nn_tensor(c, DT_I32, 1, M);
    OP(be, route_build, mc->tok_offs, mc->slot_exp, E, mc->exp_offs, mc->slot_pair, mc->pair_tok);
    if (c->tally && c->train) moe_tally_add(c, m, mc);
    /* What only the forward needs (the pairs' rows on their way, recomputed
     * hidden layers) goes back to the arena at once. */
    if (m->shard) {
        moe_dist_plan(c, m, mc);
        mc->xe = nn_tensor(c, DT_F32, mc->R, d);
        size_t mk = arena_mark(c->arena);
        Tensor xp = nn_tensor(c, DT_F32, M, d);
        if (M) OP(be, gather_rows, x, mc->pair_tok, 0, xp);
        moe_dist_to_experts(c, mc, xp, mc->xe);
        arena_release(c->arena, mk);
    } else {
        mc->R = M;
        mc->eoffs = mc->exp_offs;
        mc->xe = nn_tensor(c, DT_F32, M, d);
        if (M) OP(be, gather_rows, x, mc->pair_tok, 0, mc->xe);
    }
    prof_end(pt);
    pt = prof_begin(PROF_EXPERTS);
    Tensor h[MOE_MAX_HIDDEN];
    if (!m->cfg.recompute) {
        experts_hidden(c, m, mc, h);
        for (int l = 0; l < m->nw - 1; l++) mc->h[l] = h[l];
    }
    mc->ye = nn_tensor(c, DT_F32, M, d);
    size_t mk = arena_mark(c->arena);
    if (m->cfg.recompute) experts_hidden(c, m, mc, h);
    Tensor ye = m->shard ? nn_tensor(c, DT_F32, mc->R, d) : mc->ye;
    if (mc->R) OP(be, gemm_grouped, 0, 1, h[m->nw - 2], param_val(c->ps, m->w[m->nw - 1]), mc->eoffs, 0, ye);
    if (m->shard) moe_dist_from_experts(c, mc, ye, mc->ye);
    arena_release(c->arena, mk);
    prof_end(pt);
    pt = prof_begin(PROF_COMBINE);
    OP(be, combine, mc->ye, mc->slot_gate, mc->tok_offs, mc->slot_pair, y);
    prof_end(pt);

    /* balancing losses; their gradients are constants of the backward, kept here */
    if (m->cfg.gating == MOE_GATE_NONE) return;
    pt = prof_begin(PROF_GATE);
    mc->imp = nn_zeros(c, DT_F32, E, 1);
    if (M) OP(be, scatter_add_rows, 1, treshape(mc->slot_gate, M, 1), mc->slot_exp, mc->imp);
    moe_dist_sum(c, mc->imp); /* Importance and Load are over the global batch */
    mc->dimp = nn_tensor(c, DT_F32, E, 1);
    OP(be, cv2, mc->imp, m->cfg.w_importance, tcols(mc->losses, MOE_LOSS_IMPORTANCE, 1), mc->dimp);
    if (m->cfg.gating == MOE_GATE_NOISY_TOPK && !tnull(mc->l1.P)) {
        Tensor Lp = nn_tensor(c, DT_F32, 1, m->n1);
        OP(be, sum_rows, 1, mc->l1.P, 0, Lp);
        moe_dist_sum(c, Lp);
        if (!HIER(m)) {
            mc->load = Lp;
            mc->l1.dload = nn_tensor(c, DT_F32, 1, m->n1);
            OP(be, cv2, Lp, m->cfg.w_load, tcols(mc->losses, MOE_LOSS_LOAD, 1), mc->l1.dload);
        } else if (!tnull(mc->l2.P)) {
            Tensor Ls = nn_zeros(c, DT_F32, m->n1, m->b);
            OP(be, scatter_add_rows, 1, mc->l2.P, mc->pair_group1, Ls);
            moe_dist_sum(c, Ls);
            Tensor goffs = moe_dist_global_offs(c, mc->offs1);
            mc->load = nn_tensor(c, DT_F32, m->n1, m->b);
            OP(be, hier_load, Lp, Ls, goffs, mc->load);
            Tensor dLH = nn_tensor(c, DT_F32, m->n1, m->b);
            OP(be, cv2, mc->load, m->cfg.w_load, tcols(mc->losses, MOE_LOSS_LOAD, 1), dLH);
            mc->l1.dload = nn_tensor(c, DT_F32, 1, m->n1);
            Tensor dLs = nn_tensor(c, DT_F32, m->n1, m->b);
            OP(be, hier_load_bwd, Lp, Ls, goffs, dLH, mc->l1.dload, dLs);
            mc->l2.dload = nn_tensor(c, DT_F32, mc->l2.N, m->b);
            OP(be, gather_rows, dLs, mc->pair_group1, 0, mc->l2.dload);
        }
    }
    if (m->cfg.gating == MOE_GATE_BATCHWISE && c->train) {
        Tensor tl = tcols(mc->losses, MOE_LOSS_THRESHOLD, 1);
        OP(be, axpby, 1, mc->l1.thr_loss, 0, tl);
        if (HIER(m)) OP(be, axpby, 1, mc->l2.thr_loss, 1, tl);
    }
    prof_end(pt);
}

/* ---- backward --------------------------------------------------------------- */

void moe_backward(Ctx *c, const Moe *m, MoeCache *mc, Tensor dy, Tensor dx) {
    Backend *be = c->be;
    int64_t N = mc->N, M = mc->M, d = m->cfg.dim;
    CHECK_ARG(dy.r == N && dy.c == d && dx.r == N && dx.c == d, "MoE '%s': gradient shapes differ from the forward",
              m->name);
    size_t mark = arena_mark(c->arena); /* everything below is temporary */
    int pt = prof_begin(PROF_COMBINE);
    Tensor dye = nn_tensor(c, DT_F32, M, d);
    Tensor dsg = nn_tensor(c, DT_F32, 1, M);
    OP(be, combine_bwd, dy, mc->ye, mc->slot_gate, mc->tok_offs, mc->slot_pair, dye, dsg);
    prof_end(pt);
    pt = prof_begin(PROF_GATE);
    if (!tnull(mc->dimp) && M) OP(be, gather_rows, mc->dimp, mc->slot_exp, 1, treshape(dsg, M, 1));
    prof_end(pt);
    int64_t R = mc->R;
    if (m->shard) {
        Tensor dyl = nn_tensor(c, DT_F32, R, d);
        moe_dist_to_experts(c, mc, dye, dyl);
        dye = dyl;
    }

    /* experts, last layer first */
    pt = prof_begin(PROF_EXPERTS);
    Tensor h[MOE_MAX_HIDDEN];
    if (m->cfg.recompute)
        experts_hidden(c, m, mc, h);
    else
        for (int l = 0; l < m->nw - 1; l++) h[l] = mc->h[l];
    Tensor dout = dye;
    for (int l = m->nw - 1; l >= 0; l--) {
        Tensor in = l == 0 ? mc->xe : h[l - 1];
        Tensor din = nn_tensor(c, DT_F32, R, l == 0 ? d : m->cfg.hidden);
        /* lazy experts: an unmarked one's gradient is written fresh (no
         * zeroing between updates, core/params.h); then mark the ones that
         * got rows */
        const Param *pw = &c->ps->p[m->w[l]];
        Tensor fresh = pw->lazy_items ? pw->mark : tnone();
        if (R) OP(be, gemm_grouped_wgrad, 1, in, dout, mc->eoffs, 1, param_grad(c->ps, m->w[l]), fresh);
        if (pw->lazy_items && M) OP(be, rows_mark, mc->slot_exp, pw->mark);
        if (R) {
            OP(be, gemm_grouped, 1, 1, dout, param_val(c->ps, m->w[l]), mc->eoffs, 0, din);
            if (l > 0) OP(be, act_bwd, ACT_RELU, h[l - 1], din, din);
        }
        dout = din;
    }
    prof_end(pt);
    pt = prof_begin(PROF_DISPATCH);
    if (m->shard) {
        Tensor dxp = nn_tensor(c, DT_F32, M, d);
        moe_dist_from_experts(c, mc, dout, dxp);
        dout = dxp;
    }
    /* dispatch backward: every token sums the gradients of its pairs */
    OP(be, combine, dout, tnone(), mc->tok_offs, mc->slot_pair, dx);
    prof_end(pt);

    pt = prof_begin(PROF_GATE);
    LevelSpec s1 = spec_first(m, mc);
    if (!HIER(m)) {
        level_backward(c, m, &s1, mc->x, &mc->l1, dsg, dx);
        arena_release(c->arena, mark);
        prof_end(pt);
        return;
    }
    Tensor dsg1 = nn_tensor(c, DT_F32, 1, mc->l1.M);
    Tensor dsg2 = nn_tensor(c, DT_F32, 1, mc->l2.M);
    OP(be, hier_compose_bwd, mc->l1.tok_offs, mc->l1.slot_gate, mc->slot_pair1, mc->l2.tok_offs, mc->l2.slot_gate, dsg,
       dsg1, dsg2);
    LevelSpec s2 = spec_second(m, mc);
    Tensor dx1 = nn_zeros(c, DT_F32, mc->l1.M, d);
    level_backward(c, m, &s2, mc->x1, &mc->l2, dsg2, dx1);
    Tensor dxg = nn_tensor(c, DT_F32, N, d);
    OP(be, combine, dx1, tnone(), mc->l1.tok_offs, mc->slot_pair1, dxg);
    OP(be, axpby, 1, dxg, 1, dx);
    level_backward(c, m, &s1, mc->x, &mc->l1, dsg1, dx);
    arena_release(c->arena, mark);
    prof_end(pt);
}

/* ---- statistics -------------------------------------------------------------- */

static double cv2_host(const double *v, int64_t n) {
    double ne = (double)n + 1e-10, s = 0, q = 0;
    for (int64_t i = 0; i < n; i++) s += v[i];
    double mu = s / ne;
    for (int64_t i = 0; i < n; i++) q += (v[i] - mu) * (v[i] - mu);
    return (q / ne) / (mu * mu + 1e-10);
}

static void download_reals(Ctx *c, Tensor t, double *out) {
    int64_t n = tnumel(t);
    real *tmp = xmalloc((size_t)n * sizeof(real), "MoE statistics");
    be_download_tensor(c->be, tmp, t);
    for (int64_t i = 0; i < n; i++) out[i] = tmp[i];
    free(tmp);
}

void moe_stats(Ctx *c, const Moe *m, const MoeCache *mc, MoeStats *st) {
    int E = m->cfg.experts;
    *st = (MoeStats){0};
    st->experts = E;
    double *v = xmalloc((size_t)(E + 1) * sizeof(double), "MoE statistics");
    int32_t *offs = xmalloc((size_t)(E + 1) * sizeof(int32_t), "MoE statistics");
    be_download_tensor(c->be, offs, mc->exp_offs);
    int64_t *cnt = xmalloc((size_t)E * sizeof *cnt, "MoE statistics");
    for (int e = 0; e < E; e++) cnt[e] = offs[e + 1] - offs[e];
    comm_allreduce_i64(c->comm, cnt, E);
    double mx = 0, sum = 0;
    for (int e = 0; e < E; e++) {
        v[e] = (double)cnt[e];
        sum += v[e];
        if (v[e] > mx) mx = v[e];
        if (v[e] == 0) st->unused++;
    }
    st->max_over_mean = sum > 0 ? mx / (sum / E) : 0;
    st->cv2_true_load = cv2_host(v, E);
    st->cv2_load = st->cv2_true_load;
    if (!tnull(mc->imp)) {
        download_reals(c, mc->imp, v);
        st->cv2_importance = cv2_host(v, E);
    }
    if (!tnull(mc->load)) {
        int64_t n = tnumel(mc->load);
        double *lv = xmalloc((size_t)n * sizeof(double), "MoE statistics");
        download_reals(c, mc->load, lv);
        st->cv2_load = cv2_host(lv, n);
        free(lv);
    }
    download_reals(c, mc->losses, st->losses);
    free(v);
    free(offs);
    free(cnt);
}
