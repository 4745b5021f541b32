/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Path normalisation for the FAT volume. ERTS builds paths like `//lib/kernel/ebin` when
 * its root is `/`, and `..` and `.` appear in code-path arithmetic; LionsOS hands paths
 * to FatFs as they come. FAT has no symbolic links, so folding is purely lexical. The
 * caller owns the buffers: nothing static (fs calls of several cothreads interleave).
 */
#include <errno.h>
#include <string.h>

#include <chrysopolis/paths.h>

int paths_join(const char *base, const char *rel, char *out, size_t size)
{
    if (size < 2) {
        return -ENAMETOOLONG;
    }
    size_t len = 0;
    out[len++] = '/';
    out[len] = '\0';
    /* Fold base (unless rel is absolute), then rel, component by component. */
    const char *parts[2] = {rel[0] == '/' ? "" : base, rel};
    for (int i = 0; i < 2; i++) {
        const char *s = parts[i];
        while (*s != '\0') {
            while (*s == '/') {
                s++;
            }
            const char *end = s;
            while (*end != '\0' && *end != '/') {
                end++;
            }
            size_t n = (size_t)(end - s);
            if (n == 0 || (n == 1 && s[0] == '.')) {
                /* empty or `.`: nothing */
            } else if (n == 2 && s[0] == '.' && s[1] == '.') {
                while (len > 1 && out[len - 1] != '/') {
                    len--;
                }
                if (len > 1) {
                    len--; /* the slash before the dropped component */
                }
            } else {
                size_t sep = (len > 1) ? 1 : 0;
                if (len + sep + n + 1 > size) {
                    return -ENAMETOOLONG;
                }
                if (sep) {
                    out[len++] = '/';
                }
                memcpy(out + len, s, n);
                len += n;
            }
            out[len] = '\0';
            s = end;
        }
    }
    return 0;
}
