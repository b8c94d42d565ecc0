/* Macros and helpers shared by the CSupport sources. Private: not under include/, so neither
 * Swift nor a user of the public headers sees it. */
#ifndef BS_INTERNAL_H
#define BS_INTERNAL_H

#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
/* Keeps a function out of line: a rare path out of a hot loop, or a kernel whose loop
 * should be compiled on its own. */
#define BS_NOINLINE __attribute__((noinline))
/* Branch hints for the compiler's block layout. */
#define BS_LIKELY(x) __builtin_expect(!!(x), 1)
#define BS_UNLIKELY(x) __builtin_expect(!!(x), 0)
/* Loads the cache line at p for writing, to stay in cache (a table slot about to be used). */
#define BS_PREFETCH_WRITE(p) __builtin_prefetch((p), 1, 3)
/* Loads the cache line at p for reading, to stay in cache (a key about to be compared). */
#define BS_PREFETCH_READ(p) __builtin_prefetch((p), 0, 3)
#else
#define BS_NOINLINE
#define BS_LIKELY(x) (x)
#define BS_UNLIKELY(x) (x)
#define BS_PREFETCH_WRITE(p) ((void)0)
#define BS_PREFETCH_READ(p) ((void)0)
#endif

/* Little-endian loads and stores of unaligned memory, so the formats do not depend on the
 * host; no struct punning. Compilers fold them into single moves on little-endian hosts. */
static inline uint16_t bs_load16le(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t bs_load32le(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t bs_load64le(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}
static inline void bs_store16le(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}
static inline void bs_store32le(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}
static inline void bs_store64le(uint8_t *p, uint64_t v) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  memcpy(p, &v, 8);
}

#endif
