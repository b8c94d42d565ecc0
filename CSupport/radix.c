/* LSD radix sort with 11-bit digits. See bs_radix.h. */
#include "bs_radix.h"
#include "bs_error.h"
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define RADIX_BITS 11
#define RADIX_SIZE (1u << RADIX_BITS)
#define RADIX_MASK (RADIX_SIZE - 1u)
#define RADIX_PASSES 6 /* 6 * 11 = 66 >= 64; the last digit has 9 bits */
/* Below this many keys a stable insertion sort beats clearing 6 * 2048 counters. */
#define RADIX_SMALL 48

/* Whether kind is one of bs_key_kind's values. */
static int key_kind_ok(bs_key_kind kind) { return kind >= BS_KEY_U8 && kind <= BS_KEY_F64; }

/* One loop per key kind, so that each load and store has a constant size. KEYS_LOOP turns
 * the n values of type T (v) into keys (EXPR); VALUES_LOOP turns the keys (k, cut to T) back
 * into values of type T (EXPR). */
#define KEYS_LOOP(T, EXPR)                      \
  for (size_t i = 0; i < n; i++) {              \
    T v;                                        \
    memcpy(&v, p + sizeof(T) * i, sizeof(T));   \
    dst[i] = (EXPR);                            \
  }
#define VALUES_LOOP(T, EXPR)                    \
  for (size_t i = 0; i < n; i++) {              \
    const T k = (T)keys[i];                     \
    T v = (T)(EXPR);                            \
    memcpy(p + sizeof(T) * i, &v, sizeof(T));   \
  }

bs_error bs_radix_keys(bs_key_kind kind, const void *src, size_t n, uint64_t *dst) {
  if (!key_kind_ok(kind)) return BS_EINVAL;
  if (n == 0) return BS_OK;
  if (src == NULL || dst == NULL) return BS_EINVAL;
  const uint8_t *p = (const uint8_t *)src;
  switch (kind) {
  case BS_KEY_U8: KEYS_LOOP(uint8_t, v); break;
  case BS_KEY_U16: KEYS_LOOP(uint16_t, v); break;
  case BS_KEY_U32: KEYS_LOOP(uint32_t, v); break;
  case BS_KEY_U64: memcpy(dst, p, n * 8); break;
  case BS_KEY_I8: KEYS_LOOP(uint8_t, (uint8_t)(v ^ 0x80u)); break;
  case BS_KEY_I16: KEYS_LOOP(uint16_t, (uint16_t)(v ^ 0x8000u)); break;
  case BS_KEY_I32: KEYS_LOOP(uint32_t, v ^ 0x80000000u); break;
  case BS_KEY_I64: KEYS_LOOP(uint64_t, v ^ 0x8000000000000000ull); break;
  /* Sign set: flip every bit; else flip the sign bit only. */
  case BS_KEY_F32: KEYS_LOOP(uint32_t, v ^ ((uint32_t)((int32_t)v >> 31) | 0x80000000u)); break;
  case BS_KEY_F64:
    KEYS_LOOP(uint64_t, v ^ ((uint64_t)((int64_t)v >> 63) | 0x8000000000000000ull));
    break;
  default: return BS_EINVAL;
  }
  return BS_OK;
}

