/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The reset stub linked into every PD the supervisor may restart (docs/plans/recovery.md,
 * 4.1). Microkit restarts a thread but leaves its memory as the fault left it, so:
 * - cold, before the PD's own init(): copy the PD's whole writable segment (.data, the
 *   config sections, .bss with the symbols the Microkit tool patched) into the snapshot
 *   region the system maps at `sup_snap_base`;
 * - warm (the supervisor resumes the PD at sup_reset): back to the stack top the PD started
 *   with, put the segment back, then start again at _start; after the real init(): answer a protected call
 * the fault left unanswered (its caller would else wait for ever), ack every IRQ and notify every channel, so
 * peers look at the shared queues again and the supervisor learns the PD is up. Linked with --wrap=init and
 * -e _sup_start (which records the stack top). Without a snapshot region (sup_snap_base 0) it does nothing.
 */
#include <stddef.h>
#include <stdint.h>

#include <microkit.h>

#include <chrysopolis/sup_reset.h>
#include <chrysopolis/supervisor.h>

#define SNAP_MAGIC 0x50414e5350555343ull /* "CSUPSNAP" */
#define SNAP_DATA 64 /* the header's room in the region; the segment follows */
#define REPLY_CAP 4 /* libmicrokit's reply object */

struct snap {
    uint64_t magic;
    uint64_t generation; /* 1 after the cold start, +1 each restart */
    uint64_t start;
    uint64_t size;
    uint64_t stack; /* sp at the first instruction (offset 32: sup_reset reads it) */
};

/* The writable segment (microkit.ld): .init_array, .data, .got, the config sections, .bss. */
extern char __init_array_start[], _bss_end[];
extern void _start(void);
void __real_init(void);

/* Patched by the Microkit tool (setvar_vaddr/setvar_size of the snapshot map). */
uintptr_t sup_snap_base;
uint64_t sup_snap_size;
uint64_t sup_stack_top;
/* The supervisor's protocol page, mapped read-only into PDs whose peer it restarts (0: not). */
uintptr_t sup_peer_page;

/* The ELF entry records the stack top; the restart PC takes it from the snapshot (memory
 * the faulting PD could have scribbled on is not trusted) before any C runs. */
__asm__(".section .text\n"
        ".global _sup_start\n"
        ".type _sup_start, %function\n"
        "_sup_start:\n"
        "  adrp x0, sup_stack_top\n"
        "  mov x1, sp\n"
        "  str x1, [x0, #:lo12:sup_stack_top]\n"
        "  b _start\n"
        ".global sup_reset\n"
        ".type sup_reset, %function\n"
        "sup_reset:\n"
        "  adrp x0, sup_snap_base\n"
        "  ldr x0, [x0, #:lo12:sup_snap_base]\n"
        "  ldr x1, [x0, #32]\n"
        "  mov sp, x1\n"
        "  b sup_restore\n");

/* Volatile: no memcpy call, whose own state could be the memory being replaced. */
static void copy(uintptr_t dst, uintptr_t src, uint64_t n)
{
    volatile uint64_t *d = (volatile uint64_t *)dst;
    const volatile uint64_t *s = (const volatile uint64_t *)src;
    for (uint64_t i = 0; i < n / 8; i++) {
        d[i] = s[i];
    }
    for (uint64_t i = n & ~7ull; i < n; i++) {
        ((volatile char *)dst)[i] = ((const volatile char *)src)[i];
    }
}

/* From sup_reset, on the PD's first stack. */
void __attribute__((noreturn, used)) sup_restore(void)
{
    struct snap *s = (struct snap *)sup_snap_base;
    copy(s->start, (uintptr_t)s + SNAP_DATA, s->size);
    s->generation++;
    _start();
    for (;;) {
    }
}

/* ns on the generic timer, as sDDF's ARM timer driver answers SDDF_TIMER_GET_TIME. */
static uint64_t now_ns(void)
{
    uint64_t hz, ticks;
    __asm__ volatile("mrs %0, cntfrq_el0" : "=r"(hz));
    __asm__ volatile("isb; mrs %0, cntpct_el0" : "=r"(ticks));
    if (hz % 1000000 == 0) {
        return ticks * 1000 / (hz / 1000000);
    }
    return ticks * 1000000 / (hz / 1000);
}

void __wrap_init(void)
{
    struct snap *s = (struct snap *)sup_snap_base;
    if (s != NULL && s->magic != SNAP_MAGIC) {
        uint64_t size = (uint64_t)(_bss_end - __init_array_start);
        if (size + SNAP_DATA <= sup_snap_size) {
            copy((uintptr_t)s + SNAP_DATA, (uintptr_t)__init_array_start, size);
            s->start = (uintptr_t)__init_array_start;
            s->size = size;
            s->generation = 1;
            s->stack = sup_stack_top;
            s->magic = SNAP_MAGIC;
        } else {
            microkit_dbg_puts(microkit_name);
            microkit_dbg_puts(": snapshot region too small, restarts disabled\n");
        }
    }
    __real_init();
    if (s == NULL || s->magic != SNAP_MAGIC || s->generation < 2) {
        return;
    }
    /* A caller blocked on our reply object: GET_TIME reads MR0, other calls ignore it. */
    seL4_SetMR(0, now_ns());
    seL4_Send(REPLY_CAP, seL4_MessageInfo_new(0, 0, 0, 1));
    for (microkit_channel ch = 0; ch <= MICROKIT_MAX_CHANNEL_ID; ch++) {
        if (microkit_irqs & (1ull << ch)) {
            microkit_irq_ack(ch);
        }
        if (microkit_notifications & (1ull << ch)) {
            microkit_notify(ch);
        }
    }
}

uint64_t sup_generation(void)
{
    const struct snap *s = (const struct snap *)sup_snap_base;
    return s != NULL && s->magic == SNAP_MAGIC ? s->generation : 1;
}

/* How often the supervisor restarted the PD `name` (0 if unknown): a peer holding requests
 * of that PD compares it with what it saw last (patches/sddf/0002). */
uint32_t sup_peer_restarts(const char *name)
{
    const volatile struct sup_page *p = (const volatile struct sup_page *)sup_peer_page;
    if (p == NULL || p->magic != SUP_MAGIC) {
        return 0;
    }
    for (uint32_t i = 0; i < p->n_pds && i < SUP_MAX_PDS; i++) {
        uint32_t k = 0;
        while (k < SUP_NAME_LEN && name[k] != 0 && p->pds[i].name[k] == name[k]) {
            k++;
        }
        if (k < SUP_NAME_LEN && name[k] == 0 && p->pds[i].name[k] == 0) {
            return p->pds[i].restarts;
        }
    }
    return 0;
}
