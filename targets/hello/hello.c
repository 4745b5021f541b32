/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Chrysopolis smoke test: the smallest Microkit protection domain.
 *
 * init() prints one marker line on the kernel debug console; the `hello` check
 * boots the image and waits for it. Nothing else runs, so there is nothing to
 * notify.
 */
#include <microkit.h>

void init(void)
{
    microkit_dbg_puts("hello from Chrysopolis on seL4 (protection domain '");
    microkit_dbg_puts(microkit_name);
    microkit_dbg_puts("')\n");
}

void notified(microkit_channel ch)
{
    (void)ch;
}
