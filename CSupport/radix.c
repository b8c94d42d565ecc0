/* LSD radix sort with 11-bit digits. See bs_radix.h. */
#include "bs_radix.h"
#include "bs_error.h"

#include <stdlib.h>
#include <string.h>

#define RADIX_BITS 11
#define RADIX_SIZE (1u << RADIX_BITS)
#define RADIX_MASK (RADIX_SIZE - 1u)
#define RADIX_PASSES 6 /* 6 * 11 = 66 >= 64; the last digit has 9 bits */
/* Below this many keys a stable insertion sort beats clearing 6 * 2048 counters. */
#define RADIX_SMALL 48

int bs_radix_keys(bs_key_kind kind, const void *src, size_t n, uint64_t *dst) {
  switch (kind) {
  case BS_KEY_U8: case BS_KEY_U16: case BS_KEY_U32: case BS_KEY_U64:
  case BS_KEY_I8: case BS_KEY_I16: case BS_KEY_I32: case BS_KEY_I64:
  case BS_KEY_F32: case BS_KEY_F64:
    break;
  default:
    return BS_EINVAL;
  }
  if (n == 0) return BS_OK;
  if (src == NULL || dst == NULL) return BS_EINVAL;
  const uint8_t *p = (const uint8_t *)src;
  switch (kind) {
  case BS_KEY_U8:
    for (size_t i = 0; i < n; i++) dst[i] = p[i];
    break;
  case BS_KEY_U16:
    for (size_t i = 0; i < n; i++) { uint16_t v; memcpy(&v, p + 2 * i, 2); dst[i] = v; }
    break;
  case BS_KEY_U32:
    for (size_t i = 0; i < n; i++) { uint32_t v; memcpy(&v, p + 4 * i, 4); dst[i] = v; }
    break;
  case BS_KEY_U64:
    memcpy(dst, p, n * 8);
    break;
  case BS_KEY_I8:
    for (size_t i = 0; i < n; i++) dst[i] = (uint8_t)(p[i] ^ 0x80u);
    break;
  case BS_KEY_I16:
    for (size_t i = 0; i < n; i++) {
      uint16_t v; memcpy(&v, p + 2 * i, 2); dst[i] = (uint16_t)(v ^ 0x8000u);
    }
    break;
  case BS_KEY_I32:
    for (size_t i = 0; i < n; i++) {
      uint32_t v; memcpy(&v, p + 4 * i, 4); dst[i] = v ^ 0x80000000u;
    }
    break;
  case BS_KEY_I64:
    for (size_t i = 0; i < n; i++) {
      uint64_t v; memcpy(&v, p + 8 * i, 8); dst[i] = v ^ 0x8000000000000000ull;
    }
    break;
  case BS_KEY_F32:
    for (size_t i = 0; i < n; i++) {
      uint32_t v; memcpy(&v, p + 4 * i, 4);
      /* Sign set: flip every bit; else flip the sign bit only. */
      uint32_t m = (uint32_t)((int32_t)v >> 31) | 0x80000000u;
      dst[i] = v ^ m;
    }
    break;
  case BS_KEY_F64:
    for (size_t i = 0; i < n; i++) {
      uint64_t v; memcpy(&v, p + 8 * i, 8);
      uint64_t m = (uint64_t)((int64_t)v >> 63) | 0x8000000000000000ull;
      dst[i] = v ^ m;
    }
    break;
  default:
    return BS_EINVAL;
  }
  return BS_OK;
}

void bs_iota_u32(uint32_t *perm, size_t n) {
  if (perm == NULL) return;
  for (size_t i = 0; i < n; i++) perm[i] = (uint32_t)i;
}

static void insertion_sort(uint64_t *keys, uint32_t *perm, size_t n) {
  for (size_t i = 1; i < n; i++) {
    uint64_t k = keys[i];
    size_t j = i;
    if (perm) {
      uint32_t p = perm[i];
      while (j > 0 && keys[j - 1] > k) { keys[j] = keys[j - 1]; perm[j] = perm[j - 1]; j--; }
      keys[j] = k;
      perm[j] = p;
    } else {
      while (j > 0 && keys[j - 1] > k) { keys[j] = keys[j - 1]; j--; }
      keys[j] = k;
    }
  }
}

/* Scatter with software write-combining: each bucket collects entries in a small buffer of
 * one cache line (8 keys, 16 perm entries) and writes whole aligned lines to the
 * destination. With 2048 buckets a direct scatter touches 4096 pages in turn and misses the
 * TLB on almost every store; the buffered one misses once per line. On x86-64 whole lines
 * are written with non-temporal stores, which also saves reading the destination line. */
#if defined(__GNUC__) || defined(__clang__)
#define BS_NOINLINE __attribute__((noinline))
#else
#define BS_NOINLINE
#endif
#define KB 8u  /* keys per line */
#define PB 16u /* perm entries per line */

