/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * QEMU's fw_cfg over MMIO (docs/specs/fw_cfg.txt in QEMU): a 16-bit big-endian selector
 * register at +8 picks an item, the data register at +0 streams its bytes in order. Item
 * 0 is the signature "QEMU"; item 0x19 the file directory: a big-endian count, then
 * entries of {be32 size, be16 select, u16 reserved, char name[56]}.
 */
#include <string.h>

#include <chrysopolis/fwcfg.h>

#define FWCFG_DATA 0x0
#define FWCFG_SELECTOR 0x8
#define FWCFG_SIGNATURE 0x0000
#define FWCFG_FILE_DIR 0x0019
#define FWCFG_NAME_LEN 56

uint64_t fwcfg_base; /* patched by the Microkit tool (setvar_vaddr) when the board has one */

static void select_item(uint16_t item)
{
    volatile uint16_t *sel = (volatile uint16_t *)(uintptr_t)(fwcfg_base + FWCFG_SELECTOR);
    *sel = __builtin_bswap16(item); /* big-endian register on a little-endian CPU */
}

static void read_bytes(void *buf, size_t n)
{
    volatile uint8_t *data = (volatile uint8_t *)(uintptr_t)(fwcfg_base + FWCFG_DATA);
    uint8_t *out = buf;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = *data;
        if (out != NULL) {
            out[i] = b;
        }
    }
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

ssize_t fwcfg_read_file(const char *name, char *buf, size_t cap)
{
    if (fwcfg_base == 0 || cap == 0) {
        return -1;
    }
    char sig[4];
    select_item(FWCFG_SIGNATURE);
    read_bytes(sig, sizeof(sig));
    if (memcmp(sig, "QEMU", 4) != 0) {
        return -1;
    }
    uint8_t count_be[4];
    select_item(FWCFG_FILE_DIR);
    read_bytes(count_be, sizeof(count_be));
    uint32_t count = be32(count_be);
    for (uint32_t i = 0; i < count; i++) {
        uint8_t ent[8];
        char fname[FWCFG_NAME_LEN];
        read_bytes(ent, sizeof(ent));
        read_bytes(fname, sizeof(fname));
        fname[FWCFG_NAME_LEN - 1] = '\0';
        if (strcmp(fname, name) != 0) {
            continue;
        }
        uint32_t size = be32(ent);
        size_t n = size < cap - 1 ? size : cap - 1;
        select_item((uint16_t)(ent[4] << 8 | ent[5]));
        read_bytes(buf, n);
        buf[n] = '\0';
        return (ssize_t)n;
    }
    return -1;
}
