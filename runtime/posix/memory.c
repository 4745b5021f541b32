/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Memory: brk, mmap, munmap and mremap over the heap memory region (base and size patched
 * in by the Microkit tool; pd.c keeps its top for the cothread stacks, so the region ends
 * at pd_heap_limit). LionsOS's versions hand out a 1 MiB static arena.
 *
 * Two page bitmaps say what is in use and what has held data; they sit at the bottom of
 * the region, sized by it, so the whole region is served however large it is. brk grows
 * up from above them, mmap takes the highest free run that fits (so the two meet last).
 * What ERTS does with it: reserve address space with PROT_NONE and commit parts of it
 * with MAP_FIXED, over-allocate and trim to align, grow with mremap. There is no
 * protection to change: PROT_NONE pages are plain memory. Anonymous memory must read as
 * zero: a page is cleared as it is handed out if it may hold data (`dirty`). From 256 MiB
 * of RAM up the region is RAM that seL4 never clears (boards.heap_reserve), so at the first
 * start every page is dirty; on a board whose RAM starts zeroed, only the part the loader's
 * image was in (HEAP_WRITTEN_OFFSET/BYTES, boards.heap_written). A boot then touches only
 * what ERTS uses. A node the supervisor restarted keeps the dirty map of the last.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include <chrysopolis/memory.h>
#include <chrysopolis/pd.h>
#include <chrysopolis/sup_reset.h>

#define PAGE 4096UL
#define ALL UINT64_MAX

static uint64_t *used;
static uint64_t *dirty;
static uintptr_t base;
static size_t npages;
static size_t brk_pages; /* pages [0, brk_pages) belong to brk */
static uintptr_t brk_cur;

static bool bit(const uint64_t *map, size_t p)
{
    return (map[p / 64] >> (p % 64)) & 1;
}

/* Bits [lo, hi) of one word, lo < hi <= 64. */
static uint64_t mask(size_t lo, size_t hi)
{
    uint64_t upper = hi == 64 ? ALL : (1ULL << hi) - 1;
    return upper & ~((1ULL << lo) - 1);
}

static void set_bits(uint64_t *map, size_t p, size_t n, bool v)
{
    while (n > 0) {
        size_t lo = p % 64, k = 64 - lo < n ? 64 - lo : n;
        uint64_t m = mask(lo, lo + k);
        map[p / 64] = v ? map[p / 64] | m : map[p / 64] & ~m;
        p += k;
        n -= k;
    }
}

static bool range_free(size_t p, size_t n)
{
    while (n > 0) {
        size_t lo = p % 64, k = 64 - lo < n ? 64 - lo : n;
        if (used[p / 64] & mask(lo, lo + k)) {
            return false;
        }
        p += k;
        n -= k;
    }
    return true;
}

static void *page_addr(size_t p)
{
    return (void *)(base + p * PAGE);
}

/* Hand out pages [p, p+n): in use, and zero where they held data before. */
static void take(size_t p, size_t n)
{
    size_t run = 0;
    for (size_t i = p; i <= p + n; i++) {
        if (i < p + n && i % 64 == 0 && i + 64 <= p + n && dirty[i / 64] == 0) {
            if (run > 0) {
                memset(page_addr(i - run), 0, run * PAGE);
                run = 0;
            }
            i += 63; /* a clean word */
            continue;
        }
        if (i < p + n && bit(dirty, i)) {
            run++;
            continue;
        }
        if (run > 0) {
            memset(page_addr(i - run), 0, run * PAGE);
            run = 0;
        }
    }
    set_bits(used, p, n, true);
    set_bits(dirty, p, n, true);
}

/* The highest free run of n pages above the brk area, or SIZE_MAX. Whole words (64
 * pages) are stepped over at once, full or empty: a 2 GiB region is 8192 words. */
static size_t find_free(size_t n)
{
    size_t run = 0;
    for (size_t i = npages; i > brk_pages;) {
        if (i % 64 == 0 && i - 64 >= brk_pages) {
            uint64_t w = used[i / 64 - 1];
            if (w == ALL) {
                run = 0;
                i -= 64;
                continue;
            }
            if (w == 0) {
                if (run + 64 >= n) {
                    return i - (n - run);
                }
                run += 64;
                i -= 64;
                continue;
            }
        }
        i--;
        if (bit(used, i)) {
            run = 0;
        } else if (++run == n) {
            return i;
        }
    }
    return SIZE_MAX;
}

