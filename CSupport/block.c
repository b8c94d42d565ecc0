/* The block format: a 40-byte little-endian header, then a raw, zstd or runs payload. See
 * bs_block.h. */
#include "bs_block.h"
#include "bs_error.h"
#include "bs_hash.h" /* XXH3, inlined */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include <zstd_errors.h>

struct bs_block_encoder {
  ZSTD_CCtx *cctx;
  /* BS_BLOCK_LEVEL_FAST: weak blocks left before zstd is tried again. */
  uint32_t zstd_rest;
};
struct bs_block_decoder {
  ZSTD_DCtx *dctx;
};

/* Header field offsets. */
enum {
  H_MAGIC = 0,
  H_VERSION = 4,
  H_CODEC = 6,
  H_ROWS = 8,
  H_RAW_LEN = 16,
  H_PAYLOAD_LEN = 20,
  H_RAW_SUM = 24,
  H_HEADER_SUM = 32,
  H_CHECKED = 32, /* bytes covered by the header checksum */
};
/* A zstd or runs payload ends with the XXH3-64 of the frame or tokens. */
#define BS_BLOCK_TRAILER 8u

/* The runs codec: tokens, each a u32 little-endian (length << 1 | kind) then, for a run
 * (kind 1), the repeated byte, or for literals (kind 0), length bytes. Lengths are at least
 * 1. Runs shorter than RUN_MIN stay inside literals, so a token costs at most 4 bytes for
 * every RUN_MIN it saves. The encoder looks for runs a word at a time: a word whose eight
 * bytes are equal starts one, which it extends both ways byte by byte. */
#define RUN_MIN 32u

static int put_token(uint8_t *out, size_t cap, size_t *o, uint32_t token, const uint8_t *bytes,
                     size_t n) {
  if (cap - *o < 4 || cap - *o - 4 < n) return 0;
  bs_store32le(out + *o, token);
  if (n) memcpy(out + *o + 4, bytes, n);
  *o += 4 + n;
  return 1;
}

/* Codes src[0..<n] as runs tokens into out[0..<cap]; returns the coded size, or 0 when it
 * does not fit (n is at most BS_BLOCK_MAX_RAW, so lengths fit in 31 bits). */
static size_t runs_encode(const uint8_t *src, size_t n, uint8_t *out, size_t cap) {
  size_t o = 0, lit = 0, i = 0;
  while (i + 8 <= n) {
    uint64_t w;
    memcpy(&w, src + i, 8);
    if (w != (w & 0xFF) * 0x0101010101010101ull) {
      i += 8;
      continue;
    }
    uint8_t v = (uint8_t)w;
    size_t s = i, e = i + 8;
    while (s > lit && src[s - 1] == v) s--;
    for (;;) {
      uint64_t x;
      if (e + 8 > n) break;
      memcpy(&x, src + e, 8);
      if (x != w) break;
      e += 8;
    }
    while (e < n && src[e] == v) e++;
    if (e - s >= RUN_MIN) {
      if (s > lit && !put_token(out, cap, &o, (uint32_t)((s - lit) << 1), src + lit, s - lit)) return 0;
      if (!put_token(out, cap, &o, (uint32_t)((e - s) << 1 | 1u), &v, 1)) return 0;
      lit = e;
    }
    i = e;
  }
  if (n > lit && !put_token(out, cap, &o, (uint32_t)((n - lit) << 1), src + lit, n - lit)) return 0;
  return o;
}

/* Decodes runs tokens into dst, which must come out exactly raw_len bytes long. */
static int64_t runs_decode(const uint8_t *p, size_t len, uint8_t *dst, size_t raw_len) {
  size_t i = 0, o = 0;
  while (i < len) {
    if (len - i < 4) return BS_ELENGTH;
    uint32_t token = bs_load32le(p + i);
    size_t n = token >> 1;
    i += 4;
    if (n == 0 || raw_len - o < n) return BS_ELENGTH;
    if (token & 1u) {
      if (i == len) return BS_ELENGTH;
      memset(dst + o, p[i], n);
      i += 1;
    } else {
      if (len - i < n) return BS_ELENGTH;
      memcpy(dst + o, p + i, n);
      i += n;
    }
    o += n;
  }
  return o == raw_len ? BS_OK : BS_ELENGTH;
}

