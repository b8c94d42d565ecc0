/* Hashing, partitioning and gathering of whole columns. See bs_hash.h. */
#include "bs_hash.h"
#include "bs_error.h"

#include <string.h>

/* The widths of the fixed-width kernels. */
static int fixed_width_ok(size_t w) { return w == 1 || w == 2 || w == 4 || w == 8 || w == 16; }

/* One loop per width so that XXH3 is inlined with a constant length (the length dispatch
 * inside XXH3 folds away and only the 1-3, 4-8 or 9-16 byte path remains). HASH_LOOP hashes
 * the n values of type T, each copied out of the column first. */
#define HASH_LOOP(T)                                    \
  for (size_t i = 0; i < n; i++) {                      \
    T v;                                                \
    memcpy(&v, p + sizeof(T) * i, sizeof(T));           \
    out[i] = XXH3_64bits_withSeed(&v, sizeof(T), seed); \
  }
bs_error bs_hash_fixed(const void *data, size_t width, size_t n, uint64_t seed, uint64_t *out) {
  if (n == 0) return fixed_width_ok(width) ? BS_OK : BS_EINVAL;
  if (data == NULL || out == NULL) return BS_EINVAL;
  const uint8_t *p = (const uint8_t *)data;
  switch (width) {
  case 1:
    for (size_t i = 0; i < n; i++) out[i] = XXH3_64bits_withSeed(p + i, 1, seed);
    return BS_OK;
  case 2:
    HASH_LOOP(uint16_t);
    return BS_OK;
  case 4:
    HASH_LOOP(uint32_t);
    return BS_OK;
  case 8:
    HASH_LOOP(uint64_t);
    return BS_OK;
  case 16:
    for (size_t i = 0; i < n; i++) out[i] = XXH3_64bits_withSeed(p + 16 * i, 16, seed);
    return BS_OK;
  default:
    return BS_EINVAL;
  }
}
#undef HASH_LOOP

bs_error bs_hash_bytes(const int64_t *offsets, const uint8_t *bytes, size_t n, uint64_t seed,
                       uint64_t *out) {
  if (n == 0) return BS_OK;
  if (offsets == NULL || out == NULL) return BS_EINVAL;
  if (bytes == NULL && offsets[n] != offsets[0]) return BS_EINVAL;
  int64_t prev = offsets[0];
  for (size_t i = 0; i < n; i++) {
    int64_t next = offsets[i + 1];
    /* Documented precondition: non-decreasing and in bounds. A decreasing pair is hashed as
     * the empty string rather than read with a wrapped length. */
    size_t len = next > prev ? (size_t)(next - prev) : 0;
    out[i] = XXH3_64bits_withSeed(len ? bytes + prev : NULL, len, seed);
    prev = next;
  }
  return BS_OK;
}

bs_error bs_hash_combine(uint64_t *acc, const uint64_t *h, size_t n) {
  if (n == 0) return BS_OK;
  if (acc == NULL || h == NULL) return BS_EINVAL;
  for (size_t i = 0; i < n; i++) {
    uint64_t v = h[i];
    acc[i] = XXH3_64bits_withSeed(&v, 8, acc[i]);
  }
  return BS_OK;
}

/* High 64 bits of the 128-bit product h * m. */
static inline uint64_t mul_hi(uint64_t h, uint64_t m) {
#if defined(__SIZEOF_INT128__)
  __extension__ typedef unsigned __int128 u128;
  return (uint64_t)(((u128)h * m) >> 64);
#else
  uint64_t hl = (uint32_t)h, hh = h >> 32, ml = (uint32_t)m, mh = m >> 32;
  uint64_t ll = hl * ml, lh = hl * mh, hl2 = hh * ml, hh2 = hh * mh;
  uint64_t mid = (ll >> 32) + (uint32_t)lh + (uint32_t)hl2;
  return hh2 + (lh >> 32) + (hl2 >> 32) + (mid >> 32);
#endif
}

bs_error bs_hash_partition(const uint64_t *h, size_t n, uint32_t nparts, uint32_t *part) {
  if (nparts == 0) return BS_EINVAL;
  if (n == 0) return BS_OK;
  if (h == NULL || part == NULL) return BS_EINVAL;
  for (size_t i = 0; i < n; i++)
    part[i] = (uint32_t)mul_hi(h[i], nparts);
  return BS_OK;
}

/* Counting sorts without scratch memory: starts[] serves as histogram, then as the scatter
 * cursors (which end up one bucket ahead), then is shifted back into place. count_starts
 * makes the histogram of the n ids (each < k, else BS_EINVAL) and turns it into the first
 * places: starts[b] = first place of bucket b, starts[k] = n. */
static inline bs_error count_starts(const uint32_t *id, size_t n, uint32_t k, uint64_t *starts) {
  memset(starts, 0, ((size_t)k + 1) * sizeof *starts);
  for (size_t i = 0; i < n; i++) {
    uint32_t b = id[i];
    if (b >= k) return BS_EINVAL;
    starts[b + 1]++;
  }
  for (size_t b = 1; b <= k; b++) starts[b] += starts[b - 1];
  return BS_OK;
}

