/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Entropy: getrandom(2) and /dev/urandom from a ChaCha20 DRBG seeded from timer jitter.
 * LionsOS's getrandom is rand() unseeded: the same bytes on every boot.
 *
 * Seed: the physical counter (CNTPCT_EL0, readable at EL0 when the kernel exports it)
 * read around protected calls to the timer driver and around busy loops; the spread of
 * those round trips depends on the host and on QEMU's timing, so it differs per boot.
 * Samples are folded into the key with ChaCha20 as the mixing function (absorb, then
 * rekey). Output: ChaCha20 blocks under the key; after each request the key is replaced
 * by fresh output (fast key erasure), and a few new samples are mixed in now and then.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/random.h>

#include <autoconf.h> /* CONFIG_EXPORT_PCNT_USER */

#include <chrysopolis/entropy.h>
#include <chrysopolis/time.h>

#define SEED_SAMPLES 256
#define RESEED_SAMPLES 8
#define RESEED_EVERY 1024 /* requests */

static uint32_t key[8];
static uint64_t block_counter;
static unsigned pending_samples;
static unsigned requests;
static bool seeded;

static inline uint32_t rotl(uint32_t x, int n)
{
    return (x << n) | (x >> (32 - n));
}

#define QR(a, b, c, d)                                                                                       \
    do {                                                                                                     \
        a += b;                                                                                              \
        d = rotl(d ^ a, 16);                                                                                 \
        c += d;                                                                                              \
        b = rotl(b ^ c, 12);                                                                                 \
        a += b;                                                                                              \
        d = rotl(d ^ a, 8);                                                                                  \
        c += d;                                                                                              \
        b = rotl(b ^ c, 7);                                                                                  \
    } while (0)

void entropy_chacha20_block(const uint32_t in[16], uint32_t out[16])
{
    uint32_t x[16];
    memcpy(x, in, sizeof(x));
    for (int i = 0; i < 10; i++) {
        QR(x[0], x[4], x[8], x[12]);
        QR(x[1], x[5], x[9], x[13]);
        QR(x[2], x[6], x[10], x[14]);
        QR(x[3], x[7], x[11], x[15]);
        QR(x[0], x[5], x[10], x[15]);
        QR(x[1], x[6], x[11], x[12]);
        QR(x[2], x[7], x[8], x[13]);
        QR(x[3], x[4], x[9], x[14]);
    }
    for (int i = 0; i < 16; i++) {
        out[i] = x[i] + in[i];
    }
}

/* One block under the current key; `domain` separates output from mixing. */
static void block(uint64_t counter, uint32_t domain, uint32_t out[16])
{
    uint32_t in[16] = {0x61707865, 0x3320646e, 0x79622d32, 0x6b206574};
    memcpy(&in[4], key, sizeof(key));
    in[12] = (uint32_t)counter;
    in[13] = (uint32_t)(counter >> 32);
    in[14] = domain;
    in[15] = 0;
    entropy_chacha20_block(in, out);
}

static void rekey(uint32_t domain)
{
    uint32_t out[16];
    block(UINT64_MAX, domain, out);
    memcpy(key, out, sizeof(key));
    memset(out, 0, sizeof(out));
}

/* Fold a 64-bit sample into the key; every four samples (one key's worth) remix it. */
void entropy_absorb(uint64_t sample)
{
    key[(pending_samples * 2) % 8] ^= (uint32_t)sample;
    key[(pending_samples * 2 + 1) % 8] ^= (uint32_t)(sample >> 32);
    if (++pending_samples % 4 == 0) {
        rekey(1);
    }
}

static inline uint64_t cycles(void)
{
#ifdef CONFIG_EXPORT_PCNT_USER
    uint64_t v;
    __asm__ volatile("isb; mrs %0, cntpct_el0" : "=r"(v));
    return v;
#else
    return time_now_ns();
#endif
}

static void gather(unsigned samples)
{
    for (unsigned i = 0; i < samples; i++) {
        uint64_t t0 = cycles();
        uint64_t now = time_driver_ns(); /* a protected call: kernel, timer driver, back */
        uint64_t t1 = cycles();
        volatile unsigned spin = 0;
        for (unsigned j = 0; j < 64 + (unsigned)(t1 & 63); j++) {
            spin += j;
        }
        uint64_t t2 = cycles();
        entropy_absorb(((t1 - t0) << 32) ^ (t2 - t1) ^ now);
    }
    rekey(2);
}

void entropy_fill(void *buf, size_t len)
{
    if (!seeded) {
        gather(SEED_SAMPLES);
        seeded = true;
    } else if (++requests % RESEED_EVERY == 0) {
        gather(RESEED_SAMPLES);
    }
    unsigned char *out = buf;
    uint32_t b[16];
    while (len > 0) {
        block(block_counter++, 0, b);
        size_t n = len < sizeof(b) ? len : sizeof(b);
        memcpy(out, b, n);
        out += n;
        len -= n;
    }
    rekey(3);
    memset(b, 0, sizeof(b));
}

long sys_getrandom(long bufp, long len, long flags, long d, long e, long f)
{
    (void)d, (void)e, (void)f;
    if (flags & ~(long)(GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE)) {
        return -EINVAL;
    }
    if (len < 0) {
        return -EINVAL;
    }
    entropy_fill((void *)bufp, (size_t)len);
    return len;
}
