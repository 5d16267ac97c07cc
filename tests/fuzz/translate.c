/* Fuzz target "translate": moe-translate's input handling (decode/translate.h
 * translate_lines) on arbitrary text: invalid UTF-8, NUL bytes, blank lines,
 * sources past TRANSLATE_MAX_SOURCE pieces and 1 MB lines.
 *
 * Built once at startup, deterministically: a SentencePiece model (unigram, 96
 * pieces, identity normalization) trained with spm_train on a small embedded text,
 * and a tiny translation model (s2s_init: width 8, bidirectional encoder, MoE of 4
 * experts in encoder and decoder, separable attention) with params_randomize.
 * The input is cut into at most 8 lines at '\n' (a NUL ends a line's C string, as
 * for any caller); an input starting with byte 0x01 repeats its first line up to
 * 1 MB. Beam 3, 2-best, output at most 1.5 x the source (0.02 x for the 1 MB
 * line: bounded work per input).
 * Oracles: one result per line, at least one hypothesis each, every hypothesis
 * valid UTF-8 with a finite score; blank or invalid lines give one empty
 * translation. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/ops.h"
#include "core/params.h"
#include "cpu/backend.h"
#include "decode/translate.h"
#include "fuzz_util.h"
#include "text/utf8.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_LINES 8
#define BIG_LINE (1u << 20)

static const char train_text[] =
    "the cat sat on the mat\n"
    "a dog ran in the park and the cat watched\n"
    "le chat est assis sur le tapis\n"
    "un chien court dans le parc et le chat regarde\n"
    "der Hund läuft im Park, die Katze schaut zu.\n"
    "naïve café owners serve crème brûlée at 9:30 p.m.\n"
    "東京は日本の首都です。\n"
    "numbers 1234 5678 and punctuation !?;: () [] {}\n"
    "we translate sentences one by one, batch by batch\n"
    "the quick brown fox jumps over the lazy dog 42 times\n"
    "Ελληνικά και русский текст вместе\n"
    "emoji 😀 and symbols € £ ¥ © ®\n";

static Spm *g_spm;
static Backend *g_be;
static ParamStore g_ps;
static S2s g_model;
static Arena g_arena;
static Ctx g_ctx;
static Translator g_tr;

static void build_spm(void) {
    const char *path = fuzz_temp_path("translate", ".txt");
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    for (int rep = 0; rep < 20; rep++) fputs(train_text, f); /* enough sentences for 96 pieces */
    if (fclose(f)) abort();
    SpmTrainOpts o;
    spm_train_opts_init(&o);
    o.inputs = &path;
    o.n_inputs = 1;
    o.vocab_size = 96;
    o.character_coverage = 1.0;
    o.num_threads = 1;
    o.extra = "--normalization_rule_name=identity --hard_vocab_limit=false";
    char *bytes = NULL, err[1024] = "";
    size_t n = 0;
    if (spm_train(&o, &bytes, &n, err, sizeof err) || spm_load_bytes(bytes, n, &g_spm, err, sizeof err)) {
        fprintf(stderr, "fuzz-translate: cannot build the SentencePiece model: %s\n", err);
        abort();
    }
    free(bytes);
}

static void build_model(void) {
    backend_register(&backend_cpu_reg);
    g_be = backend_create("cpu", 1);
    params_init(&g_ps, g_be);
    S2sConfig cfg = {.vocab = spm_vocab_size(g_spm), .dim = 8, .rnn = 8, .proj = 0, .enc_depth = 2, .dec_depth = 2,
                     .enc_moe_after = 1, .dec_moe_after = 1, .enc_bidir = 1, .attention = ATTN_SEPARABLE,
                     .att_dim = 4, .common = {.drop = DROPOUTS_ALL(0), .residual = 1, .chunk = 64}};
    cfg.common.moe = moe_config_default(8, 4, 2);
    const char *why = s2s_config_error(&cfg);
    if (why) {
        fprintf(stderr, "fuzz-translate: bad model config: %s\n", why);
        abort();
    }
    s2s_init(&g_model, &g_ps, &cfg);
    params_alloc(&g_ps, NULL, NULL);
    params_randomize(&g_ps, 1);
    arena_init(&g_arena, g_be, 0, "activations");
    g_ctx = (Ctx){.be = g_be, .arena = &g_arena, .ps = &g_ps, .train = 0, .seed = 1};
    g_tr = (Translator){.ctx = &g_ctx, .m = &g_model, .spm = g_spm, .src_eos = 1, .where = "fuzz"};
    g_tr.opts = beam_opts_default();
    g_tr.opts.beam_size = 3;
    g_tr.opts.nbest = 2;
    g_tr.opts.max_len_factor = 1.5f;
    char err[256];
    if (beam_opts_check(&g_tr.opts, err, sizeof err)) {
        fprintf(stderr, "fuzz-translate: %s\n", err);
        abort();
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fuzz_init("fuzz-translate");
    build_spm();
    build_model();
    return 0;
}

static int blank(const char *s) {
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r') return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096) return 0;
    char *lines[MAX_LINES];
    int n;
    if (size && data[0] == 0x01) {
        /* one line of about 1 MB: the first line repeated */
        const uint8_t *nl = memchr(data + 1, '\n', size - 1);
        size_t len = nl ? (size_t)(nl - data - 1) : size - 1;
        if (!len) return 0;
        char *big = malloc(BIG_LINE + 1);
        if (!big) abort();
        for (size_t i = 0; i < BIG_LINE; i++) big[i] = (char)data[1 + i % len];
        big[BIG_LINE] = 0;
        for (size_t i = 0; i < BIG_LINE; i++)
            if (big[i] == '\n') big[i] = ' ';
        lines[0] = big;
        n = 1;
    } else {
        n = fuzz_split(data, size, '\n', lines, MAX_LINES);
    }
    TransOut out[MAX_LINES];
    /* a 1 MB line is about input handling (encoding, the cut at TRANSLATE_MAX_SOURCE
     * pieces, the encoder over them), not about 1500 decoder steps */
    Translator tr = g_tr;
    if (size && data[0] == 0x01) tr.opts.max_len_factor = 0.02f;
    translate_lines(&tr, (const char *const *)lines, n, 1, out);
    for (int i = 0; i < n; i++) {
        FUZZ_ASSERT(out[i].n >= 1 && out[i].n <= tr.opts.nbest, "line %d: %d hypotheses", i, out[i].n);
        for (int h = 0; h < out[i].n; h++) {
            const char *t = out[i].text[h];
            FUZZ_ASSERT(t && utf8_validate(t, strlen(t)) < 0, "line %d hypothesis %d is not valid UTF-8", i, h);
            FUZZ_ASSERT(isfinite(out[i].score[h]), "line %d hypothesis %d has score %g", i, h, out[i].score[h]);
            FUZZ_ASSERT(!strchr(t, '\n'), "line %d hypothesis %d holds a newline", i, h);
        }
        if (blank(lines[i]) || utf8_validate(lines[i], strlen(lines[i])) >= 0)
            FUZZ_ASSERT(out[i].n == 1 && !out[i].text[0][0], "line %d (blank or invalid) gave a translation", i);
    }
    translate_out_free(out, n);
    fuzz_free_pieces(lines, n);
    return 0;
}