bs_block_encoder *bs_block_encoder_new(void) {
  bs_block_encoder *e = (bs_block_encoder *)malloc(sizeof *e);
  if (e == NULL) return NULL;
  e->cctx = ZSTD_createCCtx();
  e->zstd_rest = 0;
  if (e->cctx == NULL) {
    free(e);
    return NULL;
  }
  return e;
}

void bs_block_encoder_free(bs_block_encoder *e) {
  if (e == NULL) return;
  ZSTD_freeCCtx(e->cctx);
  free(e);
}

bs_block_decoder *bs_block_decoder_new(void) {
  bs_block_decoder *d = (bs_block_decoder *)malloc(sizeof *d);
  if (d == NULL) return NULL;
  d->dctx = ZSTD_createDCtx();
  if (d->dctx == NULL) {
    free(d);
    return NULL;
  }
  return d;
}

void bs_block_decoder_free(bs_block_decoder *d) {
  if (d == NULL) return;
  ZSTD_freeDCtx(d->dctx);
  free(d);
}

int64_t bs_block_bound(size_t raw_len) {
  if (raw_len > BS_BLOCK_MAX_RAW) return BS_EINVAL;
  /* ZSTD_COMPRESSBOUND(n) >= n, so this also bounds a block stored raw. */
  return (int64_t)(BS_BLOCK_HEADER_SIZE + ZSTD_COMPRESSBOUND(raw_len));
}

static void write_header(uint8_t *h, uint16_t codec, uint64_t rows, uint32_t raw_len,
                         uint32_t payload_len, uint64_t raw_sum) {
  bs_store32le(h + H_MAGIC, BS_BLOCK_MAGIC);
  bs_store16le(h + H_VERSION, (uint16_t)BS_BLOCK_VERSION);
  bs_store16le(h + H_CODEC, codec);
  bs_store64le(h + H_ROWS, rows);
  bs_store32le(h + H_RAW_LEN, raw_len);
  bs_store32le(h + H_PAYLOAD_LEN, payload_len);
  bs_store64le(h + H_RAW_SUM, raw_sum);
  bs_store64le(h + H_HEADER_SUM, XXH3_64bits(h, H_CHECKED));
}

/* Appends the XXH3-64 trailer to the r coded bytes at payload; returns the payload size. */
static size_t seal(uint8_t *payload, size_t r) {
  bs_store64le(payload + r, XXH3_64bits(payload, r));
  return r + BS_BLOCK_TRAILER;
}

/* zstd at level into payload (room bytes), kept only when the frame and its trailer come to
 * at most most bytes; returns the payload size, 0 when it is not kept, or BS_ECOMPRESS. */
static int64_t zstd_payload(bs_block_encoder *e, const void *raw, size_t raw_len, int level,
                            uint8_t *payload, size_t room, size_t most) {
  if (most > room) most = room;
  if (most <= BS_BLOCK_TRAILER) return 0;
  size_t r = ZSTD_compressCCtx(e->cctx, payload, most - BS_BLOCK_TRAILER, raw, raw_len, level);
  if (ZSTD_isError(r)) return ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall ? 0 : BS_ECOMPRESS;
  return (int64_t)seal(payload, r);
}

/* Runs tokens into payload, kept only when they and their trailer come to at most most
 * bytes; returns the payload size or 0. */
static size_t runs_payload(const void *raw, size_t raw_len, uint8_t *payload, size_t room,
                           size_t most) {
  if (most > room) most = room;
  if (most <= BS_BLOCK_TRAILER) return 0;
  size_t r = runs_encode((const uint8_t *)raw, raw_len, payload, most - BS_BLOCK_TRAILER);
  return r == 0 ? 0 : seal(payload, r);
}

/* BS_BLOCK_LEVEL_FAST: zstd -1 is tried on a block of at least FAST_ZSTD_MIN bytes that runs
 * leave over 3/4 of its size (text, say), and kept when it comes to at most 4/5 of the runs
 * payload (or of the raw bytes). When it does not, the next FAST_REST such blocks skip it
 * (random numbers, say, which neither codec shrinks), and then it is tried again. Smaller
 * blocks (a stream's end marker), and a destination too small for zstd's budget, neither
 * try it nor count. */
