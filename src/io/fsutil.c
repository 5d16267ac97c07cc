#include "io/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/check.h"
#include "core/log.h"

/* Linux transfers at most ~2 GiB per call; larger requests loop. */
#define IO_MAX ((size_t)1 << 30)

int fsutil_write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n > 0) {
        ssize_t k = write(fd, c, n < IO_MAX ? n : IO_MAX);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (k == 0) { /* no progress and no errno: treat as a full disk */
            errno = ENOSPC;
            return -1;
        }
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

int fsutil_pwrite_all(int fd, const void *p, size_t n, uint64_t off) {
    const char *c = p;
    while (n > 0) {
        ssize_t k = pwrite(fd, c, n < IO_MAX ? n : IO_MAX, (off_t)off);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (k == 0) {
            errno = ENOSPC;
            return -1;
        }
        c += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return 0;
}

int fsutil_pread_all(int fd, void *p, size_t n, uint64_t off) {
    char *c = p;
    while (n > 0) {
        ssize_t k = pread(fd, c, n < IO_MAX ? n : IO_MAX, (off_t)off);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (k == 0) return 1;
        c += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return 0;
}

/* Split path into its directory (malloc'd) and the base name (pointer into path). */
static char *dir_of(const char *path, const char **base) {
    const char *slash = strrchr(path, '/');
    if (!slash) {
        *base = path;
        return xstrdup(".");
    }
    *base = slash + 1;
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    char *d = xmalloc(n + 1, "a directory name");
    memcpy(d, path, n);
    d[n] = 0;
    return d;
}

int fsutil_fsync_dir(const char *path) {
    const char *base;
    char *dir = dir_of(path, &base);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0 && e != EINVAL) {
        errno = e;
        return -1;
    }
    return 0;
}

int fsutil_remove_stale_temps(const char *path) {
    const char *base;
    char *dir = dir_of(path, &base);
    DIR *d = opendir(dir);
    if (!d) {
        free(dir);
        return 0;
    }
    size_t bl = strlen(base);
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *n = e->d_name;
        if (strncmp(n, base, bl) != 0 || strncmp(n + bl, ".tmp.", 5) != 0) continue;
        const char *digits = n + bl + 5;
        size_t nd = strspn(digits, "0123456789");
        if (nd == 0 || nd > 9 || digits[nd] != 0) continue;
        long pid = strtol(digits, NULL, 10);
        if (pid <= 0 || pid == (long)getpid()) continue; /* ours is truncated on open */
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* writer still alive */
        size_t len = strlen(dir) + 1 + strlen(n) + 1;
        char *full = xmalloc(len, "a file name");
        snprintf(full, len, "%s/%s", dir, n);
        if (unlink(full) == 0) {
            removed++;
            log_warn("removed stale temporary file '%s' (its writer, pid %ld, is gone)", full, pid);
        }
        free(full);
    }
    closedir(d);
    free(dir);
    return removed;
}

static void atomic_free(fsutil_atomic *a) {
    free(a->path);
    free(a->tmp);
    a->path = a->tmp = NULL;
    a->fd = -1;
}

int fsutil_atomic_open(fsutil_atomic *a, const char *path, char *err, size_t errlen) {
    a->fd = -1;
    a->path = a->tmp = NULL;
    if (!path || !*path) {
        errf(err, errlen, "cannot save a file with an empty name");
        return -1;
    }
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        errf(err, errlen, "cannot save '%s': it is a directory", path);
        return -1;
    }
    fsutil_remove_stale_temps(path);
    size_t len = strlen(path) + 32;
    a->path = xstrdup(path);
    a->tmp = xmalloc(len, "a temp file name");
    snprintf(a->tmp, len, "%s.tmp.%ld", path, (long)getpid());
    a->fd = open(a->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (a->fd < 0) {
        errf(err, errlen, "cannot save '%s': cannot create '%s': %s", path, a->tmp,
                strerror(errno));
        atomic_free(a);
        return -1;
    }
    return 0;
}

void fsutil_atomic_abort(fsutil_atomic *a) {
    if (a->fd >= 0) close(a->fd);
    if (a->tmp) unlink(a->tmp);
    atomic_free(a);
}

int fsutil_atomic_commit(fsutil_atomic *a, char *err, size_t errlen) {
    if (a->fd < 0 || !a->tmp) {
        errf(err, errlen, "cannot save: no temp file is open");
        atomic_free(a);
        return -1;
    }
    const char *step = NULL;
    if (fsync(a->fd) != 0)
        step = "fsync of";
    else {
        int fd = a->fd;
        a->fd = -1;
        if (close(fd) != 0)
            step = "closing";
        else if (rename(a->tmp, a->path) != 0)
            step = "renaming";
    }
    if (step) {
        errf(err, errlen, "cannot save '%s': %s '%s' failed: %s; the previous '%s' is unchanged",
                a->path, step, a->tmp, strerror(errno), a->path);
        fsutil_atomic_abort(a);
        return -1;
    }
    /* The new file is in place; without the directory sync a power loss could
     * still bring the old name back, so report it. */
    if (fsutil_fsync_dir(a->path) != 0) {
        errf(err, errlen, "saved '%s' but could not fsync its directory: %s", a->path,
                strerror(errno));
        atomic_free(a);
        return -1;
    }
    atomic_free(a);
    return 0;
}

int fsutil_write_file_atomic(const char *path, const void *data, size_t n, char *err,
                             size_t errlen) {
    fsutil_atomic a;
    if (fsutil_atomic_open(&a, path, err, errlen) != 0) return -1;
    if (fsutil_write_all(a.fd, data, n) != 0) {
        errf(err, errlen, "cannot save '%s': writing '%s' failed: %s; the previous '%s' is unchanged",
                path, a.tmp, strerror(errno), path);
        fsutil_atomic_abort(&a);
        return -1;
    }
    return fsutil_atomic_commit(&a, err, errlen);
}
