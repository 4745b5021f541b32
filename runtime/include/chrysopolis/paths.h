/* SPDX-License-Identifier: BSD-2-Clause */
/* paths.c: lexical path folding for the FAT volume (docs/disk.md). */
#pragma once

#include <stddef.h>

/* Join `rel` to the absolute `base` (ignored if rel is absolute) into out, folding `//`,
 * `.` and `..`: 0, or -ENAMETOOLONG if it does not fit in `size` bytes. */
int paths_join(const char *base, const char *rel, char *out, size_t size);
