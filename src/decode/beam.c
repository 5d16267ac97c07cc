/* Batched beam search (beam.h). Per step: the model fills log-probabilities for
 * all N*K rows; each source picks its 2K best continuations with a size-2K heap
 * (at most K of them end in eos, one per live row, so 2K always hold the K best
 * plus K refills); then, serially, eos continuations among the K best are
 * finished, the rest refill the beam, and the decoder state is reordered.
 * Tokens are kept as per-step back-pointers and read back only for the
 * hypotheses returned. */
#include "decode/beam.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/options.h"

#define COV_FLOOR 1e-10

BeamOpts beam_opts_default(void) {
    return (BeamOpts){.beam_size = 5, .alpha = 0.6f, .beta = 0.2f, .max_len_factor = 2.0f, .nbest = 1};
}

int beam_opts_check(const BeamOpts *o, char *msg, size_t cap) {
    if (o->beam_size < 1) {
        snprintf(msg, cap, "--beam-size must be at least 1 (got %d)", o->beam_size);
    } else if (!(o->alpha >= 0) || isinf(o->alpha)) {
        snprintf(msg, cap, "--normalize (length-penalty alpha) must be a finite number >= 0 (got %g)", o->alpha);
    } else if (!(o->beta >= 0) || isinf(o->beta)) {
        snprintf(msg, cap, "--coverage-penalty (beta) must be a finite number >= 0 (got %g)", o->beta);
    } else if (!(o->max_len_factor > 0) || isinf(o->max_len_factor)) {
        snprintf(msg, cap, "--max-length-factor must be a finite number > 0 (got %g)", o->max_len_factor);
    } else if (o->nbest < 1 || o->nbest > o->beam_size) {
        snprintf(msg, cap, "n-best count must be in [1, --beam-size %d] (got %d)", o->beam_size, o->nbest);
    } else {
        if (cap) msg[0] = 0;
        return 0;
    }
    return EXIT_USAGE;
}

double beam_length_penalty(int len, double alpha) {
    return alpha == 0 ? 1.0 : pow((5.0 + len) / 6.0, alpha);
}

double beam_coverage_penalty(const float *cov, int len, double beta) {
    if (beta == 0) return 0;
    double s = 0;
    for (int i = 0; i < len; i++) {
        double c = cov[i] < 1.0f ? cov[i] : 1.0;
        s += log(c > COV_FLOOR ? c : COV_FLOOR);
    }
    return beta * s;
}

int beam_max_length(int src_len, float factor) {
    double x = ceil((double)factor * src_len - 1e-4);
    CHECK_ARG(x < 1e7, "--max-length-factor %g gives a maximum output length of %.0f for a source of %d tokens",
              factor, x, src_len);
    return x < 1 ? 1 : (int)x;
}

/* ---- top-m selection ------------------------------------------------------ */

/* a is worse than b: lower score, or the same score and a higher index. */
static inline int worse(float sa, int32_t ia, float sb, int32_t ib) { return sa < sb || (sa == sb && ia > ib); }

/* Min-heap with the worst entry at the root. */
static void sift_down(float *s, int32_t *ix, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, w = i;
        if (l < n && worse(s[l], ix[l], s[w], ix[w])) w = l;
        if (l + 1 < n && worse(s[l + 1], ix[l + 1], s[w], ix[w])) w = l + 1;
        if (w == i) return;
        float ts = s[i];
        s[i] = s[w];
        s[w] = ts;
        int32_t ti = ix[i];
        ix[i] = ix[w];
        ix[w] = ti;
        i = w;
    }
}

static void sift_up(float *s, int32_t *ix, int i) {
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!worse(s[i], ix[i], s[p], ix[p])) return;
        float ts = s[i];
        s[i] = s[p];
        s[p] = ts;
        int32_t ti = ix[i];
        ix[i] = ix[p];
        ix[p] = ti;
        i = p;
    }
}

