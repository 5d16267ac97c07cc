/* Central-difference gradient checks for layers, run on the CPU backend in
 * the float64 build (real = double), so analytic gradients can be held to
 * ~1e-6 relative error. The CPU backend's tensors are host memory, so the
 * checker perturbs elements directly. */
#ifndef MOE_GRADCHECK_H
#define MOE_GRADCHECK_H

#include "nn/nn.h"

typedef struct GcVar {
    char name[96];
    Tensor val;  /* the variable (contiguous) */
    Tensor grad; /* its analytic gradient, same shape */
} GcVar;

/* loss(user): forward only, returns the scalar loss.
 * grad(user): zeroes gradients, runs forward and backward, leaving the
 * analytic gradients in every GcVar's grad. */
typedef double (*gc_loss_fn)(void *user);
typedef void (*gc_grad_fn)(void *user);

/* Checks up to max_per_var elements of each variable (all if it has fewer,
 * else an even spread). Prints "# worst <label>: <var>[i] rel err E (tol T)"
 * and returns the worst relative error |a-n| / max(|a|, |n|, atol). */
double gradcheck(const char *label, void *user, gc_loss_fn loss, gc_grad_fn grad, GcVar *vars, int nvars,
                 double h, int max_per_var, double atol, double tol);

/* One GcVar per parameter of the store (names from the store). */
int gc_params(const ParamStore *ps, GcVar *vars, int max);
GcVar gc_var(const char *name, Tensor val, Tensor grad);

/* Deterministic test data: uniform(-a, a) fills via Philox. */
void gc_fill(Backend *be, Tensor t, double a, uint64_t stream);
/* sum(y .* r) computed on the host (CPU backend). */
double gc_dot(Tensor y, Tensor r);

/* A test fixture: CPU backend, arena, store, context. */
typedef struct GcEnv {
    Backend *be;
    Arena arena;
    ParamStore ps;
    Ctx ctx;
} GcEnv;
void gc_env_init(GcEnv *env);
/* Allocate and randomize the registered parameters (uniform(-a, a) for all,
 * so that zero-initialised gates are tested away from zero). */
void gc_env_alloc(GcEnv *env, double a);
void gc_env_free(GcEnv *env);

#endif
