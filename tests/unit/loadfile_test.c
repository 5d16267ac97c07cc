/* The expert-load log (src/io/loadfile): round trip, resume without duplicates or
 * gaps, a truncated last record, corrupt records and headers, a mismatched header. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/loadfile.h"

typedef struct {
    char dir[256];
    char path[320];
} fx;

static int setup(void **state) {
    fx *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/loadfile_test.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir)) return -1;
    snprintf(f->path, sizeof f->path, "%s/m.load", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx *f = *state;
    unlink(f->path);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* a flat layer of 4 experts (top-2) and a hierarchical one of 2 groups of 3 */
static const LoadLayer LAYERS[2] = {{"lm.moe0", 4, 0, 2, LOADFILE_NOISY_TOPK}, {"lm.moe1", 6, 2, 2, LOADFILE_NOISY_TOPK}};
#define NV (5 + 9) /* values per record: rows + 4 experts, rows + 2 groups + 6 experts */

/* consistent counts of update s: 10 s rows per layer */
static void counts(int64_t s, int64_t *v) {
    int64_t rows = 10 * s;
    v[0] = rows;
    int64_t e0[4] = {rows, rows / 2, rows / 2, 0}; /* sum 2 rows */
    memcpy(v + 1, e0, sizeof e0);
    v[5] = rows;
    v[6] = rows; /* groups: sum 2 rows */
    v[7] = rows;
    int64_t e1[6] = {rows, rows, 0, 2 * rows, 0, 0}; /* group g's experts: 2 x its count */
    memcpy(v + 8, e1, sizeof e1);
}

static void write_steps(const char *path, int64_t resume, const int64_t *steps, int n) {
    LoadFile f;
    char info[512], err[512];
    assert_int_equal(loadfile_open(&f, path, LAYERS, 2, resume, info, sizeof info, err, sizeof err), 0);
    for (int i = 0; i < n; i++) {
        int64_t v[NV];
        counts(steps[i], v);
        assert_int_equal(loadfile_append(&f, steps[i], v, err, sizeof err), 0);
    }
    loadfile_close(&f);
}

static void check_records(const char *path, const int64_t *steps, int n) {
    LoadData d;
    char err[512];
    if (loadfile_read(path, &d, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(d.layers, 2);
    assert_string_equal(d.layer[1].name, "lm.moe1");
    assert_int_equal(d.layer[1].experts, 6);
    assert_int_equal(d.layer[1].groups, 2);
    assert_int_equal(d.layer[1].k, 2);
    assert_int_equal(d.records, n);
    assert_int_equal(d.tail_bytes, 0);
    for (int r = 0; r < n; r++) {
        int64_t v[NV];
        counts(steps[r], v);
        assert_int_equal(d.step[r], steps[r]);
        assert_int_equal(d.rows[r * 2], v[0]);
        assert_int_equal(d.rows[r * 2 + 1], v[5]);
        for (int j = 0; j < 4; j++) assert_int_equal(d.count[0][r * 4 + j], v[1 + j]);
        for (int j = 0; j < 8; j++) assert_int_equal(d.count[1][r * 8 + j], v[6 + j]);
    }
    loadfile_data_free(&d);
}

static off_t file_size(const char *p) {
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    return st.st_size;
}

static void test_round_trip(void **state) {
    fx *f = *state;
    int64_t steps[] = {5, 10, 15};
    write_steps(f->path, -1, steps, 3);
    assert_int_equal(file_size(f->path), (off_t)(loadfile_header_bytes(2) + 3 * loadfile_record_bytes(LAYERS, 2)));
    assert_int_equal(loadfile_record_bytes(LAYERS, 2), 12 + (8 + 16) + (8 + 32));
    check_records(f->path, steps, 3);
    assert_int_equal(loadfile_sniff(f->path), 1);
    /* a new run replaces the file */
    write_steps(f->path, -1, steps + 2, 1);
    check_records(f->path, steps + 2, 1);
}

/* A resumed run keeps the records up to its update and continues after them. */
static void test_resume(void **state) {
    fx *f = *state;
    int64_t first[] = {5, 10, 15, 20}; /* killed after 20; the checkpoint was at 10 */
    write_steps(f->path, -1, first, 4);
    LoadFile lf;
    char info[512], err[512];
    assert_int_equal(loadfile_open(&lf, f->path, LAYERS, 2, 10, info, sizeof info, err, sizeof err), 0);
    assert_non_null(strstr(info, "2 records kept"));
    assert_non_null(strstr(info, "dropped the records after it"));
    assert_int_equal(lf.last_step, 10);
    int64_t v[NV];
    counts(10, v);
    assert_int_equal(loadfile_append(&lf, 10, v, err, sizeof err), -1); /* no duplicate */
    assert_non_null(strstr(err, "update 10 after update 10"));
    loadfile_close(&lf);
    int64_t more[] = {15, 20, 25};
    write_steps(f->path, 10, more, 3);
    int64_t all[] = {5, 10, 15, 20, 25};
    check_records(f->path, all, 5);
    /* resuming at the last record keeps everything; a missing file is created */
    write_steps(f->path, 25, NULL, 0);
    check_records(f->path, all, 5);
    unlink(f->path);
    write_steps(f->path, 25, all + 4, 0);
    check_records(f->path, all, 0);
}

static void test_truncated(void **state) {
    fx *f = *state;
    int64_t steps[] = {5, 10, 15};
    write_steps(f->path, -1, steps, 3);
    off_t full = file_size(f->path);
    assert_int_equal(truncate(f->path, full - 7), 0);
    LoadData d;
    char err[512], info[512];
    assert_int_equal(loadfile_read(f->path, &d, err, sizeof err), 0);
    assert_int_equal(d.records, 2);
    assert_int_equal(d.tail_bytes, loadfile_record_bytes(LAYERS, 2) - 7);
    loadfile_data_free(&d);
    /* the resumed run cuts the partial record off and writes it again */
    LoadFile lf;
    assert_int_equal(loadfile_open(&lf, f->path, LAYERS, 2, 10, info, sizeof info, err, sizeof err), 0);
    assert_non_null(strstr(info, "a truncated last record"));
    loadfile_close(&lf);
    write_steps(f->path, 10, steps + 2, 1);
    check_records(f->path, steps, 3);
    assert_int_equal(file_size(f->path), full);
}

static void flip(const char *path, long off) {
    FILE *fp = fopen(path, "r+b");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, off, SEEK_SET), 0);
    int c = fgetc(fp);
    assert_int_equal(fseek(fp, off, SEEK_SET), 0);
    fputc(c ^ 0x10, fp);
    fclose(fp);
}

