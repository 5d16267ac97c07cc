/* Gradient checks: linear, embedding, dropout (float64 build). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "gradcheck.h"

typedef struct {
    GcEnv env;
    Linear lin;
    Embedding emb;
    Tensor x, dx, ids, r;
    int mode; /* 0 linear, 1 embedding + dropout + linear */
} Fix;

static Tensor forward(Fix *f) {
    Ctx *c = &f->env.ctx;
    arena_reset(c->arena);
    Tensor in = f->x;
    if (f->mode == 1) {
        in = nn_tensor(c, DT_F32, tnumel(f->ids), f->emb.dim);
        embedding_forward(c, &f->emb, f->ids, in);
        nn_dropout(c, in, in, 0.3, 5);
    }
    Tensor y = nn_tensor(c, DT_F32, in.r, f->lin.out);
    linear_forward(c, &f->lin, in, y);
    return y;
}

static double loss_fn(void *u) {
    Fix *f = u;
    return gc_dot(forward(f), f->r);
}

static void grad_fn(void *u) {
    Fix *f = u;
    Ctx *c = &f->env.ctx;
    OP(c->be, fill, f->env.ps.grad, 0.0);
    arena_reset(c->arena);
    Tensor in = f->x;
    if (f->mode == 1) {
        in = nn_tensor(c, DT_F32, tnumel(f->ids), f->emb.dim);
        embedding_forward(c, &f->emb, f->ids, in);
        nn_dropout(c, in, in, 0.3, 5);
    }
    Tensor y = nn_tensor(c, DT_F32, in.r, f->lin.out);
    linear_forward(c, &f->lin, in, y);
    if (f->mode == 0) {
        linear_backward(c, &f->lin, in, f->r, f->dx, 0);
    } else {
        Tensor din = nn_tensor(c, DT_F32, in.r, in.c);
        linear_backward(c, &f->lin, in, f->r, din, 0);
        nn_dropout_backward(c, din, din, 0.3, 5);
        embedding_backward(c, &f->emb, f->ids, din);
    }
}

static void test_linear(void **state) {
    (void)state;
    Fix f = {0};
    gc_env_init(&f.env);
    linear_init(&f.lin, &f.env.ps, "lin", 7, 5, 1, PARAM_DENSE);
    gc_env_alloc(&f.env, 0.5);
    Backend *be = f.env.be;
    f.x = be_tensor(be, DT_F32, 1, 6, 7, "x");
    f.dx = be_tensor(be, DT_F32, 1, 6, 7, "dx");
    f.r = be_tensor(be, DT_F32, 1, 6, 5, "r");
    gc_fill(be, f.x, 1.0, 1);
    gc_fill(be, f.r, 1.0, 2);
    GcVar v[8];
    int n = gc_params(&f.env.ps, v, 8);
    v[n++] = gc_var("x", f.x, f.dx);
    double worst = gradcheck("linear", &f, loss_fn, grad_fn, v, n, 1e-6, 0, 1e-8, 1e-7);
    assert_true(worst < 1e-7);
    be_free_tensor(be, &f.x);
    be_free_tensor(be, &f.dx);
    be_free_tensor(be, &f.r);
    gc_env_free(&f.env);
}

static void test_embedding_dropout(void **state) {
    (void)state;
    Fix f = {0};
    f.mode = 1;
    gc_env_init(&f.env);
    embedding_init(&f.emb, &f.env.ps, "emb", 11, 6);
    linear_init(&f.lin, &f.env.ps, "lin", 6, 4, 0, PARAM_DENSE);
    gc_env_alloc(&f.env, 0.5);
    Backend *be = f.env.be;
    int32_t ids[9] = {3, 0, 10, 3, -1, 7, 7, 2, 3}; /* repeats and a padding id */
    f.ids = be_tensor(be, DT_I32, 1, 1, 9, "ids");
    be_upload_tensor(be, f.ids, ids);
    f.r = be_tensor(be, DT_F32, 1, 9, 4, "r");
    gc_fill(be, f.r, 1.0, 3);
    GcVar v[8];
    int n = gc_params(&f.env.ps, v, 8);
    double worst = gradcheck("embedding+dropout", &f, loss_fn, grad_fn, v, n, 1e-6, 0, 1e-8, 1e-7);
    assert_true(worst < 1e-7);
    /* rows 3, 0, 10, 7, 2 were touched; others not */
    int32_t *mark = f.env.ps.p[f.emb.w].mark.p;
    int expect[11] = {1, 0, 1, 1, 0, 0, 0, 1, 0, 0, 1};
    for (int i = 0; i < 11; i++) assert_int_equal(mark[i], expect[i]);
    be_free_tensor(be, &f.ids);
    be_free_tensor(be, &f.r);
    gc_env_free(&f.env);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_embedding_dropout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
