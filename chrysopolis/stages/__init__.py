# SPDX-License-Identifier: BSD-2-Clause
"""Stage recipes, one module per upstream component: how each is built from its pinned
sources (sdk, musl, erts, otp, lionsos, libmicrokitco, linux_vm).

The cache (chrysopolis/cache.py) imports every module here; a new component is one new
file. Bootable images are in chrysopolis/targets/.
"""
