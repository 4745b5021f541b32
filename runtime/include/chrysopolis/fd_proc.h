/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fd_proc.c: a few /proc files, so that Erlang can look at the runtime itself:
 * /proc/self/fd lists the open fds (file:list_dir), and files registered by other parts
 * (/proc/net/sockstat, /proc/net/memp from runtime/net, /proc/meminfo from memory.c) hold a text snapshot
 * taken at open.
 */
#pragma once

#include <stddef.h>
#include <sys/stat.h>

/* Writes a file's text into buf (at most size bytes); returns the length it wanted. */
typedef size_t (*fd_proc_fill)(char *buf, size_t size);

/* Add the file `path` (absolute, under /proc; the string must live for good). 0, or -1
 * when the table is full. */
int fd_proc_register(const char *path, fd_proc_fill fill);
/* Open the absolute, folded `path` if it is ours: the fd, -errno, or 1 if it is not. */
long fd_proc_open(const char *path, long flags);
/* Stat it: 0, or 1 if it is not ours. */
long fd_proc_stat(const char *path, struct stat *st);
/* getdents64 of a /proc directory fd: bytes, or 1 if `fd` is none. */
long fd_proc_getdents(int fd, void *buf, size_t count);