static void test_corrupt(void **state) {
    fx *f = *state;
    int64_t steps[] = {5, 10, 15};
    write_steps(f->path, -1, steps, 3);
    size_t hb = loadfile_header_bytes(2), rb = loadfile_record_bytes(LAYERS, 2);
    LoadData d;
    char err[512], info[512];
    flip(f->path, (long)(hb + rb + 20)); /* a count of record 2 */
    assert_int_equal(loadfile_read(f->path, &d, err, sizeof err), -1);
    assert_non_null(strstr(err, "record 2"));
    assert_non_null(strstr(err, "CRC"));
    assert_non_null(strstr(err, f->path));
    /* a resumed run keeps what precedes the damage */
    LoadFile lf;
    assert_int_equal(loadfile_open(&lf, f->path, LAYERS, 2, 15, info, sizeof info, err, sizeof err), 0);
    assert_non_null(strstr(info, "a corrupt record"));
    assert_int_equal(lf.last_step, 5);
    loadfile_close(&lf);
    check_records(f->path, steps, 1);
    /* header damage */
    write_steps(f->path, -1, steps, 3);
    flip(f->path, 40); /* a layer name */
    assert_int_equal(loadfile_read(f->path, &d, err, sizeof err), -1);
    assert_non_null(strstr(err, "corrupt header"));
    write_steps(f->path, -1, steps, 3);
    flip(f->path, 8); /* the version */
    assert_int_equal(loadfile_read(f->path, &d, err, sizeof err), -1);
    assert_non_null(strstr(err, "version"));
    write_steps(f->path, -1, steps, 3);
    flip(f->path, 0);
    assert_int_equal(loadfile_read(f->path, &d, err, sizeof err), -1);
    assert_non_null(strstr(err, "not an expert-load log"));
    assert_int_equal(loadfile_sniff(f->path), 0);
    /* empty, too short */
    FILE *fp = fopen(f->path, "w");
    fclose(fp);
    assert_int_equal(loadfile_read(f->path, &d, err, sizeof err), -1);
    assert_non_null(strstr(err, "is empty"));
    write_steps(f->path, -1, steps, 0);
    assert_int_equal(truncate(f->path, 20), 0);
    assert_int_equal(loadfile_read(f->path, &d, err, sizeof err), -1);
    assert_non_null(strstr(err, "truncated header"));
    assert_int_equal(loadfile_read("/nonexistent/m.load", &d, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot open '/nonexistent/m.load'"));
}

/* Updates that do not increase are damage, even with sound CRCs. */
static void test_order(void **state) {
    fx *f = *state;
    int64_t steps[] = {5, 10};
    write_steps(f->path, -1, steps, 2);
    /* swap the two records */
    size_t hb = loadfile_header_bytes(2), rb = loadfile_record_bytes(LAYERS, 2);
    FILE *fp = fopen(f->path, "r+b");
    char *a = malloc(rb), *b = malloc(rb);
    assert_int_equal(fseek(fp, (long)hb, SEEK_SET), 0);
    assert_int_equal(fread(a, 1, rb, fp), rb);
    assert_int_equal(fread(b, 1, rb, fp), rb);
    assert_int_equal(fseek(fp, (long)hb, SEEK_SET), 0);
    fwrite(b, 1, rb, fp);
    fwrite(a, 1, rb, fp);
    fclose(fp);
    free(a);
    free(b);
    LoadData d;
    char err[512];
    assert_int_equal(loadfile_read(f->path, &d, err, sizeof err), -1);
    assert_non_null(strstr(err, "record 2 is for update 5, after update 10"));
}

static void test_other_layers(void **state) {
    fx *f = *state;
    int64_t steps[] = {5};
    write_steps(f->path, -1, steps, 1);
    LoadLayer other[2];
    memcpy(other, LAYERS, sizeof other);
    other[1].groups = 3;
    LoadFile lf;
    char info[512], err[1024];
    assert_int_equal(loadfile_open(&lf, f->path, other, 2, 5, info, sizeof info, err, sizeof err), -1);
    assert_non_null(strstr(err, "records other MoE layers"));
    assert_non_null(strstr(err, "6 experts in 2 groups"));
    assert_non_null(strstr(err, "6 experts in 3 groups"));
    check_records(f->path, steps, 1); /* untouched */
    /* a count beyond 32 bits is refused, not wrapped */
    assert_int_equal(loadfile_open(&lf, f->path, LAYERS, 2, -1, info, sizeof info, err, sizeof err), 0);
    int64_t v[NV];
    counts(1, v);
    v[2] = (int64_t)1 << 33;
    assert_int_equal(loadfile_append(&lf, 1, v, err, sizeof err), -1);
    assert_non_null(strstr(err, "32 bits"));
    loadfile_close(&lf);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_layers, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
