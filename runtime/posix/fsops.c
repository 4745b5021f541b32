/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * File system calls in front of LionsOS's: what ERTS needs that LionsOS does not do
 * (docs/disk.md).
 *
 * - Every call that reaches the FAT server holds the fs lock (fslock.c).
 * - Paths are folded (`//lib/..`, `.`, `..`; paths.c) before LionsOS sees them, relative
 *   ones against our directory fds (fd_dir.c) too. Paths live in per-call buffers.
 * - FatFs reports a missing parent directory as a generic error that LionsOS turns into
 *   EPERM (OTP then says `not owner`): openat and newfstatat say ENOENT.
 * - openat of /dev/null, /dev/urandom, /dev/random (fd_dev.c), /proc (fd_proc.c) and of
 *   directories (fd_dir.c).
 * - read, write, close... of every fd pass here: LionsOS files take the lock, our fds
 *   (each kind behind its fd_ops) do not.
 * - pread64/pwrite64 on files (LionsOS has positioned I/O only through lseek).
 * - A write to a file opened with O_APPEND goes at its end (LionsOS writes at the offset).
 * - faccessat as an existence check.
 * - fstat of a file answers again from the last answer while nothing changed (below).
 * - A file opened before the FAT server's last restart by the supervisor is gone there
 *   (its server fd may even name another file now): its calls fail with EIO, its close
 *   only frees our fd; with the server or a block PD given up, calls fail with EIO
 *   (docs/recovery.md).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#include <lions/posix/fd.h>

#include <chrysopolis/clocks.h>
#include <chrysopolis/dispatch.h>
#include <chrysopolis/fd_dev.h>
#include <chrysopolis/fd_dir.h>
#include <chrysopolis/fd_proc.h>
#include <chrysopolis/fds.h>
#include <chrysopolis/fs_stats.h>
#include <chrysopolis/fslock.h>
#include <chrysopolis/fsops.h>
#include <chrysopolis/paths.h>
#include <chrysopolis/supervision.h>

/* A LionsOS file (or one of its special fds): its calls reach the FAT server. */
static bool lions_file(int fd)
{
    return fds_ops(fd) == NULL;
}

static long lions(long n, long a, long b, long c, long d, long e, long f)
{
    return dispatch_lions(n, a, b, c, d, e, f);
}

/* The FAT server's restarts when each file fd was opened. */
#define FAT_SERVER "fatfs"
static uint32_t opened_gen[MAX_FDS];

static long opened(long fd)
{
    if (fd >= 0 && fd < MAX_FDS && lions_file((int)fd)) {
        opened_gen[fd] = supervision_restarts(FAT_SERVER);
    }
    return fd;
}

/* A file whose server fd died with the FAT server's last life. */
static bool stale(long fd)
{
    return fd >= 0 && fd < MAX_FDS && lions_file((int)fd) && posix_fd_entry((int)fd) != NULL &&
           opened_gen[fd] != supervision_restarts(FAT_SERVER);
}

/* A call failed because the supervisor gave up on the FAT server or a block PD below it
 * (files.c failed it): EIO, whatever LionsOS made of the error. */
static long server_gone(long r)
{
    return r < 0 && supervision_files_gone() ? -EIO : r;
}

/* A call failed back by a FAT server restarted meanwhile: EIO (LionsOS says EPERM). */
static long failed_back(long fd, long r)
{
    return r < 0 && stale(fd) ? -EIO : server_gone(r);
}

static long missing_is_enoent(long r)
{
    r = server_gone(r);
    return r == -EPERM ? -ENOENT : r;
}

/*
 * ERTS fstats every file it opens twice (a directory? its size?) and LionsOS answers each
 * fstat by walking the file's path on the FAT server again, a third of a module load.
 * The last answer stands until a call that can change an fd or the volume: every openat,
 * close and dup3, and writes, unlinkat and mkdirat.
 */
static uint64_t fs_generation;
static struct {
    long fd;
    uint64_t generation;
    struct stat st;
} last_fstat = {.fd = -1};

/* After a call that changed an fd or the volume: a stat taken before its end is void. */
static long changed(long r)
{
    fs_generation++;
    return r;
}

