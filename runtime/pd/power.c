/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Power-off (docs/boot.md, "Power-off"). The PD cannot end itself in a way the host
 * sees, so an exit ends the machine: PSCI SYSTEM_OFF through an SMC. QEMU's virt
 * machine with virtualization=on and no EL3 firmware implements PSCI itself on the
 * SMC conduit and exits when asked; seL4 (at EL2) forwards the SMC for a PD given
 * smc="true" (chrysopolis/system.py) on a kernel built with KernelAllowSMCCalls
 * (patches/microkit/0004).
 *
 * The console first: what ERTS wrote last is still in the sDDF serial TX queue. We
 * wait, bounded, until the TX virtualiser has taken it all. beam_server has the lowest
 * priority, so when it runs and sees the queue empty, the virtualiser and the driver
 * above it have nothing left to do: the bytes are in the UART.
 */
#include <stdio.h>
#include <string.h>

#include <microkit.h>
#include <sddf/serial/queue.h>

#include <chrysopolis/pd.h>
#include <chrysopolis/power.h>
#include <chrysopolis/time.h>

#define POWER_PSCI_SYSTEM_OFF 0x84000008UL
#define POWER_FLUSH_NS (1000UL * 1000 * 1000)

static bool tx_empty(serial_queue_handle_t *tx)
{
    return serial_queue_empty(tx, tx->queue->head);
}

bool power_flush_console(uint64_t timeout_ns)
{
    serial_queue_handle_t *tx = &serial_tx_queue_handle;
    if (tx->queue == NULL) {
        return true;
    }
    microkit_notify(serial_config.tx.id);
    uint64_t deadline = time_now_ns() + timeout_ns;
    while (!tx_empty(tx)) {
        if (time_now_ns() >= deadline) {
            return false;
        }
        seL4_Yield();
    }
    return true;
}

/* A line straight into the TX queue (not through write(): ERTS may be mid-abort). */
static void power_puts(const char *s)
{
    serial_queue_handle_t *tx = &serial_tx_queue_handle;
    if (tx->queue == NULL) {
        microkit_dbg_puts(s);
        return;
    }
    uint32_t len = (uint32_t)strlen(s);
    while (len > 0) {
        uint32_t n = serial_enqueue_batch(tx, len, s);
        s += n;
        len -= n;
        if (len > 0 && !power_flush_console(POWER_FLUSH_NS)) {
            return;
        }
    }
    microkit_notify(serial_config.tx.id);
}

void power_off(int status)
{
    char line[96];
    snprintf(line, sizeof(line), POWER_STATUS_LINE "\r\n", status & 0xff);
    power_puts(line);
    power_flush_console(POWER_FLUSH_NS);
#if defined(CONFIG_ALLOW_SMC_CALLS)
    /* seL4_ARM_SMC_Call itself, not microkit_arm_smc_call: that one faults the PD on an
     * error, and we would rather say why on the console. */
    seL4_ARM_SMCContext args = {.x0 = POWER_PSCI_SYSTEM_OFF};
    seL4_ARM_SMCContext res = {0};
    seL4_Error err = seL4_ARM_SMC_Call(ARM_SMC_CAP, &args, &res);
    snprintf(line, sizeof(line),
             "beam_server: ERROR: PSCI SYSTEM_OFF returned (seL4 error %d, PSCI %ld); the PD idles\r\n",
             (int)err, (long)res.x0);
#else
    snprintf(line, sizeof(line),
             "beam_server: ERROR: this kernel allows no SMC calls, no power-off; the PD idles\r\n");
#endif
    power_puts(line);
    power_flush_console(POWER_FLUSH_NS);
}
