#include "train/optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/prof.h"
#include "comm/comm.h"

enum { OPTIM_COUNTERS_VERSION = 1 };

void optim_config_default(OptConfig *cfg) {
    *cfg = (OptConfig){.kind = OPT_ADAM, .expert = OPT_SAME, .b1 = 0.9, .b2 = 0.999, .eps = 1e-8,
                       .clip_norm = 1.0};
}

static const char *const kind_names[] = {"adam", "sgd", "factored", "same"};

void optim_config_from_options(const Config *cfg, OptConfig *oc) {
    optim_config_default(oc);
    /* both are checked by the options table; a name it let through and this
     * build does not know is an error, never a silent Adam */
    if (optim_kind_parse(cfg_str(cfg, "optimizer"), &oc->kind))
        FATAL(EXIT_USAGE, "--optimizer: unknown optimizer '%s'", cfg_str(cfg, "optimizer"));
    if (optim_kind_parse(cfg_str(cfg, "expert-optimizer"), &oc->expert))
        FATAL(EXIT_USAGE, "--expert-optimizer: unknown optimizer '%s'", cfg_str(cfg, "expert-optimizer"));
    size_t np = 0;
    const double *op = cfg_list_float(cfg, "optimizer-params", &np);
    if (np > 0) oc->b1 = op[0];
    if (np > 1) oc->b2 = op[1];
    if (np > 2) oc->eps = op[2];
    oc->clip_norm = cfg_float(cfg, "clip-norm");
}

int optim_kind_parse(const char *name, OptKind *out) {
    for (int k = 0; k < (int)(sizeof kind_names / sizeof *kind_names); k++)
        if (name && strcmp(name, kind_names[k]) == 0) {
            *out = (OptKind)k;
            return 0;
        }
    return -1;
}

const char *optim_kind_name(OptKind k) {
    return (unsigned)k < sizeof kind_names / sizeof *kind_names ? kind_names[k] : "?";
}

void optim_init(Optimizer *opt, const OptConfig *cfg) {
    CHECK_ARG(cfg->kind == OPT_ADAM || cfg->kind == OPT_SGD,
              "--optimizer must be adam or sgd, got '%s' (the factored optimizer is for experts: "
              "--expert-optimizer factored)",
              optim_kind_name(cfg->kind));
    CHECK_ARG(cfg->expert >= OPT_ADAM && cfg->expert <= OPT_SAME, "--expert-optimizer: unknown kind %d",
              (int)cfg->expert);
    CHECK_ARG(cfg->b1 >= 0 && cfg->b1 < 1, "--optimizer-params: beta1 must be in [0, 1), got %g", cfg->b1);
    CHECK_ARG(cfg->b2 >= 0 && cfg->b2 < 1, "--optimizer-params: beta2 must be in [0, 1), got %g", cfg->b2);
    CHECK_ARG(cfg->eps > 0 && isfinite(cfg->eps), "--optimizer-params: epsilon must be > 0, got %g",
              cfg->eps);
    CHECK_ARG(cfg->clip_norm >= 0 && isfinite(cfg->clip_norm), "--clip-norm must be >= 0 (0 = off), got %g",
              cfg->clip_norm);
    *opt = (Optimizer){0};
    opt->cfg = *cfg;
    if (opt->cfg.expert == OPT_SAME) opt->cfg.expert = cfg->kind;
}

void optim_free(Optimizer *opt) {
    if (opt->be) {
        be_free_tensor(opt->be, &opt->sumsq);
        be_free_tensor(opt->be, &opt->wss);
    }
    free(opt->wss_host);
    opt->wss_host = NULL;
    opt->be = NULL;
}

OptKind optim_param_kind(const Optimizer *opt, const Param *p) {
    return p->kind == PARAM_EXPERT ? opt->cfg.expert : opt->cfg.kind;
}

int64_t optim_state_size(const Param *p, void *ctx) {
    const Optimizer *opt = ctx;
    CHECK_ARG(opt, "optim_state_size: the context must be the Optimizer");
    switch (optim_param_kind(opt, p)) {
    case OPT_ADAM: return 2 * p->b * p->r * p->c;
    case OPT_FACTORED: return p->b * (p->r + p->c);
    default: return 0;
    }
}

int optim_state_parts(const Optimizer *opt, const Param *p, int64_t item_len[2]) {
    switch (optim_param_kind(opt, p)) {
    case OPT_ADAM:
        item_len[0] = item_len[1] = p->r * p->c;
        return 2;
    case OPT_FACTORED:
        item_len[0] = p->r;
        item_len[1] = p->c;
        return 2;
    default: return 0;
    }
}

