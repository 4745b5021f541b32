/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fwcfg.c: QEMU's firmware configuration device (fw_cfg), read through its MMIO
 * registers: how the tool hands a run's facts (the host's TERM and terminal size) to the
 * guest without writing the disk. `-fw_cfg name=opt/chrysopolis/...,string=...` on
 * QEMU's command line; chrysopolis/qemu.py writes them, docs/boot.md lists them.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A node's settings for this run (chrysopolis/nodes.py writes them, checked): eth0's static
 * address "A.B.C.D/LEN" (absent: DHCP), its gateway "A.B.C.D", uname's nodename. */
#define FWCFG_IP "opt/chrysopolis/ip"
#define FWCFG_GW "opt/chrysopolis/gw"
#define FWCFG_HOSTNAME "opt/chrysopolis/hostname"

/* Where the Microkit tool mapped the device's registers (setvar_vaddr); 0: not mapped. */
extern uint64_t fwcfg_base;

/* The contents of fw_cfg file `name` (e.g. "opt/chrysopolis/term") into buf, NUL-ended;
 * its length, or -1 when there is no device or no such file. Longer files are cut. */
ssize_t fwcfg_read_file(const char *name, char *buf, size_t cap);
