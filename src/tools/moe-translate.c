/* moe-translate: translate sentences, one per line, with a model written by
 * moe-train --type s2s.
 *   moe-translate -m model.bin [-i FILE] [-o FILE] [-b 12] [-n 0.2] [--n-best]
 * Reads stdin (or -i), writes stdout (or -o) in input order, one line per input
 * line (an empty line gives an empty line); with --n-best, Moses-style
 * "id ||| translation ||| score" lines for the whole beam. Each batch's lines
 * are flushed as soon as it is translated. From a pipe or a terminal a batch
 * is what has arrived, up to --mini-batch lines: a line is translated as soon
 * as no further input is waiting, so a pipeline or a server wrapper gets every
 * answer at once; a regular file is read in full batches.
 * Exit codes: 0 ok; 1 runtime failure; 2 usage. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/session.h"
#include "core/check.h"
#include "core/log.h"
#include "core/threads.h"
#include "decode/translate.h"
#include "model/model_file.h"
#include "model/s2s.h"
#include "tools/backends.h"

static FILE *out_open(const char *path) {
    if (!strcmp(path, "-")) return stdout;
    FILE *f = fopen(path, "w");
    if (!f) FATAL(EXIT_RUNTIME, "--output: cannot write '%s'", path);
    return f;
}

/* Lines read from a file descriptor through our own buffer, so that we know
 * whether a further line is already here (buffered, or waiting in a pipe). */
typedef struct {
    int fd;
    int stream; /* a pipe, socket or terminal: input arrives over time */
    char *buf;
    size_t pos, len, cap;
    int eof, err;
} LineIn;

static void linein_fill(LineIn *r) {
    if (r->pos > 0) {
        memmove(r->buf, r->buf + r->pos, r->len - r->pos);
        r->len -= r->pos;
        r->pos = 0;
    }
    if (r->len == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 1 << 16;
        r->buf = xrealloc(r->buf, r->cap + 1, "input");
    }
    ssize_t got;
    do got = read(r->fd, r->buf + r->len, r->cap - r->len);
    while (got < 0 && errno == EINTR);
    if (got < 0) r->err = errno;
    if (got <= 0) r->eof = 1;
    else r->len += (size_t)got;
}

static char *linein_newline(const LineIn *r) {
    return r->len > r->pos ? memchr(r->buf + r->pos, '\n', r->len - r->pos) : NULL;
}

/* The next line (its '\n' removed, NUL-terminated in place) and its length;
 * -1 at the end of the input. A last line without '\n' counts. */
static ssize_t linein_next(LineIn *r, char **line) {
    for (;;) {
        char *nl = linein_newline(r);
        if (nl || (r->eof && r->pos < r->len)) {
            char *s = r->buf + r->pos;
            size_t n = nl ? (size_t)(nl - s) : r->len - r->pos;
            s[n] = 0; /* the buffer has one spare byte past cap */
            r->pos += n + (nl ? 1 : 0);
            *line = s;
            return (ssize_t)n;
        }
        if (r->eof) return -1;
        linein_fill(r);
    }
}

/* Is a further line here without waiting: a whole line buffered, the end of
 * the input reached, or (a regular file: always) bytes ready to read. */
static int linein_ready(LineIn *r) {
    if (!r->stream || r->eof || linein_newline(r)) return 1;
    struct pollfd p = {.fd = r->fd, .events = POLLIN};
    int rc;
    do rc = poll(&p, 1, 0);
    while (rc < 0 && errno == EINTR);
    return rc != 0; /* an error: let read() report it */
}

static void emit(FILE *f, const TransOut *o, int64_t id, int nbest) {
    if (!nbest) {
        fprintf(f, "%s\n", o->text[0]);
        return;
    }
    for (int h = 0; h < o->n; h++) fprintf(f, "%lld ||| %s ||| %.6f\n", (long long)id, o->text[h], o->score[h]);
}

int main(int argc, char **argv) {
    threads_wait_policy(argv); /* may restart the program (core/threads.h) */
    backends_register_builtin();
    Config *cfg = options_init(TOOL_TRANSLATE, argc, argv);
    if (session_info(cfg, "moe-translate")) {
        cfg_free(cfg); /* LeakSanitizer: --version, --build-info */
        moe_check_stdout();
        return 0;
    }
    session_logging(cfg);
    Backend *be = session_backend(cfg);
    ModelFile f;
    model_file_load(&f, cfg_str(cfg, "model"), &s2s_model_ops, be);
    const char *ipath = cfg_str(cfg, "input");
    int infd = strcmp(ipath, "-") ? open(ipath, O_RDONLY | O_CLOEXEC) : STDIN_FILENO;
    if (infd < 0) FATAL(EXIT_RUNTIME, "--input: cannot open '%s': %s", ipath, strerror(errno));
    struct stat ist;
    LineIn in = {.fd = infd, .stream = fstat(infd, &ist) != 0 || !S_ISREG(ist.st_mode)};
    FILE *out = out_open(cfg_str(cfg, "output"));
    Arena arena;
    arena_init(&arena, be, 0, "activations");
    Ctx ctx = {.be = be, .arena = &arena, .ps = &f.ps, .train = 0, .seed = 1};
    Translator tl = {
        .ctx = &ctx, .m = f.model.net, .spm = f.vocab, .src_eos = 1, .where = strcmp(ipath, "-") ? ipath : "stdin"};
    tl.opts = beam_opts_from_config(cfg);
    int nbest = cfg_bool(cfg, "n-best");
    if (nbest) tl.opts.nbest = tl.opts.beam_size;
    int B = (int)cfg_int(cfg, "mini-batch");
    if (B < 1) FATAL(EXIT_USAGE, "--mini-batch must be at least 1");
    char **lines = xcalloc((size_t)B, sizeof(char *), "input");
    TransOut *res = xcalloc((size_t)B, sizeof *res, "output");
    int64_t done = 0;
    for (int eof = 0; !eof;) {
        int n = 0;
        /* from a pipe, what has arrived is the batch: never wait with lines in hand */
        while (n < B && (n == 0 || linein_ready(&in))) {
            char *buf;
            ssize_t len = linein_next(&in, &buf);
            if (len < 0) {
                eof = 1;
                break;
            }
            if (len && buf[len - 1] == '\r') buf[--len] = 0;
            if (memchr(buf, 0, (size_t)len)) {
                log_warn("%s:%lld: NUL byte; translated as an empty line", tl.where, (long long)(done + n + 1));
                buf[0] = 0;
            }
            lines[n++] = xstrdup(buf);
        }
        if (!n) break;
        translate_lines(&tl, (const char *const *)lines, n, done + 1, res);
        for (int i = 0; i < n; i++) {
            emit(out, &res[i], done + i, nbest);
            free(lines[i]);
        }
        translate_out_free(res, n);
        done += n;
        /* one flush per batch: each line is out as soon as it is done */
        if (fflush(out) || ferror(out)) FATAL(EXIT_RUNTIME, "writing the translations failed: %s", strerror(errno));
    }
    if (in.err) FATAL(EXIT_RUNTIME, "reading '%s' failed: %s", tl.where, strerror(in.err));
    if (fflush(out) || (out != stdout && fclose(out))) FATAL(EXIT_RUNTIME, "writing the translations failed");
    free(in.buf);
    free(lines);
    free(res);
    if (infd != STDIN_FILENO) close(infd);
    arena_destroy(&arena);
    model_file_free(&f);
    backend_destroy(be);
    cfg_free(cfg);
    return 0;
}