/* Squared global gradient norm into opt->sumsq: one sumsq per parameter
 * (rows of [b*r x c], so large tables split into parallel row blocks),
 * accumulated in parameter order, so the sum is reproducible. */
static void grad_sumsq(Optimizer *opt, ParamStore *ps) {
    int started[2] = {0, 0};
    for (int i = 0; i < ps->n; i++) {
        const Param *p = &ps->p[i];
        Tensor g = param_marked_view(p, param_grad(ps, i));
        int part = comm_world(opt->comm) > 1 && param_sharded(p);
        OP(ps->be, sumsq, g, p->mark.p ? p->mark : tnone(), tcols(opt->sumsq, part, 1), started[part]);
        started[part] = 1;
    }
    for (int part = 0; part < 2; part++)
        if (!started[part]) OP(ps->be, fill, tcols(opt->sumsq, part, 1), 0.0);
}

/* wss: where the parameter's sum of squares after the step goes, or none. */
static void apply_param(const Optimizer *opt, ParamStore *ps, int i, real lr, real gscale, Tensor wss) {
    const Param *p = &ps->p[i];
    Backend *be = ps->be;
    const OptConfig *c = &opt->cfg;
    Tensor w = param_val(ps, i), g = param_grad(ps, i), st = param_opt(ps, i);
    int64_t n = p->b * p->r * p->c;
    switch (optim_param_kind(opt, p)) {
    case OPT_ADAM: {
        Tensor m = tcols(st, 0, n), v = tcols(st, n, n);
        if (p->sparse || p->lazy_items)
            OP(be, adam_rows, param_marked_view(p, w), g, m, v, p->mark, lr, (real)c->b1, (real)c->b2,
               (real)c->eps, opt->step, gscale, wss);
        else
            OP(be, adam, w, g, m, v, lr, (real)c->b1, (real)c->b2, (real)c->eps, opt->step, gscale, wss);
        return;
    }
    case OPT_FACTORED: {
        Tensor vr = tcols(st, 0, p->b * p->r), vc = tcols(st, p->b * p->r, p->b * p->c);
        OP(be, factored, w, g, vr, vc, lr, (real)c->b2, (real)c->eps, opt->step, gscale);
        break;
    }
    default: OP(be, sgd, w, g, lr, gscale); break;
    }
    if (!tnull(wss)) OP(be, sumsq, w, tnone(), wss, 0);
}

/* Lazy experts under Adam: nothing reads an unmarked expert's gradient
 * (the norm and lazy Adam take marked items only) and its next product
 * writes it fresh (gemm_grouped_wgrad's mark): no zeroing, 272 MB of writes
 * an update with 256 experts of 256 x 512 x 2. */
static int marks_only(const Param *p, void *ctx) { return optim_param_kind(ctx, p) == OPT_ADAM; }

/* The parameters' sums of squares, added in parameter order. */
static double weights_sumsq(const Optimizer *opt, const ParamStore *ps) {
    OP(ps->be, download, opt->wss_host, opt->wss.p, (size_t)ps->n * sizeof *opt->wss_host);
    double s = 0;
    for (int i = 0; i < ps->n; i++) s += (double)opt->wss_host[i];
    return s;
}

