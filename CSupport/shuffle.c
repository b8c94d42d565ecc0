/* Byte shuffle: the transposition of fixed-width values. See bs_shuffle.h. */
#include "bs_shuffle.h"
#include "bs_error.h"
#include "internal.h"

#include <stdint.h>
#include <string.h>

/* Byte transposition. The fast path transposes 8x8 byte tiles held in eight u64 (three
 * rounds of masked swaps: 4-byte, 2-byte, then 1-byte blocks), which is its own inverse:
 * x[k] byte j <-> x[j] byte k. Words are read and written as little-endian, so the result
 * does not depend on the host. */
static inline void transpose8(uint64_t x[8]) {
  for (int k = 0; k < 4; k++) {
    uint64_t t = ((x[k] >> 32) ^ x[k + 4]) & 0x00000000FFFFFFFFull;
    x[k] ^= t << 32;
    x[k + 4] ^= t;
  }
  for (int k = 0; k < 8; k += (k & 1) ? 3 : 1) { /* k = 0, 1, 4, 5 */
    uint64_t t = ((x[k] >> 16) ^ x[k + 2]) & 0x0000FFFF0000FFFFull;
    x[k] ^= t << 16;
    x[k + 2] ^= t;
  }
  for (int k = 0; k < 8; k += 2) {
    uint64_t t = ((x[k] >> 8) ^ x[k + 1]) & 0x00FF00FF00FF00FFull;
    x[k] ^= t << 8;
    x[k + 1] ^= t;
  }
}

/* Shuffle of cnt elements (of a column of n: streams are n bytes apart) of width
 * w = 8 * lanes (lanes = 1 or 2) in tiles of 8 elements: lane l holds bytes 8l..8l+7 of
 * each element. */
static void shuffle_tiles(const uint8_t *s, size_t w, size_t cnt, size_t n, uint8_t *d,
                          size_t *done) {
  size_t i = 0;
  for (; i + 8 <= cnt; i += 8) {
    for (size_t l = 0; l < w / 8; l++) {
      uint64_t x[8];
      for (size_t k = 0; k < 8; k++) x[k] = bs_load64le(s + (i + k) * w + 8 * l);
      transpose8(x);
      for (size_t j = 0; j < 8; j++) bs_store64le(d + (8 * l + j) * n + i, x[j]);
    }
  }
  *done = i;
}

static void unshuffle_tiles(const uint8_t *s, size_t w, size_t cnt, size_t n, uint8_t *d,
                            size_t *done) {
  size_t i = 0;
  for (; i + 8 <= cnt; i += 8) {
    for (size_t l = 0; l < w / 8; l++) {
      uint64_t x[8];
      for (size_t j = 0; j < 8; j++) x[j] = bs_load64le(s + (8 * l + j) * n + i);
      transpose8(x);
      for (size_t k = 0; k < 8; k++) bs_store64le(d + (i + k) * w + 8 * l, x[k]);
    }
  }
  *done = i;
}

/* Width 4: a 4x4 tile of bytes in four u32, two rounds of masked swaps. */
static inline void transpose4(uint32_t x[4]) {
  for (int k = 0; k < 2; k++) {
    uint32_t t = ((x[k] >> 16) ^ x[k + 2]) & 0x0000FFFFu;
    x[k] ^= t << 16;
    x[k + 2] ^= t;
  }
  for (int k = 0; k < 4; k += 2) {
    uint32_t t = ((x[k] >> 8) ^ x[k + 1]) & 0x00FF00FFu;
    x[k] ^= t << 8;
    x[k + 1] ^= t;
  }
}
#if defined(__SSE2__)
#include <emmintrin.h>
/* Width 8 with SSE2, 16 elements (128 bytes) per step: a 16x8 byte transpose by three
 * rounds of unpacks. Returns the elements done. */
static size_t shuffle8_sse2(const uint8_t *s, size_t n, uint8_t *d) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m128i a[8], b[8];
    for (int k = 0; k < 8; k++) {
      a[k] = _mm_loadu_si128((const __m128i *)(const void *)(s + 8 * i + 16 * k));
      /* bytes of elements 2k and 2k+1 interleaved: e0b0 e1b0 e0b1 e1b1 ... */
      b[k] = _mm_unpacklo_epi8(a[k], _mm_shuffle_epi32(a[k], 0x4e));
    }
    for (int k = 0; k < 4; k++) {
      a[2 * k] = _mm_unpacklo_epi16(b[2 * k], b[2 * k + 1]);
      a[2 * k + 1] = _mm_unpackhi_epi16(b[2 * k], b[2 * k + 1]);
    }
    for (int k = 0, l = 0; k < 4; k++, l++) {
      if (k == 2) l += 2;
      b[2 * k] = _mm_unpacklo_epi32(a[l], a[l + 2]);
      b[2 * k + 1] = _mm_unpackhi_epi32(a[l], a[l + 2]);
    }
    for (int k = 0; k < 4; k++) {
      a[2 * k] = _mm_unpacklo_epi64(b[k], b[k + 4]);
      a[2 * k + 1] = _mm_unpackhi_epi64(b[k], b[k + 4]);
    }
    for (size_t j = 0; j < 8; j++) _mm_storeu_si128((__m128i *)(void *)(d + j * n + i), a[j]);
  }
  return i;
}

