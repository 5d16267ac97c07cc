/* An exclusive lock on a file path, held by one process at a time (moe-train
 * holds MODEL.lock while it trains MODEL).
 *
 * flock(2) on FILE.lock, which holds "pid PID host HOST since TIME" for the
 * message the next process prints. The kernel drops a flock when its process
 * ends, however it ends, so a lock left by a killed run never blocks: the file
 * may stay, the lock does not. On NFS, Linux implements flock with the
 * server's byte-range locks (since 2.6.12; not with the local_lock=flock
 * mount option), so runs on several hosts see each other; a lock file with a
 * pid alone could not tell a live process on another host from a dead one. On
 * release the file is removed while still locked; a process that opened it
 * just before finds, once it holds the lock, that its file is no longer the
 * one at the path and starts over. */
#ifndef MOE_IO_LOCKFILE_H
#define MOE_IO_LOCKFILE_H

#include <stddef.h>

typedef struct LockFile {
    int fd; /* -1: not held */
    char path[4200];
} LockFile;

enum { LOCK_HELD = 0, LOCK_BUSY = 1, LOCK_FAILED = -1 };

/* Take the lock at `path`. LOCK_HELD; LOCK_BUSY with who holds it in `holder`
 * ("pid 123 host node7 since 2026-01-02 10:11:12", or "a process that has not
 * written its name yet"); LOCK_FAILED with errno set (the folder is missing or
 * not writable, the disk is full). */
int lockfile_acquire(LockFile *l, const char *path, char *holder, size_t n);
/* Remove the file and drop the lock (nothing if not held). */
void lockfile_release(LockFile *l);

#endif
