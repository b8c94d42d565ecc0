/* Streaming gzip (ISA-L) and zstd decompression. See bs_decompress.h. */
#include "bs_decompress.h"

#include <isa-l/igzip_lib.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include <zstd_errors.h>

struct bs_decomp {
  bs_decomp_kind kind;
  int between; /* a stream ended: the next input starts another */
  const char *problem;
  struct inflate_state *gz;
  ZSTD_DCtx *zs;
};

static const uint8_t gzip_magic[2] = {0x1f, 0x8b};
static const uint8_t zstd_magic[4] = {0x28, 0xb5, 0x2f, 0xfd};

bs_decomp_kind bs_decomp_sniff(const uint8_t *head, size_t len) {
  if (head == NULL) return BS_DECOMP_NONE;
  if (len >= 2 && memcmp(head, gzip_magic, 2) == 0) return BS_DECOMP_GZIP;
  if (len >= 4 && memcmp(head, zstd_magic, 4) == 0) return BS_DECOMP_ZSTD;
  return BS_DECOMP_NONE;
}

bs_decomp *bs_decomp_new(bs_decomp_kind kind) {
  if (kind != BS_DECOMP_GZIP && kind != BS_DECOMP_ZSTD) return NULL;
  bs_decomp *d = calloc(1, sizeof *d);
  if (d == NULL) return NULL;
  d->kind = kind;
  if (kind == BS_DECOMP_GZIP) {
    d->gz = malloc(sizeof *d->gz);
    if (d->gz == NULL) {
      free(d);
      return NULL;
    }
    isal_inflate_init(d->gz);
    d->gz->crc_flag = ISAL_GZIP;
  } else {
    d->zs = ZSTD_createDCtx();
    if (d->zs == NULL) {
      free(d);
      return NULL;
    }
  }
  return d;
}

void bs_decomp_free(bs_decomp *d) {
  if (d == NULL) return;
  free(d->gz);
  ZSTD_freeDCtx(d->zs);
  free(d);
}

const char *bs_decomp_problem(const bs_decomp *d) { return d && d->problem ? d->problem : ""; }

static bs_decomp_status corrupt(bs_decomp *d, const char *problem) {
  d->problem = problem;
  return BS_DECOMP_CORRUPT;
}

static const char *isal_problem(int rc) {
  switch (rc) {
  case ISAL_INVALID_BLOCK: return "invalid deflate block";
  case ISAL_INVALID_SYMBOL: return "invalid deflate symbol";
  case ISAL_INVALID_LOOKBACK: return "invalid deflate distance";
  case ISAL_INVALID_WRAPPER: return "invalid gzip header";
  case ISAL_UNSUPPORTED_METHOD: return "unsupported gzip method";
  case ISAL_INCORRECT_CHECKSUM: return "gzip checksum mismatch";
  case ISAL_NEED_DICT: return "deflate stream needs a dictionary";
  default: return "gzip data could not be inflated";
  }
}

static bs_decomp_status run_gzip(bs_decomp *d, const uint8_t *in, size_t in_len, size_t *in_used,
                                 uint8_t *out, size_t out_cap, size_t *out_len) {
  struct inflate_state *s = d->gz;
  if (d->between) {
    if (in_len < 2) return BS_DECOMP_MORE;
    if (memcmp(in, gzip_magic, 2) != 0) return corrupt(d, "data after the last gzip member is not gzip");
    isal_inflate_reset(s);
    s->crc_flag = ISAL_GZIP;
    d->between = 0;
  }
  s->next_in = (uint8_t *)in;
  s->avail_in = (uint32_t)(in_len > UINT32_MAX ? UINT32_MAX : in_len);
  s->next_out = out;
  s->avail_out = (uint32_t)(out_cap > UINT32_MAX ? UINT32_MAX : out_cap);
  const uint32_t avail_in = s->avail_in, avail_out = s->avail_out;
  int rc = isal_inflate(s);
  *in_used = avail_in - s->avail_in;
  *out_len = avail_out - s->avail_out;
  if (rc < 0) return corrupt(d, isal_problem(rc));
  if (s->block_state == ISAL_BLOCK_FINISH) {
    d->between = 1;
    return BS_DECOMP_END;
  }
  return BS_DECOMP_MORE;
}

static bs_decomp_status run_zstd(bs_decomp *d, const uint8_t *in, size_t in_len, size_t *in_used,
                                 uint8_t *out, size_t out_cap, size_t *out_len) {
  if (d->between) {
    if (in_len < 4) return BS_DECOMP_MORE;
    if (memcmp(in, zstd_magic, 4) != 0) return corrupt(d, "data after the last zstd frame is not zstd");
    d->between = 0;
  }
  ZSTD_inBuffer ib = {in, in_len, 0};
  ZSTD_outBuffer ob = {out, out_cap, 0};
  size_t rc = ZSTD_decompressStream(d->zs, &ob, &ib);
  *in_used = ib.pos;
  *out_len = ob.pos;
  if (ZSTD_isError(rc)) {
    if (ZSTD_getErrorCode(rc) == ZSTD_error_memory_allocation) return BS_DECOMP_NOMEM;
    return corrupt(d, ZSTD_getErrorName(rc));
  }
  if (rc == 0) {
    d->between = 1;
    return BS_DECOMP_END;
  }
  return BS_DECOMP_MORE;
}

bs_decomp_status bs_decomp_run(bs_decomp *d, const uint8_t *in, size_t in_len, size_t *in_used,
                               uint8_t *out, size_t out_cap, size_t *out_len) {
  if (in_used) *in_used = 0;
  if (out_len) *out_len = 0;
  if (d == NULL) return BS_DECOMP_CORRUPT;
  if (in_used == NULL || out_len == NULL || (in == NULL && in_len > 0) || (out == NULL && out_cap > 0))
    return corrupt(d, "invalid arguments");
  return d->kind == BS_DECOMP_GZIP ? run_gzip(d, in, in_len, in_used, out, out_cap, out_len)
                                   : run_zstd(d, in, in_len, in_used, out, out_cap, out_len);
}