bs_error bs_radix_keys_inverse(bs_key_kind kind, const uint64_t *keys, size_t n, void *dst) {
  if (!key_kind_ok(kind)) return BS_EINVAL;
  if (n == 0) return BS_OK;
  if (keys == NULL || dst == NULL) return BS_EINVAL;
  uint8_t *p = (uint8_t *)dst;
  switch (kind) {
  case BS_KEY_U8: VALUES_LOOP(uint8_t, k); break;
  case BS_KEY_U16: VALUES_LOOP(uint16_t, k); break;
  case BS_KEY_U32: VALUES_LOOP(uint32_t, k); break;
  case BS_KEY_U64: if ((const void *)p != (const void *)keys) memcpy(p, keys, n * 8); break;
  case BS_KEY_I8: VALUES_LOOP(uint8_t, k ^ 0x80u); break;
  case BS_KEY_I16: VALUES_LOOP(uint16_t, k ^ 0x8000u); break;
  case BS_KEY_I32: VALUES_LOOP(uint32_t, k ^ 0x80000000u); break;
  case BS_KEY_I64: VALUES_LOOP(uint64_t, k ^ 0x8000000000000000ull); break;
  /* Top bit set: the value was positive (flip the sign bit back); else flip every bit. */
  case BS_KEY_F32: VALUES_LOOP(uint32_t, (k & 0x80000000u) ? (k ^ 0x80000000u) : ~k); break;
  case BS_KEY_F64:
    VALUES_LOOP(uint64_t, (k & 0x8000000000000000ull) ? (k ^ 0x8000000000000000ull) : ~k);
    break;
  default: return BS_EINVAL;
  }
  return BS_OK;
}
#undef KEYS_LOOP
#undef VALUES_LOOP

bs_error bs_range_partition_u64(const uint64_t *keys, size_t n, const uint64_t *bounds, size_t m,
                                uint32_t *out) {
  if (m > UINT32_MAX) return BS_EINVAL;
  if (n == 0) return BS_OK;
  if (keys == NULL || out == NULL || (bounds == NULL && m > 0)) return BS_EINVAL;
  for (size_t i = 0; i < n; i++) {
    uint64_t k = keys[i];
    /* Invariant: the answer lies in [lo, lo + len]. */
    size_t lo = 0, len = m;
    while (len > 0) {
      size_t half = len / 2;
      /* bounds[lo + half] <= k: the answer is above lo + half. */
      int le = bounds[lo + half] <= k;
      lo = le ? lo + half + 1 : lo;
      len = le ? len - half - 1 : half;
    }
    out[i] = (uint32_t)lo;
  }
  return BS_OK;
}

