/* The real text the tests read: tests/data/ of this repository (its README names
 * each file's Debian source, version and licence). Found from the working
 * directory (the repository root) or from the test binary (build/tests/unit/X),
 * so a test runs from any directory; MOE_TESTDATA names another copy. Nothing
 * outside the repository is ever read. */
#ifndef MOE_TESTDATA_H
#define MOE_TESTDATA_H

#include <stddef.h>

/* tests/data itself (no trailing slash). */
const char *testdata_dir(void);

/* tests/data/REL; the result lives until the 16th call after this one. */
const char *testdata_path(const char *rel);

/* The whole of tests/data/REL (gzip or plain), NUL-terminated, malloc'ed; its
 * length in *len. NULL when it cannot be read. */
char *testdata_slurp(const char *rel, size_t *len);

/* Decompresses tests/data/REL into the file DST (for readers and tools that want
 * plain text); returns 0, or -1 with a message on stderr. */
int testdata_plain_copy(const char *rel, const char *dst);

#endif