typedef struct {
  uint64_t kbuf[RADIX_SIZE][KB]; /* 64-byte aligned rows */
  uint32_t pbuf[RADIX_SIZE][PB];
  uint32_t cnt[RADIX_SIZE * RADIX_PASSES]; /* per-chunk counters */
  size_t hist[RADIX_PASSES][RADIX_SIZE];
  size_t start[RADIX_SIZE];
} radix_ws;

#if defined(__SSE2__) && !defined(BS_RADIX_NO_NT)
#include <emmintrin.h>
#define HAVE_NT 1
static inline void line_k(uint64_t *dst, const uint64_t *src) {
  const __m128i *s = (const __m128i *)src;
  __m128i *d = (__m128i *)dst;
  _mm_stream_si128(d + 0, _mm_load_si128(s + 0));
  _mm_stream_si128(d + 1, _mm_load_si128(s + 1));
  _mm_stream_si128(d + 2, _mm_load_si128(s + 2));
  _mm_stream_si128(d + 3, _mm_load_si128(s + 3));
}
#define line_p(dst, src) line_k((uint64_t *)(void *)(dst), (const uint64_t *)(const void *)(src))
#else
#define HAVE_NT 0
#define line_k(dst, src) memcpy((dst), (src), 64)
#define line_p(dst, src) memcpy((dst), (src), 64)
#endif

/* Index q = pos + a counts in "line space": q % KB == 0 is the start of a 64-byte line of
 * the destination (a = the destination's misalignment in elements, dst needs only natural
 * alignment). A full buffer is flushed as a whole line only when the line lies entirely
 * inside the bucket; the bucket's first and last lines are partial and written with memcpy
 * (the first one in the hot loop, rarely; the last ones after the loop). */
static BS_NOINLINE void scatter_k(const uint64_t *restrict sk, uint64_t *restrict dk, size_t n,
                      unsigned shift, size_t *restrict off, radix_ws *restrict ws) {
  const size_t a = (KB - (((uintptr_t)dk >> 3) & (KB - 1))) & (KB - 1);
  size_t *restrict st = ws->start;
  for (unsigned b = 0; b < RADIX_SIZE; b++) st[b] = off[b] + a;
  for (unsigned b = 0; b < RADIX_SIZE; b++) off[b] += a;
  for (size_t i = 0; i < n; i++) {
    uint64_t k = sk[i];
    unsigned b = (unsigned)((k >> shift) & RADIX_MASK);
    size_t q = off[b]++;
    unsigned s = (unsigned)(q & (KB - 1));
    ws->kbuf[b][s] = k;
    if (s == KB - 1) {
      size_t base = q - (KB - 1);
      if (base >= st[b]) {
        line_k(dk + (base - a), ws->kbuf[b]);
      } else {
        size_t lo = st[b] - base;
        memcpy(dk + (st[b] - a), &ws->kbuf[b][lo], (KB - lo) * sizeof(uint64_t));
      }
    }
  }
  for (unsigned b = 0; b < RADIX_SIZE; b++) {
    size_t end = off[b];
    size_t base = end & ~(size_t)(KB - 1);
    size_t lo = base > st[b] ? base : st[b];
    if (end > lo)
      memcpy(dk + (lo - a), &ws->kbuf[b][lo - base], (end - lo) * sizeof(uint64_t));
  }
}

static BS_NOINLINE void scatter_kp(const uint64_t *restrict sk, const uint32_t *restrict sp,
                       uint64_t *restrict dk, uint32_t *restrict dp, size_t n, unsigned shift,
                       size_t *restrict off, radix_ws *restrict ws) {
  /* The key and perm destinations have their own line alignment: line space for keys is
   * q = pos + a, for perm entries r = pos + ap. */
  const size_t a = (KB - (((uintptr_t)dk >> 3) & (KB - 1))) & (KB - 1);
  const size_t ap = (PB - (((uintptr_t)dp >> 2) & (PB - 1))) & (PB - 1);
  size_t *restrict st = ws->start;
  for (unsigned b = 0; b < RADIX_SIZE; b++) st[b] = off[b];
  for (size_t i = 0; i < n; i++) {
    uint64_t k = sk[i];
    uint32_t p = sp[i];
    unsigned b = (unsigned)((k >> shift) & RADIX_MASK);
    size_t pos = off[b]++;
    size_t q = pos + a, r = pos + ap;
    unsigned s = (unsigned)(q & (KB - 1)), t = (unsigned)(r & (PB - 1));
    ws->kbuf[b][s] = k;
    ws->pbuf[b][t] = p;
    if (s == KB - 1) {
      size_t base = q - (KB - 1); /* in q space */
      if (base >= st[b] + a) {
        line_k(dk + (base - a), ws->kbuf[b]);
      } else {
        size_t lo = st[b] + a - base;
        memcpy(dk + st[b], &ws->kbuf[b][lo], (KB - lo) * sizeof(uint64_t));
      }
    }
    if (t == PB - 1) {
      size_t base = r - (PB - 1);
      if (base >= st[b] + ap) {
        line_p(dp + (base - ap), ws->pbuf[b]);
      } else {
        size_t lo = st[b] + ap - base;
        memcpy(dp + st[b], &ws->pbuf[b][lo], (PB - lo) * sizeof(uint32_t));
      }
    }
  }
  for (unsigned b = 0; b < RADIX_SIZE; b++) {
    size_t end = off[b];
    {
      size_t qe = end + a, qs = st[b] + a;
      size_t base = qe & ~(size_t)(KB - 1);
      size_t lo = base > qs ? base : qs;
      if (qe > lo)
        memcpy(dk + (lo - a), &ws->kbuf[b][lo - base], (qe - lo) * sizeof(uint64_t));
    }
    {
      size_t re = end + ap, rs = st[b] + ap;
      size_t base = re & ~(size_t)(PB - 1);
      size_t lo = base > rs ? base : rs;
      if (re > lo)
        memcpy(dp + (lo - ap), &ws->pbuf[b][lo - base], (re - lo) * sizeof(uint32_t));
    }
  }
}

