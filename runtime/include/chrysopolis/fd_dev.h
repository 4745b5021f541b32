/* SPDX-License-Identifier: BSD-2-Clause */
/* fd_dev.c: the device files, /dev/null and /dev/urandom (also /dev/random). */
#pragma once

#include <sys/stat.h>

/* Open the device at the absolute, folded `path` with open flags `flags`: the fd,
 * -errno, or 1 if `path` is no device. */
long fd_dev_open(const char *path, int flags);
/* Stat the device at `path`: 0, or 1 if `path` is no device. */
long fd_dev_stat(const char *path, struct stat *st);
