/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * /proc, the little of it the checks need (docs/syscalls.md, "File descriptor kinds").
 *
 * /proc/self/fd is a directory whose entries are the open fds, taken when it is opened
 * (so it lists its own fd, as Linux's does): net-many counts them before and after
 * hundreds of connections. Other files are registered with a fill function and hold the
 * text it wrote at open; they stat as empty regular files, as Linux's /proc does, and
 * read to their end. The directories on the way (/proc, /proc/self, /proc/net) stat as
 * directories and list nothing.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lions/posix/fd.h>

#include <chrysopolis/fd_proc.h>
#include <chrysopolis/fds.h>

#define FILES_MAX 8
#define FILE_MAX 4096 /* bytes of one file's text */
#define FD_DIR "/proc/self/fd"

static struct {
    const char *path;
    fd_proc_fill fill;
} files[FILES_MAX];

static const char *const dirs[] = {"/proc", "/proc/self", "/proc/net", FD_DIR};

struct pfile {
    unsigned refs;
    size_t len, at;
    char text[];
};

struct pdir {
    unsigned refs;
    unsigned n, at;
    int fds[MAX_FDS];
};

int fd_proc_register(const char *path, fd_proc_fill fill)
{
    for (int i = 0; i < FILES_MAX; i++) {
        if (files[i].path == NULL) {
            files[i].path = path;
            files[i].fill = fill;
            return 0;
        }
    }
    return -1;
}

static void retain(void *obj)
{
    ++*(unsigned *)obj; /* refs comes first in both objects */
}

static void release(void *obj)
{
    if (--*(unsigned *)obj == 0) {
        free(obj);
    }
}

static ssize_t file_read(void *buf, size_t len, int fd)
{
    struct pfile *p = fds_obj(fd);
    size_t n = p->len - p->at < len ? p->len - p->at : len;
    memcpy(buf, p->text + p->at, n);
    p->at += n;
    return (ssize_t)n;
}

static int file_fstat(int fd, struct stat *st)
{
    (void)fd;
    return fds_stat_mode(st, S_IFREG | 0444);
}

static int dir_fstat(int fd, struct stat *st)
{
    (void)fd;
    fds_stat_mode(st, S_IFDIR | 0555);
    st->st_nlink = 2;
    return 0;
}

static ssize_t dir_read(void *buf, size_t len, int fd)
{
    (void)buf, (void)len, (void)fd;
    return -EISDIR;
}

static const struct fd_ops file_ops = {
    .name = "proc file", .read = file_read, .fstat = file_fstat, .release = release, .retain = retain};
static const struct fd_ops dir_ops = {.name = "proc directory",
                                      .read = dir_read,
                                      .fstat = dir_fstat,
                                      .release = release,
                                      .retain = retain,
                                      .not_pollable = true};

static int dir_index(const char *path)
{
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        if (strcmp(path, dirs[i]) == 0) {
            return (int)i;
        }
    }
    return -1;
}

static int file_index(const char *path)
{
    for (int i = 0; i < FILES_MAX; i++) {
        if (files[i].path != NULL && strcmp(path, files[i].path) == 0) {
            return i;
        }
    }
    return -1;
}

long fd_proc_open(const char *path, long flags)
{
    if (strncmp(path, "/proc", 5) != 0 || (path[5] != '\0' && path[5] != '/')) {
        return 1;
    }
    int oflags = O_RDONLY | (int)(flags & O_CLOEXEC);
    int d = dir_index(path);
    if (d >= 0) {
        if ((flags & O_ACCMODE) != O_RDONLY) {
            return -EISDIR;
        }
        struct pdir *p = calloc(1, sizeof(*p));
        if (p == NULL) {
            return -ENOMEM;
        }
        p->refs = 1;
        int fd = fds_open(&dir_ops, p, oflags | O_DIRECTORY);
        if (fd < 0) {
            free(p);
            return fd;
        }
        for (int i = 0; strcmp(path, FD_DIR) == 0 && i < MAX_FDS; i++) {
            if (posix_fd_entry(i) != NULL) {
                p->fds[p->n++] = i;
            }
        }
        return fd;
    }
    int f = file_index(path);
    if (f < 0) {
        return -ENOENT;
    }
    if ((flags & O_ACCMODE) != O_RDONLY) {
        return -EACCES;
    }
    if (flags & O_DIRECTORY) {
        return -ENOTDIR;
    }
    struct pfile *p = malloc(sizeof(*p) + FILE_MAX);
    if (p == NULL) {
        return -ENOMEM;
    }
    size_t want = files[f].fill(p->text, FILE_MAX);
    *p = (struct pfile){.refs = 1, .len = want < FILE_MAX ? want : FILE_MAX};
    int fd = fds_open(&file_ops, p, oflags);
    if (fd < 0) {
        free(p);
    }
    return fd;
}

long fd_proc_stat(const char *path, struct stat *st)
{
    if (dir_index(path) >= 0) {
        return dir_fstat(-1, st);
    }
    if (file_index(path) >= 0) {
        return file_fstat(-1, st);
    }
    return strncmp(path, "/proc/", 6) == 0 ? -ENOENT : 1;
}

struct dirent64_head {
    uint64_t d_ino;
    int64_t d_off;
    uint16_t d_reclen;
    uint8_t d_type;
} __attribute__((packed));

long fd_proc_getdents(int fd, void *buf, size_t count)
{
    if (fds_ops(fd) != &dir_ops) {
        return 1;
    }
    struct pdir *p = fds_obj(fd);
    char *out = buf;
    size_t used = 0;
    while (p->at < p->n) {
        char name[12];
        int len = snprintf(name, sizeof(name), "%d", p->fds[p->at]);
        size_t reclen = (sizeof(struct dirent64_head) + (size_t)len + 1 + 7) & ~7UL;
        if (used + reclen > count) {
            break;
        }
        struct dirent64_head h = {
            .d_ino = p->at + 1, .d_off = (int64_t)p->at + 1, .d_reclen = (uint16_t)reclen, .d_type = DT_LNK};
        memset(out + used, 0, reclen);
        memcpy(out + used, &h, sizeof(h));
        memcpy(out + used + sizeof(h), name, (size_t)len);
        used += reclen;
        p->at++;
    }
    return used == 0 && p->at < p->n ? -EINVAL : (long)used;
}
