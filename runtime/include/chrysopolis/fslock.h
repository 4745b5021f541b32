/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fslock.c: one FAT-server operation at a time (dirty-IO schedulers load modules
 * concurrently; LionsOS's fs helpers were not written for interleaved callers).
 */
#pragma once

void fslock_acquire(void);
void fslock_release(void);
/* LionsOS's handler for `n` under the lock (and counted by fs_stats). */
long fslock_lions(long n, long a, long b, long c, long d, long e, long f);
