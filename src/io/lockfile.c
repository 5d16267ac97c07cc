#include "io/lockfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "io/fsutil.h"

static void read_holder(int fd, char *holder, size_t n) {
    char buf[256];
    ssize_t got = pread(fd, buf, sizeof buf - 1, 0);
    if (got <= 0) {
        snprintf(holder, n, "a process that has not written its name yet");
        return;
    }
    buf[got] = 0;
    buf[strcspn(buf, "\n")] = 0;
    for (char *p = buf; *p; p++)
        if ((unsigned char)*p < 0x20) *p = '?';
    snprintf(holder, n, "%s", buf);
}

int lockfile_acquire(LockFile *l, const char *path, char *holder, size_t n) {
    l->fd = -1;
    snprintf(l->path, sizeof l->path, "%s", path);
    for (int tries = 0; tries < 100; tries++) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) return LOCK_FAILED;
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            if (e == EWOULDBLOCK) read_holder(fd, holder, n);
            close(fd);
            if (e == EWOULDBLOCK) return LOCK_BUSY;
            errno = e;
            return LOCK_FAILED;
        }
        /* the holder before us may have removed the file between our open and our lock */
        struct stat a, b;
        if (fstat(fd, &a) != 0 || stat(path, &b) != 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
            close(fd);
            continue;
        }
        char host[256] = "?", line[512], since[32];
        gethostname(host, sizeof host - 1);
        host[sizeof host - 1] = 0;
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        strftime(since, sizeof since, "%Y-%m-%d %H:%M:%S", &tm);
        int len = snprintf(line, sizeof line, "pid %ld host %s since %s\n", (long)getpid(), host, since);
        if (ftruncate(fd, 0) != 0 || fsutil_pwrite_all(fd, line, (size_t)len, 0) != 0) {
            int e = errno;
            unlink(path);
            close(fd);
            errno = e;
            return LOCK_FAILED;
        }
        l->fd = fd;
        return LOCK_HELD;
    }
    errno = EAGAIN;
    return LOCK_FAILED;
}

void lockfile_release(LockFile *l) {
    if (l->fd < 0) return;
    unlink(l->path);
    close(l->fd);
    l->fd = -1;
}
