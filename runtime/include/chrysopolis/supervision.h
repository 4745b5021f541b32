/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * supervision.c: beam_server's side of the supervisor's protocol page (supervisor.h), as
 * /proc/pds, /proc/pds_events and /dev/supervisor for Erlang's `chrysopolis` module.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include <microkit.h>

/* The protocol page in this PD: the Microkit tool sets it (setvar of MR sup_status); 0 in an
 * image without a supervisor. */
extern uintptr_t sup_status;
/* beam_server's end of its channel to the supervisor (chrysopolis/system.py gives it). */
#define SUP_BEAM_CHANNEL 60
#define sup_channel SUP_BEAM_CHANNEL

/* Register the /proc files (in an image with a supervisor). */
void supervision_init(void);
/* Open or stat /dev/supervisor: the fd / 0, -errno, or 1 if `path` is not it. */
long supervision_open(const char *path, int flags);
long supervision_stat(const char *path, struct stat *st);
/* How often the supervisor restarted PD `name` (0: never, or no supervisor): fsops.c
 * fails the files opened on the FAT server before its last restart with EIO. */
uint32_t supervision_restarts(const char *name);
/* The process is ending with `status` (sys_exit_group): ask the supervisor whether to restart
 * the node. Returns if not (power off then), else never. */
void supervision_exit(int status);
/* ERTS's crash dump says it could not allocate memory (targets/beam/main.c). */
void supervision_note_oom(void);
/* The supervisor gave up on a PD file calls need (fatfs, blk_virt, blk_driver). */
bool supervision_files_gone(void);
/* A notification from the supervisor: wake the writers waiting for its answer. */
void supervision_notified(microkit_channel ch);
