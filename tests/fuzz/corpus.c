/* Fuzz target "corpus": the line reader and the word vocabularies (data/textio.h,
 * data/vocab.h, data/lmcorpus.h) on arbitrary files, plain and gzip.
 *
 * The input is written as a file as it is (gzip when it starts with the gzip magic,
 * so mutated .gz seeds reach the decompressor) and, compressed, as a valid .gz file.
 * Each file is read line by line (with a 64-byte limit, so long lines are skipped),
 * checked for UTF-8 and split into words; read as a vocabulary (vocab_read, whole
 * and cut to 8 entries), built into one (vocab_build) and loaded as an LM corpus
 * (lm_corpus_load, bad lines skipped and not). The raw bytes also go to
 * vocab_deserialize. Oracles: failures are codes with one-line messages; every word
 * of a vocabulary looks up to its own id; a vocabulary survives serialize ->
 * deserialize; corpus ids are inside the vocabulary; line numbers only grow. */
#include <stdint.h>
#include <string.h>
#include <zlib.h>

#include "data/lmcorpus.h"
#include "data/textio.h"
#include "data/vocab.h"
#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *g_plain, *g_gz;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fuzz_init("fuzz-corpus");
    g_plain = fuzz_temp_path("corpus", ".txt");
    g_gz = fuzz_temp_path("corpus", ".gz");
    return 0;
}

static void write_gz(const char *path, const uint8_t *data, size_t size) {
    gzFile g = gzopen(path, "wb1");
    if (!g || (size && gzwrite(g, data, (unsigned)size) != (int)size) || gzclose(g) != Z_OK) abort();
}

static void read_lines(const char *path, int64_t skip) {
    TextReader *r;
    char err[1024] = "";
    if (textio_open(&r, path, 64, err, sizeof err) != TEXTIO_OK) {
        fuzz_check_message("textio_open", err);
        return;
    }
    if (skip) {
        int64_t got = textio_skip(r, skip);
        if (got < 0) fuzz_check_message("textio_skip", textio_error(r));
        FUZZ_ASSERT(got <= skip, "skipped %lld of %lld lines", (long long)got, (long long)skip);
    }
    TextWords words = {0};
    int64_t last = textio_line(r);
    for (;;) {
        char *line;
        size_t len;
        int rc = textio_next(r, &line, &len);
        if (rc == TEXTIO_EOF) break;
        if (rc != TEXTIO_OK && rc != TEXTIO_ERR_LONG) {
            fuzz_check_message("textio_next", textio_error(r));
            FUZZ_ASSERT(textio_next(r, &line, &len) == rc, "a dead reader came back to life");
            break;
        }
        FUZZ_ASSERT(textio_line(r) > last, "line numbers went from %lld to %lld", (long long)last,
                    (long long)textio_line(r));
        last = textio_line(r);
        if (rc == TEXTIO_ERR_LONG) {
            fuzz_check_message("textio_next (long line)", textio_error(r));
            continue;
        }
        FUZZ_ASSERT(len <= 64 && line[len] == 0, "a line of %zu bytes past the limit or not terminated", len);
        if (textio_check_utf8(r, line, len, err, sizeof err) != TEXTIO_OK) fuzz_check_message("check_utf8", err);
        size_t n = textio_split(line, len, &words);
        for (size_t i = 0; i < n; i++)
            FUZZ_ASSERT(words.len[i] > 0 && words.w[i] >= line && words.w[i] + words.len[i] <= line + len,
                        "word %zu outside its line", i);
    }
    textio_words_free(&words);
    textio_close(r);
}

/* Every word looks up to its own id, and the vocabulary survives serialization. */
static void check_vocab(const Vocab *v) {
    int32_t n = vocab_size(v);
    FUZZ_ASSERT(n >= VOCAB_NSPECIAL, "a vocabulary of %d entries", n);
    for (int32_t id = VOCAB_NSPECIAL; id < n; id++) {
        size_t len;
        const char *w = vocab_word(v, id, &len);
        FUZZ_ASSERT(vocab_find(v, w, len) == id, "word %d does not look up to itself", id);
    }
    size_t bytes;
    uint8_t *blob = vocab_serialize(v, &bytes);
    Vocab *back;
    char err[1024] = "";
    FUZZ_ASSERT(vocab_deserialize(&back, blob, bytes, err, sizeof err) == 0, "a serialized vocabulary is refused: %s",
                err);
    FUZZ_ASSERT(vocab_size(back) == n, "serialization changed the size from %d to %d", n, vocab_size(back));
    for (int32_t id = 0; id < n; id++) {
        size_t la, lb;
        const char *a = vocab_word(v, id, &la), *b = vocab_word(back, id, &lb);
        FUZZ_ASSERT(la == lb && !memcmp(a, b, la), "serialization changed word %d", id);
    }
    vocab_free(back);
    free(blob);
}

static void load_corpus(const char *path, const Vocab *v, int skip_bad) {
    LmReadOpts o = {.max_line = 64, .skip_bad_lines = skip_bad};
    LmCorpus *c;
    char err[1024] = "";
    if (lm_corpus_load(&c, &path, 1, v, &o, err, sizeof err)) {
        fuzz_check_message("lm_corpus_load", err);
        return;
    }
    int32_t vs = vocab_size(v);
    int32_t ids[64];
    for (int64_t i = 0; i < lm_corpus_sentences(c); i++) {
        int64_t n = lm_corpus_len(c, i);
        FUZZ_ASSERT(n >= 0 && n <= 64, "sentence %lld of %lld words from 64-byte lines", (long long)i, (long long)n);
        lm_corpus_get(c, i, ids);
        for (int64_t k = 0; k < n; k++)
            FUZZ_ASSERT(ids[k] >= 0 && ids[k] < vs, "id %d outside the vocabulary of %d", ids[k], vs);
    }
    lm_corpus_free(c);
}

static void fuzz_file(const char *path) {
    char err[1024] = "";
    read_lines(path, 0);
    read_lines(path, 2);
    Vocab *v = NULL;
    for (int64_t max = 0; max <= 8; max += 8) {
        Vocab *r;
        if (vocab_read(&r, path, max, err, sizeof err)) {
            fuzz_check_message("vocab_read", err);
            continue;
        }
        check_vocab(r);
        if (max) FUZZ_ASSERT(vocab_size(r) <= max, "vocab_read kept %d of at most %lld", vocab_size(r), (long long)max);
        if (v) vocab_free(v);
        v = r;
    }
    VocabBuildOpts bo = {.max_size = 50, .min_count = 1, .max_line = 64, .skip_bad_lines = 1};
    VocabBuildStats st;
    Vocab *built;
    if (vocab_build(&built, &path, 1, &bo, &st, err, sizeof err)) {
        fuzz_check_message("vocab_build", err);
    } else {
        check_vocab(built);
        FUZZ_ASSERT(vocab_size(built) <= 50, "vocab_build kept %d of at most 50", vocab_size(built));
        if (!v) v = built;
        else vocab_free(built);
    }
    if (!v) v = vocab_new();
    load_corpus(path, v, 1);
    load_corpus(path, v, 0);
    vocab_free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 65536) return 0;
    fuzz_write_file(g_plain, data, size);
    fuzz_file(g_plain);
    write_gz(g_gz, data, size);
    fuzz_file(g_gz);
    Vocab *v;
    char err[1024] = "";
    if (vocab_deserialize(&v, data, size, err, sizeof err))
        fuzz_check_message("vocab_deserialize", err);
    else {
        check_vocab(v);
        vocab_free(v);
    }
    return 0;
}
