/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Cothread stacks. libmicrokitco wants a stack for every cothread it may run, all one
 * size, at init; they come from the top of the heap region so the static image stays
 * small. Nothing maps a guard page between them (a Microkit region is mapped whole), so
 * each stack keeps a canary in its lowest bytes, checked whenever its cothread switches
 * away (threads.c), with an unused red zone below it: an overrun is reported at the next
 * switch instead of silently corrupting the stack underneath.
 */
#include <stdio.h>

#include <chrysopolis/costack.h>
#include <chrysopolis/power.h>

#define CANARY_WORDS 128 /* 1 KiB: a frame that skips them lands in the red zone */
#define CANARY 0x5afe57ac4ca9a7e5ULL

static uint64_t stack_base[LIBMICROKITCO_MAX_COTHREADS]; /* by handle; 0: the root's own */
static uint64_t stack_size;

uint64_t costack_carve(uint64_t top, uint64_t size, int n, stack_ptrs_arg_array_t stacks)
{
    uint64_t stride = size + costack_red_zone(size);
    uint64_t start = top - (uint64_t)n * stride;
    stack_size = size;
    for (int i = 0; i < n; i++) {
        stacks[i] = start + costack_red_zone(size) + (uint64_t)i * stride;
        stack_base[i + 1] = stacks[i]; /* handle i+1 runs on stacks[i] */
    }
    return start;
}

static uint64_t canary_word(uint64_t base, int i)
{
    return CANARY ^ (base + (uint64_t)i * 8);
}

void costack_arm(microkit_cothread_ref_t h)
{
    uint64_t *w = (uint64_t *)stack_base[h];
    for (int i = 0; i < CANARY_WORDS; i++) {
        w[i] = canary_word(stack_base[h], i);
    }
}

void costack_check(microkit_cothread_ref_t h, int tid)
{
    if (h == 0 || stack_base[h] == 0) {
        return; /* the root runs on the PD's own stack */
    }
    const uint64_t *w = (const uint64_t *)stack_base[h];
    for (int i = 0; i < CANARY_WORDS; i++) {
        if (w[i] != canary_word(stack_base[h], i)) {
            char line[160];
            snprintf(line, sizeof(line),
                     "beam_server: ERROR: cothread %d (thread %d) overflowed its %llu KiB stack "
                     "at 0x%llx\n",
                     (int)h, tid, (unsigned long long)(stack_size >> 10), (unsigned long long)stack_base[h]);
            microkit_dbg_puts(line);
            power_off(139);
            for (;;) {
            }
        }
    }
}

uint64_t costack_used(microkit_cothread_ref_t h)
{
    const uint64_t *w = (const uint64_t *)stack_base[h];
    uint64_t n = stack_size / 8, i = CANARY_WORDS;
    while (i < n && w[i] == 0) {
        i++;
    }
    return (n - i) * 8;
}
