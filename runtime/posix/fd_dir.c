/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Directory fds: LionsOS opens no directories, and ERTS lists them (file:list_dir) with
 * getdents64. A directory fd holds the fs protocol's dir handle and its absolute path
 * (the base of paths relative to it, fsops.c); getdents64 reads one entry per request.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include <lions/fs/helpers.h>
#include <lions/fs/protocol.h>
#include <lions/posix/fd.h>

#include <chrysopolis/fd_dir.h>
#include <chrysopolis/fd_proc.h>
#include <chrysopolis/fds.h>
#include <chrysopolis/fslock.h>

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

int fd_dir_fstat(int fd, struct stat *st)
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

/* Called with the fs lock held (fsops.c's close holds it for directories). */
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

static const struct fd_ops dir_ops = {.name = "directory",
                                      .read = dir_read,
                                      .fstat = fd_dir_fstat,
                                      .ready = dir_ready,
                                      .release = dir_release,
                                      .retain = dir_retain,
                                      .not_pollable = true};

const char *fd_dir_path(int fd)
{
    return fds_ops(fd) == &dir_ops ? ((struct dir *)fds_obj(fd))->path : NULL;
}

long fd_dir_open(const char *path, long flags)
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
    fslock_acquire();
    int err = fs_call(
        &cmpl, (fs_cmd_t){.type = FS_CMD_DIR_OPEN, .params.dir_open.path = {.offset = pbuf, .size = len}});
    fslock_release();
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
    int fd = fds_open(&dir_ops, d, O_RDONLY | O_DIRECTORY | (int)(flags & O_CLOEXEC));
    if (fd < 0) {
        fslock_acquire();
        dir_release(d);
        fslock_release();
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

long sys_getdents64(long fd, long bufp, long count, long d_, long e, long f)
{
    (void)d_, (void)e, (void)f;
    long r = fd_proc_getdents((int)fd, (void *)bufp, (size_t)count);
    if (r != 1) {
        return r;
    }
    if (fd_dir_path((int)fd) == NULL) {
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
    fslock_acquire();
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
    fslock_release();
    fs_buffer_free(nbuf);
    return (long)used;
}
