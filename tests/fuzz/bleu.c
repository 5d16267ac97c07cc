/* Fuzz target "bleu": the 13a tokenizer, BLEU and chrF (text/tok13a.h, bleu.h,
 * chrf.h) on hypothesis/reference pairs cut from arbitrary bytes.
 *
 * Each line (at most 16) is a segment: the hypothesis, then up to 3 references
 * after tabs (one empty reference when there is none; a NUL ends a string). Every
 * segment goes through the 13a and "none" tokenizers and both splitters; the
 * corpus through BLEU in sacrebleu's and multi-bleu's modes (several smoothing
 * methods, orders, lowercasing, effective order), and through chrF and chrF++
 * (lowercase, whitespace, eps smoothing), and every output format.
 * Oracles: 13a output has no leading, trailing or double spaces; both splitters
 * give spans inside the text; scores are finite and within [0, 100];
 * precisions within [0, 100]; sentence statistics sum to the corpus's; formatted
 * lengths match what snprintf-like functions report. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_util.h"
#include "text/bleu.h"
#include "text/chrf.h"
#include "text/tok13a.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_SEGS 16
#define MAX_REFS 3

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fuzz_init("fuzz-bleu");
    return 0;
}

typedef struct {
    char *hyp;
    const char *refs[MAX_REFS];
    int nrefs;
    char *parts[MAX_REFS + 1];
    int nparts;
} Seg;

static void check_tokenizers(const char *s, tok13a_buf *buf, tok13a_span **spans, size_t *cap) {
    size_t n = strlen(s);
    size_t len = tok13a_tokenize(s, n, buf);
    FUZZ_ASSERT(len == buf->len && strlen(buf->s) == len, "13a length %zu, strlen %zu", len, strlen(buf->s));
    if (len) {
        FUZZ_ASSERT(buf->s[0] != ' ' && buf->s[len - 1] != ' ', "13a output has a space at an end: '%s'", buf->s);
        FUZZ_ASSERT(!strstr(buf->s, "  "), "13a output has a double space: '%s'", buf->s);
    }
    len = tok13a_none(s, n, buf);
    FUZZ_ASSERT(len == buf->len && strlen(buf->s) == len, "none: length %zu, strlen %zu", len, strlen(buf->s));
    size_t k = tok13a_split(s, n, spans, cap);
    for (size_t i = 0; i < k; i++)
        FUZZ_ASSERT((*spans)[i].s >= s && (*spans)[i].s + (*spans)[i].len <= s + n && (*spans)[i].len > 0,
                    "split span %zu outside the text", i);
    k = tok13a_split_ascii(s, n, spans, cap);
    for (size_t i = 0; i < k; i++)
        FUZZ_ASSERT((*spans)[i].s >= s && (*spans)[i].s + (*spans)[i].len <= s + n && (*spans)[i].len > 0,
                    "ascii split span %zu outside the text", i);
}

static void check_format(size_t need, const char *buf, size_t cap, const char *what) {
    FUZZ_ASSERT(need < cap ? strlen(buf) == need : strlen(buf) == cap - 1, "%s: reported %zu, wrote %zu", what, need,
                strlen(buf));
}

static void run_bleu(Seg *segs, int n, const bleu_opts *o) {
    bleu *b = bleu_new(o);
    bleu_stats sum = {0};
    for (int i = 0; i < n; i++) {
        bleu_stats seg;
        bleu_add(b, segs[i].hyp, segs[i].refs, segs[i].nrefs, &seg);
        bleu_stats_add(&sum, &seg);
        bleu_score ss = bleu_compute(&seg, o);
        FUZZ_ASSERT(isfinite(ss.score) && ss.score >= 0 && ss.score <= 100 + 1e-9, "sentence BLEU %g", ss.score);
    }
    const bleu_stats *cs = bleu_corpus_stats(b);
    FUZZ_ASSERT(cs->sys_len == sum.sys_len && cs->ref_len == sum.ref_len, "corpus lengths differ from the sum");
    for (int k = 0; k < BLEU_MAX_ORDER; k++)
        FUZZ_ASSERT(cs->correct[k] == sum.correct[k] && cs->total[k] == sum.total[k], "corpus counts differ (order %d)",
                    k + 1);
    bleu_score s = bleu_corpus_score(b);
    FUZZ_ASSERT(isfinite(s.score) && s.score >= 0 && s.score <= 100 + 1e-9, "corpus BLEU %g", s.score);
    for (int k = 0; k < s.max_order; k++)
        FUZZ_ASSERT(isfinite(s.precisions[k]) && s.precisions[k] >= 0 && s.precisions[k] <= 100 + 1e-9,
                    "precision %d is %g", k + 1, s.precisions[k]);
    FUZZ_ASSERT(isfinite(s.bp) && s.bp >= 0 && s.bp <= 1, "BP %g", s.bp);
    char sig[256], text[512], json[4096];
    size_t need = bleu_signature(o, bleu_nrefs(b), "fuzz", sig, sizeof sig);
    check_format(need, sig, sizeof sig, "bleu_signature");
    need = bleu_format_text(&s, sig, 1, text, sizeof text);
    check_format(need, text, sizeof text, "bleu_format_text");
    need = bleu_format_text(&s, sig, 1, text, 10); /* truncated */
    check_format(need, text, 10, "bleu_format_text (truncated)");
    need = bleu_format_json(&s, sig, 2, json, sizeof json);
    check_format(need, json, sizeof json, "bleu_format_json");
    need = bleu_format_multibleu(&s, text, sizeof text);
    check_format(need, text, sizeof text, "bleu_format_multibleu");
    need = bleu_format_verbose(&s, text, sizeof text);
    check_format(need, text, sizeof text, "bleu_format_verbose");
    (void)bleu_looks_tokenized(b);
    bleu_free(b);
}

