/* The ops table: every computation the model code performs, at the level of
 * fused ops (DESIGN.md §3). Model code (src/nn, src/model, src/train) never
 * touches tensor memory; it calls these through a Backend. The CPU backend
 * (src/cpu) is the reference; the CUDA backend (cuda/) implements the same
 * table. A new op goes into this file, the CPU backend and the CUDA backend
 * together, with a parity test.
 *
 * Conventions
 *  - Matrices are row-major; Tensor (core/tensor.h) carries b x r x c with a
 *    row stride ld and a batch stride bs (0 = broadcast one matrix).
 *  - "out" tensors are overwritten unless a beta/accumulate argument says
 *    otherwise. Outputs never alias inputs unless the op says it may.
 *  - Index tensors are DT_I32. A negative id means "no row" where allowed.
 *  - Every reduction has a fixed order: results are bitwise reproducible for a
 *    given backend and thread count, and no op uses float atomics.
 *  - Random ops take (seed, stream) and index Philox by the logical element
 *    index (core/philox.h), never by memory layout or thread.
 *  - Scalars that are results (losses) live in device memory; callers
 *    download them once per step. */
#ifndef MOE_OPS_H
#define MOE_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"

typedef struct Backend Backend;

enum { ACT_RELU = 0, ACT_SIGMOID = 1, ACT_TANH = 2 };

