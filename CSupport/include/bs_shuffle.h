/* Byte shuffle: the byte transposition of a column of fixed-width values, so that the
 * frame codec can store byte j of every value together. The high bytes of small integers
 * are then long runs of equal bytes, which the block codecs (runs, zstd) shrink. */
#ifndef BS_SHUFFLE_H
#define BS_SHUFFLE_H

#include <stddef.h>

#include "bs_error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Byte transposition of n elements of the given width (2, 4, 8 or 16): byte j of element i
 * goes to dst[j * n + i]. bs_byte_unshuffle inverts it. src and dst hold n * width bytes
 * each and must not overlap. Returns BS_OK, or BS_EINVAL for another width, for src or dst
 * NULL with n > 0, or when n * width overflows. */
bs_error bs_byte_shuffle(const void *src, size_t width, size_t n, void *dst);
bs_error bs_byte_unshuffle(const void *src, size_t width, size_t n, void *dst);

#ifdef __cplusplus
}
#endif
#endif
