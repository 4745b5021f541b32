/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Host harness for the runtime adapter's pure parts: memory.c (the heap region
 * allocator behind mmap/munmap/mremap/brk/madvise), paths.c and entropy.c (ChaCha20
 * DRBG), and the syscall registration of pd/dispatch.c (a taken slot or an out-of-range
 * number is refused). Built with the host cc against the real sources;
 * tests/test_runtime_host.py runs it. Usage: harness memory | memory-big | paths | chacha | random N
 * | register
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>

#include <microkit.h>

#include <chrysopolis/dispatch.h>
#include <chrysopolis/entropy.h>
#include <chrysopolis/memory.h>
#include <chrysopolis/paths.h>
#include <chrysopolis/pd.h>

uint64_t beam_heap_base, beam_heap_size, pd_heap_limit;
/* The reset stub's answer (runtime/reset/sup_reset.c): 2 once the "node" was restarted. */
static uint64_t generation = 1;
uint64_t sup_generation(void)
{
    return generation;
}
static int failures;

/* What pd/dispatch.c links against on target. */
size_t __sysinfo;
void __init_libc(char **envp, char *pn)
{
    (void)envp, (void)pn;
}

void microkit_dbg_puts(const char *s)
{
    fputs(s, stdout);
}

_Noreturn void pd_halt(void)
{
    printf("FAIL pd_halt called\n");
    exit(1);
}

/* The rows the harness needs, registered as syscalls.c registers its table. */
static const struct dispatch_syscall ROWS[] = {
    {SYS_mmap, sys_mmap, "memory.c"},       {SYS_munmap, sys_munmap, "memory.c"},
    {SYS_mremap, sys_mremap, "memory.c"},   {SYS_brk, sys_brk, "memory.c"},
    {SYS_madvise, sys_madvise, "memory.c"}, {SYS_getrandom, sys_getrandom, "entropy.c"},
};

static void register_rows(void)
{
    for (size_t i = 0; i < sizeof(ROWS) / sizeof(ROWS[0]); i++) {
        if (dispatch_register(&ROWS[i]) != 0) {
            printf("FAIL registering syscall %ld\n", ROWS[i].nr);
            exit(1);
        }
    }
}

uint64_t time_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* The timer driver's clock by protected call, on the PD (entropy.c times it). */
uint64_t time_driver_ns(void)
{
    return time_now_ns();
}

static long sys(long nr, long a, long b, long c, long d, long e, long f)
{
    return dispatch_handler(nr)(a, b, c, d, e, f);
}

#define CHECK(name, cond)                                                                                    \
    do {                                                                                                     \
        if (cond) {                                                                                          \
            printf("ok %s\n", name);                                                                         \
        } else {                                                                                             \
            printf("FAIL %s (line %d)\n", name, __LINE__);                                                   \
            failures++;                                                                                      \
        }                                                                                                    \
    } while (0)

#define PAGE 4096L
#define HEAP (8L << 20)

static long anon(long addr, long len, long flags)
{
    return sys(SYS_mmap, addr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0);
}

static bool all_zero(long addr, long len)
{
    for (long i = 0; i < len; i++) {
        if (((unsigned char *)addr)[i] != 0) {
            return false;
        }
    }
    return true;
}

