/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A profiler of the calls that reach the FAT server, to see where module loading spends
 * its time. Compiled in only with CHRYSOPOLIS_FS_STATS (stage option `fs_stats` of
 * `beam`): fslock.c and fsops.c call it through the FS_STATS_ macros of its header.
 * Module loading is the calls on `.beam` files: those naming a `.beam` path, and those on
 * an fd such a call opened (a bit per fd, set by openat, cleared by close).
 */
#include <chrysopolis/fs_stats.h>

#ifdef CHRYSOPOLIS_FS_STATS
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>

#include <lions/posix/fd.h>

#include <chrysopolis/clocks.h>

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
static uint64_t beam_fds[(MAX_FDS + 63) / 64];
static struct {
    uint32_t files, calls;
    uint64_t ns;
} fs_beam;

static bool beam_path(long p)
{
    size_t len = strlen((const char *)p);
    return len >= 5 && memcmp((const char *)p + len - 5, ".beam", 5) == 0;
}

static bool beam_fd(long fd)
{
    return fd >= 0 && fd < MAX_FDS && (beam_fds[fd / 64] >> (fd % 64) & 1);
}

static void beam_call(long n, long a, long b, long r, uint64_t ns)
{
    bool path = n == SYS_openat || n == SYS_newfstatat;
    bool beam = path ? beam_path(b) : beam_fd(a);
    if (n == SYS_openat && r >= 0 && r < MAX_FDS) {
        /* set or cleared: an fd whose close we did not see may be this one again */
        beam_fds[r / 64] = (beam_fds[r / 64] & ~(1ull << (r % 64))) | (uint64_t)beam << (r % 64);
        fs_beam.files += beam;
    }
    if (!beam) {
        return;
    }
    fs_beam.calls++;
    fs_beam.ns += ns;
    if (n == SYS_close) {
        beam_fds[a / 64] &= ~(1ull << (a % 64));
    }
}

uint64_t fs_stats_begin(uint64_t asked)
{
    uint64_t now = clocks_now_ns();
    fs_wait_ns += now - asked;
    if (fs_first_ns == 0) {
        fs_first_ns = now;
    }
    return now;
}

void fs_stats_end(long n, uint64_t began, long a, long b, long r)
{
    size_t i = 0;
    while (i < FS_STATS_N && fs_stats_names[i].n != n) {
        i++;
    }
    fs_last_ns = clocks_now_ns();
    fs_stats[i].count++;
    fs_stats[i].ns += fs_last_ns - began;
    if ((n == SYS_read || n == SYS_readv || n == SYS_pread64) && r > 0) {
        fs_stats[i].bytes += (uint64_t)r;
    }
    beam_call(n, a, b, r, fs_last_ns - began);
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
    printf("fsstats: beam %u files %u calls %llu us\n", fs_beam.files, fs_beam.calls,
           (unsigned long long)(fs_beam.ns / 1000));
    printf("fsstats: total %u calls %llu us, lock wait %llu us, first %llu ms, last %llu ms\n", count,
           (unsigned long long)(total / 1000), (unsigned long long)(fs_wait_ns / 1000),
           (unsigned long long)(fs_first_ns / 1000000), (unsigned long long)(fs_last_ns / 1000000));
}

void fs_stats_at_read(long fd)
{
    if (fd == 0 && !fs_stats_printed) {
        fs_stats_printed = true;
        fs_stats_print();
    }
}
#endif
