/* SentencePiece wrapper (src/text/spm.h) against the SentencePiece CLI.
 *
 * Trains a unigram model on the English New Testament (tests/data/bible/train.web.gz,
 * the World English Bible) and a BPE model on the Spanish one (train.rv.gz, the
 * Reina-Valera 1909) through spm_train (gzip inputs), then requires that encoding
 * valid.{web,rv} line by line gives exactly the ids and pieces of `spm_encode`
 * and decoding gives exactly the text of `spm_decode`. Also: determinism,
 * quiet training, load from bytes == load from file, special ids, and a clear
 * error (never an abort) for every kind of bad input. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "testdata.h"
#include "text/spm.h"

/* ---- fixtures ---------------------------------------------------------------- */

typedef struct {
    char **line;
    size_t n;
} Lines;

typedef struct {
    const char *lang;
    char train_gz[8192], val_gz[8192];
    char val_txt[8192];   /* decompressed val file for the CLI */
    char model_path[8192];
    char *model;          /* bytes from spm_train */
    size_t model_len;
    Lines val;
} Corpus;

static char g_base[2048], g_tmp[4096], g_work[4096];
static Corpus g_en, g_es;

static void lines_free(Lines *l) {
    for (size_t i = 0; i < l->n; i++) free(l->line[i]);
    free(l->line);
    l->line = NULL;
    l->n = 0;
}

/* Split a buffer into lines (without the '\n'). */
static Lines split_lines(const char *buf, size_t len) {
    Lines l = {0};
    size_t cap = 0, i = 0;
    while (i < len) {
        const char *e = memchr(buf + i, '\n', len - i);
        size_t m = e ? (size_t)(e - (buf + i)) : len - i;
        if (l.n == cap) {
            cap = cap ? 2 * cap : 1024;
            l.line = realloc(l.line, cap * sizeof *l.line);
            assert_non_null(l.line);
        }
        l.line[l.n] = malloc(m + 1);
        assert_non_null(l.line[l.n]);
        memcpy(l.line[l.n], buf + i, m);
        l.line[l.n][m] = '\0';
        l.n++;
        i += m + 1;
    }
    return l;
}

/* Decompress a .gz file fully; optionally write the text to out_path. */
static char *gunzip(const char *path, size_t *len, const char *out_path) {
    gzFile gz = gzopen(path, "rb");
    if (!gz) fail_msg("cannot open %s", path);
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    int r;
    while ((r = gzread(gz, buf + n, (unsigned)(cap - n))) > 0) {
        n += (size_t)r;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    assert_int_equal(r, 0);
    gzclose(gz);
    if (out_path) {
        FILE *f = fopen(out_path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(buf, 1, n, f), n);
        assert_int_equal(fclose(f), 0);
    }
    *len = n;
    return buf;
}

/* Run a shell command and return its stdout split into lines; fails the
 * test when the command fails (e.g. the CLI is not installed). */
static Lines run_lines(const char *cmd) {
    FILE *p = popen(cmd, "r");
    if (!p) fail_msg("popen failed: %s", cmd);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n, p)) > 0) {
        n += r;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    int st = pclose(p);
    if (st != 0) fail_msg("command failed (status %d): %s", st, cmd);
    Lines l = split_lines(buf, n);
    free(buf);
    return l;
}

static void require_cli(void) {
    if (system("command -v spm_encode >/dev/null 2>&1 && command -v spm_decode >/dev/null 2>&1") != 0)
        fail_msg("spm_encode/spm_decode not found: install the Debian package 'sentencepiece'");
}

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void ids_to_string(const SpmIds *v, char *out, size_t cap) {
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < v->n; i++) {
        int w = snprintf(out + o, cap - o, i ? " %d" : "%d", v->ids[i]);
        assert_true(w > 0 && (size_t)w < cap - o);
        o += (size_t)w;
    }
}