int optim_step(Optimizer *opt, ParamStore *ps, real lr, real grad_scale_extra, OptStepInfo *out) {
    CHECK_ARG(ps->block, "optim_step: the parameter store is not allocated");
    CHECK_ARG(isfinite(lr) && lr >= 0, "optim_step: learning rate must be finite and >= 0, got %g", (double)lr);
    CHECK_ARG(isfinite(grad_scale_extra) && grad_scale_extra > 0,
              "optim_step: gradient scale must be finite and > 0, got %g", (double)grad_scale_extra);
    for (int i = 0; i < ps->n; i++)
        CHECK_ARG(ps->p[i].opt_len == optim_state_size(&ps->p[i], opt),
                  "optim_step: parameter '%s' has %lld optimizer-state elements but %s needs %lld "
                  "(params_alloc must be given optim_state_size and this optimizer)",
                  ps->p[i].name, (long long)ps->p[i].opt_len,
                  optim_kind_name(optim_param_kind(opt, &ps->p[i])),
                  (long long)optim_state_size(&ps->p[i], opt));
    int pt = prof_begin(PROF_OPTIM);
    if (opt->be != ps->be) {
        optim_free(opt);
        opt->be = ps->be;
        opt->sumsq = be_tensor(ps->be, DT_F32, 1, 1, 2, "gradient norm");
    }
    if (opt->weights_sumsq && tnumel(opt->wss) != ps->n) {
        be_free_tensor(ps->be, &opt->wss);
        opt->wss = be_tensor(ps->be, DT_F32, 1, 1, ps->n > 0 ? ps->n : 1, "weights' sums of squares");
        free(opt->wss_host);
        opt->wss_host = xcalloc((size_t)ps->n + 1, sizeof *opt->wss_host, "weights' sums of squares");
    }

    grad_sumsq(opt, ps);
    real ss[2];
    OP(ps->be, download, ss, opt->sumsq.p, sizeof ss);
    double sharded = (double)ss[1];
    comm_allreduce_f64(opt->comm, &sharded, 1);
    /* a float overflow stays infinite, as with one process */
    double gnorm = sqrt((double)ss[0] + sharded) * (double)grad_scale_extra;
    OptStepInfo info = {.gnorm = gnorm, .scale = 1, .finite = isfinite(gnorm), .step = opt->step, .wsumsq = NAN};
    if (!info.finite) {
        if (out) *out = info;
        prof_end(pt);
        return 0;
    }
    if (opt->cfg.clip_norm > 0 && gnorm > opt->cfg.clip_norm) {
        info.scale = opt->cfg.clip_norm / gnorm;
        info.clipped = 1;
    }
    real gscale = (real)((double)grad_scale_extra * info.scale);
    opt->step++;
    for (int i = 0; i < ps->n; i++)
        apply_param(opt, ps, i, lr, gscale, opt->weights_sumsq ? tcols(opt->wss, i, 1) : tnone());
    if (opt->weights_sumsq) info.wsumsq = weights_sumsq(opt, ps);
    params_zero_grad_except(ps, marks_only, opt);
    info.step = opt->step;
    if (out) *out = info;
    prof_end(pt);
    return 1;
}

static void rule_desc(const OptConfig *c, OptKind k, char *buf, size_t n) {
    if (k == OPT_ADAM)
        snprintf(buf, n, "adam(b1=%g b2=%g eps=%g)", c->b1, c->b2, c->eps);
    else if (k == OPT_FACTORED)
        snprintf(buf, n, "factored(b1=0 b2=%g eps=%g)", c->b2, c->eps);
    else
        snprintf(buf, n, "sgd");
}

const char *optim_describe(const Optimizer *opt, char *buf, size_t n) {
    const OptConfig *c = &opt->cfg;
    char main_rule[80], expert_rule[80], clip[32];
    rule_desc(c, c->kind, main_rule, sizeof main_rule);
    if (c->expert == c->kind)
        snprintf(expert_rule, sizeof expert_rule, "same");
    else
        rule_desc(c, c->expert, expert_rule, sizeof expert_rule);
    if (c->clip_norm > 0)
        snprintf(clip, sizeof clip, "%g", c->clip_norm);
    else
        snprintf(clip, sizeof clip, "off");
    snprintf(buf, n, "%s experts=%s clip-norm=%s", main_rule, expert_rule, clip);
    return buf;
}

void optim_save_counters(const Optimizer *opt, int64_t out[OPTIM_COUNTERS]) {
    out[0] = OPTIM_COUNTERS_VERSION;
    out[1] = opt->step;
    out[2] = opt->cfg.kind;
    out[3] = opt->cfg.expert;
}

int optim_load_counters(Optimizer *opt, const int64_t *in, size_t n, char *err, size_t errlen) {
    if (n != OPTIM_COUNTERS) {
        snprintf(err, errlen, "optimizer counters: expected %d values, found %zu", OPTIM_COUNTERS, n);
        return -1;
    }
    if (in[0] != OPTIM_COUNTERS_VERSION) {
        snprintf(err, errlen, "optimizer counters: version %lld is not supported (this build reads %d)",
                 (long long)in[0], OPTIM_COUNTERS_VERSION);
        return -1;
    }
    if (in[1] < 0) {
        snprintf(err, errlen, "optimizer counters: negative step %lld", (long long)in[1]);
        return -1;
    }
    if (in[2] != opt->cfg.kind || in[3] != opt->cfg.expert) {
        snprintf(err, errlen,
                 "optimizer state was written by --optimizer %s --expert-optimizer %s but this run "
                 "uses %s and %s (use --no-optimizer-reload to start the optimizer afresh)",
                 in[2] >= 0 && in[2] <= OPT_FACTORED ? optim_kind_name((OptKind)in[2]) : "?",
                 in[3] >= 0 && in[3] <= OPT_FACTORED ? optim_kind_name((OptKind)in[3]) : "?",
                 optim_kind_name(opt->cfg.kind), optim_kind_name(opt->cfg.expert));
        return -1;
    }
    opt->step = in[1];
    return 0;
}
