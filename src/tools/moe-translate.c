/* moe-translate: translate sentences, one per line, with a model written by
 * moe-train --type s2s.
 *   moe-translate -m model.bin [-i FILE] [-o FILE] [-b 12] [-n 0.2] [--n-best]
 * Reads stdin (or -i), writes stdout (or -o) in input order, one line per input
 * line (an empty line gives an empty line); with --n-best, Moses-style
 * "id ||| translation ||| score" lines for the whole beam. When the input is
 * a terminal every line is translated and flushed at once.
 * Exit codes: 0 ok; 1 runtime failure; 2 usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/check.h"
#include "core/log.h"
#include "core/threads.h"
#include "decode/translate.h"
#include "model/s2s_file.h"
#include "train/session.h"

static FILE *out_open(const char *path) {
    if (!strcmp(path, "-")) return stdout;
    FILE *f = fopen(path, "w");
    if (!f) FATAL(EXIT_RUNTIME, "--output: cannot write '%s'", path);
    return f;
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
    Config *cfg = options_init(TOOL_TRANSLATE, argc, argv);
    if (session_info(cfg, "moe-translate")) {
        cfg_free(cfg); /* LeakSanitizer: --version, --build-info */
        return 0;
    }
    session_logging(cfg);
    Backend *be = session_backend(cfg);
    S2sFile f;
    s2s_file_load(&f, cfg_str(cfg, "model"), be);
    const char *ipath = cfg_str(cfg, "input");
    FILE *in = strcmp(ipath, "-") ? fopen(ipath, "rb") : stdin;
    if (!in) FATAL(EXIT_RUNTIME, "--input: cannot open '%s'", ipath);
    FILE *out = out_open(cfg_str(cfg, "output"));
    Arena arena;
    arena_init(&arena, be, 0, "activations");
    Ctx ctx = {.be = be, .arena = &arena, .ps = &f.ps, .train = 0, .seed = 1};
    Translator tl = {.ctx = &ctx, .m = &f.m, .spm = f.spm, .src_eos = 1, .where = strcmp(ipath, "-") ? ipath : "stdin"};
    tl.opts = beam_opts_default();
    tl.opts.beam_size = (int)cfg_int(cfg, "beam-size");
    tl.opts.alpha = (float)cfg_float(cfg, "normalize");
    tl.opts.beta = (float)cfg_float(cfg, "coverage-penalty");
    tl.opts.max_len_factor = (float)cfg_float(cfg, "max-length-factor");
    int nbest = cfg_bool(cfg, "n-best");
    tl.opts.nbest = nbest ? tl.opts.beam_size : 1;
    char err[256];
    if (beam_opts_check(&tl.opts, err, sizeof err)) FATAL(EXIT_USAGE, "%s", err);
    int interactive = isatty(fileno(in));
    int B = interactive ? 1 : (int)cfg_int(cfg, "mini-batch");
    if (B < 1) FATAL(EXIT_USAGE, "--mini-batch must be at least 1");
    char **lines = xcalloc((size_t)B, sizeof(char *), "input");
    TransOut *res = xcalloc((size_t)B, sizeof *res, "output");
    char *buf = NULL;
    size_t cap = 0;
    int64_t done = 0;
    for (int eof = 0; !eof;) {
        int n = 0;
        while (n < B) {
            ssize_t len = getline(&buf, &cap, in);
            if (len < 0) {
                eof = 1;
                break;
            }
            if (len && buf[len - 1] == '\n') buf[--len] = 0;
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
        if (interactive || ferror(out)) fflush(out);
        if (ferror(out)) FATAL(EXIT_RUNTIME, "writing the translations failed");
    }
    if (ferror(in)) FATAL(EXIT_RUNTIME, "reading '%s' failed", tl.where);
    if (fflush(out) || (out != stdout && fclose(out))) FATAL(EXIT_RUNTIME, "writing the translations failed");
    free(buf);
    free(lines);
    free(res);
    if (in != stdin) fclose(in);
    arena_destroy(&arena);
    s2s_file_free(&f);
    backend_destroy(be);
    cfg_free(cfg);
    return 0;
}
