/* SPDX-License-Identifier: BSD-2-Clause */
/* fd_dir.c: directory fds, for getdents64 over the fs protocol's dir open/read/close. */
#pragma once

#include <sys/stat.h>

/* Open the absolute, folded `path` as a directory fd: the fd or -errno. */
long fd_dir_open(const char *path, long flags);
/* The absolute path of directory fd `fd`, or NULL if it is not one. */
const char *fd_dir_path(int fd);
int fd_dir_fstat(int fd, struct stat *st);

long sys_getdents64(long fd, long bufp, long count, long d, long e, long f);