typedef struct Ops {
    /* ---- memory ------------------------------------------------------- */
    /* `what` names the buffer in out-of-memory errors. */
    void *(*alloc)(Backend *, size_t bytes, const char *what);
    void (*free)(Backend *, void *p);
    void (*upload)(Backend *, void *dst_dev, const void *src_host, size_t bytes);
    void (*download)(Backend *, void *dst_host, const void *src_dev, size_t bytes);
    /* dst = src elementwise, any strides; F32<->BF16 converts, I32 copies. */
    void (*copy)(Backend *, Tensor dst, Tensor src);
    /* dst [c x r] = src^T for an F32 matrix src [r x c]. (A product with a
     * transposed small-row operand is several times slower on the CPU than
     * one with the operand transposed once: the LSTM's recurrent backward.) */
    void (*transpose)(Backend *, Tensor dst, Tensor src);
    /* every element = v (F32 or I32). */
    void (*fill)(Backend *, Tensor t, double v);
    /* t[i] = start + i * step over the flattened logical index (I32). */
    void (*iota)(Backend *, Tensor t, int64_t start, int64_t step);
    void (*sync)(Backend *);

    /* ---- dense products ------------------------------------------------ */
    /* C = alpha * op(A) op(B) + beta * C; op(X) = X or X^T. Batched when
     * C.b > 1; A or B may broadcast (b == 1 or bs == 0). beta == 0 ignores C. */
    void (*gemm)(Backend *, int ta, int tb, real alpha, Tensor A, Tensor B, real beta, Tensor C);
    /* Per-group products with variable group sizes (experts): offs is I32
     * [G+1] ascending, offs[0] = 0, offs[G] = A.r. For group g, rows
     * offs[g]..offs[g+1] of A and C: C_g = alpha * A_g op(W[g]) + beta * C_g,
     * W is [G x k x n] (tb = 0) or [G x n x k] (tb = 1). */
    void (*gemm_grouped)(Backend *, int tb, real alpha, Tensor A, Tensor W, Tensor offs, real beta,
                         Tensor C);
    /* Weight gradient of gemm_grouped: C[g] = alpha * A_g^T B_g + beta * C[g],
     * A [M x k], B [M x n] split by offs, C [G x k x n]. mark (I32 [G], or
     * none; lazy experts' marks, core/params.h): a group whose mark is 0 is
     * written fresh, C[g] = alpha * A_g^T B_g, its old contents neither read
     * nor kept (left as they are when the group has no rows); so an expert's
     * gradient needs no zeroing between updates. */
    void (*gemm_grouped_wgrad)(Backend *, real alpha, Tensor A, Tensor B, Tensor offs, real beta,
                               Tensor C, Tensor mark);

    /* ---- elementwise and reductions ---------------------------------- */
    /* y = a * x + b * y (b == 0 ignores y). */
    void (*axpby)(Backend *, real a, Tensor x, real b, Tensor y);
    /* y = a .* b; b is the same shape or a 1 x c row broadcast over rows. y may alias a. */
    void (*mul)(Backend *, Tensor a, Tensor b, Tensor y);
    /* y[i, :] += row (row is 1 x c). */
    void (*add_row)(Backend *, Tensor y, Tensor row);
    /* out[0, c] = alpha * sum_r x[r, c] + beta * out[0, c]. */
    void (*sum_rows)(Backend *, real alpha, Tensor x, real beta, Tensor out);
    /* y = act(x); y may alias x. */
    void (*act_fwd)(Backend *, int act, Tensor x, Tensor y);
    /* dx = dy * act'(.) computed from the forward OUTPUT y; dx may alias dy. */
    void (*act_bwd)(Backend *, int act, Tensor y, Tensor dy, Tensor dx);
    /* Inverted dropout: y = x * keep / (1 - p), keep = uniform(seed, stream, e) >= p
     * with e the logical index (bi*r + ri)*c + ci. Backward is the same call
     * on dy. y may alias x. */
    void (*dropout)(Backend *, Tensor x, Tensor y, real p, uint64_t seed, uint64_t stream);
    /* uniform in (a, b) (normal = 0) or normal(mean a, std b) (normal = 1). */
    void (*rng_fill)(Backend *, Tensor t, int normal, real a, real b, uint64_t seed, uint64_t stream);
    /* Softmax over each row's first len columns (lens I32 [b] per batch item,
     * or none = all columns); the remaining columns get probability 0. */
    void (*softmax_fwd)(Backend *, Tensor x, Tensor lens, Tensor y);
    /* dx = y .* (dy - sum(y .* dy)) per row; dx may alias dy. */
    void (*softmax_bwd)(Backend *, Tensor y, Tensor dy, Tensor dx);

    /* ---- rows ------------------------------------------------------------ */
    /* dst[i] = src[ids[i]] + beta * dst[i]; ids < 0 give src row 0 (beta * dst). */
    void (*gather_rows)(Backend *, Tensor src, Tensor ids, real beta, Tensor dst);
    /* dst[ids[i]] += alpha * src[i] in increasing i for each destination row;
     * ids < 0 are skipped. Duplicate ids are summed deterministically. */
    void (*scatter_add_rows)(Backend *, real alpha, Tensor src, Tensor ids, Tensor dst);
    /* out[i] = dot(a[i, :], b[i, :]) + beta * out[i]; out is 1 x n. */
    void (*rowdot)(Backend *, Tensor a, Tensor b, real beta, Tensor out);
    /* y[i, :] = s[i] * x[i, :]; y may alias x. */
    void (*scale_rows)(Backend *, Tensor x, Tensor s, Tensor y);
    /* mark[ids[i]] = 1 for every valid id (sparse-row parameter tracking). */
    void (*rows_mark)(Backend *, Tensor ids, Tensor mark);

    /* ---- LSTM (one time step, gates in order i, f, g, o) ---------------- */
    /* gates [B x 4H]: pre-activations in, activations out (kept for backward).
     * c = f*c_prev + i*g; h = o*tanh(c). Rows with mask[b] == 0 get c = h = 0
     * (mask F32 [1 x B] or none). c_prev may be none (zeros). */
    void (*lstm_cell_fwd)(Backend *, Tensor gates, Tensor c_prev, Tensor mask, Tensor c, Tensor h);
    /* From the activations, c_prev, c, mask and dh (dL/dh_t): dgates (may alias
     * gates), and dc: in = dL/dc_t from step t+1 (none = zeros), out =
     * dL/dc_{t-1}. */
    void (*lstm_cell_bwd)(Backend *, Tensor gates, Tensor c_prev, Tensor c, Tensor mask, Tensor dh,
                          Tensor dc, Tensor dgates);

    /* ---- MoE gating (docs/PAPER.md §1-3, Appendix A, B, F) ------------- */
    /* Noisy top-k gating (Eq. 3-5, 9). clean, raw [N x n] are x W_g and
     * x W_noise. sigma = softplus(raw) + noise_eps. When noisy, H = clean +
     * eps * sigma with eps = normal(seed, stream, rid * n + i), rid = row0 +
     * (rowids ? rowids[x] : x) (rowids I32 [N] or none), so the noise of a token
     * does not depend on where it is computed; else H = clean.
     * idx [N x (k+1)] (or [N x k] when k == n): the top indices of H, descending,
     * ties to the lower index. gates [N x k]: softmax over the top-k H.
     * P [N x n] (optional; needs noisy and k < n): P(x,i) = Phi((clean_i - t)/sigma_i)
     * with t = H[idx[k]] if i is in the top k, else H[idx[k-1]]. raw may be none
     * only when !noisy. */
    void (*gate_topk_fwd)(Backend *, Tensor clean, Tensor raw, int k, real noise_eps, int noisy,
                          uint64_t seed, uint64_t stream, Tensor rowids, int64_t row0, Tensor H,
                          Tensor idx, Tensor gates, Tensor P);
    /* Backward of gate_topk_fwd: dgates [N x k] (gradient wrt the gate values
     * in idx order); dload [1 x n] or [N x n] (gradient wrt P, broadcast over
     * rows when 1 x n) or none. Writes dclean, and draw when not none. The
     * threshold's gradient goes to the expert that supplied it. */
    void (*gate_topk_bwd)(Backend *, Tensor clean, Tensor raw, Tensor H, Tensor idx, Tensor gates, int k,
                          real noise_eps, int noisy, uint64_t seed, uint64_t stream, Tensor rowids,
                          int64_t row0, Tensor dgates, Tensor dload, Tensor dclean, Tensor draw);
    /* CV^2 with t2t's epsilons: loss[0] = w * var/(mean^2 + 1e-10) (population
     * variance, size + 1e-10 divisors); dv (optional) = gradient of that loss. */
    void (*cv2)(Backend *, Tensor v, real w, Tensor loss, Tensor dv);
    /* Strictly balanced gating (Appendix F) on probs [N x n] (softmax
     * outputs). Rows are split into segments by offs (I32 [G+1], or none = one
     * segment). With T none: mask[j, i] = 1 for the top m = floor(k*len/n) rows
     * of column i within each segment (ties to the lower row). With T (1 x n,
     * or N x n for per-row thresholds): mask[j, i] = probs[j, i] > T[j, i]. */
    void (*gate_batchwise_mask)(Backend *, Tensor probs, Tensor offs, int k, Tensor T, Tensor mask);
    /* gates = probs .* mask / sum(probs .* mask) per row (0 for empty rows). */
    void (*gate_masknorm_fwd)(Backend *, Tensor probs, Tensor mask, Tensor gates);
    void (*gate_masknorm_bwd)(Backend *, Tensor probs, Tensor mask, Tensor gates, Tensor dgates,
                              Tensor dprobs);
    /* Eq. 20 averaged over rows: loss[0] = w/N * sum (Mthr - Mbatch)(probs - T);
     * dT = -w/N * (Mthr - Mbatch) summed over rows (T and dT 1 x n) or per row
     * (T and dT N x n); probs is treated as a constant. */
    void (*threshold_loss)(Backend *, Tensor probs, Tensor mask_batch, Tensor T, real w, Tensor loss,
                           Tensor dT);

    /* ---- MoE routing: slots (token-major) and pairs (expert-major) ------ */
    /* Token t owns slots tok_offs[t] .. tok_offs[t+1]-1; slot s goes to expert
     * slot_exp[s] (0 <= e < n_exp). route_build counting-sorts the slots by
     * expert, stable in slot order: exp_offs [n+1], slot_pair [M] (slot -> pair
     * row) and pair_tok [M] (pair row -> token). */
    void (*route_build)(Backend *, Tensor tok_offs, Tensor slot_exp, int n_exp, Tensor exp_offs,
                        Tensor slot_pair, Tensor pair_tok);
    /* ids[p] = g for offs[g] <= p < offs[g+1] (offs I32 [G+1], ids I32 [offs[G]]). */
    void (*segment_ids)(Backend *, Tensor offs, Tensor ids);
    /* inv[perm[i]] = i for a permutation perm of 0..n-1 (both I32 [n]). */
    void (*index_invert)(Backend *, Tensor perm, Tensor inv);
    /* Noise keys of secondary gating rows: out[p] = base[tok[p]] * k +
     * slot[p] % k (all I32; base [N] the tokens' keys, tok/slot/out [M]). */
    void (*noise_keys)(Backend *, Tensor base, Tensor tok, Tensor slot, int k, Tensor out);
    /* Dense mask [N x n] -> tok_offs [N+1] (row counts, prefix-summed). */
    void (*route_dense_count)(Backend *, Tensor mask, Tensor tok_offs);
    /* Dense mask/gates -> slot_exp, slot_gate in row order, ascending expert. */
    void (*route_dense_fill)(Backend *, Tensor mask, Tensor gates, Tensor tok_offs, Tensor slot_exp,
                             Tensor slot_gate);
    /* dgates [N x n] = dslot_gate scattered back to (t, slot_exp[s]); 0 elsewhere. */
    void (*route_dense_bwd)(Backend *, Tensor dslot_gate, Tensor tok_offs, Tensor slot_exp,
                            Tensor dgates);
    /* y[t] = sum over slots s of t, in order: gate[s] * ye[slot_pair[s]]
     * (gate none = 1). Also the backward of dispatch. */
    void (*combine)(Backend *, Tensor ye, Tensor slot_gate, Tensor tok_offs, Tensor slot_pair, Tensor y);
    /* dye[slot_pair[s]] = gate[s] * dy[t]; dslot_gate[s] = dot(dy[t], ye[slot_pair[s]])
     * (dslot_gate optional). Rows of dye not reached are zeroed. */
    void (*combine_bwd)(Backend *, Tensor dy, Tensor ye, Tensor slot_gate, Tensor tok_offs,
                        Tensor slot_pair, Tensor dye, Tensor dslot_gate);
    /* Hierarchical gates (Eq. 12). Primary slots (tok_offs1, slot_exp1 = group,
     * slot_gate1) of N tokens; primary slot s1 was dispatched to pair row p =
     * slot_pair1[s1], whose secondary slots are tok_offs2[p] .. tok_offs2[p+1]-1
     * (slot_exp2 = expert within the group, slot_gate2). Output: token-major
     * slots, in primary-slot then secondary-slot order, expert = group * b +
     * slot_exp2, gate = slot_gate1 * slot_gate2; tok_offs [N+1] is written.
     * The output has exactly as many slots as the secondary level. */
    void (*hier_compose)(Backend *, Tensor tok_offs1, Tensor slot_exp1, Tensor slot_gate1, Tensor slot_pair1,
                         Tensor tok_offs2, Tensor slot_exp2, Tensor slot_gate2, int b, Tensor tok_offs,
                         Tensor slot_exp, Tensor slot_gate);
    /* dslot_gate1 = sum over its secondary slots of dslot_gate * slot_gate2;
     * dslot_gate2 = dslot_gate * slot_gate1. */
    void (*hier_compose_bwd)(Backend *, Tensor tok_offs1, Tensor slot_gate1, Tensor slot_pair1, Tensor tok_offs2,
                             Tensor slot_gate2, Tensor dslot_gate, Tensor dslot_gate1, Tensor dslot_gate2);
    /* Load_H (Eq. 14): LH[g, j] = Lp[g] * Ls[g, j] / (count_g + 1e-10), with
     * count_g = offs[g+1] - offs[g] (the primary's true load). */
    void (*hier_load)(Backend *, Tensor Lp, Tensor Ls, Tensor offs, Tensor LH);
    void (*hier_load_bwd)(Backend *, Tensor Lp, Tensor Ls, Tensor offs, Tensor dLH, Tensor dLp,
                          Tensor dLs);

    /* ---- softmax cross-entropy ----------------------------------------- */
    /* Full softmax in vocabulary chunks. For logits [N x C] of columns
     * col0..col0+C-1, update the running max m, running sum s and the target
     * logit tl (all 1 x N; start m = -inf, s = 0, tl = 0), and when zs is not
     * none add each row's sum of logits to zs (1 x N; label smoothing). */
    void (*ce_chunk_fwd)(Backend *, Tensor logits, int64_t col0, Tensor targets, Tensor m, Tensor s,
                         Tensor tl, Tensor zs);
    /* lse = m + log s; loss[0] += sum_t w[t] * (lse[t] - tl[t]). */
    void (*ce_finish)(Backend *, Tensor m, Tensor s, Tensor tl, Tensor w, Tensor lse, Tensor loss);
    /* In place: logits -> w[t] * (exp(logit - lse[t]) - (1 - ls) [col == target[t]] - ls / V),
     * the gradient of the cross-entropy against the target smoothed by ls over
     * V classes (ls = 0: the one-hot target). */
    void (*ce_chunk_bwd)(Backend *, Tensor logits, int64_t col0, Tensor targets, Tensor lse, Tensor w, real ls,
                         int64_t V);
    /* Sampled softmax: logits [N x S] of the shared samples and tl [1 x N] of
     * the targets, both already logQ-corrected. Accidental hits (samples[j] ==
     * targets[t]) are removed. loss[0] += sum_t w[t] * (lse_t - tl_t). In place,
     * logits become w[t] * p (the gradient wrt the sample logits); dtl [1 x N]
     * = w[t] * (p_target - 1). */
    void (*sampled_ce)(Backend *, Tensor logits, Tensor tl, Tensor samples, Tensor targets, Tensor w,
                       Tensor loss, Tensor dtl);

    /* ---- attention (GNMT additive; the separable form uses gemm) -------- */
    /* scores[b, t, s] = sum_d v[d] * tanh(EU[b, s, d] + DW[b, t, d]). */
    void (*attn_additive_fwd)(Backend *, Tensor EU, Tensor DW, Tensor v, Tensor scores);
    /* Gradients; dEU and dDW are overwritten, dv accumulated (+=). */
    void (*attn_additive_bwd)(Backend *, Tensor EU, Tensor DW, Tensor v, Tensor dscores, Tensor dEU,
                              Tensor dDW, Tensor dv);

    /* ---- optimizers (contiguous spans of the parameter store) ---------- */
    /* Adam with bias correction; g is scaled by gscale (clipping) first.
     * wss, when given (F32 [1]): the sum of squares of w after the step, in
     * the same pass (the divergence watch's weight norm without another
     * read of every weight). */
    void (*adam)(Backend *, Tensor w, Tensor g, Tensor m, Tensor v, real lr, real b1, real b2, real eps,
                 int64_t step, real gscale, Tensor wss);
    /* Lazy Adam on the rows of W [R x d] with mark[r] != 0 only; wss as for
     * adam, over every row, marked or not. */
    void (*adam_rows)(Backend *, Tensor w, Tensor g, Tensor m, Tensor v, Tensor mark, real lr, real b1,
                      real b2, real eps, int64_t step, real gscale, Tensor wss);
    /* The paper's expert optimizer (Appendix D): beta1 = 0 and a factored
     * second moment per matrix: vr [b x 1 x r] row means and vc [b x 1 x c]
     * column means of g^2, V = vr vc^T / mean(vr); w -= lr * g / (sqrt(V) + eps)
     * with bias correction sqrt(1 - b2^step). w, g are [b x r x c]. */
    void (*factored)(Backend *, Tensor w, Tensor g, Tensor vr, Tensor vc, real lr, real b2, real eps,
                     int64_t step, real gscale);
    /* w -= lr * gscale * g. */
    void (*sgd)(Backend *, Tensor w, Tensor g, real lr, real gscale);
    /* out[0] = sum x^2 (+ out[0] if accumulate); rows with mark == 0 skipped when mark given. */
    void (*sumsq)(Backend *, Tensor x, Tensor mark, Tensor out, int accumulate);
    /* Zero the rows of g whose mark is set, then clear the marks. */
    void (*zero_rows)(Backend *, Tensor g, Tensor mark);
} Ops;

