#include "core/params.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/philox.h"

void params_init(ParamStore *ps, Backend *be) {
    *ps = (ParamStore){0};
    ps->be = be;
    ps->world = 1;
}

void params_destroy(ParamStore *ps) {
    if (ps->block) OP(ps->be, free, ps->block);
    for (int i = 0; i < ps->n; i++)
        if (ps->p[i].mark.p) OP(ps->be, free, ps->p[i].mark.p);
    free(ps->p);
    *ps = (ParamStore){0};
}

int params_find(const ParamStore *ps, const char *name) {
    for (int i = 0; i < ps->n; i++)
        if (strcmp(ps->p[i].name, name) == 0) return i;
    return -1;
}

int params_add(ParamStore *ps, const char *name, ParamKind kind, int64_t b, int64_t r, int64_t c,
               InitKind init, real init_a) {
    CHECK_ARG(!ps->block, "parameter '%s' registered after allocation", name);
    CHECK_ARG(strlen(name) < sizeof ps->p[0].name, "parameter name too long: '%s'", name);
    CHECK_ARG(b >= 1 && r >= 1 && c >= 1, "parameter '%s' has an empty shape %lldx%lldx%lld", name,
              (long long)b, (long long)r, (long long)c);
    CHECK_ARG(params_find(ps, name) < 0, "duplicate parameter name '%s'", name);
    if (ps->n == ps->cap) {
        ps->cap = ps->cap ? 2 * ps->cap : 64;
        ps->p = xrealloc(ps->p, ps->cap * sizeof *ps->p, "parameter table");
    }
    Param *p = &ps->p[ps->n];
    *p = (Param){0};
    snprintf(p->name, sizeof p->name, "%s", name);
    p->b = b;
    p->r = r;
    p->c = c;
    p->kind = kind;
    p->init = init;
    p->init_a = init_a;
    p->sparse = kind == PARAM_EMBED && b == 1;
    /* with a communicator the processes would have to agree on the marks */
    p->lazy_items = kind == PARAM_EXPERT && b > 1 && !ps->dist && ps->world <= 1;
    p->expert_block = 1;
    p->expert_world = 1;
    p->off = ps->total;
    ps->total += b * r * c;
    return ps->n++;
}

int64_t params_count(const ParamStore *ps, int exclude_embed) {
    int64_t n = 0;
    for (int i = 0; i < ps->n; i++)
        if (!exclude_embed || ps->p[i].kind != PARAM_EMBED)
            n += ps->p[i].b * ps->p[i].expert_world * ps->p[i].r * ps->p[i].c;
    return n;
}

int params_add_sharded(ParamStore *ps, const char *name, ParamKind kind, int64_t b, int64_t r, int64_t c,
                       InitKind init, real init_a, int64_t block) {
    int w = ps->world > 1 ? ps->world : 1;
    CHECK_ARG(block >= 1, "parameter '%s': placement block %lld", name, (long long)block);
    if (!ps->dist || b % (block * w)) return params_add(ps, name, kind, b, r, c, init, init_a);
    int id = params_add(ps, name, kind, b / w, r, c, init, init_a);
    Param *p = &ps->p[id];
    p->expert_block = (int)block;
    p->expert_world = w;
    p->expert_rank = ps->rank;
    p->placed = 1;
    return id;
}

void params_alloc(ParamStore *ps, params_opt_size_fn opt_size, void *ctx) {
    CHECK_ARG(!ps->block, "parameters allocated twice");
    CHECK_ARG(ps->n > 0, "a model without parameters");
    ps->opt_total = 0;
    for (int i = 0; i < ps->n; i++) {
        Param *p = &ps->p[i];
        p->opt_off = ps->opt_total;
        p->opt_len = opt_size ? opt_size(p, ctx) : 0;
        ps->opt_total += p->opt_len;
    }
    /* Keep each region 256-byte aligned. */
    int64_t pad = 256 / (int64_t)sizeof(real);
    int64_t tot = (ps->total + pad - 1) / pad * pad;
    int64_t bytes = (2 * tot + ps->opt_total) * (int64_t)sizeof(real);
    ps->block = OP(ps->be, alloc, (size_t)bytes, "parameters, gradients and optimizer state");
    ps->val = tvec(ps->block, DT_F32, ps->total);
    ps->grad = tvec((real *)ps->block + tot, DT_F32, ps->total);
    ps->opt = tvec((real *)ps->block + 2 * tot, DT_F32, ps->opt_total);
    OP(ps->be, fill, tvec(ps->block, DT_F32, 2 * tot + ps->opt_total), 0.0);
    for (int i = 0; i < ps->n; i++) {
        Param *p = &ps->p[i];
        if (!p->sparse && !p->lazy_items) continue;
        int64_t n = p->sparse ? p->r : p->b;
        p->mark = tvec(OP(ps->be, alloc, (size_t)n * 4, "sparse-row marks"), DT_I32, n);
        OP(ps->be, fill, p->mark, 0.0);
    }
}