/* lang names the model; stem is the translation's file stem in tests/data/bible */
static void train_corpus(Corpus *c, const char *lang, const char *stem, SpmModelType type, int vocab) {
    c->lang = lang;
    char rel[64];
    snprintf(rel, sizeof rel, "bible/train.%s.gz", stem);
    snprintf(c->train_gz, sizeof c->train_gz, "%s", testdata_path(rel));
    snprintf(rel, sizeof rel, "bible/valid.%s.gz", stem);
    snprintf(c->val_gz, sizeof c->val_gz, "%s", testdata_path(rel));
    snprintf(c->val_txt, sizeof c->val_txt, "%s/val.%s", g_work, lang);
    snprintf(c->model_path, sizeof c->model_path, "%s/%s.model", g_work, lang);

    SpmTrainOpts o;
    spm_train_opts_init(&o);
    const char *in[] = {c->train_gz};
    o.inputs = in;
    o.n_inputs = 1;
    o.model_type = type;
    o.vocab_size = vocab;
    o.character_coverage = 1.0;
    o.seed = 1234;
    o.num_threads = 2;
    o.model_path = c->model_path;
    char err[1024];
    int st = spm_train(&o, &c->model, &c->model_len, err, sizeof err);
    if (st != SPM_OK) fail_msg("training on %s failed: %s", c->train_gz, err);

    size_t n;
    char *text = gunzip(c->val_gz, &n, c->val_txt);
    c->val = split_lines(text, n);
    free(text);
}

