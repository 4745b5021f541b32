/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * dispatch.c: musl start-up and the syscall dispatcher in front of LionsOS's. A slot
 * registered here wins; every other number chains on to LionsOS. Which file answers
 * which number: the tables in runtime/posix/syscalls.c and runtime/pd/dispatch.c
 * (docs/syscalls.md).
 */
#pragma once

#include <stddef.h>

/* Slots in the dispatch table: numbers from 0 to DISPATCH_MAX - 1 can be registered. */
#define DISPATCH_MAX 512

typedef long (*dispatch_fn_t)(long a, long b, long c, long d, long e, long f);

/* One row of a syscall table: the number, its handler and the file defining the handler. */
struct dispatch_syscall {
    long nr;
    dispatch_fn_t handler;
    const char *file;
};

/* Bring musl up (thread pointer, auxv, environment) after LionsOS's libc_init(), put
 * the dispatcher in front of LionsOS's and register the PD-level table. */
void dispatch_init(void);
/* Claim row->nr for row->handler: 0, or -1 after a `beam_server: ERROR:` line if the
 * number is out of range or already taken (a slot is never overwritten). */
int dispatch_register(const struct dispatch_syscall *row);
/* The handler registered for `nr`, or NULL. */
dispatch_fn_t dispatch_handler(long nr);
/* LionsOS's own handler for `n` (for handlers that add to it rather than replace it). */
long dispatch_lions(long n, long a, long b, long c, long d, long e, long f);

long sys_set_tid_address(long a, long b, long c, long d, long e, long f);
