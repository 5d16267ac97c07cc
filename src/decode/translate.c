#include "decode/translate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/log.h"
#include "text/utf8.h"

typedef struct {
    S2sDecoder *dec;
    const int32_t *src, *src_len;
    int S;
} Adapter;

static void ad_begin(void *self, int N, int K) {
    Adapter *a = self;
    s2s_decoder_begin(a->dec, a->src, a->src_len, a->S, N, K);
}
static void ad_step(void *self, const int32_t *prev, int t, float *logp, float *attn) {
    (void)t;
    s2s_decoder_step(((Adapter *)self)->dec, prev, logp, attn);
}
static void ad_reorder(void *self, const int32_t *parent) { s2s_decoder_reorder(((Adapter *)self)->dec, parent); }

static int blank(const char *s) {
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r') return 0;
    return 1;
}

void translate_lines(Translator *t, const char *const *lines, int n, int64_t first_line, TransOut *out) {
    memset(out, 0, (size_t)n * sizeof *out);
    int32_t **ids = xcalloc((size_t)n, sizeof *ids, "translation");
    int *len = xcalloc((size_t)n, sizeof *len, "translation");
    int *todo = xmalloc((size_t)n * sizeof *todo, "translation");
    int ntodo = 0, S = 0;
    int32_t eos = spm_eos_id(t->spm);
    SpmIds v = {0};
    for (int i = 0; i < n; i++) {
        const char *s = lines[i];
        if (blank(s)) continue;
        int64_t bad = utf8_validate(s, strlen(s));
        if (bad >= 0 || spm_encode_ids(t->spm, s, strlen(s), &v)) {
            log_warn("%s:%lld: %s; translated as an empty line", t->where, (long long)(first_line + i),
                     bad >= 0 ? "invalid UTF-8" : spm_last_error(t->spm));
            continue;
        }
        int L = (int)v.n;
        if (L > TRANSLATE_MAX_SOURCE) {
            log_warn("%s:%lld: %d pieces, cut to %d", t->where, (long long)(first_line + i), L, TRANSLATE_MAX_SOURCE);
            L = TRANSLATE_MAX_SOURCE;
        }
        ids[i] = xmalloc((size_t)(L + 1) * sizeof(int32_t), "translation");
        if (L) memcpy(ids[i], v.ids, (size_t)L * sizeof(int32_t)); /* no pieces: v.ids may be NULL (UB) */
        if (t->src_eos) ids[i][L++] = eos;
        if (L == 0) continue;
        len[i] = L;
        if (L > S) S = L;
        todo[ntodo++] = i;
    }
    spm_ids_free(&v);
    if (ntodo) {
        /* time-major source batch */
        int32_t *src = xmalloc((size_t)S * ntodo * sizeof(int32_t), "translation");
        int32_t *sl = xmalloc((size_t)ntodo * sizeof(int32_t), "translation");
        for (int b = 0; b < ntodo; b++) {
            sl[b] = len[todo[b]];
            for (int s = 0; s < S; s++) src[s * ntodo + b] = s < sl[b] ? ids[todo[b]][s] : -1;
        }
        Adapter ad = {.dec = s2s_decoder_new(t->ctx, t->m), .src = src, .src_len = sl, .S = S};
        BeamModel bm = {.self = &ad,
                        .vocab = (int)t->m->cfg.vocab,
                        .bos = spm_bos_id(t->spm),
                        .eos = eos,
                        .begin = ad_begin,
                        .step = ad_step,
                        .reorder = ad_reorder};
        BeamResult *res = xcalloc((size_t)ntodo, sizeof *res, "translation");
        beam_search(&bm, ntodo, sl, &t->opts, res);
        for (int b = 0; b < ntodo; b++) {
            TransOut *o = &out[todo[b]];
            o->n = res[b].n;
            o->text = xcalloc((size_t)(o->n ? o->n : 1), sizeof(char *), "translation");
            o->score = xcalloc((size_t)(o->n ? o->n : 1), sizeof(double), "translation");
            for (int h = 0; h < res[b].n; h++) {
                size_t tl;
                if (spm_decode_ids(t->spm, res[b].hyps[h].tokens, (size_t)res[b].hyps[h].n_tokens, &o->text[h], &tl))
                    FATAL(EXIT_RUNTIME, "decoding a translation: %s", spm_last_error(t->spm));
                o->score[h] = res[b].hyps[h].score;
            }
        }
        beam_results_free(res, ntodo);
        free(res);
        s2s_decoder_free(ad.dec);
        free(src);
        free(sl);
    }
    /* empty and skipped lines: one empty translation */
    for (int i = 0; i < n; i++) {
        if (out[i].n) continue;
        free(out[i].text);
        free(out[i].score);
        out[i].n = 1;
        out[i].text = xcalloc(1, sizeof(char *), "translation");
        out[i].text[0] = xstrdup("");
        out[i].score = xcalloc(1, sizeof(double), "translation");
    }
    for (int i = 0; i < n; i++) free(ids[i]);
    free(ids);
    free(len);
    free(todo);
}

void translate_out_free(TransOut *out, int n) {
    for (int i = 0; i < n; i++) {
        for (int h = 0; h < out[i].n; h++) free(out[i].text[h]);
        free(out[i].text);
        free(out[i].score);
    }
}