static int group_setup(void **state) {
    (void)state;
    const char *t = getenv("TMPDIR");
    snprintf(g_base, sizeof g_base, "%s/spm_test.XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(g_base)) return -1;
    snprintf(g_tmp, sizeof g_tmp, "%s/tmp", g_base);
    snprintf(g_work, sizeof g_work, "%s/work", g_base);
    if (mkdir(g_tmp, 0700) || mkdir(g_work, 0700)) return -1;
    /* The wrapper's temporaries go to an empty directory we can watch. */
    setenv("TMPDIR", g_tmp, 1);
    train_corpus(&g_en, "en", "web", SPM_UNIGRAM, 4000);
    train_corpus(&g_es, "es", "rv", SPM_BPE, 2000);
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    Corpus *cs[] = {&g_en, &g_es};
    for (int i = 0; i < 2; i++) {
        free(cs[i]->model);
        lines_free(&cs[i]->val);
    }
    nftw(g_base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static Spm *load_or_fail(const char *path) {
    Spm *sp = NULL;
    char err[1024];
    int st = spm_load_file(path, &sp, err, sizeof err);
    if (st != SPM_OK) fail_msg("load %s: %s", path, err);
    return sp;
}

/* ---- tests --------------------------------------------------------------------- */

/* Ids, pieces and decoded text equal the CLI's on every validation line. */
static void check_against_cli(Corpus *c, double min_exact_roundtrip) {
    require_cli();
    char cmd[3 * 8192 + 512];
    snprintf(cmd, sizeof cmd, "spm_encode --model='%s' --output_format=id --input='%s'", c->model_path, c->val_txt);
    Lines cli_ids = run_lines(cmd);
    snprintf(cmd, sizeof cmd, "spm_encode --model='%s' --output_format=piece --input='%s'", c->model_path,
             c->val_txt);
    Lines cli_pieces = run_lines(cmd);
    snprintf(cmd, sizeof cmd,
             "spm_encode --model='%s' --output_format=id --input='%s' | spm_decode --model='%s' --input_format=id",
             c->model_path, c->val_txt, c->model_path);
    Lines cli_text = run_lines(cmd);
    assert_int_equal(c->val.n, 1135); /* the validation verses */
    assert_int_equal(cli_ids.n, c->val.n);
    assert_int_equal(cli_pieces.n, c->val.n);
    assert_int_equal(cli_text.n, c->val.n);

    Spm *sp = load_or_fail(c->model_path);
    SpmIds ids = {0};
    static char got[1 << 16];
    size_t same_ids = 0, same_pieces = 0, same_text = 0, exact = 0, n_ids = 0;
    for (size_t i = 0; i < c->val.n; i++) {
        const char *line = c->val.line[i];
        assert_int_equal(spm_encode_ids(sp, line, strlen(line), &ids), SPM_OK);
        n_ids += ids.n;
        ids_to_string(&ids, got, sizeof got);
        if (strcmp(got, cli_ids.line[i]) == 0)
            same_ids++;
        else
            print_message("# line %zu ids differ:\n#  wrapper %s\n#  cli     %s\n", i + 1, got, cli_ids.line[i]);

        char **pieces;
        size_t np;
        assert_int_equal(spm_encode_pieces(sp, line, strlen(line), &pieces, &np), SPM_OK);
        assert_int_equal(np, ids.n);
        assert_null(pieces[np]);
        size_t o = 0;
        got[0] = '\0';
        for (size_t k = 0; k < np; k++) {
            assert_null(strchr(pieces[k], '\n'));
            o += (size_t)snprintf(got + o, sizeof got - o, k ? " %s" : "%s", pieces[k]);
        }
        free(pieces);
        if (strcmp(got, cli_pieces.line[i]) == 0) same_pieces++;

        char *text;
        size_t tlen;
        assert_int_equal(spm_decode_ids(sp, ids.ids, ids.n, &text, &tlen), SPM_OK);
        assert_int_equal(tlen, strlen(text));
        if (strcmp(text, cli_text.line[i]) == 0)
            same_text++;
        else
            print_message("# line %zu decode differs:\n#  wrapper %s\n#  cli     %s\n", i + 1, text,
                          cli_text.line[i]);
        if (strcmp(text, line) == 0) exact++;
        free(text);
    }
    print_message("# note spm %s %s: %zu/%zu lines same ids, %zu same pieces, %zu same decode; "
                  "%zu/%zu (%.1f%%) round-trip exactly to the raw input; %.2f ids/line\n",
                  c->lang, c == &g_en ? "unigram" : "bpe", same_ids, c->val.n, same_pieces, same_text, exact,
                  c->val.n, 100.0 * exact / c->val.n, (double)n_ids / c->val.n);
    assert_int_equal(same_ids, c->val.n);
    assert_int_equal(same_pieces, c->val.n);
    assert_int_equal(same_text, c->val.n);
    assert_true((double)exact >= min_exact_roundtrip * c->val.n);
    spm_ids_free(&ids);
    spm_free(sp);
    lines_free(&cli_ids);
    lines_free(&cli_pieces);
    lines_free(&cli_text);
}

static void test_unigram_en_matches_cli(void **state) {
    (void)state;
    check_against_cli(&g_en, 0.99);
}

static void test_bpe_es_matches_cli(void **state) {
    (void)state;
    check_against_cli(&g_es, 0.99);
}

/* Same options -> the same bytes; the file holds the returned bytes; the
 * model names the caller's input, not the temporary copy; no temporaries are
 * left; SentencePiece prints nothing. A plain copy of the corpus gives the
 * same vocabulary as the gzip original. */
static void test_train_deterministic_quiet(void **state) {
    (void)state;
    size_t flen;
    char *file = read_all(g_en.model_path, &flen);
    assert_int_equal(flen, g_en.model_len);
    assert_memory_equal(file, g_en.model, flen);
    free(file);
    assert_non_null(memmem(g_en.model, g_en.model_len, g_en.train_gz, strlen(g_en.train_gz)));
    assert_null(memmem(g_en.model, g_en.model_len, g_tmp, strlen(g_tmp)));
    assert_int_equal(count_entries(g_tmp), 0);

    SpmTrainOpts o;
    spm_train_opts_init(&o);
    const char *in[] = {g_en.train_gz};
    o.inputs = in;
    o.n_inputs = 1;
    o.vocab_size = 4000;
    o.character_coverage = 1.0;
    o.seed = 1234;
    o.num_threads = 2;

    /* Capture stderr while training. */
    char errpath[4200];
    snprintf(errpath, sizeof errpath, "%s/stderr.txt", g_work);
    fflush(stderr);
    int saved = dup(2);
    int fd = open(errpath, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 2);
    close(fd);
    char *m = NULL;
    size_t n = 0;
    char err[1024];
    int st = spm_train(&o, &m, &n, err, sizeof err);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    assert_int_equal(st, SPM_OK);
    size_t elen;
    char *errtext = read_all(errpath, &elen);
    if (elen) print_message("# stderr during training: %.300s\n", errtext);
    assert_int_equal(elen, 0);
    free(errtext);

    assert_int_equal(n, g_en.model_len);
    assert_memory_equal(m, g_en.model, n);
    free(m);
    assert_int_equal(count_entries(g_tmp), 0);

    /* Plain (not gzip) input: read in place, same vocabulary. */
    char plain[4200];
    snprintf(plain, sizeof plain, "%s/train.en.txt", g_work);
    size_t tlen;
    free(gunzip(g_en.train_gz, &tlen, plain));
    in[0] = plain;
    assert_int_equal(spm_train(&o, &m, &n, err, sizeof err), SPM_OK);
    assert_int_equal(count_entries(g_tmp), 0);
    Spm *a, *b;
    assert_int_equal(spm_load_bytes(m, n, &a, err, sizeof err), SPM_OK);
    assert_int_equal(spm_load_bytes(g_en.model, g_en.model_len, &b, err, sizeof err), SPM_OK);
    assert_int_equal(spm_vocab_size(a), 4000);
    assert_int_equal(spm_vocab_size(b), 4000);
    char pa[256], pb[256];
    for (int i = 0; i < 4000; i++) {
        assert_int_equal(spm_id_to_piece(a, i, pa, sizeof pa), SPM_OK);
        assert_int_equal(spm_id_to_piece(b, i, pb, sizeof pb), SPM_OK);
        assert_string_equal(pa, pb);
    }
    spm_free(a);
    spm_free(b);
    free(m);
    remove(plain);
}

static void test_load_bytes_equals_file(void **state) {
    (void)state;
    Corpus *cs[] = {&g_en, &g_es};
    for (int c = 0; c < 2; c++) {
        Spm *f = load_or_fail(cs[c]->model_path), *b = NULL;
        char err[1024];
        assert_int_equal(spm_load_bytes(cs[c]->model, cs[c]->model_len, &b, err, sizeof err), SPM_OK);
        assert_int_equal(spm_vocab_size(f), spm_vocab_size(b));
        SpmIds x = {0}, y = {0};
        for (size_t i = 0; i < cs[c]->val.n; i++) {
            const char *line = cs[c]->val.line[i];
            assert_int_equal(spm_encode_ids(f, line, strlen(line), &x), SPM_OK);
            assert_int_equal(spm_encode_ids(b, line, strlen(line), &y), SPM_OK);
            assert_int_equal(x.n, y.n);
            assert_memory_equal(x.ids, y.ids, x.n * sizeof *x.ids);
        }
        /* serialize() gives back the same bytes */
        char *s;
        size_t n;
        assert_int_equal(spm_serialize(f, &s, &n), SPM_OK);
        assert_int_equal(n, cs[c]->model_len);
        assert_memory_equal(s, cs[c]->model, n);
        free(s);
        spm_ids_free(&x);
        spm_ids_free(&y);
        spm_free(f);
        spm_free(b);
    }
}

static void test_special_ids_and_pieces(void **state) {
    (void)state;
    Corpus *cs[] = {&g_en, &g_es};
    int vocab[] = {4000, 2000};
    for (int c = 0; c < 2; c++) {
        Spm *sp = load_or_fail(cs[c]->model_path);
        assert_int_equal(spm_vocab_size(sp), vocab[c]);
        assert_int_equal(spm_unk_id(sp), SPM_UNK_ID);
        assert_int_equal(spm_bos_id(sp), SPM_BOS_ID);
        assert_int_equal(spm_eos_id(sp), SPM_EOS_ID);
        assert_int_equal(spm_pad_id(sp), SPM_PAD_ID);
        assert_int_equal(SPM_UNK_ID, 0);
        assert_int_equal(SPM_BOS_ID, 1);
        assert_int_equal(SPM_EOS_ID, 2);
        assert_int_equal(SPM_PAD_ID, -1);
        char p[256];
        assert_int_equal(spm_id_to_piece(sp, 0, p, sizeof p), SPM_OK);
        assert_string_equal(p, "<unk>");
        assert_int_equal(spm_id_to_piece(sp, 1, p, sizeof p), SPM_OK);
        assert_string_equal(p, "<s>");
        assert_int_equal(spm_id_to_piece(sp, 2, p, sizeof p), SPM_OK);
        assert_string_equal(p, "</s>");
        assert_true(spm_is_unknown(sp, 0));
        assert_false(spm_is_control(sp, 0));
        assert_true(spm_is_control(sp, 1));
        assert_true(spm_is_control(sp, 2));
        assert_false(spm_is_unknown(sp, 1));
        assert_false(spm_is_control(sp, 3));
        assert_false(spm_is_control(sp, -1));
        assert_false(spm_is_unknown(sp, vocab[c]));
        /* every piece maps back to its id */
        int normal = 0;
        for (int i = 0; i < vocab[c]; i++) {
            assert_int_equal(spm_id_to_piece(sp, i, p, sizeof p), SPM_OK);
            assert_int_equal(spm_piece_to_id(sp, p), i);
            normal += !spm_is_control(sp, i) && !spm_is_unknown(sp, i);
        }
        assert_int_equal(normal, vocab[c] - 3);
        assert_int_equal(spm_piece_to_id(sp, "no-such-piece-\xe2\x82\xac\xe2\x82\xac"), SPM_UNK_ID);
        assert_int_equal(spm_piece_to_id(sp, NULL), -1);
        /* a character never seen in training encodes to unk, decodes to " ⁇ " */
        SpmIds ids = {0};
        const char *cjk = "\xe6\x97\xa5";
        assert_int_equal(spm_encode_ids(sp, cjk, strlen(cjk), &ids), SPM_OK);
        int unk = 0;
        for (size_t i = 0; i < ids.n; i++) unk += ids.ids[i] == SPM_UNK_ID;
        assert_int_equal(unk, 1);
        char *text;
        assert_int_equal(spm_decode_ids(sp, ids.ids, ids.n, &text, NULL), SPM_OK);
        assert_non_null(strstr(text, "\xe2\x81\x87"));
        free(text);
        /* control ids decode to nothing */
        int32_t ctl[] = {SPM_BOS_ID, SPM_EOS_ID};
        assert_int_equal(spm_decode_ids(sp, ctl, 2, &text, NULL), SPM_OK);
        assert_string_equal(text, "");
        free(text);
        /* empty text: no ids, the buffer keeps its memory */
        assert_int_equal(spm_encode_ids(sp, "", 0, &ids), SPM_OK);
        assert_int_equal(ids.n, 0);
        spm_ids_free(&ids);
        spm_free(sp);
    }
}

static void test_load_errors(void **state) {
    (void)state;
    char err[1024], path[4200];
    Spm *sp = (Spm *)0x1;

    snprintf(path, sizeof path, "%s/no-such.model", g_work);
    assert_int_equal(spm_load_file(path, &sp, err, sizeof err), SPM_ERR_IO);
    assert_null(sp);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "No such file"));
    assert_null(strchr(err, '\n'));

    assert_int_equal(spm_load_file(g_work, &sp, err, sizeof err), SPM_ERR_IO);
    assert_null(sp);
    assert_non_null(strstr(err, "directory"));

    snprintf(path, sizeof path, "%s/empty.model", g_work);
    write_file(path, "", 0);
    assert_int_equal(spm_load_file(path, &sp, err, sizeof err), SPM_ERR_MODEL);
    assert_non_null(strstr(err, "empty"));

    /* a text file is not a model */
    assert_int_equal(spm_load_file(g_en.val_txt, &sp, err, sizeof err), SPM_ERR_MODEL);
    assert_null(sp);
    assert_non_null(strstr(err, g_en.val_txt));

    /* garbage and corrupted bytes */
    const char junk[] = "\x08\x96\x01 this is not a SentencePiece model \xff\xfe";
    assert_int_equal(spm_load_bytes(junk, sizeof junk, &sp, err, sizeof err), SPM_ERR_MODEL);
    assert_null(sp);
    char *c = malloc(g_en.model_len);
    assert_non_null(c);
    memcpy(c, g_en.model, g_en.model_len);
    c[1] = (char)0xff, c[2] = (char)0xff, c[3] = (char)0xff; /* first piece length runs off the end */
    assert_int_equal(spm_load_bytes(c, g_en.model_len, &sp, err, sizeof err), SPM_ERR_MODEL);
    assert_null(sp);
    assert_null(strchr(err, '\n'));

    /* truncated bytes, including cuts at field boundaries that protobuf
     * itself accepts */
    int bad = 0, tried = 0;
    for (size_t len = 1; len < g_en.model_len; len += (len < 400 ? 1 : 4099)) {
        tried++;
        int st = spm_load_bytes(g_en.model, len, &sp, err, sizeof err);
        bad += st == SPM_ERR_MODEL && sp == NULL;
        if (st == SPM_OK) spm_free(sp);
    }
    assert_int_equal(bad, tried);
    snprintf(path, sizeof path, "%s/truncated.model", g_work);
    write_file(path, g_en.model, g_en.model_len / 2);
    assert_int_equal(spm_load_file(path, &sp, err, sizeof err), SPM_ERR_MODEL);
    assert_non_null(strstr(err, path));
    print_message("# truncated model: %s\n", err);
    free(c);

    assert_int_equal(spm_load_bytes(NULL, 10, &sp, err, sizeof err), SPM_ERR_ARG);
    assert_int_equal(spm_load_file(NULL, &sp, err, sizeof err), SPM_ERR_ARG);
    assert_int_equal(spm_load_file(g_en.model_path, NULL, err, sizeof err), SPM_ERR_ARG);
    assert_int_equal(spm_load_bytes(g_en.model, g_en.model_len, &sp, NULL, 0), SPM_OK); /* err is optional */
    spm_free(sp);
    spm_free(NULL);
}

static int train_fails(SpmTrainOpts *o, int want, const char *needle, const char *model_path) {
    char *m = (char *)0x1;
    size_t n = 7;
    char err[1024];
    o->model_path = model_path;
    int st = spm_train(o, &m, &n, err, sizeof err);
    print_message("# spm_train -> %s: %s\n", spm_status_name(st), err);
    assert_int_equal(st, want);
    assert_null(m);
    assert_int_equal(n, 0);
    assert_true(strlen(err) > 10);
    assert_null(strchr(err, '\n'));
    if (needle) assert_non_null(strstr(err, needle));
    if (model_path) assert_false(file_exists(model_path));
    assert_int_equal(count_entries(g_tmp), 0); /* temporaries removed */
    return st;
}

static void *fifo_writer(void *arg) {
    FILE *f = fopen(arg, "w");
    if (f) {
        fputs("hello world\nthe cat\n", f);
        fclose(f);
    }
    return NULL;
}

static void test_train_errors(void **state) {
    (void)state;
    char empty[4200], emptygz[4200], blank[4200], missing[4200], trunc[4200], tiny[4200], mp[4200];
    snprintf(empty, sizeof empty, "%s/empty.txt", g_work);
    snprintf(emptygz, sizeof emptygz, "%s/empty.txt.gz", g_work);
    snprintf(blank, sizeof blank, "%s/blank.txt", g_work);
    snprintf(missing, sizeof missing, "%s/missing.txt", g_work);
    snprintf(trunc, sizeof trunc, "%s/truncated.gz", g_work);
    snprintf(tiny, sizeof tiny, "%s/tiny,corpus.txt", g_work); /* SentencePiece splits --input at commas */
    snprintf(mp, sizeof mp, "%s/should-not-exist.model", g_work);
    write_file(empty, "", 0);
    gzFile gz = gzopen(emptygz, "wb");
    assert_non_null(gz);
    gzclose(gz);
    /* blank and control-only lines: SentencePiece's unigram trainer would
     * abort the process on these */
    write_file(blank, "   \n\t\n \x01\x02\n\xe2\x80\x8b\n", 13);
    size_t glen;
    char *g = read_all(g_en.train_gz, &glen);
    write_file(trunc, g, glen / 2);
    free(g);
    write_file(tiny, "hello world\nthe cat\n", 20);

    SpmTrainOpts o;
    spm_train_opts_init(&o);
    const char *in[2] = {empty, NULL};
    o.inputs = in;
    o.n_inputs = 1;
    o.vocab_size = 100;

    train_fails(&o, SPM_ERR_TRAIN, empty, mp);
    in[0] = emptygz;
    train_fails(&o, SPM_ERR_TRAIN, "no line of text", mp);
    in[0] = blank;
    train_fails(&o, SPM_ERR_TRAIN, "no line of text", mp);
    o.model_type = SPM_BPE;
    train_fails(&o, SPM_ERR_TRAIN, "no line of text", mp);
    o.model_type = SPM_UNIGRAM;
    in[0] = g_work; /* a directory */
    train_fails(&o, SPM_ERR_IO, "directory", mp);
    in[0] = missing;
    train_fails(&o, SPM_ERR_IO, "No such file", mp);
    in[0] = trunc;
    train_fails(&o, SPM_ERR_IO, "truncated", mp);
    /* the second of two inputs is bad */
    in[0] = tiny, in[1] = g_work;
    o.n_inputs = 2;
    train_fails(&o, SPM_ERR_IO, g_work, mp);
    o.n_inputs = 1;
    /* vocabulary too large for the corpus: SentencePiece's own error */
    train_fails(&o, SPM_ERR_TRAIN, "Vocabulary size", mp);
    /* options */
    o.vocab_size = 0;
    train_fails(&o, SPM_ERR_ARG, "vocab", mp);
    o.vocab_size = 10;
    o.character_coverage = 0.5;
    train_fails(&o, SPM_ERR_ARG, "coverage", mp);
    o.character_coverage = 1.0;
    o.input_sentence_size = 50;
    train_fails(&o, SPM_ERR_ARG, "sentence size", mp);
    o.input_sentence_size = 0;
    o.seed = 0xFFFFFFFFu;
    train_fails(&o, SPM_ERR_ARG, "seed", mp);
    o.seed = 1;
    o.extra = "--bos_id=5";
    train_fails(&o, SPM_ERR_ARG, "bos_id", mp);
    o.extra = "--split_digits --split_digits=false";
    train_fails(&o, SPM_ERR_ARG, "twice", mp);
    o.extra = "--no_such_option=1";
    train_fails(&o, SPM_ERR_TRAIN, "no_such_option", mp);
    o.extra = "--max_sentence_length=abc";
    train_fails(&o, SPM_ERR_ARG, "max_sentence_length", mp);
    o.extra = NULL;
    o.n_inputs = 0;
    train_fails(&o, SPM_ERR_ARG, "input", mp);
    o.n_inputs = 1;
    in[0] = NULL;
    train_fails(&o, SPM_ERR_ARG, "input", mp);
    char *m;
    size_t n;
    assert_int_equal(spm_train(NULL, &m, &n, NULL, 0), SPM_ERR_ARG);

    /* a model path in a missing directory: nothing is written, nothing left */
    in[0] = tiny;
    o.vocab_size = 14;
    char badpath[4200];
    snprintf(badpath, sizeof badpath, "%s/no-such-dir/x.model", g_work);
    train_fails(&o, SPM_ERR_IO, badpath, badpath);

    /* a tiny corpus trains with extra options passed through */
    in[0] = tiny;
    o.vocab_size = 14;
    o.extra = "--split_digits=true  --max_sentence_length=2000";
    o.model_path = NULL;
    char err[1024];
    int st = spm_train(&o, &m, &n, err, sizeof err);
    if (st != SPM_OK) fail_msg("tiny corpus: %s", err);
    Spm *sp;
    assert_int_equal(spm_load_bytes(m, n, &sp, err, sizeof err), SPM_OK);
    assert_int_equal(spm_vocab_size(sp), 14);
    spm_free(sp);
    assert_non_null(memmem(m, n, tiny, strlen(tiny))); /* the model names the caller's file */
    free(m);
    assert_int_equal(count_entries(g_tmp), 0);

    /* a FIFO (not a regular file) is copied through a temporary file */
    char fifo[4200];
    snprintf(fifo, sizeof fifo, "%s/corpus.fifo", g_work);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, fifo_writer, fifo), 0);
    in[0] = fifo;
    o.extra = NULL;
    st = spm_train(&o, &m, &n, err, sizeof err);
    pthread_join(th, NULL);
    if (st != SPM_OK) fail_msg("fifo corpus: %s", err);
    assert_int_equal(spm_load_bytes(m, n, &sp, err, sizeof err), SPM_OK);
    assert_int_equal(spm_vocab_size(sp), 14);
    spm_free(sp);
    free(m);
    assert_int_equal(count_entries(g_tmp), 0);
}