int beam_topk(const float *x, const float *base, int rows, int V, int m, float *score, int32_t *index) {
    CHECK_ARG(rows >= 0 && V >= 1 && m >= 0 && (int64_t)rows * V <= INT32_MAX,
              "beam_topk: bad shape rows %d V %d m %d", rows, V, m);
    int n = 0, nan = 0;
    float thr = -INFINITY; /* entries must beat this: -inf until the heap is full */
    for (int k = 0; k < rows && m > 0; k++) {
        const float b = base[k];
        const float *xr = x + (size_t)k * V;
        for (int v = 0; v < V; v++) {
            float s = b + xr[v];
            /* indices grow along the scan, so an entry equal to the worst kept
             * one loses the tie and only a strictly better one gets in */
            if (s > thr) {
                int32_t id = k * V + v;
                if (n < m) {
                    score[n] = s;
                    index[n] = id;
                    sift_up(score, index, n++);
                    if (n == m) thr = score[0];
                } else {
                    score[0] = s;
                    index[0] = id;
                    sift_down(score, index, n, 0);
                    thr = score[0];
                }
            } else if (s != s) {
                nan = 1;
            }
        }
    }
    if (nan) return -1;
    /* heap sort: repeatedly move the worst to the end -> best first */
    for (int e = n - 1; e > 0; e--) {
        float ts = score[0];
        score[0] = score[e];
        score[e] = ts;
        int32_t ti = index[0];
        index[0] = index[e];
        index[e] = ti;
        sift_down(score, index, e, 0);
    }
    return n;
}

/* ---- the search ------------------------------------------------------------ */

typedef struct Fin {
    int last_t, row; /* tokens: back-pointers from (last_t, row); last_t + 1 of them */
    int length, ended, seq;
    double logprob, score;
} Fin;

typedef struct Src {
    Fin *fin;
    int n_fin, cap_fin;
    int live, done, max_len, len;
} Src;

typedef struct Search {
    const BeamModel *m;
    const BeamOpts *o;
    int N, K, V, S, R, T;
    Src *src;
    int32_t *hist_tok, *hist_par; /* [T][R]: token chosen at step t by row r, and its parent row */
    float *cov, *cov2;            /* [R][S] attention summed over the steps, when beta > 0 */
    float *attn;
    float *covtmp;                /* [S] */
} Search;

static void add_fin(Search *sr, int n, int last_t, int row, int length, int ended, float logprob,
                    const float *cov) {
    Src *s = &sr->src[n];
    if (s->n_fin == s->cap_fin) {
        s->cap_fin = s->cap_fin ? 2 * s->cap_fin : 2 * sr->K;
        s->fin = xrealloc(s->fin, (size_t)s->cap_fin * sizeof *s->fin, "beam finished hypotheses");
    }
    Fin *f = &s->fin[s->n_fin];
    f->last_t = last_t;
    f->row = row;
    f->length = length;
    f->ended = ended;
    f->seq = s->n_fin++;
    f->logprob = logprob;
    f->score = logprob / beam_length_penalty(length, sr->o->alpha) +
               (cov ? beam_coverage_penalty(cov, s->len, sr->o->beta) : 0.0);
}

static int fin_cmp(const void *pa, const void *pb) {
    const Fin *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return a->seq - b->seq;
}

/* The nbest-th best finished score of source n (n_fin >= nbest), kept in tmp
 * [nbest] by insertion: the list of finished hypotheses may be long. */
static double nth_best(const Src *s, int nbest, double *tmp) {
    int n = 0;
    for (int i = 0; i < s->n_fin; i++) {
        double v = s->fin[i].score;
        if (n == nbest && v <= tmp[n - 1]) continue;
        int j = n < nbest ? n++ : n - 1;
        for (; j > 0 && tmp[j - 1] < v; j--) tmp[j] = tmp[j - 1];
        tmp[j] = v;
    }
    return tmp[nbest - 1];
}

static void collect(const Search *sr, int n, BeamResult *out) {
    Src *s = &sr->src[n];
    qsort(s->fin, (size_t)s->n_fin, sizeof *s->fin, fin_cmp);
    int cnt = s->n_fin < sr->o->nbest ? s->n_fin : sr->o->nbest;
    out->n = cnt;
    out->hyps = xcalloc((size_t)(cnt ? cnt : 1), sizeof *out->hyps, "beam results");
    for (int i = 0; i < cnt; i++) {
        const Fin *f = &s->fin[i];
        BeamHyp *h = &out->hyps[i];
        h->n_tokens = f->last_t + 1;
        h->tokens = xmalloc((size_t)(h->n_tokens ? h->n_tokens : 1) * sizeof *h->tokens, "beam hypothesis");
        for (int t = f->last_t, r = f->row; t >= 0; t--) {
            h->tokens[t] = sr->hist_tok[(size_t)t * sr->R + r];
            r = sr->hist_par[(size_t)t * sr->R + r];
        }
        h->length = f->length;
        h->ended = f->ended;
        h->logprob = f->logprob;
        h->score = f->score;
    }
}

