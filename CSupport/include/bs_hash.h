/* Hashing, partitioning and gathering of whole columns.
 *
 * Every function works on a whole column in one call: the loops live here, in C, never in a
 * per-value call from Swift. Hashes are XXH3-64 with an explicit seed, identical on every
 * machine and process, so they can route rows between processes. */
#ifndef BS_HASH_H
#define BS_HASH_H

#include <stddef.h>
#include <stdint.h>

#ifndef XXH_INLINE_ALL
#define XXH_INLINE_ALL
#endif
#include <xxhash.h>

#include "bs_error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* XXH3-64 of one 8-byte value (little-endian bytes), for the rare per-value use in Swift. */
static inline uint64_t bs_hash_u64(uint64_t value, uint64_t seed) {
  return XXH3_64bits_withSeed(&value, sizeof value, seed);
}

/* XXH3-64 of len bytes at p. (Swift cannot see XXH3's own names: XXH_INLINE_ALL renames them
 * through macros.) p may be NULL only when len is 0: this per-value helper checks nothing. */
static inline uint64_t bs_hash_one(const void *p, size_t len, uint64_t seed) {
  return XXH3_64bits_withSeed(p, len, seed);
}

/* A hint to load the cache line at p for writing: for Swift loops that index a table by
 * precomputed ids (the C loops prefetch on their own). Any p, NULL included: a prefetch
 * never faults. */
static inline void bs_prefetch_write(const void *p) { __builtin_prefetch(p, 1, 3); }

/* Unless a function says otherwise, every one below returns BS_OK, or BS_EINVAL for a NULL
 * pointer to more than zero elements. */

/* out[i] = XXH3-64(bytes of element i, seed) for a fixed-width column.
 * width is 1, 2, 4, 8 or 16 bytes; BS_EINVAL for another width. */
bs_error bs_hash_fixed(const void *data, size_t width, size_t n, uint64_t seed, uint64_t *out);

/* out[i] = XXH3-64(bytes[offsets[i] ..< offsets[i+1]], seed) for an offsets+bytes column.
 * offsets has n+1 entries. The caller guarantees they are non-decreasing and in bounds; a
 * decreasing pair hashes as the empty string. bytes may be NULL when every key is empty. */
bs_error bs_hash_bytes(const int64_t *offsets, const uint8_t *bytes, size_t n, uint64_t seed,
                       uint64_t *out);

/* acc[i] = mix(acc[i], h[i]): the row hash of a multi-column key. Not commutative, so
 * (a, b) and (b, a) hash differently. */
bs_error bs_hash_combine(uint64_t *acc, const uint64_t *h, size_t n);

/* part[i] = (h[i] * nparts) >> 64: multiply-shift range reduction, no division. The map is
 * monotone in h, so rows in ascending hash order are also in ascending partition order.
 * BS_EINVAL when nparts is 0. */
bs_error bs_hash_partition(const uint64_t *h, size_t n, uint32_t nparts, uint32_t *part);

/* A counting sort of row indices by partition id, stable within a partition.
 * starts (never NULL) has nparts+1 entries: rows of partition p are
 * perm[starts[p] ..< starts[p+1]]. Returns BS_OK, or BS_EINVAL if nparts is 0, a part id is
 * >= nparts, n does not fit in uint32, or a pointer is NULL. */
bs_error bs_partition_permutation(const uint32_t *part, size_t n, uint32_t nparts,
                                  uint64_t *starts, uint32_t *perm);

/* A counting sort of a fixed-width column (width 1, 2, 4, 8 or 16) by group id, in one pass
 * over the values: dst receives them in group order, stable within a group, and starts
 * (never NULL, ngroups+1 entries) where each group begins: group g is
 * dst[starts[g] ..< starts[g+1]]. Returns BS_OK, or BS_EINVAL for ngroups 0, a bad width, a
 * group id >= ngroups, or a NULL pointer. */
bs_error bs_group_values_fixed(const uint32_t *gid, size_t n, uint32_t ngroups, const void *src,
                               size_t width, uint64_t *starts, void *dst);

/* dst[i] = src[perm[i]] for a fixed-width column (width 1, 2, 4, 8 or 16; BS_EINVAL for
 * another). */
bs_error bs_gather_fixed(const void *src, size_t width, const uint32_t *perm, size_t n, void *dst);

/* Gather of an offsets+bytes column, in two steps: first the new offsets (n+1 entries,
 * dst_offsets[0] = 0, so dst_offsets is never NULL), which returns the total byte count, or
 * BS_EINVAL for a NULL pointer or source offsets that are negative, decreasing or sum past
 * INT64_MAX; then the bytes themselves into a buffer of that size (dst_bytes and src_bytes
 * may be NULL when the total is 0). */
int64_t bs_gather_bytes_offsets(const int64_t *src_offsets, const uint32_t *perm, size_t n,
                                int64_t *dst_offsets);
bs_error bs_gather_bytes(const int64_t *src_offsets, const uint8_t *src_bytes, const uint32_t *perm,
                         size_t n, const int64_t *dst_offsets, uint8_t *dst_bytes);

/* Baseline for benchmarks: the plain loop out[i] = XXH3_64bits_withSeed(&v[i], 8, seed) with
 * nothing else around it, no checks either: v and out must hold n values (NULL is undefined
 * behaviour unless n is 0). */
void bs_bench_hash_u64_baseline(const uint64_t *v, size_t n, uint64_t seed, uint64_t *out);

#ifdef __cplusplus
}
#endif
#endif