static void test_text_errors(void **state) {
    (void)state;
    Spm *sp = load_or_fail(g_en.model_path);
    SpmIds ids = {0};
    const char *bad[] = {"a \xff b", "caf\xc3", "\xc0\xaf", "x\xed\xa0\x80y", "\xf4\x90\x80\x80", "\xe2\x82"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(spm_encode_ids(sp, bad[i], strlen(bad[i]), &ids), SPM_ERR_TEXT);
        assert_non_null(strstr(spm_last_error(sp), "UTF-8"));
        char **pieces;
        size_t n;
        assert_int_equal(spm_encode_pieces(sp, bad[i], strlen(bad[i]), &pieces, &n), SPM_ERR_TEXT);
        assert_null(pieces);
    }
    /* valid multi-byte text is fine: é, €, 𝄞 */
    const char *ok = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e";
    assert_int_equal(spm_encode_ids(sp, ok, strlen(ok), &ids), SPM_OK);
    assert_true(ids.n > 0);
    assert_int_equal(spm_encode_ids(sp, "two\nlines", 9, &ids), SPM_ERR_TEXT);
    assert_non_null(strstr(spm_last_error(sp), "newline"));
    assert_int_equal(spm_encode_ids(sp, "nul\0byte", 8, &ids), SPM_ERR_TEXT);
    assert_non_null(strstr(spm_last_error(sp), "NUL"));
    assert_int_equal(spm_encode_ids(sp, NULL, 3, &ids), SPM_ERR_ARG);
    assert_int_equal(spm_encode_ids(sp, "a", 1, NULL), SPM_ERR_ARG);
    assert_int_equal(spm_encode_ids(NULL, "a", 1, &ids), SPM_ERR_ARG);
    assert_non_null(strstr(spm_last_error(NULL), "NULL"));

    int32_t out_of_range[] = {5, 4000};
    char *text = (char *)0x1;
    assert_int_equal(spm_decode_ids(sp, out_of_range, 2, &text, NULL), SPM_ERR_RANGE);
    assert_null(text);
    assert_non_null(strstr(spm_last_error(sp), "4000"));
    int32_t neg[] = {-1};
    assert_int_equal(spm_decode_ids(sp, neg, 1, &text, NULL), SPM_ERR_RANGE);
    char p[4];
    assert_int_equal(spm_id_to_piece(sp, 4000, p, sizeof p), SPM_ERR_RANGE);
    assert_int_equal(spm_id_to_piece(sp, -3, p, sizeof p), SPM_ERR_RANGE);
    assert_int_equal(spm_id_to_piece(sp, 0, p, sizeof p), SPM_ERR_RANGE); /* "<unk>" needs 6 bytes */
    assert_non_null(strstr(spm_last_error(sp), "needs 6 bytes"));
    assert_int_equal(spm_id_to_piece(sp, 1, p, sizeof p), SPM_OK);
    assert_string_equal(p, "<s>");
    assert_int_equal(spm_vocab_size(NULL), -1);
    assert_int_equal(spm_unk_id(NULL), -1);
    assert_false(spm_is_control(NULL, 1));
    assert_string_equal(spm_status_name(SPM_ERR_TEXT), "invalid text");
    spm_ids_free(&ids);
    spm_free(sp);
}