Tensor param_marked_view(const Param *p, Tensor t) {
    return p->lazy_items ? treshape(t, p->b, p->r * p->c) : treshape(t, p->b * p->r, p->c);
}

int64_t param_global_index(const Param *p, int64_t i) {
    int64_t blk = p->expert_block;
    return ((i / blk) * p->expert_world + p->expert_rank) * blk + i % blk;
}

uint32_t params_hash(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

Tensor param_val(const ParamStore *ps, int id) {
    CHECK_ARG(id >= 0 && id < ps->n && ps->block, "parameter %d not allocated", id);
    const Param *p = &ps->p[id];
    return tbat((real *)ps->val.p + p->off, DT_F32, p->b, p->r, p->c);
}

Tensor param_grad(const ParamStore *ps, int id) {
    CHECK_ARG(id >= 0 && id < ps->n && ps->block, "parameter %d not allocated", id);
    const Param *p = &ps->p[id];
    return tbat((real *)ps->grad.p + p->off, DT_F32, p->b, p->r, p->c);
}

Tensor param_opt(const ParamStore *ps, int id) {
    CHECK_ARG(id >= 0 && id < ps->n && ps->block, "parameter %d not allocated", id);
    const Param *p = &ps->p[id];
    return tvec((real *)ps->opt.p + p->opt_off, DT_F32, p->opt_len);
}

void params_randomize(ParamStore *ps, uint64_t seed) {
    for (int i = 0; i < ps->n; i++) {
        const Param *p = &ps->p[i];
        Tensor v = param_val(ps, i);
        uint32_t site = params_hash(p->name);
        for (int64_t e = 0; e < p->b; e++) {
            Tensor m = tbatch(v, e);
            uint64_t stream = rng_stream(site, (uint64_t)param_global_index(p, e));
            switch (p->init) {
            case INIT_ZERO: OP(ps->be, fill, m, 0.0); break;
            case INIT_CONST: OP(ps->be, fill, m, p->init_a); break;
            case INIT_UNIFORM: OP(ps->be, rng_fill, m, 0, -p->init_a, p->init_a, seed, stream); break;
            case INIT_NORMAL: OP(ps->be, rng_fill, m, 1, 0, p->init_a, seed, stream); break;
            case INIT_GLOROT: {
                real a = (real)sqrt(6.0 / (double)(p->r + p->c));
                OP(ps->be, rng_fill, m, 0, -a, a, seed, stream);
                break;
            }
            }
        }
    }
}

void params_zero_grad_except(ParamStore *ps, int (*marks_only)(const Param *, void *), void *ctx) {
    /* Dense parameters are contiguous runs; zero them in as few fills as possible. */
    int64_t run0 = -1, run1 = -1;
    for (int i = 0; i <= ps->n; i++) {
        const Param *p = i < ps->n ? &ps->p[i] : NULL;
        if (p && !p->sparse && !p->lazy_items) {
            if (run0 < 0) run0 = p->off;
            run1 = p->off + p->b * p->r * p->c;
            continue;
        }
        if (run0 >= 0) OP(ps->be, fill, tvec((real *)ps->grad.p + run0, DT_F32, run1 - run0), 0.0);
        run0 = -1;
        if (!p) continue;
        if (marks_only && p->lazy_items && marks_only(p, ctx))
            OP(ps->be, fill, p->mark, 0.0);
        else
            OP(ps->be, zero_rows, param_marked_view(p, param_grad(ps, i)), p->mark);
    }
}

void params_zero_grad(ParamStore *ps) { params_zero_grad_except(ps, NULL, NULL); }