static long file_fstat(long fd, long stp)
{
    if (stp == 0) {
        return -EFAULT;
    }
    if (last_fstat.fd == fd && last_fstat.generation == fs_generation) {
        *(struct stat *)stp = last_fstat.st;
        return 0;
    }
    uint64_t generation = fs_generation; /* before the call: a change while it waits voids it */
    long r = fslock_lions(SYS_fstat, fd, stp, 0, 0, 0, 0);
    if (r == 0) {
        last_fstat.fd = fd;
        last_fstat.generation = generation;
        last_fstat.st = *(struct stat *)stp;
    }
    return r;
}

/* ---- path calls ---- */

/* The absolute, folded path of (dirfd, path); 1 if dirfd is a LionsOS fd (pass through). */
static long resolve(long dirfd, const char *path, char *out)
{
    if (path == NULL) {
        return -EFAULT;
    }
    const char *base = "/";
    if (path[0] != '/' && dirfd != AT_FDCWD) {
        base = fd_dir_path((int)dirfd);
        if (base == NULL) {
            return posix_fd_entry((int)dirfd) ? 1 : -EBADF;
        }
    }
    return paths_join(base, path, out, PATH_MAX);
}

static long stat_special(const char *path, struct stat *st)
{
    if (strcmp(path, "/") == 0 || strcmp(path, "/dev") == 0) {
        return fd_dir_fstat(-1, st); /* LionsOS answers "/" with an unfilled buffer */
    }
    long r = fd_proc_stat(path, st);
    return r != 1 ? r : fd_dev_stat(path, st);
}

static long open_at(long dirfd, long pathp, long flags, long mode, long e, long f)
{
    char full[PATH_MAX];
    long r = resolve(dirfd, (const char *)pathp, full);
    if (r == 1) {
        return missing_is_enoent(fslock_lions(SYS_openat, dirfd, pathp, flags, mode, e, f));
    }
    if (r < 0) {
        return r;
    }
    r = fd_dev_open(full, (int)(flags & (O_ACCMODE | O_NONBLOCK | O_CLOEXEC | O_APPEND)));
    if (r == 1) {
        r = fd_proc_open(full, flags);
    }
    if (r != 1) {
        return r;
    }
    if (flags & O_DIRECTORY) {
        return fd_dir_open(full, flags);
    }
    return missing_is_enoent(fslock_lions(SYS_openat, AT_FDCWD, (long)full, flags, mode, e, f));
}

long sys_openat(long dirfd, long pathp, long flags, long mode, long e, long f)
{
    return changed(opened(open_at(dirfd, pathp, flags, mode, e, f)));
}

long sys_newfstatat(long dirfd, long pathp, long stp, long flags, long e, long f)
{
    const char *path = (const char *)pathp;
    if (path != NULL && path[0] == '\0' && (flags & AT_EMPTY_PATH)) {
        return lions_file((int)dirfd) ? file_fstat(dirfd, stp) : lions(SYS_fstat, dirfd, stp, 0, 0, 0, 0);
    }
    char full[PATH_MAX];
    long r = resolve(dirfd, path, full);
    if (r == 1) {
        return missing_is_enoent(fslock_lions(SYS_newfstatat, dirfd, pathp, stp, flags, e, f));
    }
    if (r < 0) {
        return r;
    }
    if (stp == 0) {
        return -EFAULT;
    }
    r = stat_special(full, (struct stat *)stp);
    if (r != 1) {
        return r;
    }
    return missing_is_enoent(fslock_lions(SYS_newfstatat, AT_FDCWD, (long)full, stp, flags, e, f));
}

/* access(2): existence is what the FAT volume can say; every file may be read, written
 * and run (ERTS probes files with it and falls back when it is missing). */
long sys_faccessat(long dirfd, long pathp, long mode, long flags, long e, long f)
{
    (void)mode, (void)flags, (void)e, (void)f;
    struct stat st;
    return sys_newfstatat(dirfd, pathp, (long)&st, 0, 0, 0);
}