/* Where a backend's tensors live: host memory or a device's (the communicators
 * move host buffers with MPI and device buffers with NCCL). */
enum { BACKEND_CPU = 0, BACKEND_CUDA = 1 };

/* Compute precision of a backend's matrix products (gemm, gemm_grouped,
 * gemm_grouped_wgrad); storage, master weights and every other op stay f32.
 * FP32: full f32 products. TF32: tensor cores on TF32 inputs, f32
 * accumulation. BF16: inputs rounded to bf16 (nearest even), tensor cores,
 * f32 accumulation and output. The CPU computes in FP32 only. */
enum { PRECISION_FP32 = 0, PRECISION_TF32 = 1, PRECISION_BF16 = 2 };

/* A family of backends in the registry. core names none: the program registers
 * the families it was built with before its first backend_create (the tools:
 * src/tools/backends.c), and may register a family it knows but lacks, with
 * create NULL and a hint, so that asking for it says how to get it. */
typedef struct BackendReg {
    const char *name;  /* the spec: "cpu", or "cuda" for "cuda:N" */
    const char *title; /* in messages: "CPU", "CUDA" */
    int indexed;       /* the spec carries a device index (name:N) */
    const char *hint;  /* create == NULL: how to get a build that has it */
    Backend *(*create)(int device, int threads); /* device -1 unless indexed */
    void (*destroy)(Backend *be);
    int (*device_count)(void);          /* indexed families: devices visible */
    int (*capability)(const Backend *); /* NULL: computes in fp32 only; else major * 10 + minor */
} BackendReg;

