/* SPDX-License-Identifier: BSD-2-Clause */
/* memory.c: brk and mmap over the heap memory region (docs/architecture.md). */
#pragma once

#include <stddef.h>

/* Take the heap region (below pd_heap_limit) for mmap and brk. */
void memory_init(void);

/* /proc/meminfo's text (an fd_proc_fill): what mmap/brk serve, have free, and the
 * longest free run. */
size_t memory_meminfo(char *buf, size_t size);

/* The pages at the region's bottom that memory_init keeps for its bitmaps. */
size_t memory_bitmap_pages(size_t region_pages);

long sys_mmap(long addr, long len, long prot, long flags, long fd, long off);
long sys_munmap(long addr, long len, long c, long d, long e, long f);
long sys_mremap(long old, long old_len, long new_len, long flags, long new_addr, long f);
long sys_brk(long newbrk, long b, long c, long d, long e, long f);
long sys_madvise(long addr, long len, long advice, long d, long e, long f);
long sys_mprotect(long addr, long len, long prot, long d, long e, long f);
