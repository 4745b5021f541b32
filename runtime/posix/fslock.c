/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * One fs operation at a time: every call that reaches the FAT server holds the fs lock
 * (dirty-IO schedulers load modules concurrently; LionsOS's helpers were not written
 * for interleaved callers). Waiters park on a wait queue of their own.
 */
#include <stdbool.h>

#include <chrysopolis/clocks.h>
#include <chrysopolis/dispatch.h>
#include <chrysopolis/fs_stats.h>
#include <chrysopolis/fslock.h>
#include <chrysopolis/waitq.h>

static bool busy;
static struct waitq waiters;

void fslock_acquire(void)
{
    while (busy) {
        waitq_wait(&waiters, NULL, 0);
    }
    busy = true;
}

void fslock_release(void)
{
    busy = false;
    waitq_wake(&waiters, NULL, 1);
}

long fslock_lions(long n, long a, long b, long c, long d, long e, long f)
{
    FS_STATS_ASK();
    fslock_acquire();
    FS_STATS_BEGIN();
    long r = dispatch_lions(n, a, b, c, d, e, f);
    FS_STATS_END(n, a, b, r);
    fslock_release();
    return r;
}
