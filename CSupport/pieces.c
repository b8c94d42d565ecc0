#include "bs_pieces.h"

#include <string.h>

#include "internal.h"

/* How many chunks ahead the walks prefetch: enough misses in flight to cover memory's
 * latency, few enough that the lines are still there when used. */
#define AHEAD 16

static inline uint32_t entry(const bs_part_index *x, size_t i) {
  return x->narrow ? ((const uint16_t *)x->starts)[i] : ((const uint32_t *)x->starts)[i];
}

/* The line holding a dense index's entry p (the sparse ones are searched, not prefetched). */
static inline void prefetch_entry(const bs_part_index *x, uint32_t p) {
  if (x->starts != NULL && !x->sparse) BS_PREFETCH_READ((const uint8_t *)x->starts + (size_t)p * (x->narrow ? 2 : 4));
}

static void range_of(const bs_part_index *x, uint32_t p, uint32_t *start, uint32_t *end) {
  if (x->starts == NULL) {
    *start = 0;
    *end = p == 0 ? x->rows : 0;
    return;
  }
  if (!x->sparse) {
    if (p >= x->parts) {
      *start = *end = 0;
      return;
    }
    *start = entry(x, p);
    *end = entry(x, (size_t)p + 1);
    return;
  }
  size_t lo = 0, hi = x->ids;
  while (lo < hi) {
    size_t mid = (lo + hi) >> 1;
    if (entry(x, x->ids + 1 + mid) < p)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo < x->ids && entry(x, x->ids + 1 + lo) == p) {
    *start = entry(x, lo);
    *end = entry(x, lo + 1);
  } else {
    *start = *end = 0;
  }
}

bs_error bs_partition_ranges(const bs_part_index *idx, size_t n, uint32_t p, uint32_t *start, uint32_t *end) {
  if (n == 0) return BS_OK;
  if (idx == NULL || start == NULL || end == NULL) return BS_EINVAL;
  for (size_t i = 0; i < n && i < AHEAD; i++) prefetch_entry(&idx[i], p);
  for (size_t i = 0; i < n; i++) {
    if (i + AHEAD < n) prefetch_entry(&idx[i + AHEAD], p);
    range_of(&idx[i], p, &start[i], &end[i]);
  }
  return BS_OK;
}

bs_error bs_copy_pieces(const void *const *src, const uint32_t *rows, size_t n, size_t width, void *dst) {
  if (width != 1 && width != 2 && width != 4 && width != 8 && width != 16) return BS_EINVAL;
  if (n == 0) return BS_OK;
  if (src == NULL || rows == NULL || dst == NULL) return BS_EINVAL;
  uint8_t *d = (uint8_t *)dst;
  for (size_t k = 0; k < n && k < AHEAD; k++) BS_PREFETCH_READ(src[k]);
  /* One loop per width, so that a short piece is a few moves of a constant size; a long one
   * is one memcpy. */
#define COPY_LOOP(W)                                                \
  for (size_t k = 0; k < n; k++) {                                  \
    if (k + AHEAD < n) BS_PREFETCH_READ(src[k + AHEAD]);            \
    const uint8_t *s = (const uint8_t *)src[k];                     \
    size_t m = rows[k];                                             \
    if (m <= 4) {                                                   \
      for (size_t r = 0; r < m; r++) memcpy(d + (W) * r, s + (W) * r, (W)); \
    } else {                                                        \
      memcpy(d, s, (W) * m);                                        \
    }                                                               \
    d += (W) * m;                                                   \
  }
  switch (width) {
  case 1:
    COPY_LOOP(1);
    break;
  case 2:
    COPY_LOOP(2);
    break;
  case 4:
    COPY_LOOP(4);
    break;
  case 8:
    COPY_LOOP(8);
    break;
  default:
    COPY_LOOP(16);
    break;
  }
#undef COPY_LOOP
  return BS_OK;
}
