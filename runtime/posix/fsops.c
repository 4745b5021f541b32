/*
 * File system calls in front of LionsOS's: what ERTS needs that LionsOS does not do.
 *
 * - One fs operation at a time: every call that reaches the FAT server holds fs_lock
 *   (dirty-IO schedulers load modules concurrently; LionsOS's helpers were not written
 *   for interleaved callers). Paths live in per-call buffers.
 * - Paths are folded (`//lib/..`, `.`, `..`) before LionsOS sees them, relative ones
 *   against our directory fds too.
 * - FatFs reports a missing parent directory as a generic error that LionsOS turns into
 *   EPERM (OTP then says `not owner`): openat and newfstatat say ENOENT.
 * - /dev/null (ERTS reopens it until it holds fds 0-2) and /dev/urandom, /dev/random.
 * - Directory fds for getdents64 over the protocol's dir open/read/close.
 * - pread64/pwrite64 on files (LionsOS has positioned I/O only through lseek).
 * - faccessat as an existence check.
 * - fstat of a file answers again from the last answer while nothing changed (below).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>

#include <lions/fs/helpers.h>
#include <lions/fs/protocol.h>
#include <lions/posix/fd.h>

#include "adapter.h"
#include "chrysopolis.h"

static bool fs_busy;
static struct waitq fs_waiters;

static void fs_lock(void)
{
    while (fs_busy) {
        threads_wait(&fs_waiters, NULL, 0);
    }
    fs_busy = true;
}

static void fs_unlock(void)
{
    fs_busy = false;
    threads_wake(&fs_waiters, NULL, 1);
}

/* A LionsOS file (or one of its special fds): its calls reach the FAT server. */
static bool lions_file(int fd)
{
    return fds_kind(fd) == FD_NONE;
}

static long lions(long n, long a, long b, long c, long d, long e, long f)
{
    return runtime_lions_syscall(n, a, b, c, d, e, f);
}

#ifdef CHRYSOPOLIS_FS_STATS
/* Off by default (stage option `fs_stats` of `beam`): count and time the calls that reach
 * the FAT server, per syscall, and print `fsstats:` lines at the first read of stdin (ERTS
 * reads it when the first line is typed at the shell: boot-time file I/O is over). */
static const struct {
    long n;
    const char *name;
} fs_stats_names[] = {{SYS_openat, "openat"}, {SYS_newfstatat, "newfstatat"}, {SYS_fstat, "fstat"},
                      {SYS_read, "read"},     {SYS_pread64, "pread64"},       {SYS_lseek, "lseek"},
                      {SYS_close, "close"},   {SYS_write, "write"},           {SYS_pwrite64, "pwrite64"},
                      {SYS_readv, "readv"}};
#define FS_STATS_N (sizeof(fs_stats_names) / sizeof(fs_stats_names[0]))
static struct {
    uint32_t count;
    uint64_t ns, bytes;
} fs_stats[FS_STATS_N + 1]; /* the last slot: any other call */
static uint64_t fs_wait_ns, fs_first_ns, fs_last_ns;
static bool fs_stats_printed;

static uint64_t fs_stats_begin(uint64_t asked)
{
    uint64_t now = runtime_now_ns();
    fs_wait_ns += now - asked;
    if (fs_first_ns == 0) {
        fs_first_ns = now;
    }
    return now;
}

static void fs_stats_end(long n, uint64_t began, long r)
{
    size_t i = 0;
    while (i < FS_STATS_N && fs_stats_names[i].n != n) {
        i++;
    }
    fs_last_ns = runtime_now_ns();
    fs_stats[i].count++;
    fs_stats[i].ns += fs_last_ns - began;
    if ((n == SYS_read || n == SYS_readv || n == SYS_pread64) && r > 0) {
        fs_stats[i].bytes += (uint64_t)r;
    }
}

