#include "gradcheck.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"

GcVar gc_var(const char *name, Tensor val, Tensor grad) {
    GcVar v;
    snprintf(v.name, sizeof v.name, "%s", name);
    v.val = val;
    v.grad = grad;
    return v;
}

int gc_params(const ParamStore *ps, GcVar *vars, int max) {
    int n = 0;
    for (int i = 0; i < ps->n && n < max; i++) vars[n++] = gc_var(ps->p[i].name, param_val(ps, i), param_grad(ps, i));
    return n;
}

void gc_fill(Backend *be, Tensor t, double a, uint64_t stream) {
    OP(be, rng_fill, t, 0, (real)-a, (real)a, 777, stream);
}

double gc_dot(Tensor y, Tensor r) {
    double s = 0;
    for (int64_t b = 0; b < y.b; b++)
        for (int64_t i = 0; i < y.r; i++) {
            const real *yr = tptr(y, b, i, 0), *rr = tptr(r, b, i, 0);
            for (int64_t j = 0; j < y.c; j++) s += (double)yr[j] * rr[j];
        }
    return s;
}

double gradcheck(const char *label, void *user, gc_loss_fn loss, gc_grad_fn grad, GcVar *vars, int nvars, double h,
                 int max_per_var, double atol, double tol) {
    grad(user);
    double worst = 0;
    char worst_at[160] = "none";
    int checked = 0;
    for (int v = 0; v < nvars; v++) {
        GcVar *gv = &vars[v];
        CHECK(tcontig(gv->val) && tcontig(gv->grad), "gradcheck: %s is not contiguous", gv->name);
        int64_t n = tnumel(gv->val);
        int64_t take = max_per_var <= 0 || n <= max_per_var ? n : max_per_var;
        /* copy the analytic gradient: the loss calls below may overwrite it */
        double *ag = xmalloc((size_t)take * sizeof(double), "gradcheck");
        int64_t *at = xmalloc((size_t)take * sizeof(int64_t), "gradcheck");
        for (int64_t j = 0; j < take; j++) {
            at[j] = take == n ? j : (j * n) / take + (n / take) / 2;
            ag[j] = ((real *)gv->grad.p)[at[j]];
        }
        for (int64_t j = 0; j < take; j++) {
            real *x = (real *)gv->val.p + at[j];
            real x0 = *x;
            *x = (real)(x0 + h);
            double lp = loss(user);
            *x = (real)(x0 - h);
            double lm = loss(user);
            *x = x0;
            double num = (lp - lm) / (2 * h);
            double a = ag[j];
            double den = fmax(fmax(fabs(a), fabs(num)), atol);
            double err = fabs(a - num) / den;
            checked++;
            if (err > worst || isnan(err)) {
                worst = isnan(err) ? INFINITY : err;
                snprintf(worst_at, sizeof worst_at, "%s[%lld] analytic %.9g numeric %.9g", gv->name,
                         (long long)at[j], a, num);
            }
        }
        free(ag);
        free(at);
    }
    printf("# worst %s: rel err %.3g (tol %.1g) over %d elements at %s\n", label, worst, tol, checked, worst_at);
    fflush(stdout);
    return worst;
}

void gc_env_init(GcEnv *env) {
    env->be = backend_create("cpu", 0);
    arena_init(&env->arena, env->be, 1 << 20, "activations");
    params_init(&env->ps, env->be);
    env->ctx = (Ctx){.be = env->be, .arena = &env->arena, .ps = &env->ps, .train = 1, .seed = 42, .draw = 7};
}

void gc_env_alloc(GcEnv *env, double a) {
    params_alloc(&env->ps, NULL, NULL);
    for (int i = 0; i < env->ps.n; i++) gc_fill(env->be, param_val(&env->ps, i), a, 1000 + (uint64_t)i);
}

void gc_env_free(GcEnv *env) {
    params_destroy(&env->ps);
    arena_destroy(&env->arena);
    backend_destroy(env->be);
}
