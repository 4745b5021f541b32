/* SPDX-License-Identifier: BSD-2-Clause */
/* files.c: the FAT volume through the LionsOS fs protocol (docs/disk.md). */
#pragma once

#include <stdint.h>

void files_init(void);
void files_notified(void);
/* Mount the volume, retrying until the timeout: 0, the server's last refusal, or -1. */
int files_mount(uint64_t timeout_ns);
