/* tests/data lookup (testdata.h). */
#include "testdata.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

static char g_dir[4096];

const char *testdata_dir(void) {
    if (g_dir[0]) return g_dir;
    const char *env = getenv("MOE_TESTDATA");
    if (env && *env) {
        snprintf(g_dir, sizeof g_dir, "%s", env);
        return g_dir;
    }
    if (access("tests/data/README.md", R_OK) == 0) {
        snprintf(g_dir, sizeof g_dir, "tests/data");
        return g_dir;
    }
    /* BUILD/tests/{unit,grad}/NAME -> BUILD/../tests/data */
    char exe[2048];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) *slash = '\0';
        snprintf(g_dir, sizeof g_dir, "%s/../../../tests/data", exe);
    } else {
        snprintf(g_dir, sizeof g_dir, "tests/data");
    }
    return g_dir;
}

const char *testdata_path(const char *rel) {
    static char buf[16][4608];
    static int k;
    char *p = buf[k++ & 15];
    snprintf(p, sizeof buf[0], "%s/%s", testdata_dir(), rel);
    return p;
}

char *testdata_slurp(const char *rel, size_t *len) {
    gzFile f = gzopen(testdata_path(rel), "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    int k;
    while (buf && (k = gzread(f, buf + n, (unsigned)(cap - n - 1))) > 0) {
        n += (size_t)k;
        if (cap - n < 2) {
            char *b = realloc(buf, cap *= 2);
            if (!b) free(buf);
            buf = b;
        }
    }
    int bad = !buf || k < 0;
    gzclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

int testdata_plain_copy(const char *rel, const char *dst) {
    size_t n;
    char *text = testdata_slurp(rel, &n);
    if (!text) {
        fprintf(stderr, "cannot read %s\n", testdata_path(rel));
        return -1;
    }
    FILE *f = fopen(dst, "wb");
    int ok = f && fwrite(text, 1, n, f) == n;
    if (f && fclose(f) != 0) ok = 0;
    free(text);
    if (!ok) fprintf(stderr, "cannot write %s\n", dst);
    return ok ? 0 : -1;
}
