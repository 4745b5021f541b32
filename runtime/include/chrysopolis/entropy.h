/* SPDX-License-Identifier: BSD-2-Clause */
/* entropy.c: getrandom(2) and /dev/urandom from a ChaCha20 DRBG seeded from timer jitter. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Fill buf with DRBG output (seeded from timer jitter on first use). */
void entropy_fill(void *buf, size_t len);
/* Fold a 64-bit sample into the key. */
void entropy_absorb(uint64_t sample);
/* The ChaCha20 block function (RFC 8439, 2.3) on a full 16-word input state. */
void entropy_chacha20_block(const uint32_t in[16], uint32_t out[16]);

long sys_getrandom(long bufp, long len, long flags, long d, long e, long f);
