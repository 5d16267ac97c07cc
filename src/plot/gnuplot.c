/* Running gnuplot on a script (see gnuplot.h). */
#include "plot/gnuplot.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/check.h"

extern char **environ;

void pbuf_printf(PlotBuf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->n;
        int w = vsnprintf(b->s ? b->s + b->n : NULL, room, fmt, ap);
        va_end(ap);
        CHECK(w >= 0, "gnuplot script: formatting failed");
        if ((size_t)w < room) {
            b->n += (size_t)w;
            return;
        }
        b->cap = b->cap * 2 + (size_t)w + 4096;
        b->s = xrealloc(b->s, b->cap, "gnuplot script");
    }
}

void pbuf_quoted(PlotBuf *b, const char *s) {
    pbuf_printf(b, "\"");
    for (const char *p = s; *p; p++) {
        if (*p == '"' || *p == '\\')
            pbuf_printf(b, "\\%c", *p);
        else if ((unsigned char)*p < 0x20)
            pbuf_printf(b, " ");
        else
            pbuf_printf(b, "%c", *p);
    }
    pbuf_printf(b, "\"");
}

void pbuf_free(PlotBuf *b) {
    free(b->s);
    *b = (PlotBuf){0};
}

int gnuplot_find(char *path, size_t n) {
    const char *env = getenv("PATH");
    char *dirs = xstrdup(env && *env ? env : "/usr/local/bin:/usr/bin:/bin");
    int found = -1;
    for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(path, n, "%s/gnuplot", *d ? d : ".");
        struct stat st;
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0) {
            found = 0;
            break;
        }
    }
    free(dirs);
    return found;
}

/* gnuplot's error: the line naming the script line, else the first one. */
static void first_error(const char *text, char *err, size_t nerr) {
    const char *best = NULL, *first = NULL;
    for (const char *p = text; *p;) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        int blank = 1;
        for (size_t i = 0; i < len; i++) blank &= p[i] == ' ' || p[i] == '^' || p[i] == '\t';
        if (!blank && !first) first = p;
        if (!blank && !best && memmem(p, len, " line ", 6)) best = p;
        p += len + (e ? 1 : 0);
    }
    const char *s = best ? best : first ? first : "no message";
    size_t len = strcspn(s, "\n");
    snprintf(err, nerr, "%.*s", (int)(len < 400 ? len : 400), s);
}

int gnuplot_run(const char *gnuplot, const char *dir, const char *script_name, const PlotBuf *script, int keep,
                void (*warn)(void *ctx, const char *line), void *ctx, char *err, size_t nerr) {
    char script_path[4200];
    snprintf(script_path, sizeof script_path, "%s/%s", dir, script_name);
    FILE *sf = fopen(script_path, "w");
    if (!sf) {
        snprintf(err, nerr, "cannot write '%s': %s", script_path, strerror(errno));
        return -1;
    }
    int werr = script->n && fwrite(script->s, 1, script->n, sf) != script->n;
    if (fclose(sf) != 0 || werr) {
        snprintf(err, nerr, "cannot write '%s': %s", script_path, strerror(errno));
        unlink(script_path);
        return -1;
    }
    FILE *errf = tmpfile();
    if (!errf) {
        snprintf(err, nerr, "cannot create a temporary file: %s", strerror(errno));
        if (!keep) unlink(script_path);
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, fileno(errf), 2);
    posix_spawn_file_actions_addchdir_np(&fa, dir); /* the script names its figures relative to it */
    char *argv[] = {(char *)"gnuplot", (char *)script_name, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, gnuplot, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    int status = 0;
    if (rc == 0) {
        while (waitpid(pid, &status, 0) < 0)
            if (errno != EINTR) {
                rc = errno;
                break;
            }
    }
    /* what gnuplot said */
    char *text = NULL;
    long size = 0;
    if (fseek(errf, 0, SEEK_END) == 0 && (size = ftell(errf)) > 0 && fseek(errf, 0, SEEK_SET) == 0) {
        text = xmalloc((size_t)size + 1, "gnuplot messages");
        size = (long)fread(text, 1, (size_t)size, errf);
        text[size] = 0;
    }
    fclose(errf);
    if (!keep) unlink(script_path);
    int ok = rc == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok) {
        if (rc)
            snprintf(err, nerr, "cannot run %s: %s", gnuplot, strerror(rc));
        else if (text && *text)
            first_error(text, err, nerr);
        else if (WIFSIGNALED(status))
            snprintf(err, nerr, "%s was killed by signal %d", gnuplot, WTERMSIG(status));
        else
            snprintf(err, nerr, "%s exited with status %d", gnuplot, WEXITSTATUS(status));
    } else if (text && warn) {
        for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
            if (strstr(l, "arning")) warn(ctx, l);
    }
    free(text);
    return ok ? 0 : -1;
}
