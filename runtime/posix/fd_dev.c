/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The device files: /dev/null (ERTS reopens it until it holds fds 0-2), /dev/urandom
 * and /dev/random (the DRBG of entropy.c), and /dev/supervisor (supervision.c). Opened by path from fsops.c's
 * openat; always ready, and pread/pwrite ignore the offset.
 */
#include <string.h>

#include <chrysopolis/entropy.h>
#include <chrysopolis/fd_dev.h>
#include <chrysopolis/fds.h>
#include <chrysopolis/supervision.h>

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

static const struct fd_ops null_ops = {
    .name = "/dev/null", .read = null_read, .write = null_write, .fstat = chr_fstat, .offsetless = true};
static const struct fd_ops urandom_ops = {.name = "/dev/urandom",
                                          .read = urandom_read,
                                          .write = null_write,
                                          .fstat = chr_fstat,
                                          .offsetless = true};

static bool is_random(const char *path)
{
    return strcmp(path, "/dev/urandom") == 0 || strcmp(path, "/dev/random") == 0;
}

long fd_dev_open(const char *path, int flags)
{
    if (strcmp(path, "/dev/null") == 0) {
        return fds_open(&null_ops, NULL, flags);
    }
    if (is_random(path)) {
        return fds_open(&urandom_ops, NULL, flags);
    }
    return supervision_open(path, flags);
}

long fd_dev_stat(const char *path, struct stat *st)
{
    if (strcmp(path, "/dev/null") == 0 || is_random(path)) {
        return chr_fstat(-1, st);
    }
    return supervision_stat(path, st);
}