#define FAST_REST 32u
#define FAST_ZSTD_LEVEL (-1)
#define FAST_ZSTD_MIN 1024u
/* zstd levels: a block under ZSTD_MIN bytes takes runs, and zstd as well only when it is at
 * least FAST_ZSTD_MIN bytes and runs leave over 3/4 of it (text, say); zstd is then kept when
 * it is smaller than runs. A zstd call on a small block costs more than runs and, on the
 * byte-shuffled numbers of a many-way shuffle's millions of small sections, saves no more. */
#define ZSTD_MIN 4096u

int64_t bs_block_encode(bs_block_encoder *e, const void *raw, size_t raw_len, uint64_t rows,
                        int level, void *dst, size_t dst_cap) {
  if (e == NULL || dst == NULL || (raw == NULL && raw_len > 0)) return BS_EINVAL;
  if (raw_len > BS_BLOCK_MAX_RAW) return BS_EINVAL;
  if (dst_cap < BS_BLOCK_HEADER_SIZE) return BS_EDSTSIZE;
  uint8_t *out = (uint8_t *)dst;
  uint8_t *payload = out + BS_BLOCK_HEADER_SIZE;
  const size_t room = dst_cap - BS_BLOCK_HEADER_SIZE;
  const uint64_t raw_sum = XXH3_64bits(raw_len ? raw : NULL, raw_len);

  /* A coded payload is kept only when it is strictly smaller than the raw bytes; otherwise
   * the block is stored raw. */
  const size_t most = raw_len > 0 ? raw_len - 1 : 0;
  uint16_t codec = BS_CODEC_RAW;
  size_t plen = 0;
  if (level == BS_BLOCK_LEVEL_FAST) {
    plen = runs_payload(raw, raw_len, payload, room, most);
    if (plen > 0) codec = BS_CODEC_RUNS;
    size_t coded = plen > 0 ? plen : raw_len;
    size_t budget = coded / 5 * 4;
    if (raw_len >= FAST_ZSTD_MIN && coded * 4 > raw_len * 3 && budget <= room) {
      if (e->zstd_rest > 0) {
        e->zstd_rest--;
      } else {
        int64_t z = zstd_payload(e, raw, raw_len, FAST_ZSTD_LEVEL, payload, room, budget);
        if (z < 0) return z;
        if (z > 0) {
          codec = BS_CODEC_ZSTD;
          plen = (size_t)z;
        } else {
          e->zstd_rest = FAST_REST;
          /* zstd wrote over the runs payload. */
          if (codec == BS_CODEC_RUNS) plen = runs_payload(raw, raw_len, payload, room, most);
        }
      }
    }
  } else if (level != BS_BLOCK_LEVEL_RAW) {
    if (raw_len < ZSTD_MIN) {
      plen = runs_payload(raw, raw_len, payload, room, most);
      if (plen > 0) codec = BS_CODEC_RUNS;
    }
    size_t coded = plen > 0 ? plen : raw_len;
    if (raw_len >= ZSTD_MIN || (raw_len >= FAST_ZSTD_MIN && coded * 4 > raw_len * 3)) {
      int64_t z = zstd_payload(e, raw, raw_len, level, payload, room, coded > 0 ? coded - 1 : 0);
      if (z < 0) return z;
      if (z > 0) {
        codec = BS_CODEC_ZSTD;
        plen = (size_t)z;
      } else if (codec == BS_CODEC_RUNS) {
        /* zstd wrote over the runs payload. */
        plen = runs_payload(raw, raw_len, payload, room, most);
      }
    }
  }
  if (codec == BS_CODEC_RAW) {
    if (room < raw_len) return BS_EDSTSIZE;
    if (raw_len) memcpy(payload, raw, raw_len);
    plen = raw_len;
  }
  write_header(out, codec, rows, (uint32_t)raw_len, (uint32_t)plen, raw_sum);
  return (int64_t)(BS_BLOCK_HEADER_SIZE + plen);
}

