/* SPDX-License-Identifier: BSD-2-Clause */
/* Host stand-in for seL4's autoconf.h: no CNTPCT_EL0 export, jitter comes from the clock. */
#pragma once
