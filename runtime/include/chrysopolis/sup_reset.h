/* SPDX-License-Identifier: BSD-2-Clause */
/* What the reset stub (runtime/reset/sup_reset.c), linked into every supervised PD, tells it. */
#pragma once

#include <stdint.h>

/* 1 on the PD's first start, n after its (n-1)th restart by the supervisor. */
uint64_t sup_generation(void);
/* How often the supervisor restarted the PD `name`, for a PD that maps the protocol page. */
uint32_t sup_peer_restarts(const char *name);