/* After the scatter starts[b] = end of bucket b = start of b+1 (starts[k] is still n): shifts
 * them back to the first places. */
static inline void unshift_starts(uint64_t *starts, uint32_t k) {
  for (size_t b = k; b-- > 1;) starts[b] = starts[b - 1];
  starts[0] = 0;
}

bs_error bs_partition_permutation(const uint32_t *part, size_t n, uint32_t nparts,
                                  uint64_t *starts, uint32_t *perm) {
  if (nparts == 0 || starts == NULL) return BS_EINVAL;
  if (n > UINT32_MAX) return BS_EINVAL;
  if (n > 0 && (part == NULL || perm == NULL)) return BS_EINVAL;
  if (count_starts(part, n, nparts, starts) != BS_OK) return BS_EINVAL;
  for (size_t i = 0; i < n; i++) perm[starts[part[i]]++] = (uint32_t)i;
  unshift_starts(starts, nparts);
  return BS_OK;
}

bs_error bs_group_values_fixed(const uint32_t *gid, size_t n, uint32_t ngroups, const void *src,
                               size_t width, uint64_t *starts, void *dst) {
  if (ngroups == 0 || starts == NULL) return BS_EINVAL;
  if (!fixed_width_ok(width)) return BS_EINVAL;
  if (n > 0 && (gid == NULL || src == NULL || dst == NULL)) return BS_EINVAL;
  if (count_starts(gid, n, ngroups, starts) != BS_OK) return BS_EINVAL;
  const uint8_t *s = (const uint8_t *)src;
  uint8_t *d = (uint8_t *)dst;
  /* One pass moves each value to its group's next place (starts[g] walks to the group's end). */
  switch (width) {
  case 8:
    for (size_t i = 0; i < n; i++) ((uint64_t *)d)[starts[gid[i]]++] = ((const uint64_t *)s)[i];
    break;
  case 4:
    for (size_t i = 0; i < n; i++) ((uint32_t *)d)[starts[gid[i]]++] = ((const uint32_t *)s)[i];
    break;
  default:
    for (size_t i = 0; i < n; i++) memcpy(d + starts[gid[i]]++ * width, s + i * width, width);
  }
  unshift_starts(starts, ngroups);
  return BS_OK;
}

bs_error bs_gather_fixed(const void *src, size_t width, const uint32_t *perm, size_t n, void *dst) {
  if (!fixed_width_ok(width)) return BS_EINVAL;
  if (n == 0) return BS_OK;
  if (src == NULL || perm == NULL || dst == NULL) return BS_EINVAL;
  const uint8_t *s = (const uint8_t *)src;
  uint8_t *d = (uint8_t *)dst;
  /* One loop per width, so that each copy is a single move of a constant size. */
#define GATHER_LOOP(W) \
  for (size_t i = 0; i < n; i++) memcpy(d + (W) * i, s + (W) * (size_t)perm[i], (W))
  switch (width) {
  case 1:
    for (size_t i = 0; i < n; i++) d[i] = s[perm[i]];
    break;
  case 2:
    GATHER_LOOP(2);
    break;
  case 4:
    GATHER_LOOP(4);
    break;
  case 8:
    GATHER_LOOP(8);
    break;
  default:
    GATHER_LOOP(16);
    break;
  }
#undef GATHER_LOOP
  return BS_OK;
}

int64_t bs_gather_bytes_offsets(const int64_t *src_offsets, const uint32_t *perm, size_t n,
                                int64_t *dst_offsets) {
  if (dst_offsets == NULL) return BS_EINVAL;
  dst_offsets[0] = 0;
  if (n == 0) return 0;
  if (src_offsets == NULL || perm == NULL) return BS_EINVAL;
  uint64_t total = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t p = perm[i];
    int64_t a = src_offsets[p], b = src_offsets[(size_t)p + 1];
    if (a < 0 || b < a) return BS_EINVAL;
    total += (uint64_t)(b - a);
    if (total > (uint64_t)INT64_MAX) return BS_EINVAL;
    dst_offsets[i + 1] = (int64_t)total;
  }
  return (int64_t)total;
}

bs_error bs_gather_bytes(const int64_t *src_offsets, const uint8_t *src_bytes, const uint32_t *perm,
                         size_t n, const int64_t *dst_offsets, uint8_t *dst_bytes) {
  if (n == 0) return BS_OK;
  if (src_offsets == NULL || perm == NULL || dst_offsets == NULL) return BS_EINVAL;
  if ((src_bytes == NULL || dst_bytes == NULL) && dst_offsets[n] != dst_offsets[0]) return BS_EINVAL;
  for (size_t i = 0; i < n; i++) {
    int64_t d0 = dst_offsets[i], d1 = dst_offsets[i + 1];
    if (d1 <= d0) continue;
    memcpy(dst_bytes + d0, src_bytes + src_offsets[perm[i]], (size_t)(d1 - d0));
  }
  return BS_OK;
}

void bs_bench_hash_u64_baseline(const uint64_t *v, size_t n, uint64_t seed, uint64_t *out) {
  for (size_t i = 0; i < n; i++) out[i] = XXH3_64bits_withSeed(&v[i], 8, seed);
}