static void test_memory(void)
{
    /* The region: 8 MiB, its base deliberately not page aligned (memory.c rounds up). */
    unsigned char *region = aligned_alloc(PAGE, HEAP + PAGE);
    memset(region, 0xa5, HEAP + PAGE); /* RAM seL4 never cleared: it holds anything */
    beam_heap_base = (uint64_t)(uintptr_t)region + 100;
    beam_heap_size = HEAP;
    pd_heap_limit = (uint64_t)(uintptr_t)region + HEAP;
    memory_init();
    register_rows();
    /* brk starts above the bitmaps memory.c keeps at the region's bottom. */
    long base = (long)region + PAGE + (long)memory_bitmap_pages(HEAP / PAGE - 1) * PAGE;
    long top = (long)region + HEAP;

    long a = anon(0, 3 * PAGE, 0);
    CHECK("mmap is page aligned, inside the region, from the top", a % PAGE == 0 && a == top - 3 * PAGE);
    CHECK("pages handed out the first time read as zero", all_zero(a, 3 * PAGE));
    long b = anon(0, PAGE + 1, 0);
    CHECK("mmap rounds up to pages and stacks below", b == a - 2 * PAGE);
    memset((void *)a, 0xa5, 3 * PAGE);
    CHECK("munmap", sys(SYS_munmap, a, 3 * PAGE, 0, 0, 0, 0) == 0);
    long a2 = anon(0, 3 * PAGE, 0);
    CHECK("freed pages are reused", a2 == a);
    CHECK("reused pages read as zero", all_zero(a2, 3 * PAGE));

    /* ERTS: reserve with PROT_NONE, commit inside with MAP_FIXED. */
    long res = sys(SYS_mmap, 0, 64 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK("PROT_NONE reservation", res > 0 && res % PAGE == 0);
    memset((void *)res, 0x5a, 64 * PAGE);
    long fixed = anon(res + 8 * PAGE, 4 * PAGE, MAP_FIXED);
    CHECK("MAP_FIXED inside a reservation lands there", fixed == res + 8 * PAGE);
    CHECK("MAP_FIXED memory reads as zero", all_zero(fixed, 4 * PAGE));
    CHECK("MAP_FIXED leaves the rest alone", ((unsigned char *)res)[0] == 0x5a);
    CHECK("MAP_FIXED_NOREPLACE over a mapping: EEXIST",
          anon(res + PAGE, PAGE, MAP_FIXED_NOREPLACE) == -EEXIST);
    CHECK("MAP_FIXED outside the region: ENOMEM", anon(base - 64 * PAGE, PAGE, MAP_FIXED) == -ENOMEM);
    CHECK("MAP_FIXED misaligned: EINVAL", anon(res + 1, PAGE, MAP_FIXED) == -EINVAL);
    CHECK("file mappings: ENODEV", sys(SYS_mmap, 0, PAGE, PROT_READ, MAP_PRIVATE, 3, 0) == -ENODEV);
    CHECK("zero length: EINVAL", anon(0, 0, 0) == -EINVAL);

    /* Over-allocate, then trim head and tail to align (erts_mmap does this). */
    long big = anon(0, 32 * PAGE, 0);
    CHECK("trim head", sys(SYS_munmap, big, 8 * PAGE, 0, 0, 0, 0) == 0);
    CHECK("trim tail", sys(SYS_munmap, big + 24 * PAGE, 8 * PAGE, 0, 0, 0, 0) == 0);
    CHECK("the trimmed head is free again", anon(big, 8 * PAGE, MAP_FIXED_NOREPLACE) == big);
    CHECK("the kept middle is still mapped", anon(big + 8 * PAGE, PAGE, MAP_FIXED_NOREPLACE) == -EEXIST);

    /* mremap: shrink, grow in place, move with MAYMOVE keeping the contents. */
    long m = anon(0, 4 * PAGE, 0);
    memset((void *)m, 0x11, 4 * PAGE);
    CHECK("mremap shrink keeps the address", sys(SYS_mremap, m, 4 * PAGE, 2 * PAGE, 0, 0, 0) == m);
    CHECK("mremap grow in place into freed pages", sys(SYS_mremap, m, 2 * PAGE, 4 * PAGE, 0, 0, 0) == m);
    CHECK("pages grown into read as zero", all_zero(m + 2 * PAGE, 2 * PAGE));
    long n = anon(0, PAGE, 0);
    memset((void *)n, 0x77, PAGE);
    long fixedn = anon(n + PAGE, PAGE, MAP_FIXED); /* the page above n is taken: n cannot grow */
    CHECK("setup for a moving mremap", fixedn == n + PAGE);
    CHECK("mremap without MAYMOVE when blocked: ENOMEM",
          sys(SYS_mremap, n, PAGE, 8 * PAGE, 0, 0, 0) == -ENOMEM);
    long moved = sys(SYS_mremap, n, PAGE, 8 * PAGE, MREMAP_MAYMOVE, 0, 0);
    CHECK("mremap MAYMOVE moves", moved > 0 && moved != n);
    CHECK("mremap MAYMOVE keeps the contents", ((unsigned char *)moved)[PAGE - 1] == 0x77);
    CHECK("mremap MAYMOVE frees the old pages", anon(n, PAGE, MAP_FIXED_NOREPLACE) == n);

    /* brk: from the (rounded-up) base, Linux's "old break on failure". */
    long cur = sys(SYS_brk, 0, 0, 0, 0, 0, 0);
    CHECK("brk starts at the page-aligned base", cur == base);
    CHECK("brk grows", sys(SYS_brk, cur + 10 * PAGE + 5, 0, 0, 0, 0, 0) == cur + 10 * PAGE + 5);
    CHECK("brk's first pages read as zero", all_zero(cur, 10 * PAGE));
    memset((void *)cur, 0x33, 10 * PAGE);
    CHECK("mmap does not hand out brk pages", anon(cur + PAGE, PAGE, MAP_FIXED) == -ENOMEM);
    CHECK("brk shrinks", sys(SYS_brk, cur + PAGE, 0, 0, 0, 0, 0) == cur + PAGE);
    CHECK("brk regrown pages read as zero",
          sys(SYS_brk, cur + 10 * PAGE, 0, 0, 0, 0, 0) == cur + 10 * PAGE && all_zero(cur + PAGE, 9 * PAGE));
    CHECK("brk past the region keeps the old break",
          sys(SYS_brk, top + PAGE, 0, 0, 0, 0, 0) == cur + 10 * PAGE);

    /* madvise(DONTNEED) reads back as zero. */
    memset((void *)m, 0x44, 4 * PAGE);
    CHECK("madvise DONTNEED",
          sys(SYS_madvise, m, 4 * PAGE, MADV_DONTNEED, 0, 0, 0) == 0 && all_zero(m, 4 * PAGE));

    char info[256];
    unsigned long total = 0, free = 0, avail = 0, largest = 0;
    memory_meminfo(info, sizeof(info));
    sscanf(info, "MemTotal: %lu kB MemFree: %lu kB MemAvailable: %lu kB MmapLargestFree: %lu kB", &total,
           &free, &avail, &largest);
    CHECK("meminfo: MemTotal is the region above the bitmaps", total * 1024 == (unsigned long)(top - base));
    CHECK("meminfo: some free, the largest run at most all of it",
          free > 0 && largest > 0 && largest <= free);
    CHECK("too large: ENOMEM", anon(0, HEAP, 0) == -ENOMEM);
    /* Fill what is left with single pages: every page handed out once, all distinct. */
    long count = 0, last = 0, prev = top;
    bool ordered = true;
    while ((last = anon(0, PAGE, 0)) > 0) {
        ordered = ordered && last < prev;
        prev = last;
        count++;
    }
    CHECK("the region runs out with ENOMEM", last == -ENOMEM && count > 1500);
    memory_meminfo(info, sizeof(info));
    sscanf(info, "MemTotal: %lu kB MemFree: %lu kB MemAvailable: %lu kB MmapLargestFree: %lu kB", &total,
           &free, &avail, &largest);
    CHECK("meminfo: nothing free once it ran out", free == 0 && largest == 0);
    CHECK("single pages come top-down, each once", ordered);

    /* The supervisor restarts the node: .bss is as at its first start, the region is not. */
    memset((void *)(top - 64 * PAGE), 0x55, 64 * PAGE);
    generation = 2;
    memory_init();
    memory_meminfo(info, sizeof(info));
    sscanf(info, "MemTotal: %lu kB MemFree: %lu kB MemAvailable: %lu kB MmapLargestFree: %lu kB", &total,
           &free, &avail, &largest);
    CHECK("a restarted node has the whole region free",
          free == total && total * 1024 == (unsigned long)(top - base));
    long again = anon(0, 64 * PAGE, 0);
    CHECK("what the last node wrote reads as zero when handed out again",
          again == top - 64 * PAGE && all_zero(again, 64 * PAGE));
    generation = 1;
}

/* A region of several GiB (host memory reserved lazily): served whole, and fast with many
 * mappings in it. */
static void test_memory_big(void)
{
    const long size = 3L << 30;
    unsigned char *region =
        mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK("host region", region != MAP_FAILED);
    beam_heap_base = (uint64_t)(uintptr_t)region;
    beam_heap_size = size;
    pd_heap_limit = (uint64_t)(uintptr_t)region + size;
    memory_init();
    register_rows();
    long huge = anon(0, 5L << 29, 0); /* 2.5 GiB: more than a 1 GiB cap would serve */
    CHECK("one 2.5 GiB mapping", huge > 0 && huge % PAGE == 0 && huge + (5L << 29) <= (long)pd_heap_limit);
    ((unsigned char *)huge)[0] = 1;
    ((unsigned char *)huge)[(5L << 29) - 1] = 1;
    CHECK("munmap it", sys(SYS_munmap, huge, 5L << 29, 0, 0, 0, 0) == 0);

    /* 500 carriers of 1 MiB, every other one freed, then 1000 mmap/munmap pairs. */
    static long carriers[500];
    for (int i = 0; i < 500; i++) {
        carriers[i] = anon(0, 1L << 20, 0);
    }
    for (int i = 0; i < 500; i += 2) {
        sys(SYS_munmap, carriers[i], 1L << 20, 0, 0, 0, 0);
    }
    uint64_t t0 = time_now_ns();
    bool ok = true;
    for (int i = 0; i < 1000; i++) {
        long m = anon(0, 2L << 20, 0); /* fits no freed hole: searched past all of them */
        ok = ok && m > 0 && sys(SYS_munmap, m, 2L << 20, 0, 0, 0, 0) == 0;
    }
    uint64_t per = (time_now_ns() - t0) / 2000;
    char name[96];
    snprintf(name, sizeof(name), "mmap/munmap among 500 carriers: %llu ns a call", (unsigned long long)per);
    CHECK(name, ok && per < 200000); /* each call zeroes 2 MiB it handed out before */
    munmap(region, size);
}

static void test_paths(void)
{
    char out[64];
    struct {
        const char *base, *rel, *want;
    } cases[] = {
        {"/", "//lib/kernel/ebin", "/lib/kernel/ebin"},
        {"/", "/lib/./stdlib/../kernel//ebin/", "/lib/kernel/ebin"},
        {"/lib", "kernel/ebin", "/lib/kernel/ebin"},
        {"/lib/", "../releases/29/start.boot", "/releases/29/start.boot"},
        {"/", "..", "/"},
        {"/", ".", "/"},
        {"/a/b", "../../../c", "/c"},
        {"/ignored", "/abs", "/abs"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int r = paths_join(cases[i].base, cases[i].rel, out, sizeof(out));
        char name[160];
        snprintf(name, sizeof(name), "path %s + %s -> %s", cases[i].base, cases[i].rel, cases[i].want);
        CHECK(name, r == 0 && strcmp(out, cases[i].want) == 0);
    }
    char small[8];
    CHECK("path too long: ENAMETOOLONG", paths_join("/", "/abcdefgh", small, sizeof(small)) == -ENAMETOOLONG);
    CHECK("path exactly fits",
          paths_join("/", "abcdef", small, sizeof(small)) == 0 && strcmp(small, "/abcdef") == 0);
}

/* RFC 8439, 2.3.2: the ChaCha20 block function test vector. */
static void test_chacha(void)
{
    uint32_t in[16] = {0x61707865, 0x3320646e, 0x79622d32, 0x6b206574, 0x03020100, 0x07060504,
                       0x0b0a0908, 0x0f0e0d0c, 0x13121110, 0x17161514, 0x1b1a1918, 0x1f1e1d1c,
                       0x00000001, 0x09000000, 0x4a000000, 0x00000000};
    const uint32_t want[16] = {0xe4e7f110, 0x15593bd1, 0x1fdd0f50, 0xc47120a3, 0xc7f4d1c7, 0x0368c033,
                               0x9aaa2204, 0x4e6cd4c3, 0x466482d2, 0x09aa9f07, 0x05d7c214, 0xa2028bd9,
                               0xd19c12b5, 0xb94e16de, 0xe883d0cb, 0x4e3c50a2};
    uint32_t out[16];
    entropy_chacha20_block(in, out);
    CHECK("chacha20 block matches RFC 8439 2.3.2", memcmp(out, want, sizeof(want)) == 0);
}

static void print_random(long n)
{
    register_rows();
    unsigned char *buf = malloc((size_t)n);
    CHECK("getrandom returns the length", sys(SYS_getrandom, (long)buf, n, 0, 0, 0, 0) == n);
    CHECK("getrandom refuses unknown flags", sys(SYS_getrandom, (long)buf, 1, 0x100, 0, 0, 0) == -EINVAL);
    sys(SYS_getrandom, (long)buf, n, 0, 0, 0, 0);
    printf("random ");
    for (long i = 0; i < n; i++) {
        printf("%02x", buf[i]);
    }
    printf("\n");
}

/* Registration refuses, loudly, what would overwrite a slot or fall off the table. */
static void test_register(void)
{
    const struct dispatch_syscall first = {SYS_mmap, sys_mmap, "memory.c"};
    const struct dispatch_syscall again = {SYS_mmap, sys_munmap, "memory.c"};
    const struct dispatch_syscall big = {DISPATCH_MAX, sys_brk, "memory.c"};
    const struct dispatch_syscall bigger = {100000, sys_brk, "memory.c"};
    const struct dispatch_syscall negative = {-1, sys_brk, "memory.c"};
    const struct dispatch_syscall last = {DISPATCH_MAX - 1, sys_brk, "memory.c"};
    CHECK("register a free slot", dispatch_register(&first) == 0 && dispatch_handler(SYS_mmap) == sys_mmap);
    CHECK("register a taken slot: refused", dispatch_register(&again) == -1);
    CHECK("the first handler stays", dispatch_handler(SYS_mmap) == sys_mmap);
    CHECK("register DISPATCH_MAX: refused", dispatch_register(&big) == -1);
    CHECK("register 100000: refused", dispatch_register(&bigger) == -1);
    CHECK("register -1: refused", dispatch_register(&negative) == -1);
    CHECK("register DISPATCH_MAX - 1",
          dispatch_register(&last) == 0 && dispatch_handler(DISPATCH_MAX - 1) == sys_brk);
    CHECK("no handler out of range", dispatch_handler(DISPATCH_MAX) == NULL && dispatch_handler(-1) == NULL);
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "memory") == 0) {
        test_memory();
    } else if (argc >= 2 && strcmp(argv[1], "memory-big") == 0) {
        test_memory_big();
    } else if (argc >= 2 && strcmp(argv[1], "paths") == 0) {
        test_paths();
    } else if (argc >= 2 && strcmp(argv[1], "chacha") == 0) {
        test_chacha();
    } else if (argc >= 2 && strcmp(argv[1], "register") == 0) {
        test_register();
    } else if (argc >= 3 && strcmp(argv[1], "random") == 0) {
        print_random(atol(argv[2]));
    } else {
        fprintf(stderr, "usage: harness memory | memory-big | paths | chacha | random N | register\n");
        return 2;
    }
    return failures ? 1 : 0;
}
