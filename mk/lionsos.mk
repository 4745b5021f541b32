# SPDX-License-Identifier: BSD-2-Clause
# LionsOS and sDDF components built with their own Makefile snippets, wired as LionsOS's
# examples/posix_test/posix_test.mk wires them. Chrysopolis's stages (chrysopolis/stages/
# lionsos.py) run it in an empty build directory, passing LIONSOS, SDDF, LIBMICROKITCO_PATH,
# MICROKIT_SDK, MICROKIT_BOARD and MICROKIT_CONFIG, and name the targets they want. What an
# earlier stage built (musl, LionsOS libc, libmicrokitco, the sDDF util library) is copied
# into the build directory and marked old with `make -o`, so these rules never redo it.

CHRYSOPOLIS_MK := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
TOOLCHAIN := clang
SUPPORTED_BOARDS := qemu_virt_aarch64
BUILD_DIR := $(abspath .)

include $(SDDF)/tools/make/board/common.mk

# As posix_test.mk: quiet the warnings upstream headers raise under clang.
CFLAGS += \
	-Wno-bitwise-op-parentheses \
	-Wno-shift-op-parentheses \
	-Wno-unused-function \
	-Wno-tautological-constant-out-of-range-compare \
	-I$(LIONSOS)/include \
	-I$(SDDF)/include \
	-I$(SDDF)/include/microkit \
	-I$(LIBMICROKITCO_PATH)

# LionsOS libc: musl (given) plus the POSIX layer, compiler-rt pieces and fs helpers.
include $(LIONSOS)/lib/libc/libc.mk

LDFLAGS := -L$(BOARD_DIR)/lib -L$(LIONS_LIBC)/lib
LIBS := -lmicrokit -Tmicrokit.ld -T$(CHRYSOPOLIS_MK)/got.ld libsddf_util_debug.a -lc

SDDF_LIBC_INCLUDE := $(LIONS_LIBC)/include
include $(SDDF)/util/util.mk
include $(SDDF)/drivers/timer/$(TIMER_DRIV_DIR)/timer_driver.mk
include $(SDDF)/drivers/serial/$(UART_DRIV_DIR)/serial_driver.mk
include $(SDDF)/serial/components/serial_components.mk
include $(SDDF)/drivers/blk/$(BLK_DRIV_DIR)/blk_driver.mk
include $(SDDF)/blk/components/blk_components.mk
# Network: the virtio-net driver (eth_driver_virtio.elf, copied to eth_driver.elf by sDDF's
# common.mk) and the virtualisers and copier (network_virt_rx/tx.elf, network_copy.elf).
include $(SDDF)/drivers/network/$(NET_DRIV_DIR)/eth_driver.mk
include $(SDDF)/network/components/network_components.mk

# lib_sddf_lwip.a: sDDF's lwIP glue plus lwIP's core, IPv4 and ethernet, configured by our
# lwipopts.h and arch/cc.h (LWIP_OPTS, given by the `lwip` stage). The second -I is needed:
# the rule for lib_sddf_lwip.o adds only LIB_SDDF_LWIP_CFLAGS, not lwIP's include directory.
LWIP_OPTS ?= $(CHRYSOPOLIS_MK)/../runtime/lwip
LIB_SDDF_LWIP_CFLAGS := -I$(LWIP_OPTS) -I$(SDDF)/network/ipstacks/lwip/src/include
include $(SDDF)/network/lib_sddf_lwip/lib_sddf_lwip.mk

# The FAT server links libmicrokitco_fat.a, built with its own options header.
FAT_LIBC_LIB := $(LIONS_LIBC)/lib/libc.a
FAT_LIBC_INCLUDE := $(LIONS_LIBC)/include
include $(LIONSOS)/components/fs/fat/fat.mk

SDDF_IMAGES := timer_driver.elf serial_driver.elf serial_virt_tx.elf serial_virt_rx.elf \
	blk_driver.elf blk_virt.elf eth_driver.elf network_virt_rx.elf network_virt_tx.elf \
	network_copy.elf

$(SDDF_IMAGES) eth_driver_virtio.elf fat.elf: $(LIONS_LIBC)/lib/libc.a libsddf_util_debug.a

# The PDs the supervisor may restart link our reset stub (runtime/reset/sup_reset.c), which
# wraps their init(): a snapshot of the writable segment at the first start, restored at
# each restart (docs/plans/recovery.md, 4.1). Order-only, so `$^` of upstream rules skips it.
SUP_RESET_ELFS := timer_driver.elf serial_driver.elf serial_virt_tx.elf serial_virt_rx.elf \
	blk_driver.elf blk_virt.elf fat.elf eth_driver_virtio.elf network_virt_tx.elf \
	network_virt_rx.elf network_copy.elf
SUP_RESET_OBJ := sup_reset/sup_reset.o
$(SUP_RESET_OBJ): $(CHRYSOPOLIS_MK)/../runtime/reset/sup_reset.c | $(SDDF_LIBC_INCLUDE)
	mkdir -p sup_reset
	$(CC) -c $(CFLAGS) -I$(CHRYSOPOLIS_MK)/../runtime/include -ffile-prefix-map=$(abspath $(CHRYSOPOLIS_MK)/..)=/chrysopolis -o $@ $<
$(SUP_RESET_ELFS): | $(SUP_RESET_OBJ)
$(SUP_RESET_ELFS): LDFLAGS += --wrap=init -e _sup_start
$(SUP_RESET_ELFS): LIBS := $(SUP_RESET_OBJ) $(LIBS)
# blk_virt and the FAT server keep their records of requests in flight across a restart
# (patches/sddf/0004, patches/lionsos/0004).
blk_virt.elf fat.elf: LIBS += -T$(CHRYSOPOLIS_MK)/keep.ld
# The net driver keeps which buffers the device holds, net_virt_rx and the copier that
# their free queue was filled (patches/sddf/0005, 0006). eth_driver.elf is a copy of
# eth_driver_virtio.elf (sDDF's common.mk): the stub goes into the latter.
eth_driver_virtio.elf network_virt_rx.elf network_copy.elf: LIBS += -T$(CHRYSOPOLIS_MK)/keep.ld
