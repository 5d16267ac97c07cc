/* Durable file writing: full reads/writes that survive EINTR and short
 * transfers, and atomic replacement of a file (DESIGN.md §1.5, §4).
 *
 * An atomic write goes to "<path>.tmp.<pid>" in the same directory, is
 * fsync'ed, renamed over <path>, and the directory is fsync'ed. Until the
 * rename, readers see the previous <path>; after a crash they see either the
 * old or the new file, never a mix. On any failure the temp file is removed
 * and the previous <path> is untouched. Temps left by killed writers are
 * removed when the next writer of the same path starts (they may be as large
 * as the model and would otherwise eat the space the new file needs).
 *
 * Functions that can fail return 0 on success and -1 on failure, with errno
 * set (low-level helpers) or a one-line message naming the file in err. */
#ifndef MOE_IO_FSUTIL_H
#define MOE_IO_FSUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Write all n bytes at the current position / at offset off. -1: errno set
 * (ENOSPC, EFBIG, EIO...). */
int fsutil_write_all(int fd, const void *p, size_t n);
int fsutil_pwrite_all(int fd, const void *p, size_t n, uint64_t off);
/* Read exactly n bytes at offset off: 0 ok, 1 end of file came first,
 * -1 error (errno set). */
int fsutil_pread_all(int fd, void *p, size_t n, uint64_t off);

/* fsync the directory that holds path ("." for a bare name). Filesystems
 * that cannot sync directories (EINVAL) count as success. */
int fsutil_fsync_dir(const char *path);

/* Remove "<path>.tmp.<pid>" files whose pid is not a live process on this
 * host. Returns how many were removed; each removal is logged. */
int fsutil_remove_stale_temps(const char *path);

/* An atomic replacement of one file in progress. */
typedef struct fsutil_atomic {
    int fd;     /* write here (positioned writes are fine) */
    char *path; /* final name */
    char *tmp;  /* "<path>.tmp.<pid>" */
} fsutil_atomic;

/* Clean stale temps, then create (truncate) the temp file for path.
 * On failure a->fd is -1 and nothing is left on disk. */
int fsutil_atomic_open(fsutil_atomic *a, const char *path, char *err, size_t errlen);
/* fsync, close, rename over path, fsync the directory. On failure before the
 * rename the temp is removed and path is unchanged. Frees a's strings. */
int fsutil_atomic_commit(fsutil_atomic *a, char *err, size_t errlen);
/* Close and remove the temp; path is unchanged. Safe on a failed open. */
void fsutil_atomic_abort(fsutil_atomic *a);

/* Atomically replace path with n bytes of data (small files: configs, logs). */
int fsutil_write_file_atomic(const char *path, const void *data, size_t n, char *err,
                             size_t errlen);

#endif
