/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fs_stats.c: an optional profiler of the calls that reach the FAT server. Off by default
 * (stage option `fs_stats` of `beam` defines CHRYSOPOLIS_FS_STATS): per syscall, count and
 * time them, and apart the calls on `.beam` files (module loading); print `fsstats:` lines
 * at the first read of stdin (ERTS reads it when the first line is typed at the shell:
 * boot-time file I/O is over). `chrysopolis run --profile-boot` reads them
 * (chrysopolis/bootprofile.py).
 */
#pragma once

#include <stdint.h>

#ifdef CHRYSOPOLIS_FS_STATS
/* Now, as the fs lock is asked for; returns the time it was taken (lock wait counted). */
uint64_t fs_stats_begin(uint64_t asked);
/* Call `n` returned `r`; `a` and `b` are its first arguments (an fd, or a dirfd and a path). */
void fs_stats_end(long n, uint64_t began, long a, long b, long r);
/* At a read of `fd`: print the counts once, at the first read of stdin. */
void fs_stats_at_read(long fd);
#define FS_STATS_ASK() uint64_t fs_asked_ = clocks_now_ns()
#define FS_STATS_BEGIN() uint64_t fs_began_ = fs_stats_begin(fs_asked_)
#define FS_STATS_END(n, a, b, r) fs_stats_end(n, fs_began_, a, b, r)
#define FS_STATS_AT_READ(fd) fs_stats_at_read(fd)
#else
#define FS_STATS_ASK()
#define FS_STATS_BEGIN()
#define FS_STATS_END(n, a, b, r)
#define FS_STATS_AT_READ(fd)
#endif