static void run_chrf(Seg *segs, int n, const chrf_opts *o) {
    chrf *c = chrf_new(o);
    int64_t seg[3 * CHRF_MAX_ORDERS];
    for (int i = 0; i < n; i++) {
        chrf_add(c, segs[i].hyp, segs[i].refs, segs[i].nrefs, seg);
        double f = chrf_f_score(o, seg);
        FUZZ_ASSERT(isfinite(f) && f >= 0 && f <= 100 + 1e-9, "sentence chrF %g", f);
    }
    double score = chrf_corpus_score(c);
    FUZZ_ASSERT(isfinite(score) && score >= 0 && score <= 100 + 1e-9, "corpus chrF %g", score);
    char sig[256], text[512], json[2048];
    size_t need = chrf_signature(o, chrf_nrefs(c), "fuzz", sig, sizeof sig);
    check_format(need, sig, sizeof sig, "chrf_signature");
    need = chrf_format_text(o, score, sig, 1, text, sizeof text);
    check_format(need, text, sizeof text, "chrf_format_text");
    need = chrf_format_json(o, score, sig, 2, json, sizeof json);
    check_format(need, json, sizeof json, "chrf_format_json");
    chrf_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 16384) return 0;
    char *lines[MAX_SEGS];
    int n = fuzz_split(data, size, '\n', lines, MAX_SEGS);
    Seg segs[MAX_SEGS];
    tok13a_buf buf = {0};
    tok13a_span *spans = NULL;
    size_t cap = 0;
    for (int i = 0; i < n; i++) {
        Seg *s = &segs[i];
        s->nparts = fuzz_split((const uint8_t *)lines[i], strlen(lines[i]), '\t', s->parts, MAX_REFS + 1);
        s->hyp = s->parts[0];
        s->nrefs = 0;
        for (int k = 1; k < s->nparts; k++) s->refs[s->nrefs++] = s->parts[k];
        if (!s->nrefs) s->refs[s->nrefs++] = "";
        for (int k = 0; k < s->nparts; k++) check_tokenizers(s->parts[k], &buf, &spans, &cap);
    }
    tok13a_buf_free(&buf);
    free(spans);

    bleu_opts o = bleu_default_opts();
    run_bleu(segs, n, &o);
    o.lowercase = true;
    o.tokenize = BLEU_TOK_NONE;
    o.smooth = BLEU_SMOOTH_FLOOR;
    run_bleu(segs, n, &o);
    o = bleu_default_opts();
    o.smooth = BLEU_SMOOTH_ADD_K;
    o.max_order = 1 + (int)(size % BLEU_MAX_ORDER);
    o.effective_order = true;
    run_bleu(segs, n, &o);
    o.smooth = BLEU_SMOOTH_NONE;
    run_bleu(segs, n, &o);
    o = bleu_multibleu_opts(size % 2);
    run_bleu(segs, n, &o);

    chrf_opts c = chrf_default_opts();
    run_chrf(segs, n, &c);
    c = chrf_plusplus_opts();
    c.lowercase = true;
    run_chrf(segs, n, &c);
    c.whitespace = true;
    c.eps_smoothing = true;
    c.word_order = 3;
    run_chrf(segs, n, &c);

    for (int i = 0; i < n; i++) fuzz_free_pieces(segs[i].parts, segs[i].nparts);
    fuzz_free_pieces(lines, n);
    return 0;
}
