/* LSD radix sort over u64 keys, returning a permutation of row indices.
 *
 * Keys of other types are first mapped to u64 by an order-preserving transform, so the one
 * sort serves signed and unsigned integers, floats, and (hash, row) pairs. */
#ifndef BS_RADIX_H
#define BS_RADIX_H

#include <stddef.h>
#include <stdint.h>

#include "bs_error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The kinds of fixed-width values that have an order-preserving u64 transform. */
typedef enum {
  BS_KEY_U8 = 1, BS_KEY_U16, BS_KEY_U32, BS_KEY_U64,
  BS_KEY_I8, BS_KEY_I16, BS_KEY_I32, BS_KEY_I64,
  BS_KEY_F32, BS_KEY_F64,
} bs_key_kind;

/* Unless a function says otherwise, every one below returns BS_OK, or BS_EINVAL for a NULL
 * pointer to more than zero elements. */

/* dst[i] = an u64 whose unsigned order is the natural order of src[i]: unsigned values are
 * zero-extended, signed ones have the sign bit flipped, floats use the IEEE total-order trick
 * (-0.0 sorts before +0.0; NaNs sort after +inf, or before -inf with the sign bit set).
 * BS_EINVAL for an unknown kind. */
bs_error bs_radix_keys(bs_key_kind kind, const void *src, size_t n, uint64_t *dst);

/* The inverse of bs_radix_keys: dst[i] = the value of `kind` whose transform is keys[i].
 * dst holds n values of the kind's width; it may be keys itself (values are written in order,
 * each no wider than its key). BS_EINVAL for an unknown kind. */
bs_error bs_radix_keys_inverse(bs_key_kind kind, const uint64_t *keys, size_t n, void *dst);

/* For range partitioning: out[i] = the number of bounds[0..<m] (ascending) that are <= keys[i],
 * that is the upper bound of keys[i], by a branchless binary search. BS_EINVAL when m is
 * over UINT32_MAX (out could not hold the answer). */
bs_error bs_range_partition_u64(const uint64_t *keys, size_t n, const uint64_t *bounds, size_t m,
                                uint32_t *out);

/* Sorts keys[0..<n] ascending, stably, with 11-bit digits, skipping every pass in which
 * all keys share the digit. Large inputs are first split by their highest varying digit
 * (one MSD pass) and each part is then LSD-sorted while it fits in cache; the result is
 * the same stable order.
 * - keys is sorted in place.
 * - perm may be NULL (sort the keys alone); otherwise it is permuted along with the keys:
 *   pass the identity (bs_iota_u32) to get, on return, perm[i] = original index of the
 *   i-th smallest key.
 * - tmp_keys must hold n keys; tmp_perm must hold n entries when perm is not NULL (it is
 *   not read otherwise, and may be NULL).
 * Above 48 keys the sort allocates about 0.5 MB of scratch (histograms and write-combining
 * buffers) once per call; should that fail, it sorts without it (more slowly).
 * BS_EINVAL when n > UINT32_MAX with a permutation. */
bs_error bs_radix_sort_u64(uint64_t *keys, uint32_t *perm, size_t n, uint64_t *tmp_keys,
                           uint32_t *tmp_perm);

/* bs_radix_sort_u64 as it sorts when its scratch cannot be allocated: plain LSD passes,
 * same arguments, same result, no allocation. For tests of that path. */
bs_error bs_radix_sort_u64_unbuffered(uint64_t *keys, uint32_t *perm, size_t n, uint64_t *tmp_keys,
                                      uint32_t *tmp_perm);

/* perm[i] = i. BS_EINVAL when n is over 2^32 (an index would not fit). */
bs_error bs_iota_u32(uint32_t *perm, size_t n);

#ifdef __cplusplus
}
#endif
#endif