static void fs_stats_print(void)
{
    uint64_t total = 0;
    uint32_t count = 0;
    for (size_t i = 0; i <= FS_STATS_N; i++) {
        total += fs_stats[i].ns;
        count += fs_stats[i].count;
        printf("fsstats: %s %u calls %llu us %llu bytes\n", i < FS_STATS_N ? fs_stats_names[i].name : "other",
               fs_stats[i].count, (unsigned long long)(fs_stats[i].ns / 1000),
               (unsigned long long)fs_stats[i].bytes);
    }
    printf("fsstats: total %u calls %llu us, lock wait %llu us, first %llu ms, last %llu ms\n", count,
           (unsigned long long)(total / 1000), (unsigned long long)(fs_wait_ns / 1000),
           (unsigned long long)(fs_first_ns / 1000000), (unsigned long long)(fs_last_ns / 1000000));
}
#define FS_STATS_ASK() uint64_t fs_asked_ = runtime_now_ns()
#define FS_STATS_BEGIN() uint64_t fs_began_ = fs_stats_begin(fs_asked_)
#define FS_STATS_END(n, r) fs_stats_end(n, fs_began_, r)
#define FS_STATS_AT_STDIN(fd)                                                                                \
    do {                                                                                                     \
        if ((fd) == 0 && !fs_stats_printed) {                                                                \
            fs_stats_printed = true;                                                                         \
            fs_stats_print();                                                                                \
        }                                                                                                    \
    } while (0)
#else
#define FS_STATS_ASK()
#define FS_STATS_BEGIN()
#define FS_STATS_END(n, r)
#define FS_STATS_AT_STDIN(fd)
#endif

static long lions_locked(long n, long a, long b, long c, long d, long e, long f)
{
    FS_STATS_ASK();
    fs_lock();
    FS_STATS_BEGIN();
    long r = lions(n, a, b, c, d, e, f);
    FS_STATS_END(n, r);
    fs_unlock();
    return r;
}

static long missing_is_enoent(long r)
{
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
    long r = lions_locked(SYS_fstat, fd, stp, 0, 0, 0, 0);
    if (r == 0) {
        last_fstat.fd = fd;
        last_fstat.generation = generation;
        last_fstat.st = *(struct stat *)stp;
    }
    return r;
}

/* ---- directories ---- */

struct dir {
    unsigned refs;
    uint64_t server_fd;
    uint64_t next; /* d_off of the next entry */
    bool eof;
    char path[PATH_MAX];
};

static int fs_call(fs_cmpl_t *cmpl, fs_cmd_t cmd)
{
    return fs_command_blocking(cmpl, cmd) ? -ENOMEM : 0;
}

static ssize_t dir_read(void *buf, size_t len, int fd)
{
    (void)buf, (void)len, (void)fd;
    return -EISDIR;
}

static int dir_fstat(int fd, struct stat *st)
{
    (void)fd;
    memset(st, 0, sizeof(*st));
    st->st_mode = S_IFDIR | 0755;
    st->st_nlink = 2;
    return 0;
}

static unsigned dir_ready(int fd, void *obj, bool arm)
{
    (void)fd, (void)obj, (void)arm;
    return POLLIN | POLLOUT;
}

/* Called with fs_lock held (close holds it for directories). */
static void dir_release(void *obj)
{
    struct dir *d = obj;
    if (--d->refs > 0) {
        return;
    }
    fs_cmpl_t cmpl;
    fs_call(&cmpl, (fs_cmd_t){.type = FS_CMD_DIR_CLOSE, .params.dir_close.fd = d->server_fd});
    free(d);
}

static void dir_retain(void *obj)
{
    ((struct dir *)obj)->refs++;
}

static const struct fd_ops dir_ops = {.ready = dir_ready, .release = dir_release, .retain = dir_retain};

static long dir_open(const char *path, long flags)
{
    size_t len = strlen(path);
    struct dir *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        return -ENOMEM;
    }
    ptrdiff_t pbuf;
    if (fs_buffer_allocate(&pbuf)) {
        free(d);
        return -ENOMEM;
    }
    memcpy(fs_buffer_ptr(pbuf), path, len);
    fs_cmpl_t cmpl;
    fs_lock();
    int err = fs_call(
        &cmpl, (fs_cmd_t){.type = FS_CMD_DIR_OPEN, .params.dir_open.path = {.offset = pbuf, .size = len}});
    fs_unlock();
    fs_buffer_free(pbuf);
    if (err || cmpl.status != FS_STATUS_SUCCESS) {
        free(d);
        if (err) {
            return err;
        }
        return cmpl.status == FS_STATUS_NOT_DIRECTORY ? -ENOTDIR : -ENOENT;
    }
    d->refs = 1;
    d->server_fd = cmpl.data.dir_open.fd;
    memcpy(d->path, path, len + 1);
    int fd = fds_open(FD_DIR, d, O_RDONLY | O_DIRECTORY | (int)(flags & O_CLOEXEC), dir_read, fd_no_write,
                      dir_fstat);
    if (fd < 0) {
        fs_lock();
        dir_release(d);
        fs_unlock();
    }
    return fd;
}

