/* Fuzz target "spm": the SentencePiece loader (text/spm.h spm_load_bytes) on
 * arbitrary bytes, then whatever loaded is used: a few strings (ASCII, accents,
 * CJK, emoji, invalid UTF-8, an empty one) are encoded to ids and to pieces and
 * decoded back, every id is turned into its piece and back, and the model is
 * serialized and loaded again.
 * Oracles: no C++ exception, abort or FATAL escapes; failures are status codes
 * with one-line messages; encoded ids are inside the vocabulary and as many as the
 * pieces; text that is not valid UTF-8 is refused with SPM_ERR_TEXT; decoded text
 * is valid UTF-8; a serialized model loads again with the same vocabulary size.
 * Seeds are small models trained with spm_train (tests/fuzz/README.md). */
#include <stdint.h>
#include <string.h>

#include "fuzz_util.h"
#include "text/spm.h"
#include "text/utf8.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fuzz_init("fuzz-spm");
    return 0;
}

static const char *const texts[] = {
    "the quick brown fox jumps over the lazy dog",
    "Zoë's café, naïve façade — 1,234.5 km",
    "日本語のテキストと中文",
    "emoji \xF0\x9F\x98\x80 and tabs\tinside",
    "",
    "bad \xC3\x28 utf8",
    "surrogate \xED\xA0\x80 here",
};

static void check_text(Spm *sp, const char *s) {
    size_t len = strlen(s);
    int valid = utf8_validate(s, len) < 0;
    int32_t V = spm_vocab_size(sp);
    SpmIds ids = {0};
    int rc = spm_encode_ids(sp, s, len, &ids);
    if (!valid) FUZZ_ASSERT(rc == SPM_ERR_TEXT, "invalid UTF-8 gave status %d, not SPM_ERR_TEXT", rc);
    if (rc != SPM_OK) {
        fuzz_check_message("spm_encode_ids", spm_last_error(sp));
        spm_ids_free(&ids);
        return;
    }
    for (size_t i = 0; i < ids.n; i++) FUZZ_ASSERT(ids.ids[i] >= 0 && ids.ids[i] < V, "id %d of %d", ids.ids[i], V);
    char **pieces = NULL;
    size_t np = 0;
    rc = spm_encode_pieces(sp, s, len, &pieces, &np);
    if (rc == SPM_OK) {
        FUZZ_ASSERT(np == ids.n, "%zu pieces but %zu ids", np, ids.n);
        for (size_t i = 0; i < np; i++) FUZZ_ASSERT(pieces[i] && !strchr(pieces[i], '\n'), "piece %zu", i);
        FUZZ_ASSERT(pieces[np] == NULL, "pieces not NULL-terminated");
    } else {
        fuzz_check_message("spm_encode_pieces", spm_last_error(sp));
    }
    free(pieces);
    char *text = NULL;
    size_t tlen = 0;
    rc = spm_decode_ids(sp, ids.ids, ids.n, &text, &tlen);
    if (rc == SPM_OK) {
        FUZZ_ASSERT(text && strlen(text) == tlen, "decoded length %zu, strlen %zu", tlen, text ? strlen(text) : 0);
        FUZZ_ASSERT(utf8_validate(text, tlen) < 0, "'%s' decodes to text that is not valid UTF-8: '%s'", s, text);
    } else {
        fuzz_check_message("spm_decode_ids", spm_last_error(sp));
    }
    free(text);
    spm_ids_free(&ids);
}

static void check_vocab(Spm *sp) {
    int32_t V = spm_vocab_size(sp);
    FUZZ_ASSERT(V > 0, "a loaded model with %d pieces", V);
    char buf[1024];
    int32_t n = V < 4096 ? V : 4096;
    for (int32_t id = 0; id < n; id++) {
        int rc = spm_id_to_piece(sp, id, buf, sizeof buf);
        if (rc != SPM_OK) {
            FUZZ_ASSERT(rc == SPM_ERR_RANGE, "id_to_piece(%d) gave %d", id, rc);
            continue;
        }
        int32_t back = spm_piece_to_id(sp, buf);
        FUZZ_ASSERT(back >= 0 && back < V, "piece %d maps to id %d of %d", id, back, V);
        (void)spm_is_control(sp, id);
        (void)spm_is_unknown(sp, id);
    }
    FUZZ_ASSERT(spm_id_to_piece(sp, V, buf, sizeof buf) == SPM_ERR_RANGE, "id %d (= vocab size) accepted", V);
    FUZZ_ASSERT(spm_id_to_piece(sp, -1, buf, sizeof buf) == SPM_ERR_RANGE, "id -1 accepted");
    int32_t bad = V;
    char *text = NULL;
    FUZZ_ASSERT(spm_decode_ids(sp, &bad, 1, &text, NULL) != SPM_OK, "decoding id %d (= vocab size) succeeded", V);
    free(text);
    int32_t specials[] = {spm_unk_id(sp), spm_bos_id(sp), spm_eos_id(sp), spm_pad_id(sp)};
    for (int i = 0; i < 4; i++) FUZZ_ASSERT(specials[i] >= -1 && specials[i] < V, "special id %d", specials[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > (1u << 20)) return 0;
    Spm *sp = NULL;
    char err[1024] = "";
    int rc = spm_load_bytes(data, size, &sp, err, sizeof err);
    if (rc != SPM_OK) {
        FUZZ_ASSERT(sp == NULL, "a failed load returned a model");
        fuzz_check_message("spm_load_bytes", err);
        return 0;
    }
    check_vocab(sp);
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) check_text(sp, texts[i]);
    char *bytes = NULL;
    size_t n = 0;
    if (spm_serialize(sp, &bytes, &n) == SPM_OK) {
        Spm *again = NULL;
        rc = spm_load_bytes(bytes, n, &again, err, sizeof err);
        FUZZ_ASSERT(rc == SPM_OK, "a serialized model does not load again: %s", err);
        FUZZ_ASSERT(spm_vocab_size(again) == spm_vocab_size(sp), "reloading changed the vocabulary size");
        spm_free(again);
        free(bytes);
    } else {
        fuzz_check_message("spm_serialize", spm_last_error(sp));
    }
    spm_free(sp);
    return 0;
}
