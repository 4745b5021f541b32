/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lwIP's platform header for beam_server: types come from musl's <stdint.h> (lwIP's
 * defaults), randomness from our entropy source, assertions stop the PD with a line.
 * Compiled into lib_sddf_lwip.a (stage `lwip`) and into our runtime alike.
 */
#pragma once

#include <stdint.h>

#ifndef BYTE_ORDER
#define BYTE_ORDER __BYTE_ORDER__
#endif

#define LWIP_CHKSUM_ALGORITHM 3
#define PACK_STRUCT_STRUCT __attribute__((packed))

/* runtime/net/netstack.c. Random numbers for DHCP transaction ids, TCP initial sequence
 * numbers and ephemeral ports: never musl's unseeded rand(), or every boot would use the
 * same ports. */
uint32_t netstack_rand(void);
/* Print the failed assertion (no allocation, no park) and stop the PD. */
_Noreturn void netstack_assert_failed(const char *msg, const char *file, int line);
void netstack_diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define LWIP_RAND() netstack_rand()
#define LWIP_PLATFORM_DIAG(x)                                                                                \
    do {                                                                                                     \
        netstack_diag x;                                                                                     \
    } while (0)
#define LWIP_PLATFORM_ASSERT(x) netstack_assert_failed((x), __FILE__, __LINE__)