static size_t unshuffle8_sse2(const uint8_t *s, size_t n, uint8_t *d) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m128i a[8], b[8];
    for (size_t j = 0; j < 8; j++)
      a[j] = _mm_loadu_si128((const __m128i *)(const void *)(s + j * n + i));
    for (int j = 0; j < 4; j++) {
      b[j] = _mm_unpacklo_epi8(a[2 * j], a[2 * j + 1]);
      b[4 + j] = _mm_unpackhi_epi8(a[2 * j], a[2 * j + 1]);
    }
    for (int j = 0; j < 4; j++) {
      a[j] = _mm_unpacklo_epi16(b[2 * j], b[2 * j + 1]);
      a[4 + j] = _mm_unpackhi_epi16(b[2 * j], b[2 * j + 1]);
    }
    for (int j = 0; j < 4; j++) {
      b[j] = _mm_unpacklo_epi32(a[2 * j], a[2 * j + 1]);
      b[4 + j] = _mm_unpackhi_epi32(a[2 * j], a[2 * j + 1]);
    }
    static const int order[8] = {0, 4, 2, 6, 1, 5, 3, 7};
    for (int k = 0; k < 8; k++)
      _mm_storeu_si128((__m128i *)(void *)(d + 8 * i + 16 * k), b[order[k]]);
  }
  return i;
}
#endif

static int width_ok(size_t w) { return w == 2 || w == 4 || w == 8 || w == 16; }

bs_error bs_byte_shuffle(const void *src, size_t width, size_t n, void *dst) {
  if (!width_ok(width)) return BS_EINVAL;
  if (n == 0) return BS_OK;
  if (src == NULL || dst == NULL || n > SIZE_MAX / width) return BS_EINVAL;
  const uint8_t *s = (const uint8_t *)src;
  uint8_t *d = (uint8_t *)dst;
  size_t i = 0;
  if (width == 2) {
    for (; i < n; i++) {
      d[i] = s[2 * i];
      d[n + i] = s[2 * i + 1];
    }
    return BS_OK;
  }
  if (width == 4) {
    for (; i + 4 <= n; i += 4) {
      uint32_t x[4];
      for (size_t k = 0; k < 4; k++) x[k] = bs_load32le(s + 4 * (i + k));
      transpose4(x);
      for (size_t j = 0; j < 4; j++) bs_store32le(d + j * n + i, x[j]);
    }
  } else {
#if defined(__SSE2__)
    if (width == 8) i = shuffle8_sse2(s, n, d);
#endif
    size_t done;
    shuffle_tiles(s + i * width, width, n - i, n, d + i, &done);
    i += done;
  }
  for (; i < n; i++)
    for (size_t j = 0; j < width; j++) d[j * n + i] = s[i * width + j];
  return BS_OK;
}

bs_error bs_byte_unshuffle(const void *src, size_t width, size_t n, void *dst) {
  if (!width_ok(width)) return BS_EINVAL;
  if (n == 0) return BS_OK;
  if (src == NULL || dst == NULL || n > SIZE_MAX / width) return BS_EINVAL;
  const uint8_t *s = (const uint8_t *)src;
  uint8_t *d = (uint8_t *)dst;
  size_t i = 0;
  if (width == 2) {
    for (; i < n; i++) {
      d[2 * i] = s[i];
      d[2 * i + 1] = s[n + i];
    }
    return BS_OK;
  }
  if (width == 4) {
    for (; i + 4 <= n; i += 4) {
      uint32_t x[4];
      for (size_t j = 0; j < 4; j++) x[j] = bs_load32le(s + j * n + i);
      transpose4(x);
      for (size_t k = 0; k < 4; k++) bs_store32le(d + 4 * (i + k), x[k]);
    }
  } else {
#if defined(__SSE2__)
    if (width == 8) i = unshuffle8_sse2(s, n, d);
#endif
    size_t done;
    unshuffle_tiles(s + i, width, n - i, n, d + i * width, &done);
    i += done;
  }
  for (; i < n; i++)
    for (size_t j = 0; j < width; j++) d[i * width + j] = s[j * n + i];
  return BS_OK;
}
