/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Where the supervisor's protocol page (chrysopolis/supervisor.h) is mapped in this PD: the
 * Microkit tool patches it in (chrysopolis/system.py maps MR `sup_status` with
 * setvar_vaddr), so every beam_server must define it. Weak: the POSIX adapter's reader of
 * the page defines it too.
 */
#include <stdint.h>

__attribute__((weak)) uintptr_t sup_status;