struct Backend {
    const Ops *ops;
    const BackendReg *reg; /* the family that made it */
    int kind;              /* BACKEND_CPU or BACKEND_CUDA */
    char name[32];         /* "cpu" or "cuda:0" */
    int threads;
    int device;
    int precision; /* PRECISION_*: FP32 when created, see backend_set_precision */
    void *impl;
    /* accounting, kept by every backend's alloc/free */
    size_t n_allocs, bytes_live, bytes_peak;
};

/* Adds a family (or replaces the one of the same name); reg must outlive every
 * backend it makes. At most 8 families. */
void backend_register(const BackendReg *reg);
/* The registered family of that name, or NULL. */
const BackendReg *backend_family(const char *name);
/* Devices the family sees; -1 when it is not in this build. */
int backend_device_count(const char *name);
/* spec: a family's name, "name:N" for an indexed one ("cpu", "cuda:0"); NULL =
 * the first family registered. threads: CPU threads (0 = all cores). An unknown family, or one this
 * build lacks, exits with EXIT_USAGE naming the spec. */
Backend *backend_create(const char *spec, int threads);
void backend_destroy(Backend *be);
/* --precision: "fp32", "tf32", "bf16" or "auto" (bf16 on GPUs of compute
 * capability >= 8.0, else fp32). The CPU accepts fp32 and auto only. A GPU's
 * name gains the mode for the logs ("cuda:0 (bf16 products)"). Unknown or
 * unsupported names exit with EXIT_USAGE naming --precision. */
void backend_set_precision(Backend *be, const char *name);
void backend_note_alloc(Backend *be, size_t bytes);
void backend_note_free(Backend *be, size_t bytes);

/* Calling convention: OP(be, gemm, 0, 1, 1.0, A, B, 0.0, C). */
#define OP(be, name, ...) ((be)->ops->name((be), __VA_ARGS__))

/* Small helpers over the table. */
Tensor be_tensor(Backend *be, DType dt, int64_t b, int64_t r, int64_t c, const char *what);
void be_free_tensor(Backend *be, Tensor *t);
void be_upload_tensor(Backend *be, Tensor t, const void *host); /* t contiguous */
void be_download_tensor(Backend *be, void *host, Tensor t);     /* t contiguous */
real be_read_scalar(Backend *be, Tensor t, int64_t i);

#endif