static size_t pages_of(size_t len)
{
    return (len + PAGE - 1) / PAGE;
}

/* Page index of addr, if [addr, addr+len) lies in the region; else SIZE_MAX. */
static size_t index_of(uintptr_t addr, size_t len)
{
    if (addr < base || addr % PAGE != 0) {
        return SIZE_MAX;
    }
    size_t p = (addr - base) / PAGE;
    if (p > npages || pages_of(len) > npages - p) {
        return SIZE_MAX;
    }
    return p;
}

long sys_mmap(long addr, long len, long prot, long flags, long fd, long off)
{
    (void)prot, (void)fd, (void)off;
    if (len <= 0) {
        return -EINVAL;
    }
    if (!(flags & MAP_ANONYMOUS)) {
        return -ENODEV; /* no file mappings */
    }
    size_t n = pages_of((size_t)len);
    size_t p;
    if (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) {
        if (addr % PAGE != 0) {
            return -EINVAL;
        }
        p = index_of((uintptr_t)addr, (size_t)len);
        if (p == SIZE_MAX || p < brk_pages) {
            return -ENOMEM;
        }
        if ((flags & MAP_FIXED_NOREPLACE) && !range_free(p, n)) {
            return -EEXIST;
        }
        set_bits(dirty, p, n, true); /* a fixed mapping replaces what was there: zero it all */
    } else {
        p = index_of((uintptr_t)addr, (size_t)len);
        if (addr == 0 || p == SIZE_MAX || p < brk_pages || !range_free(p, n)) {
            p = find_free(n);
        }
        if (p == SIZE_MAX) {
            return -ENOMEM;
        }
    }
    take(p, n);
    return (long)page_addr(p);
}

long sys_munmap(long addr, long len, long c, long d, long e, long f)
{
    (void)c, (void)d, (void)e, (void)f;
    if (addr % PAGE != 0 || len <= 0) {
        return -EINVAL;
    }
    size_t p = index_of((uintptr_t)addr, (size_t)len);
    if (p != SIZE_MAX && p >= brk_pages) {
        set_bits(used, p, pages_of((size_t)len), false);
    }
    return 0;
}

long sys_mremap(long old, long old_len, long new_len, long flags, long new_addr, long f)
{
    (void)new_addr, (void)f;
    if (old % PAGE != 0 || new_len <= 0 || (flags & ~MREMAP_MAYMOVE) != 0) {
        return -EINVAL; /* MREMAP_FIXED / DONTUNMAP: not needed by ERTS */
    }
    size_t o = pages_of((size_t)old_len), n = pages_of((size_t)new_len);
    size_t p = index_of((uintptr_t)old, (size_t)old_len);
    if (p == SIZE_MAX || p < brk_pages) {
        return -EFAULT;
    }
    if (n <= o) {
        set_bits(used, p + n, o - n, false);
        return old;
    }
    if (p + n <= npages && range_free(p + o, n - o)) {
        take(p + o, n - o);
        return old;
    }
    if (!(flags & MREMAP_MAYMOVE)) {
        return -ENOMEM;
    }
    size_t q = find_free(n);
    if (q == SIZE_MAX) {
        return -ENOMEM;
    }
    take(q, n);
    memcpy(page_addr(q), (void *)old, o * PAGE);
    set_bits(used, p, o, false);
    return (long)page_addr(q);
}

/* Linux's brk: the new break, or the old one when it cannot move. */
long sys_brk(long newbrk, long b, long c, long d, long e, long f)
{
    (void)b, (void)c, (void)d, (void)e, (void)f;
    uintptr_t want = (uintptr_t)newbrk;
    if (want < base || want > base + npages * PAGE) {
        return (long)brk_cur;
    }
    size_t n = pages_of(want - base);
    if (n > brk_pages) {
        if (!range_free(brk_pages, n - brk_pages)) {
            return (long)brk_cur;
        }
        take(brk_pages, n - brk_pages);
    } else {
        set_bits(used, n, brk_pages - n, false);
    }
    brk_pages = n;
    brk_cur = want;
    return (long)brk_cur;
}