bs_error bs_iota_u32(uint32_t *perm, size_t n) {
  if (n > (size_t)UINT32_MAX + 1) return BS_EINVAL;
  if (n == 0) return BS_OK;
  if (perm == NULL) return BS_EINVAL;
  for (size_t i = 0; i < n; i++) perm[i] = (uint32_t)i;
  return BS_OK;
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

/* Strategy. One read pass computes the histograms of all six digits of a range. A range
 * that is large (more than LSD_MAX keys) and whose highest varying digit spreads it into
 * buckets of at least MSD_MIN_CHILD keys on average is first split by that digit (an MSD
 * pass, stable), and every bucket is then sorted by the lower digits on its own, while it
 * is small enough to stay in cache. Other ranges get plain LSD passes over their varying
 * digits. Either way the order is the stable order of the full 64-bit keys, and a digit
 * shared by every key of a range costs no pass. */
#ifndef LSD_MAX
#define LSD_MAX ((size_t)1 << 17)       /* keys sorted in cache by LSD passes */
#endif
#ifndef MSD_MIN_CHILD
#define MSD_MIN_CHILD ((size_t)1 << 13) /* average bucket size that pays for a split */
#endif
#ifndef SWWC_MIN
#define SWWC_MIN ((size_t)1 << 18)      /* ranges that are scattered with line buffers */
#endif

/* Software write-combining. Each bucket collects entries in a buffer of one cache line (8
 * keys, 16 perm entries) and writes whole aligned lines to the destination. With 2048
 * buckets a direct scatter over a large array touches 4096 pages in turn and misses the TLB
 * on almost every store; the buffered one misses once per line. On x86-64 the lines are
 * written with non-temporal stores, which also saves reading each destination line. */
#define KB 8u  /* keys per line */
#define PB 16u /* perm entries per line */

typedef struct {
  uint64_t kbuf[RADIX_SIZE][KB]; /* 64-byte aligned rows (the struct is aligned by hand) */
  uint32_t pbuf[RADIX_SIZE][PB];
  uint32_t cnt[RADIX_PASSES * RADIX_SIZE]; /* u32 counters of one chunk */
  size_t hist[RADIX_PASSES][RADIX_SIZE];   /* counts, then offsets of one scatter */
  size_t start[RADIX_SIZE];                /* bucket starts of one buffered scatter */
  size_t bounds[RADIX_PASSES][RADIX_SIZE + 1]; /* bucket bounds of each MSD level */
} radix_ws;

#if defined(__SSE2__) && !defined(BS_RADIX_NO_NT)
#include <emmintrin.h>
#define HAVE_NT 1
static inline void store_line(void *dst, const void *src) {
  const __m128i *s = (const __m128i *)src;
  __m128i *d = (__m128i *)dst;
  _mm_stream_si128(d + 0, _mm_load_si128(s + 0));
  _mm_stream_si128(d + 1, _mm_load_si128(s + 1));
  _mm_stream_si128(d + 2, _mm_load_si128(s + 2));
  _mm_stream_si128(d + 3, _mm_load_si128(s + 3));
}
#else
#define HAVE_NT 0
static inline void store_line(void *dst, const void *src) { memcpy(dst, src, 64); }
#endif

/* Plain stable scatter by the digit at `shift`; off[] holds the exclusive prefix sums. */
static BS_NOINLINE void scatter_plain_kp(const uint64_t *restrict sk,
                                         const uint32_t *restrict sp, uint64_t *restrict dk,
                                         uint32_t *restrict dp, size_t n, unsigned shift,
                                         size_t *restrict off) {
  for (size_t i = 0; i < n; i++) {
    uint64_t k = sk[i];
    size_t pos = off[(k >> shift) & RADIX_MASK]++;
    dk[pos] = k;
    dp[pos] = sp[i];
  }
}

static BS_NOINLINE void scatter_plain_k(const uint64_t *restrict sk, uint64_t *restrict dk,
                                        size_t n, unsigned shift, size_t *restrict off) {
  for (size_t i = 0; i < n; i++) {
    uint64_t k = sk[i];
    dk[off[(k >> shift) & RADIX_MASK]++] = k;
  }
}

/* Buffered scatter. Positions are counted in "line space", q = pos + a, where a is the
 * destination's offset in elements from the start of its 64-byte line, so q % KB == 0
 * starts a line (the arrays need only their natural alignment). A full buffer is written as a whole line when the
 * line lies entirely inside the bucket; a bucket's first line is shared with the previous
 * bucket and is written partially (rarely, in the loop), and the last partial lines after
 * the loop. */
static BS_NOINLINE void scatter_wc_k(const uint64_t *restrict sk, uint64_t *restrict dk,
                                     size_t n, unsigned shift, size_t *restrict off,
                                     radix_ws *restrict ws) {
  const size_t a = ((uintptr_t)dk / sizeof(uint64_t)) & (KB - 1);
  size_t *restrict st = ws->start;
  for (unsigned b = 0; b < RADIX_SIZE; b++) {
    off[b] += a;
    st[b] = off[b];
  }
  for (size_t i = 0; i < n; i++) {
    uint64_t k = sk[i];
    unsigned b = (unsigned)((k >> shift) & RADIX_MASK);
    size_t q = off[b]++;
    unsigned s = (unsigned)(q & (KB - 1));
    ws->kbuf[b][s] = k;
    if (s == KB - 1) {
      size_t base = q - (KB - 1);
      if (base >= st[b]) {
        store_line(dk + (base - a), ws->kbuf[b]);
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

static BS_NOINLINE void scatter_wc_kp(const uint64_t *restrict sk, const uint32_t *restrict sp,
                                      uint64_t *restrict dk, uint32_t *restrict dp, size_t n,
                                      unsigned shift, size_t *restrict off,
                                      radix_ws *restrict ws) {
  /* Keys and perm entries have their own line spaces: q = pos + a and r = pos + ap. */
  const size_t a = ((uintptr_t)dk / sizeof(uint64_t)) & (KB - 1);
  const size_t ap = ((uintptr_t)dp / sizeof(uint32_t)) & (PB - 1);
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
      size_t base = q - (KB - 1);
      if (base >= st[b] + a) {
        store_line(dk + (base - a), ws->kbuf[b]);
      } else {
        size_t lo = st[b] + a - base;
        memcpy(dk + st[b], &ws->kbuf[b][lo], (KB - lo) * sizeof(uint64_t));
      }
    }
    if (t == PB - 1) {
      size_t base = r - (PB - 1);
      if (base >= st[b] + ap) {
        store_line(dp + (base - ap), ws->pbuf[b]);
      } else {
        size_t lo = st[b] + ap - base;
        memcpy(dp + st[b], &ws->pbuf[b][lo], (PB - lo) * sizeof(uint32_t));
      }
    }
  }
  for (unsigned b = 0; b < RADIX_SIZE; b++) {
    size_t end = off[b];
    size_t qe = end + a, qs = st[b] + a;
    size_t base = qe & ~(size_t)(KB - 1);
    size_t lo = base > qs ? base : qs;
    if (qe > lo) memcpy(dk + (lo - a), &ws->kbuf[b][lo - base], (qe - lo) * sizeof(uint64_t));
    size_t re = end + ap, rs = st[b] + ap;
    base = re & ~(size_t)(PB - 1);
    lo = base > rs ? base : rs;
    if (re > lo) memcpy(dp + (lo - ap), &ws->pbuf[b][lo - base], (re - lo) * sizeof(uint32_t));
  }
}

typedef struct {
  uint64_t *keys, *tkeys; /* the caller's arrays: the result goes to keys */
  uint32_t *perm, *tperm; /* perm == NULL: keys only */
  radix_ws *ws;
  int streamed; /* a non-temporal store was issued */
} radix_ctx;

/* Counts digits 0..nd-1 of src[c0..<c1] into h (u32 counters); nd is a constant in each
 * caller below, so the tests on it fold away. */
#define COUNT_DIGIT(d) h[(d) * RADIX_SIZE + ((k >> ((d) * RADIX_BITS)) & RADIX_MASK)]++
static inline void count_digits(const uint64_t *restrict src, size_t c0, size_t c1,
                                uint32_t *restrict h, unsigned nd) {
  for (size_t i = c0; i < c1; i++) {
    const uint64_t k = src[i];
    COUNT_DIGIT(0);
    if (nd > 1) COUNT_DIGIT(1);
    if (nd > 2) COUNT_DIGIT(2);
    if (nd > 3) COUNT_DIGIT(3);
    if (nd > 4) COUNT_DIGIT(4);
    if (nd > 5) COUNT_DIGIT(5);
  }
}
#undef COUNT_DIGIT

/* ws->hist[0..nd) = the histograms of digits 0..nd-1 of src[0..<n], in one read pass. */
static void histograms(const uint64_t *restrict src, size_t n, unsigned nd,
                       radix_ws *restrict ws) {
  memset(ws->hist, 0, nd * sizeof ws->hist[0]);
  for (size_t c0 = 0; c0 < n;) {
    /* u32 counters take half the cache of size_t ones; chunks keep them from overflowing */
    size_t c1 = n - c0 > UINT32_MAX ? c0 + UINT32_MAX : n;
    uint32_t *h = ws->cnt;
    memset(h, 0, nd * RADIX_SIZE * sizeof *h);
    switch (nd) {
    case 1: count_digits(src, c0, c1, h, 1); break;
    case 2: count_digits(src, c0, c1, h, 2); break;
    case 3: count_digits(src, c0, c1, h, 3); break;
    case 4: count_digits(src, c0, c1, h, 4); break;
    case 5: count_digits(src, c0, c1, h, 5); break;
    default: count_digits(src, c0, c1, h, 6); break;
    }
    for (unsigned d = 0; d < nd; d++)
      for (unsigned b = 0; b < RADIX_SIZE; b++) ws->hist[d][b] += h[d * RADIX_SIZE + b];
    c0 = c1;
  }
}

/* Turns ws->hist[d] into exclusive prefix sums. */
static void prefix(size_t *h) {
  size_t sum = 0;
  for (unsigned b = 0; b < RADIX_SIZE; b++) {
    size_t c = h[b];
    h[b] = sum;
    sum += c;
  }
}

/* One stable scatter of [lo, lo+n) from one buffer pair to the other by digit d. */
static void scatter(radix_ctx *c, size_t lo, size_t n, unsigned d, int from_tmp, size_t *off) {
  const unsigned shift = d * RADIX_BITS;
  uint64_t *sk = (from_tmp ? c->tkeys : c->keys) + lo;
  uint64_t *dk = (from_tmp ? c->keys : c->tkeys) + lo;
  if (c->perm != NULL) {
    uint32_t *sp = (from_tmp ? c->tperm : c->perm) + lo;
    uint32_t *dp = (from_tmp ? c->perm : c->tperm) + lo;
    if (n >= SWWC_MIN) {
      scatter_wc_kp(sk, sp, dk, dp, n, shift, off, c->ws);
      c->streamed = 1;
    } else {
      scatter_plain_kp(sk, sp, dk, dp, n, shift, off);
    }
  } else {
    if (n >= SWWC_MIN) {
      scatter_wc_k(sk, dk, n, shift, off, c->ws);
      c->streamed = 1;
    } else {
      scatter_plain_k(sk, dk, n, shift, off);
    }
  }
}

static void copy_back(radix_ctx *c, size_t lo, size_t n) {
  memcpy(c->keys + lo, c->tkeys + lo, n * sizeof(uint64_t));
  if (c->perm != NULL) memcpy(c->perm + lo, c->tperm + lo, n * sizeof(uint32_t));
}

/* Sorts the range [lo, lo+n), whose entries sit in the tmp arrays when in_tmp, by the
 * digits 0..top (the higher ones are shared by all its keys), leaving it in keys/perm.
 * Recursion depth is at most RADIX_PASSES (one level per digit). */
static void sort_range(radix_ctx *c, size_t lo, size_t n, int top, int in_tmp) {
  radix_ws *ws = c->ws;
  if (n <= RADIX_SMALL) {
    if (in_tmp) copy_back(c, lo, n);
    insertion_sort(c->keys + lo, c->perm ? c->perm + lo : NULL, n);
    return;
  }
  const uint64_t *src = (in_tmp ? c->tkeys : c->keys) + lo;
  histograms(src, n, (unsigned)top + 1, ws);
  const uint64_t first = src[0];
  /* The highest digit that varies in the range. */
  int t = top;
  while (t >= 0 && ws->hist[t][(first >> (t * RADIX_BITS)) & RADIX_MASK] == n) t--;
  if (t < 0) { /* all keys equal */
    if (in_tmp) copy_back(c, lo, n);
    return;
  }
  size_t used = 0;
  for (unsigned b = 0; b < RADIX_SIZE; b++) used += ws->hist[t][b] != 0;
  if (t > 0 && n > LSD_MAX && n / used >= MSD_MIN_CHILD) {
    /* Split by digit t, then sort each bucket by the digits below. */
    size_t *bd = ws->bounds[t];
    prefix(ws->hist[t]);
    memcpy(bd, ws->hist[t], RADIX_SIZE * sizeof(size_t));
    bd[RADIX_SIZE] = n;
    scatter(c, lo, n, (unsigned)t, in_tmp, ws->hist[t]);
    for (unsigned b = 0; b < RADIX_SIZE; b++) {
      size_t m = bd[b + 1] - bd[b];
      if (m > 0) sort_range(c, lo + bd[b], m, t - 1, !in_tmp);
    }
    return;
  }
  /* LSD passes over the varying digits 0..t. */
  for (int d = 0; d <= t; d++) {
    size_t *h = ws->hist[d];
    if (h[(first >> (d * RADIX_BITS)) & RADIX_MASK] == n) continue;
    prefix(h);
    scatter(c, lo, n, (unsigned)d, in_tmp, h);
    in_tmp = !in_tmp;
  }
  if (in_tmp) copy_back(c, lo, n);
}

/* The sort without scratch memory, for when the scratch cannot be allocated: plain LSD
 * passes with one digit histogram (16 KB of stack) counted per pass. Slower, same result. */
static BS_NOINLINE void sort_unbuffered(uint64_t *keys, uint32_t *perm, size_t n,
                                        uint64_t *tmp_keys, uint32_t *tmp_perm) {
  size_t h[RADIX_SIZE];
  uint64_t *sk = keys, *dk = tmp_keys;
  uint32_t *sp = perm, *dp = tmp_perm;
  for (unsigned d = 0; d < RADIX_PASSES; d++) {
    const unsigned shift = d * RADIX_BITS;
    memset(h, 0, sizeof h);
    for (size_t i = 0; i < n; i++) h[(sk[i] >> shift) & RADIX_MASK]++;
    if (h[(sk[0] >> shift) & RADIX_MASK] == n) continue;
    prefix(h);
    if (sp != NULL) {
      scatter_plain_kp(sk, sp, dk, dp, n, shift, h);
      uint32_t *t = sp; sp = dp; dp = t;
    } else {
      scatter_plain_k(sk, dk, n, shift, h);
    }
    uint64_t *t = sk; sk = dk; dk = t;
  }
  if (sk != keys) {
    memcpy(keys, sk, n * sizeof *keys);
    if (perm != NULL) memcpy(perm, sp, n * sizeof *perm);
  }
}

/* The argument checks both sorts share. */
static bs_error sort_args(const uint64_t *keys, const uint32_t *perm, size_t n, const uint64_t *tmp_keys,
                          const uint32_t *tmp_perm) {
  if (n == 0) return BS_OK;
  if (keys == NULL || tmp_keys == NULL) return BS_EINVAL;
  if (perm != NULL && (tmp_perm == NULL || n > UINT32_MAX)) return BS_EINVAL;
  return BS_OK;
}

bs_error bs_radix_sort_u64_unbuffered(uint64_t *keys, uint32_t *perm, size_t n, uint64_t *tmp_keys,
                                      uint32_t *tmp_perm) {
  bs_error e = sort_args(keys, perm, n, tmp_keys, tmp_perm);
  if (e != BS_OK || n == 0) return e;
  sort_unbuffered(keys, perm, n, tmp_keys, tmp_perm);
  return BS_OK;
}

bs_error bs_radix_sort_u64(uint64_t *keys, uint32_t *perm, size_t n, uint64_t *tmp_keys,
                      uint32_t *tmp_perm) {
  bs_error e = sort_args(keys, perm, n, tmp_keys, tmp_perm);
  if (e != BS_OK || n == 0) return e;
  if (n <= RADIX_SMALL) {
    insertion_sort(keys, perm, n);
    return BS_OK;
  }
  /* One scratch allocation per sort (about 500 KB: too much for a thread's stack). */
  void *raw = malloc(sizeof(radix_ws) + 64);
  if (raw == NULL) {
    sort_unbuffered(keys, perm, n, tmp_keys, tmp_perm);
    return BS_OK;
  }
  radix_ctx c;
  c.keys = keys;
  c.tkeys = tmp_keys;
  c.perm = perm;
  c.tperm = tmp_perm;
  c.ws = (radix_ws *)(void *)(((uintptr_t)raw + 63) & ~(uintptr_t)63);
  c.streamed = 0;
  sort_range(&c, 0, n, RADIX_PASSES - 1, 0);
#if HAVE_NT
  if (c.streamed) _mm_sfence(); /* order the streaming stores before what follows */
#endif
  free(raw);
  return BS_OK;
}