struct dirent64_head {
    uint64_t d_ino;
    int64_t d_off;
    uint16_t d_reclen;
    uint8_t d_type;
} __attribute__((packed));

#define DIRENT_MAX ((sizeof(struct dirent64_head) + FS_MAX_NAME_LENGTH + 1 + 7) & ~7UL)

static long sys_getdents64(long fd, long bufp, long count, long d_, long e, long f)
{
    (void)d_, (void)e, (void)f;
    if (fds_kind((int)fd) != FD_DIR) {
        return posix_fd_entry((int)fd) ? -ENOTDIR : -EBADF;
    }
    struct dir *d = fds_obj((int)fd);
    if ((size_t)count < DIRENT_MAX) {
        return -EINVAL;
    }
    char *out = (char *)bufp;
    size_t used = 0;
    ptrdiff_t nbuf;
    if (fs_buffer_allocate(&nbuf)) {
        return -ENOMEM;
    }
    fs_lock();
    /* One entry per request; stop while the next one surely fits. */
    while (!d->eof && (size_t)count - used >= DIRENT_MAX) {
        fs_cmpl_t cmpl;
        if (fs_call(&cmpl,
                    (fs_cmd_t){.type = FS_CMD_DIR_READ,
                               .params.dir_read = {.fd = d->server_fd,
                                                   .buf = {.offset = nbuf, .size = FS_MAX_NAME_LENGTH}}})) {
            break;
        }
        size_t n = cmpl.data.dir_read.path_len;
        if (cmpl.status != FS_STATUS_SUCCESS || n == 0 || n > FS_MAX_NAME_LENGTH) {
            d->eof = true; /* this FAT server reports the end as an error */
            break;
        }
        size_t reclen = (sizeof(struct dirent64_head) + n + 1 + 7) & ~7UL;
        struct dirent64_head h = {.d_ino = d->next + 1,
                                  .d_off = (int64_t)(d->next + 1),
                                  .d_reclen = (uint16_t)reclen,
                                  .d_type = DT_UNKNOWN};
        memset(out + used, 0, reclen);
        memcpy(out + used, &h, sizeof(h));
        memcpy(out + used + sizeof(h), fs_buffer_ptr(nbuf), n);
        used += reclen;
        d->next++;
    }
    fs_unlock();
    fs_buffer_free(nbuf);
    return (long)used;
}

/* ---- device files ---- */

static ssize_t null_read(void *buf, size_t len, int fd)
{
    (void)buf, (void)len, (void)fd;
    return 0;
}

static ssize_t null_write(const void *buf, size_t len, int fd)
{
    (void)buf, (void)fd;
    return (ssize_t)len;
}

static ssize_t urandom_read(void *buf, size_t len, int fd)
{
    (void)fd;
    entropy_fill(buf, len);
    return (ssize_t)len;
}

static int chr_fstat(int fd, struct stat *st)
{
    (void)fd;
    memset(st, 0, sizeof(*st));
    st->st_mode = S_IFCHR | 0666;
    st->st_nlink = 1;
    return 0;
}

static const struct fd_ops dev_ops = {.ready = dir_ready};

/* ---- path calls ---- */

/* The absolute, folded path of (dirfd, path); 1 if dirfd is a LionsOS fd (pass through). */
static long resolve(long dirfd, const char *path, char *out)
{
    if (path == NULL) {
        return -EFAULT;
    }
    const char *base = "/";
    if (path[0] != '/' && dirfd != AT_FDCWD) {
        if (fds_kind((int)dirfd) != FD_DIR) {
            return posix_fd_entry((int)dirfd) ? 1 : -EBADF;
        }
        base = ((struct dir *)fds_obj((int)dirfd))->path;
    }
    return runtime_path_join(base, path, out, PATH_MAX);
}

static long stat_special(const char *path, struct stat *st)
{
    if (strcmp(path, "/dev/null") == 0 || strcmp(path, "/dev/urandom") == 0 ||
        strcmp(path, "/dev/random") == 0) {
        return chr_fstat(-1, st);
    }
    if (strcmp(path, "/") == 0 || strcmp(path, "/dev") == 0) {
        return dir_fstat(-1, st); /* LionsOS answers "/" with an unfilled buffer */
    }
    return 1;
}