/* MADV_DONTNEED on private anonymous memory reads back as zero; the rest are hints. */
long sys_madvise(long addr, long len, long advice, long d, long e, long f)
{
    (void)d, (void)e, (void)f;
    if (addr % PAGE != 0) {
        return -EINVAL;
    }
    if (advice == MADV_DONTNEED && len > 0 && index_of((uintptr_t)addr, (size_t)len) != SIZE_MAX) {
        memset((void *)addr, 0, pages_of((size_t)len) * PAGE);
    }
    return 0;
}

long sys_mprotect(long addr, long len, long prot, long d, long e, long f)
{
    (void)len, (void)prot, (void)d, (void)e, (void)f;
    return addr % PAGE != 0 ? -EINVAL : 0;
}

/* /proc/meminfo, in Linux's form: MemTotal is what mmap and brk serve, MemFree what they
 * could still hand out, and MmapLargestFree the longest free run (what one mmap can get). */
size_t memory_meminfo(char *buf, size_t size)
{
    size_t free = 0, run = 0, largest = 0;
    for (size_t p = 0; p < npages; p++) {
        if (p % 64 == 0 && p + 64 <= npages && (used[p / 64] == 0 || used[p / 64] == ALL)) {
            bool empty = used[p / 64] == 0;
            free += empty ? 64 : 0;
            run = empty ? run + 64 : 0;
            largest = run > largest ? run : largest;
            p += 63;
            continue;
        }
        bool in_use = bit(used, p) || p < brk_pages;
        free += !in_use;
        run = in_use ? 0 : run + 1;
        largest = run > largest ? run : largest;
    }
    int n =
        snprintf(buf, size,
                 "MemTotal:       %8zu kB\nMemFree:        %8zu kB\nMemAvailable:   %8zu "
                 "kB\nMmapLargestFree:%8zu kB\n",
                 npages * (PAGE / 1024), free * (PAGE / 1024), free * (PAGE / 1024), largest * (PAGE / 1024));
    return n < 0 ? 0 : (size_t)n;
}

size_t memory_bitmap_pages(size_t region_pages)
{
    return pages_of(2 * ((region_pages + 63) / 64) * sizeof(uint64_t));
}

/* The dirty map of the first start (after base and npages are set): all of it, or only
 * the pages the loader's image may have written. */
static void first_dirty(size_t words)
{
#ifdef HEAP_WRITTEN_OFFSET
    memset(dirty, 0, words * sizeof(uint64_t));
    uintptr_t lo = (uintptr_t)beam_heap_base + HEAP_WRITTEN_OFFSET, hi = lo + HEAP_WRITTEN_BYTES;
    uintptr_t end = base + npages * PAGE;
    lo = lo < base ? base : lo & ~(PAGE - 1);
    hi = hi > end ? end : hi;
    if (hi > lo) {
        set_bits(dirty, (lo - base) / PAGE, pages_of(hi - lo), true);
    }
#else
    memset(dirty, 0xff, words * sizeof(uint64_t));
#endif
}

void memory_init(void)
{
    uintptr_t start = ((uintptr_t)beam_heap_base + PAGE - 1) & ~(PAGE - 1);
    uintptr_t limit = (uintptr_t)pd_heap_limit & ~(PAGE - 1);
    size_t total = limit > start ? (limit - start) / PAGE : 0;
    size_t meta = memory_bitmap_pages(total);
    if (total <= meta) {
        npages = 0; /* every call answers ENOMEM */
        base = brk_cur = start;
        return;
    }
    size_t words = (total + 63) / 64;
    used = (uint64_t *)start;
    dirty = used + words;
    /* Nothing is in use. A node restarted by the supervisor keeps the last one's dirty map,
     * so what it wrote is cleared as it is handed out. */
    memset(used, 0, words * sizeof(uint64_t));
    base = start + meta * PAGE;
    npages = total - meta;
    brk_pages = 0;
    brk_cur = base;
    if (sup_generation() <= 1) {
        first_dirty(words);
    }
}