/* One handle, several threads encoding at once: same ids as one thread. */
typedef struct {
    Spm *sp;
    const Lines *val;
    const char **expect;
    int start, errors;
} Worker;

static void *encode_worker(void *arg) {
    Worker *w = arg;
    SpmIds ids = {0};
    static _Thread_local char got[1 << 16];
    for (size_t k = 0; k < w->val->n; k++) {
        size_t i = (k + (size_t)w->start * 97) % w->val->n;
        const char *line = w->val->line[i];
        if (spm_encode_ids(w->sp, line, strlen(line), &ids) != SPM_OK) {
            w->errors++;
            continue;
        }
        size_t o = 0;
        got[0] = '\0';
        for (size_t j = 0; j < ids.n; j++) o += (size_t)snprintf(got + o, sizeof got - o, " %d", ids.ids[j]);
        if (strcmp(got, w->expect[i]) != 0) w->errors++;
    }
    spm_ids_free(&ids);
    return NULL;
}

static void test_concurrent_encode(void **state) {
    (void)state;
    Spm *sp = load_or_fail(g_es.model_path);
    const Lines *val = &g_es.val;
    const char **expect = calloc(val->n, sizeof *expect);
    assert_non_null(expect);
    SpmIds ids = {0};
    for (size_t i = 0; i < val->n; i++) {
        assert_int_equal(spm_encode_ids(sp, val->line[i], strlen(val->line[i]), &ids), SPM_OK);
        char *s = malloc(ids.n * 8 + 1);
        assert_non_null(s);
        size_t o = 0;
        s[0] = '\0';
        for (size_t j = 0; j < ids.n; j++) o += (size_t)sprintf(s + o, " %d", ids.ids[j]);
        expect[i] = s;
    }
    enum { NT = 4 };
    pthread_t th[NT];
    Worker w[NT];
    for (int t = 0; t < NT; t++) {
        w[t] = (Worker){sp, val, expect, t, 0};
        assert_int_equal(pthread_create(&th[t], NULL, encode_worker, &w[t]), 0);
    }
    for (int t = 0; t < NT; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(w[t].errors, 0);
    }
    for (size_t i = 0; i < val->n; i++) free((char *)expect[i]);
    free(expect);
    spm_ids_free(&ids);
    spm_free(sp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unigram_en_matches_cli),
        cmocka_unit_test(test_bpe_es_matches_cli),
        cmocka_unit_test(test_train_deterministic_quiet),
        cmocka_unit_test(test_load_bytes_equals_file),
        cmocka_unit_test(test_special_ids_and_pieces),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_train_errors),
        cmocka_unit_test(test_text_errors),
        cmocka_unit_test(test_concurrent_encode),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
