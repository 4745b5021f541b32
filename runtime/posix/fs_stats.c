/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A profiler of the calls that reach the FAT server, to see where module loading spends
 * its time. Compiled in only with CHRYSOPOLIS_FS_STATS (stage option `fs_stats` of
 * `beam`): fslock.c and fsops.c call it through the FS_STATS_ macros of its header.
 */
#include <chrysopolis/fs_stats.h>

#ifdef CHRYSOPOLIS_FS_STATS
#include <stdbool.h>
#include <stdio.h>
#include <sys/syscall.h>

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

uint64_t fs_stats_begin(uint64_t asked)
{
    uint64_t now = clocks_now_ns();
    fs_wait_ns += now - asked;
    if (fs_first_ns == 0) {
        fs_first_ns = now;
    }
    return now;
}

void fs_stats_end(long n, uint64_t began, long r)
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