int64_t bs_block_peek(const void *src, size_t len, bs_block_info *info) {
  if (src == NULL && len > 0) return BS_EINVAL;
  if (len < BS_BLOCK_HEADER_SIZE) return BS_ESHORT;
  const uint8_t *h = (const uint8_t *)src;
  if (bs_load32le(h + H_MAGIC) != BS_BLOCK_MAGIC) return BS_EMAGIC;
  if (bs_load16le(h + H_VERSION) != BS_BLOCK_VERSION) return BS_EVERSION;
  if (bs_load64le(h + H_HEADER_SUM) != XXH3_64bits(h, H_CHECKED)) return BS_EHEADER;
  uint16_t codec = bs_load16le(h + H_CODEC);
  if (codec != BS_CODEC_RAW && codec != BS_CODEC_ZSTD && codec != BS_CODEC_RUNS) return BS_ECODEC;
  uint32_t raw_len = bs_load32le(h + H_RAW_LEN), payload_len = bs_load32le(h + H_PAYLOAD_LEN);
  if (raw_len > BS_BLOCK_MAX_RAW) return BS_ELENGTH;
  if (codec == BS_CODEC_RAW) {
    if (payload_len != raw_len) return BS_ELENGTH;
  } else {
    /* The encoder keeps a zstd or runs payload (with its trailer) only when it is smaller
     * than the raw bytes. */
    if (payload_len <= BS_BLOCK_TRAILER || payload_len >= raw_len) return BS_ELENGTH;
  }
  if (info != NULL) {
    info->rows = bs_load64le(h + H_ROWS);
    info->raw_len = raw_len;
    info->payload_len = payload_len;
    info->codec = codec;
    info->raw_checksum = bs_load64le(h + H_RAW_SUM);
  }
  return (int64_t)BS_BLOCK_HEADER_SIZE + (int64_t)payload_len;
}

int64_t bs_block_decode(bs_block_decoder *d, const void *src, size_t len, void *dst,
                        size_t dst_cap, bs_block_info *info) {
  if (d == NULL) return BS_EINVAL;
  bs_block_info hi;
  int64_t total = bs_block_peek(src, len, &hi);
  if (total < 0) return total;
  if (len < (size_t)total) return BS_ESHORT;
  if (dst_cap < hi.raw_len) return BS_EDSTSIZE;
  if (dst == NULL && hi.raw_len > 0) return BS_EINVAL;
  const uint8_t *payload = (const uint8_t *)src + BS_BLOCK_HEADER_SIZE;
  if (hi.codec == BS_CODEC_RAW) {
    if (XXH3_64bits(hi.raw_len ? payload : NULL, hi.raw_len) != hi.raw_checksum)
      return BS_ECHECKSUM;
    if (hi.raw_len) memcpy(dst, payload, hi.raw_len);
  } else {
    /* The trailer covers the coded bytes, including the bits zstd itself ignores (reserved
     * and padding bits). */
    size_t flen = hi.payload_len - BS_BLOCK_TRAILER;
    if (bs_load64le(payload + flen) != XXH3_64bits(payload, flen)) return BS_ECHECKSUM;
    if (hi.codec == BS_CODEC_RUNS) {
      int64_t r = runs_decode(payload, flen, (uint8_t *)dst, hi.raw_len);
      if (r < 0) return r;
    } else {
      unsigned long long fcs = ZSTD_getFrameContentSize(payload, flen);
      if (fcs != (unsigned long long)hi.raw_len) return BS_ELENGTH;
      size_t r = ZSTD_decompressDCtx(d->dctx, dst, hi.raw_len, payload, flen);
      if (ZSTD_isError(r)) return BS_EDECOMPRESS;
      if (r != hi.raw_len) return BS_ELENGTH;
    }
    if (XXH3_64bits(dst, hi.raw_len) != hi.raw_checksum) return BS_ECHECKSUM;
  }
  if (info != NULL) *info = hi;
  return (int64_t)hi.raw_len;
}

int64_t bs_bench_zstd_compress(const void *src, size_t len, int level, void *dst, size_t cap) {
  size_t r = ZSTD_compress(dst, cap, src, len, level);
  return ZSTD_isError(r) ? BS_ECOMPRESS : (int64_t)r;
}

int64_t bs_bench_zstd_decompress(const void *src, size_t len, void *dst, size_t cap) {
  size_t r = ZSTD_decompress(dst, cap, src, len);
  return ZSTD_isError(r) ? BS_EDECOMPRESS : (int64_t)r;
}