/* mkdirat and unlinkat: folded paths, one at a time. */
static long path_call(long n, long dirfd, long pathp, long arg)
{
    char full[PATH_MAX];
    long r = resolve(dirfd, (const char *)pathp, full);
    if (r == 1) {
        return changed(fslock_lions(n, dirfd, pathp, arg, 0, 0, 0));
    }
    if (r < 0) {
        return r;
    }
    return changed(missing_is_enoent(fslock_lions(n, AT_FDCWD, (long)full, arg, 0, 0, 0)));
}

long sys_mkdirat(long dirfd, long pathp, long mode, long d, long e, long f)
{
    (void)d, (void)e, (void)f;
    return path_call(SYS_mkdirat, dirfd, pathp, mode);
}

long sys_unlinkat(long dirfd, long pathp, long flags, long d, long e, long f)
{
    (void)d, (void)e, (void)f;
    return path_call(SYS_unlinkat, dirfd, pathp, flags);
}

/* ---- fd calls: locked when they reach the FAT server ---- */

static long fd_call(long n, long fd, long b, long c, long d, long e, long f)
{
    if (stale(fd)) {
        return -EIO;
    }
    if (!lions_file((int)fd)) {
        return lions(n, fd, b, c, d, e, f);
    }
    return failed_back(fd, fslock_lions(n, fd, b, c, d, e, f));
}

long sys_read(long fd, long b, long c, long d, long e, long f)
{
    FS_STATS_AT_READ(fd);
    return fd_call(SYS_read, fd, b, c, d, e, f);
}

/*
 * readv/writev of our fds (pipes, sockets): one read or write per iovec, stopping at a
 * short transfer, and never an error after bytes moved (LionsOS's loop reports a later
 * iovec's EAGAIN and loses the count: ERTS's non-blocking writev to a socket). After
 * the first iovec, go on only while the fd is ready: a blocking fd must not park then.
 */
static long our_vector(long n, long fd, const struct iovec *iov, long cnt)
{
    if (cnt < 0 || cnt > IOV_MAX) {
        return -EINVAL;
    }
    const struct fd_ops *ops = fds_ops((int)fd);
    if (n == SYS_write && ops != NULL && ops->writev != NULL) {
        return ops->writev((int)fd, iov, (int)cnt);
    }
    long total = 0;
    for (long i = 0; i < cnt; i++) {
        if (iov[i].iov_len == 0) {
            continue;
        }
        if (total > 0 && !(fds_ready((int)fd, false) & (n == SYS_read ? POLLIN : POLLOUT))) {
            break;
        }
        long r = lions(n, fd, (long)iov[i].iov_base, (long)iov[i].iov_len, 0, 0, 0);
        if (r < 0) {
            return total > 0 ? total : r;
        }
        total += r;
        if ((size_t)r < iov[i].iov_len) {
            break;
        }
    }
    return total;
}

long sys_readv(long fd, long b, long c, long d, long e, long f)
{
    if (!lions_file((int)fd)) {
        return our_vector(SYS_read, fd, (const struct iovec *)b, c);
    }
    return fd_call(SYS_readv, fd, b, c, d, e, f);
}

/* write/writev of a file. LionsOS keeps O_APPEND in the fd's flags but writes at the fd's
 * offset: an appending write first moves it to the end, under the same lock as the write,
 * so two appending writers cannot overwrite each other. */
static long file_write(long n, long fd, long b, long c, long d, long e, long f)
{
    const fd_entry_t *entry = posix_fd_entry((int)fd);
    if (entry == NULL || !(entry->flags & O_APPEND)) {
        return fslock_lions(n, fd, b, c, d, e, f);
    }
    FS_STATS_ASK();
    fslock_acquire();
    FS_STATS_BEGIN();
    long r = dispatch_lions(SYS_lseek, fd, 0, SEEK_END, 0, 0, 0);
    if (r >= 0) {
        r = dispatch_lions(n, fd, b, c, d, e, f);
    }
    FS_STATS_END(n, fd, b, r);
    fslock_release();
    return r;
}

long sys_write(long fd, long b, long c, long d, long e, long f)
{
    if (stale(fd)) {
        return -EIO;
    }
    return lions_file((int)fd) ? changed(failed_back(fd, file_write(SYS_write, fd, b, c, d, e, f)))
                               : lions(SYS_write, fd, b, c, d, e, f);
}

