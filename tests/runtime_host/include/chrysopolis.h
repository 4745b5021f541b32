/*
 * Host stand-in for runtime/include/chrysopolis.h: the few PD-level names the adapter's
 * pure files (memory.c, entropy.c, paths.c) use, so the host harness can link them.
 */
#pragma once

#include <stdint.h>

extern uint64_t beam_heap_base;
extern uint64_t beam_heap_size;
extern uint64_t runtime_heap_limit;

typedef long (*runtime_syscall_t)(long a, long b, long c, long d, long e, long f);
void runtime_define_syscall(long nr, runtime_syscall_t fn);
uint64_t time_now_ns(void);