static long open_at(long dirfd, long pathp, long flags, long mode, long e, long f)
{
    char full[PATH_MAX];
    long r = resolve(dirfd, (const char *)pathp, full);
    if (r == 1) {
        return missing_is_enoent(lions_locked(SYS_openat, dirfd, pathp, flags, mode, e, f));
    }
    if (r < 0) {
        return r;
    }
    int keep = (int)(flags & (O_ACCMODE | O_NONBLOCK | O_CLOEXEC | O_APPEND));
    if (strcmp(full, "/dev/null") == 0) {
        return fds_open(FD_DEVNULL, NULL, keep, null_read, null_write, chr_fstat);
    }
    if (strcmp(full, "/dev/urandom") == 0 || strcmp(full, "/dev/random") == 0) {
        return fds_open(FD_URANDOM, NULL, keep, urandom_read, null_write, chr_fstat);
    }
    if (flags & O_DIRECTORY) {
        return dir_open(full, flags);
    }
    return missing_is_enoent(lions_locked(SYS_openat, AT_FDCWD, (long)full, flags, mode, e, f));
}

static long sys_openat(long dirfd, long pathp, long flags, long mode, long e, long f)
{
    return changed(open_at(dirfd, pathp, flags, mode, e, f));
}

static long sys_newfstatat(long dirfd, long pathp, long stp, long flags, long e, long f)
{
    const char *path = (const char *)pathp;
    if (path != NULL && path[0] == '\0' && (flags & AT_EMPTY_PATH)) {
        return lions_file((int)dirfd) ? file_fstat(dirfd, stp) : lions(SYS_fstat, dirfd, stp, 0, 0, 0, 0);
    }
    char full[PATH_MAX];
    long r = resolve(dirfd, path, full);
    if (r == 1) {
        return missing_is_enoent(lions_locked(SYS_newfstatat, dirfd, pathp, stp, flags, e, f));
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
    return missing_is_enoent(lions_locked(SYS_newfstatat, AT_FDCWD, (long)full, stp, flags, e, f));
}

/* access(2): existence is what the FAT volume can say; every file may be read, written
 * and run (ERTS probes files with it and falls back when it is missing). */
static long sys_faccessat(long dirfd, long pathp, long mode, long flags, long e, long f)
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
        return changed(lions_locked(n, dirfd, pathp, arg, 0, 0, 0));
    }
    if (r < 0) {
        return r;
    }
    return changed(missing_is_enoent(lions_locked(n, AT_FDCWD, (long)full, arg, 0, 0, 0)));
}

static long sys_mkdirat(long dirfd, long pathp, long mode, long d, long e, long f)
{
    (void)d, (void)e, (void)f;
    return path_call(SYS_mkdirat, dirfd, pathp, mode);
}

static long sys_unlinkat(long dirfd, long pathp, long flags, long d, long e, long f)
{
    (void)d, (void)e, (void)f;
    return path_call(SYS_unlinkat, dirfd, pathp, flags);
}

/* ---- fd calls: locked when they reach the FAT server ---- */

static long fd_call(long n, long fd, long b, long c, long d, long e, long f)
{
    return lions_file((int)fd) ? lions_locked(n, fd, b, c, d, e, f) : lions(n, fd, b, c, d, e, f);
}

static long sys_read(long fd, long b, long c, long d, long e, long f)
{
    FS_STATS_AT_STDIN(fd);
    return fd_call(SYS_read, fd, b, c, d, e, f);
}

static long sys_readv(long fd, long b, long c, long d, long e, long f)
{
    return fd_call(SYS_readv, fd, b, c, d, e, f);
}

static long sys_write(long fd, long b, long c, long d, long e, long f)
{
    return lions_file((int)fd) ? changed(lions_locked(SYS_write, fd, b, c, d, e, f))
                               : lions(SYS_write, fd, b, c, d, e, f);
}

static long sys_writev(long fd, long b, long c, long d, long e, long f)
{
    return lions_file((int)fd) ? changed(lions_locked(SYS_writev, fd, b, c, d, e, f))
                               : lions(SYS_writev, fd, b, c, d, e, f);
}

static long sys_fstat(long fd, long b, long c, long d, long e, long f)
{
    return lions_file((int)fd) ? file_fstat(fd, b) : lions(SYS_fstat, fd, b, c, d, e, f);
}