int bs_radix_sort_u64(uint64_t *keys, uint32_t *perm, size_t n, uint64_t *tmp_keys,
                      uint32_t *tmp_perm) {
  if (n == 0) return BS_OK;
  if (keys == NULL || tmp_keys == NULL) return BS_EINVAL;
  if (perm != NULL && (tmp_perm == NULL || n > UINT32_MAX)) return BS_EINVAL;
  if (n <= RADIX_SMALL) {
    insertion_sort(keys, perm, n);
    return BS_OK;
  }
  /* One scratch allocation per sort (about 400 KB: too much for a thread's stack). */
  void *raw = malloc(sizeof(radix_ws) + 64);
  if (raw == NULL) return BS_ENOMEM;
  radix_ws *ws = (radix_ws *)(void *)(((uintptr_t)raw + 63) & ~(uintptr_t)63);

  /* All six histograms in one read pass, with u32 counters (half the cache footprint of
   * size_t ones) over chunks of at most UINT32_MAX keys. */
  memset(ws->hist, 0, sizeof ws->hist);
  for (size_t c0 = 0; c0 < n;) {
    size_t c1 = n - c0 > UINT32_MAX ? c0 + UINT32_MAX : n;
    uint32_t *restrict h = ws->cnt;
    memset(h, 0, sizeof ws->cnt);
    for (size_t i = c0; i < c1; i++) {
      uint64_t k = keys[i];
      h[0 * RADIX_SIZE + (k & RADIX_MASK)]++;
      h[1 * RADIX_SIZE + ((k >> 11) & RADIX_MASK)]++;
      h[2 * RADIX_SIZE + ((k >> 22) & RADIX_MASK)]++;
      h[3 * RADIX_SIZE + ((k >> 33) & RADIX_MASK)]++;
      h[4 * RADIX_SIZE + ((k >> 44) & RADIX_MASK)]++;
      h[5 * RADIX_SIZE + (k >> 55)]++;
    }
    for (unsigned d = 0; d < RADIX_PASSES; d++)
      for (unsigned b = 0; b < RADIX_SIZE; b++) ws->hist[d][b] += h[d * RADIX_SIZE + b];
    c0 = c1;
  }

  uint64_t *sk = keys, *dk = tmp_keys;
  uint32_t *sp = perm, *dp = tmp_perm;
  const uint64_t first = keys[0];
  int scattered = 0;
  for (unsigned d = 0; d < RADIX_PASSES; d++) {
    const unsigned shift = d * RADIX_BITS;
    size_t *h = ws->hist[d];
    /* Skip a pass in which every key has the same digit: it would be the identity. */
    if (h[(first >> shift) & RADIX_MASK] == n) continue;
    size_t sum = 0;
    for (unsigned b = 0; b < RADIX_SIZE; b++) {
      size_t c = h[b];
      h[b] = sum;
      sum += c;
    }
    if (sp != NULL) {
      scatter_kp(sk, sp, dk, dp, n, shift, h, ws);
      uint32_t *t = sp; sp = dp; dp = t;
    } else {
      scatter_k(sk, dk, n, shift, h, ws);
    }
    uint64_t *t = sk; sk = dk; dk = t;
    scattered = 1;
  }
#if HAVE_NT
  if (scattered) _mm_sfence(); /* order the streaming stores before anything that follows */
#else
  (void)scattered;
#endif
  if (sk != keys) {
    memcpy(keys, sk, n * sizeof *keys);
    if (perm != NULL) memcpy(perm, sp, n * sizeof *perm);
  }
  free(raw);
  return BS_OK;
}