long sys_writev(long fd, long b, long c, long d, long e, long f)
{
    if (!lions_file((int)fd) && posix_fd_entry((int)fd) != NULL) {
        return our_vector(SYS_write, fd, (const struct iovec *)b, c);
    }
    if (stale(fd)) {
        return -EIO;
    }
    return lions_file((int)fd) ? changed(failed_back(fd, file_write(SYS_writev, fd, b, c, d, e, f)))
                               : lions(SYS_writev, fd, b, c, d, e, f);
}

long sys_fstat(long fd, long b, long c, long d, long e, long f)
{
    if (stale(fd)) {
        return -EIO;
    }
    return lions_file((int)fd) ? file_fstat(fd, b) : lions(SYS_fstat, fd, b, c, d, e, f);
}

/* dup3 closes newfd first: locked if that reaches the FAT server. */
long sys_dup3(long oldfd, long newfd, long c, long d, long e, long f)
{
    return changed(lions_file((int)newfd) && posix_fd_entry((int)newfd)
                       ? fslock_lions(SYS_dup3, oldfd, newfd, c, d, e, f)
                       : lions(SYS_dup3, oldfd, newfd, c, d, e, f));
}

long sys_close(long fd, long b, long c, long d, long e, long f)
{
    if (stale(fd)) {
        /* Closed for the caller; LionsOS's entry stays taken (its server fd may name
           another file now, and freeing it under a concurrent openat broke that openat). */
        opened_gen[fd] = UINT32_MAX;
        return changed(0);
    }
    bool locked = lions_file((int)fd) || fd_dir_path((int)fd) != NULL; /* dir_release: the fs lock */
    return changed(locked ? fslock_lions(SYS_close, fd, b, c, d, e, f) : lions(SYS_close, fd, b, c, d, e, f));
}

/* fsync/fdatasync of a file: the FAT server writes it out (our LionsOS patch 0002). Our
   own fds (console, pipes, ...) have nothing to sync: EINVAL, as Linux says for them. */
long sys_fsync(long fd, long b, long c, long d, long e, long f)
{
    if (!lions_file((int)fd)) {
        return -EINVAL;
    }
    if (stale(fd)) {
        return -EIO;
    }
    return fslock_lions(SYS_fsync, fd, b, c, d, e, f);
}

long sys_lseek(long fd, long off, long whence, long d, long e, long f)
{
    if (stale(fd)) {
        return -EIO;
    }
    if (lions_file((int)fd)) {
        return fslock_lions(SYS_lseek, fd, off, whence, d, e, f);
    }
    return fds_ops((int)fd)->stream ? -ESPIPE : 0;
}

/* Positioned I/O on a file: move its offset, transfer, put the offset back. */
static long positioned(long fd, void *buf, size_t len, off_t off, bool writing)
{
    fd_entry_t *entry = posix_fd_entry((int)fd);
    if (entry == NULL) {
        return -EBADF;
    }
    if (off < 0) {
        return -EINVAL;
    }
    if (!lions_file((int)fd)) {
        return fds_ops((int)fd)->offsetless
                   ? (writing ? entry->write(buf, len, (int)fd) : entry->read(buf, len, (int)fd))
                   : -ESPIPE;
    }
    if (stale(fd)) {
        return -EIO;
    }
    FS_STATS_ASK();
    fslock_acquire();
    FS_STATS_BEGIN();
    off_t saved = entry->file_ptr;
    entry->file_ptr = off;
    long r = failed_back(fd, writing ? entry->write(buf, len, (int)fd) : entry->read(buf, len, (int)fd));
    entry->file_ptr = saved;
    FS_STATS_END(writing ? SYS_pwrite64 : SYS_pread64, fd, 0, r);
    fslock_release();
    return writing ? changed(r) : r;
}

long sys_pread64(long fd, long buf, long len, long off, long e, long f)
{
    (void)e, (void)f;
    return positioned(fd, (void *)buf, (size_t)len, (off_t)off, false);
}

long sys_pwrite64(long fd, long buf, long len, long off, long e, long f)
{
    (void)e, (void)f;
    return positioned(fd, (void *)buf, (size_t)len, (off_t)off, true);
}
