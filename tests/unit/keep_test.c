/* The CUDA backend's host-side bookkeeping (cuda/keep.h), which needs no
 * GPU: the bytes a strided view spans, what a write makes the caches forget,
 * which kept bf16 copy is dropped for room, and where the pinned upload
 * ring puts a piece and which earlier pieces it must wait for (including
 * the wrap-around, where the oldest busy piece does not overlap but a newer
 * one does). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdint.h>
#include <string.h>

#include "../../cuda/keep.h"

static void test_extent(void **st) {
    (void)st;
    uintptr_t lo, hi;
    char *p = (char *)0x10000;
    keep_extent(p, 1, 3, 4, 4, 12, 4, &lo, &hi); /* contiguous 3 x 4 f32 */
    assert_true(lo == (uintptr_t)p && hi == (uintptr_t)p + 48);
    keep_extent(p, 2, 3, 4, 7, 30, 4, &lo, &hi); /* 2 matrices, row stride 7, batch stride 30 */
    assert_true(hi - lo == (uintptr_t)(30 + 2 * 7 + 4) * 4);
    keep_extent(p, 1, 0, 4, 4, 0, 4, &lo, &hi); /* empty */
    assert_true(lo == hi);
    keep_extent(NULL, 1, 3, 4, 4, 12, 4, &lo, &hi);
    assert_true(lo == hi);
}

static void test_forget(void **st) {
    (void)st;
    KeepB16 b[2];
    KeepSeen s[2];
    KeepOffs o[2];
    memset(b, 0, sizeof b);
    memset(s, 0, sizeof s);
    memset(o, 0, sizeof o);
    b[0] = (KeepB16){.src = (void *)100, .lo = 100, .hi = 200, .valid = 1};
    b[1] = (KeepB16){.src = (void *)200, .lo = 200, .hi = 300, .valid = 1};
    s[0] = (KeepSeen){.src = (void *)400, .lo = 400, .hi = 480};
    o[0] = (KeepOffs){.p = (void *)500, .lo = 500, .hi = 540};
    o[1] = (KeepOffs){.p = (void *)540, .lo = 540, .hi = 580};
    keep_forget(200, 200, b, 2, s, 2, o, 2); /* empty write */
    assert_int_equal(b[0].valid + b[1].valid, 2);
    keep_forget(150, 201, b, 2, s, 2, o, 2); /* touches both copies' sources */
    assert_int_equal(b[0].valid, 0);
    assert_int_equal(b[1].valid, 0);
    b[0].valid = b[1].valid = 1;
    keep_forget(300, 400, b, 2, s, 2, o, 2); /* adjacent on both sides: nothing */
    assert_int_equal(b[1].valid, 1);
    assert_non_null(s[0].src);
    keep_forget(479, 480, b, 2, s, 2, o, 2);
    assert_null(s[0].src);
    keep_forget(539, 541, b, 2, s, 2, o, 2); /* one byte into each offsets vector */
    assert_null(o[0].p);
    assert_null(o[1].p);
}

static void test_victim(void **st) {
    (void)st;
    KeepB16 b[4];
    memset(b, 0, sizeof b);
    b[0] = (KeepB16){.valid = 1, .used = 5};
    b[1] = (KeepB16){.valid = 0, .used = 9};
    b[2] = (KeepB16){.valid = 1, .used = 2};
    b[3] = (KeepB16){.valid = 0, .used = 20};
    assert_int_equal(keep_victim(b, 4, 100), 1);  /* stale first, the older of the two */
    assert_int_equal(keep_victim(b, 4, 10), 1);
    assert_int_equal(keep_victim(b, 4, 9), 2);    /* the stale ones are in use now: the LRU valid one */
    assert_int_equal(keep_victim(b, 4, 2), -1);   /* everything in use */
    KeepOffs o[3];
    memset(o, 0, sizeof o);
    o[0] = (KeepOffs){.p = (void *)1, .used = 7};
    o[1] = (KeepOffs){.p = (void *)2, .used = 3};
    o[2] = (KeepOffs){.p = (void *)3, .used = 5};
    assert_int_equal(keep_offs_slot(o, 3), 1);
    o[2].p = NULL;
    assert_int_equal(keep_offs_slot(o, 3), 2);
}

static void test_ring(void **st) {
    (void)st;
    enum { CAP = 4 };
    KeepSpan busy[CAP];
    int wait;
    /* empty ring: at the head, nothing to wait for */
    assert_int_equal(keep_ring_place(1000, 0, 100, busy, 0, 0, CAP, &wait), 0);
    assert_int_equal(wait, 0);
    /* pieces [0,300) [300,600) [600,900) busy; 200 more does not fit at 900: wraps to 0, waits for the first */
    busy[0] = (KeepSpan){0, 300};
    busy[1] = (KeepSpan){300, 600};
    busy[2] = (KeepSpan){600, 900};
    assert_int_equal(keep_ring_place(1000, 900, 200, busy, 0, 3, CAP, &wait), 0);
    assert_int_equal(wait, 1);
    /* 400 after the wrap overlaps the first two */
    assert_int_equal(keep_ring_place(1000, 900, 400, busy, 0, 3, CAP, &wait), 0);
    assert_int_equal(wait, 2);
    /* fits at the head, overlaps nothing */
    assert_int_equal(keep_ring_place(1000, 900, 100, busy, 0, 3, CAP, &wait), 900);
    assert_int_equal(wait, 0);
    /* the wrap case: the oldest busy piece [960,1000) does not overlap the
     * new piece [0,950), a newer one [0,100) does: wait through the newer */
    busy[1] = (KeepSpan){960, 1000};
    busy[2] = (KeepSpan){0, 100};
    assert_int_equal(keep_ring_place(1000, 100, 950, busy, 1, 2, CAP, &wait), 0);
    assert_int_equal(wait, 2);
    /* a full FIFO waits for at least its oldest entry */
    busy[3] = (KeepSpan){100, 200};
    busy[0] = (KeepSpan){200, 300};
    assert_int_equal(keep_ring_place(1000, 300, 50, busy, 1, 4, CAP, &wait), 300);
    assert_int_equal(wait, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_extent),
        cmocka_unit_test(test_forget),
        cmocka_unit_test(test_victim),
        cmocka_unit_test(test_ring),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