/* dup3 closes newfd first: locked if that reaches the FAT server. */
static long sys_dup3(long oldfd, long newfd, long c, long d, long e, long f)
{
    return changed(lions_file((int)newfd) && posix_fd_entry((int)newfd)
                       ? lions_locked(SYS_dup3, oldfd, newfd, c, d, e, f)
                       : lions(SYS_dup3, oldfd, newfd, c, d, e, f));
}

static long sys_close(long fd, long b, long c, long d, long e, long f)
{
    bool locked = lions_file((int)fd) || fds_kind((int)fd) == FD_DIR;
    return changed(locked ? lions_locked(SYS_close, fd, b, c, d, e, f) : lions(SYS_close, fd, b, c, d, e, f));
}

/* fsync/fdatasync of a file: the FAT server writes it out (our LionsOS patch 0002). Our
   own fds (console, pipes, ...) have nothing to sync: EINVAL, as Linux says for them. */
static long sys_fsync(long fd, long b, long c, long d, long e, long f)
{
    if (fds_kind((int)fd) != FD_NONE) {
        return -EINVAL;
    }
    return lions_locked(SYS_fsync, fd, b, c, d, e, f);
}

static long sys_lseek(long fd, long off, long whence, long d, long e, long f)
{
    enum fd_kind k = fds_kind((int)fd);
    if (k == FD_PIPE_READ || k == FD_PIPE_WRITE || k == FD_SOCKET || k == FD_CONSOLE || k == FD_EPOLL) {
        return -ESPIPE;
    }
    return lions_file((int)fd) ? lions_locked(SYS_lseek, fd, off, whence, d, e, f)
                               : (k == FD_NONE ? -EBADF : 0);
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
        return fds_kind((int)fd) == FD_DEVNULL || fds_kind((int)fd) == FD_URANDOM
                   ? (writing ? entry->write(buf, len, (int)fd) : entry->read(buf, len, (int)fd))
                   : -ESPIPE;
    }
    FS_STATS_ASK();
    fs_lock();
    FS_STATS_BEGIN();
    off_t saved = entry->file_ptr;
    entry->file_ptr = off;
    long r = writing ? entry->write(buf, len, (int)fd) : entry->read(buf, len, (int)fd);
    entry->file_ptr = saved;
    FS_STATS_END(writing ? SYS_pwrite64 : SYS_pread64, r);
    fs_unlock();
    return writing ? changed(r) : r;
}

static long sys_pread64(long fd, long buf, long len, long off, long e, long f)
{
    (void)e, (void)f;
    return positioned(fd, (void *)buf, (size_t)len, (off_t)off, false);
}

static long sys_pwrite64(long fd, long buf, long len, long off, long e, long f)
{
    (void)e, (void)f;
    return positioned(fd, (void *)buf, (size_t)len, (off_t)off, true);
}

void fsops_init(void)
{
    fds_register_kind(FD_DIR, &dir_ops);
    fds_register_kind(FD_DEVNULL, &dev_ops);
    fds_register_kind(FD_URANDOM, &dev_ops);
    runtime_define_syscall(SYS_openat, sys_openat);
    runtime_define_syscall(SYS_newfstatat, sys_newfstatat);
    runtime_define_syscall(SYS_faccessat, sys_faccessat);
    runtime_define_syscall(SYS_mkdirat, sys_mkdirat);
    runtime_define_syscall(SYS_unlinkat, sys_unlinkat);
    runtime_define_syscall(SYS_getdents64, sys_getdents64);
    runtime_define_syscall(SYS_read, sys_read);
    runtime_define_syscall(SYS_write, sys_write);
    runtime_define_syscall(SYS_readv, sys_readv);
    runtime_define_syscall(SYS_writev, sys_writev);
    runtime_define_syscall(SYS_fstat, sys_fstat);
    runtime_define_syscall(SYS_close, sys_close);
    runtime_define_syscall(SYS_dup3, sys_dup3);
    runtime_define_syscall(SYS_lseek, sys_lseek);
    runtime_define_syscall(SYS_pread64, sys_pread64);
    runtime_define_syscall(SYS_pwrite64, sys_pwrite64);
    runtime_define_syscall(SYS_fsync, sys_fsync);
    runtime_define_syscall(SYS_fdatasync, sys_fsync);
}
