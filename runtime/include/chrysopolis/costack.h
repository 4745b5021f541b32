/* SPDX-License-Identifier: BSD-2-Clause */
/* costack.c: the cothread stacks, carved from the heap region's top, and their canaries. */
#pragma once

#include <stdint.h>

#include <libmicrokitco.h>

/* Below each stack: memory nobody uses, so that a small overrun spoils no other stack
 * before the canary check catches it; a sixteenth of the stack, at least 16 KiB. */
static inline uint64_t costack_red_zone(uint64_t stack_size)
{
    return stack_size / 16 > 0x4000 ? stack_size / 16 : 0x4000;
}

/* Carve `n` stacks of `size` bytes (each above a red zone) from the top of [.., top):
 * their lowest addresses into stacks[0..n-1]; returns where the carving starts. */
uint64_t costack_carve(uint64_t top, uint64_t size, int n, stack_ptrs_arg_array_t stacks);

/* Write the canary at the lowest bytes of cothread h's stack (after spawn zeroed it). */
void costack_arm(microkit_cothread_ref_t h);

/* Cothread h (thread id tid) is switching away: if its canary is spoilt, print
 * `beam_server: ERROR: cothread ... overflowed its stack` and power off (status 139, as
 * a process killed by SIGSEGV). */
void costack_check(microkit_cothread_ref_t h, int tid);

/* Bytes of cothread h's stack ever written since its spawn (stacks start zeroed). */
uint64_t costack_used(microkit_cothread_ref_t h);