static void check_model(const BeamModel *m) {
    CHECK_ARG(m && m->begin && m->step && m->reorder, "beam search: model without begin/step/reorder");
    CHECK_ARG(m->vocab >= 2, "beam search: vocabulary of %d tokens (need at least 2)", m->vocab);
    CHECK_ARG(m->bos >= 0 && m->bos < m->vocab && m->eos >= 0 && m->eos < m->vocab,
              "beam search: bos %d / eos %d outside the vocabulary of %d", m->bos, m->eos, m->vocab);
}

void beam_search(const BeamModel *m, int N, const int32_t *src_len, const BeamOpts *o, BeamResult *out) {
    char msg[256];
    CHECK_ARG(o != NULL, "beam search: no options");
    if (beam_opts_check(o, msg, sizeof msg)) FATAL(EXIT_USAGE, "%s", msg);
    check_model(m);
    CHECK_ARG(N >= 0, "beam search: %d sources", N);
    if (N == 0) return;
    const int K = o->beam_size, V = m->vocab, M = 2 * K;
    CHECK_ARG((int64_t)N * K <= INT32_MAX / 2 && (int64_t)K * V <= INT32_MAX,
              "beam search: %d sources x --beam-size %d x vocabulary %d is too large", N, K, V);
    Search sr = {.m = m, .o = o, .N = N, .K = K, .V = V, .R = N * K};
    const int R = sr.R;
    /* all argument checks come before the first allocation */
    for (int n = 0; n < N; n++) {
        CHECK_ARG(src_len[n] >= 0, "beam search: source %d has length %d", n, src_len[n]);
        int ml = beam_max_length(src_len[n], o->max_len_factor);
        if (src_len[n] > sr.S) sr.S = src_len[n];
        if (ml > sr.T) sr.T = ml;
    }
    sr.src = xcalloc((size_t)N, sizeof *sr.src, "beam sources");
    for (int n = 0; n < N; n++) {
        Src *s = &sr.src[n];
        s->len = src_len[n];
        s->max_len = beam_max_length(s->len, o->max_len_factor);
        s->live = 1; /* all K rows start equal: expanding one avoids K copies of each hypothesis */
    }
    const int S = sr.S, use_cov = o->beta != 0;
    sr.hist_tok = xcalloc((size_t)sr.T * R, sizeof *sr.hist_tok, "beam back-pointers");
    sr.hist_par = xcalloc((size_t)sr.T * R, sizeof *sr.hist_par, "beam back-pointers");
    float *logp = xmalloc((size_t)R * V * sizeof *logp, "beam log-probabilities");
    float *cum = xcalloc((size_t)R, sizeof *cum, "beam scores");
    float *cum2 = xcalloc((size_t)R, sizeof *cum2, "beam scores");
    int32_t *prev = xmalloc((size_t)R * sizeof *prev, "beam tokens");
    int32_t *parent = xmalloc((size_t)R * sizeof *parent, "beam parents");
    float *cs = xmalloc((size_t)N * M * sizeof *cs, "beam candidates");
    int32_t *ci = xmalloc((size_t)N * M * sizeof *ci, "beam candidates");
    int *cn = xmalloc((size_t)N * sizeof *cn, "beam candidates");
    double *tmp = xmalloc((size_t)(3 * K + 1) * sizeof *tmp, "beam scores");
    if (use_cov) {
        sr.attn = xcalloc((size_t)R * S + 1, sizeof *sr.attn, "beam attention");
        sr.cov = xcalloc((size_t)R * S + 1, sizeof *sr.cov, "beam coverage");
        sr.cov2 = xcalloc((size_t)R * S + 1, sizeof *sr.cov2, "beam coverage");
        sr.covtmp = xcalloc((size_t)S + 1, sizeof *sr.covtmp, "beam coverage");
    }
    for (int r = 0; r < R; r++) prev[r] = m->bos;

    m->begin(m->self, N, K);
    int n_done = 0;
    for (int t = 0; n_done < N; t++) {
        m->step(m->self, prev, t, logp, sr.attn);

        /* selection: independent per source, the costly part for large V */
        int64_t work = (int64_t)R * V;
        (void)work; /* read by the pragma only: unused where OpenMP is off (fuzz builds) */
#pragma omp parallel for schedule(dynamic, 1) if (work > (1 << 18))
        for (int n = 0; n < N; n++) {
            const Src *s = &sr.src[n];
            if (s->done) continue;
            int64_t avail = (int64_t)s->live * V;
            cn[n] = beam_topk(logp + (size_t)n * K * V, cum + (size_t)n * K, s->live, V, avail < M ? (int)avail : M,
                              cs + (size_t)n * M, ci + (size_t)n * M);
        }

        for (int n = 0; n < N; n++) {
            Src *s = &sr.src[n];
            const int r0 = n * K;
            int32_t *htok = sr.hist_tok + (size_t)t * R, *hpar = sr.hist_par + (size_t)t * R;
            if (s->done) {
                for (int k = 0; k < K; k++) {
                    parent[r0 + k] = r0 + k;
                    htok[r0 + k] = m->eos;
                    hpar[r0 + k] = r0 + k;
                }
                continue;
            }
            if (cn[n] < 0)
                FATAL(EXIT_RUNTIME, "beam search: the model gave a NaN log-probability at step %d for source %d", t, n);
            int nl = 0;
            for (int i = 0; i < cn[n]; i++) {
                const int32_t id = ci[(size_t)n * M + i];
                const int k = id / V, v = id % V, p = r0 + k;
                const float sc = cs[(size_t)n * M + i];
                if (v == m->eos) {
                    if (i < K) {
                        const float *cov = NULL;
                        if (use_cov) {
                            for (int j = 0; j < s->len; j++)
                                sr.covtmp[j] = sr.cov[(size_t)p * S + j] + sr.attn[(size_t)p * S + j];
                            cov = sr.covtmp;
                        }
                        add_fin(&sr, n, t - 1, p, t + 1, 1, sc, cov);
                    }
                    continue;
                }
                if (nl == K) continue;
                const int r = r0 + nl++;
                parent[r] = p;
                prev[r] = v;
                cum2[r] = sc;
                htok[r] = v;
                hpar[r] = p;
                if (use_cov)
                    for (int j = 0; j < s->len; j++)
                        sr.cov2[(size_t)r * S + j] = sr.cov[(size_t)p * S + j] + sr.attn[(size_t)p * S + j];
            }
            for (int k = nl; k < K; k++) {
                parent[r0 + k] = r0 + k;
                prev[r0 + k] = m->eos;
                cum2[r0 + k] = -INFINITY;
                htok[r0 + k] = m->eos;
                hpar[r0 + k] = r0 + k;
            }
            s->live = nl;
            if (t + 1 >= s->max_len) {
                for (int k = 0; k < nl; k++)
                    add_fin(&sr, n, t, r0 + k, t + 1, 0, cum2[r0 + k], use_cov ? sr.cov2 + (size_t)(r0 + k) * S : NULL);
                s->done = 1;
            } else if (nl == 0) {
                s->done = 1;
            } else if (s->n_fin >= o->nbest) {
                /* the best any live hypothesis can reach; exact, see beam.h */
                double reach = cum2[r0] / beam_length_penalty(s->max_len, o->alpha);
                if (nth_best(s, o->nbest, tmp) >= reach) s->done = 1;
            }
            if (s->done) {
                n_done++;
                for (int k = 0; k < K; k++) prev[r0 + k] = m->eos;
            }
        }
        float *ft = cum;
        cum = cum2;
        cum2 = ft;
        ft = sr.cov;
        sr.cov = sr.cov2;
        sr.cov2 = ft;
        if (n_done < N) {
            int moved = 0;
            for (int r = 0; r < R && !moved; r++) moved = parent[r] != r;
            if (moved) m->reorder(m->self, parent);
        }
    }

    for (int n = 0; n < N; n++) {
        collect(&sr, n, &out[n]);
        free(sr.src[n].fin);
    }
    free(sr.src);
    free(sr.hist_tok);
    free(sr.hist_par);
    free(logp);
    free(cum);
    free(cum2);
    free(prev);
    free(parent);
    free(cs);
    free(ci);
    free(cn);
    free(tmp);
    free(sr.attn);
    free(sr.cov);
    free(sr.cov2);
    free(sr.covtmp);
}

void beam_results_free(BeamResult *res, int N) {
    if (!res) return;
    for (int n = 0; n < N; n++) {
        for (int i = 0; i < res[n].n; i++) free(res[n].hyps[i].tokens);
        free(res[n].hyps);
        res[n].hyps = NULL;
        res[n].n = 0;
    }
}

BeamOpts beam_opts_from_config(const Config *cfg) {
    BeamOpts o = beam_opts_default();
    o.beam_size = (int)cfg_int(cfg, "beam-size");
    o.alpha = (float)cfg_float(cfg, "normalize");
    o.beta = (float)cfg_float(cfg, "coverage-penalty");
    o.max_len_factor = (float)cfg_float(cfg, "max-length-factor");
    o.nbest = 1;
    char err[256];
    if (beam_opts_check(&o, err, sizeof err)) FATAL(EXIT_USAGE, "%s", err);
    return o;
}
