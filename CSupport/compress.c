/* Streaming gzip (ISA-L) and zstd compression. See bs_compress.h. */
#include "bs_compress.h"

#include <isa-l/igzip_lib.h>
#include <stdlib.h>
#include <zstd.h>

struct bs_comp {
  bs_decomp_kind kind;
  struct isal_zstream *gz;
  uint8_t *level_buf;
  ZSTD_CCtx *zs;
};

static const uint32_t level_buf_sizes[4] = {0, ISAL_DEF_LVL1_DEFAULT, ISAL_DEF_LVL2_DEFAULT, ISAL_DEF_LVL3_DEFAULT};

bs_comp *bs_comp_new(bs_decomp_kind kind, int level) {
  if (kind == BS_DECOMP_GZIP ? (level < 0 || level > 3) : kind == BS_DECOMP_ZSTD ? (level < 1 || level > 19) : 1) {
    return NULL;
  }
  bs_comp *c = calloc(1, sizeof *c);
  if (c == NULL) return NULL;
  c->kind = kind;
  if (kind == BS_DECOMP_GZIP) {
    c->gz = malloc(sizeof *c->gz);
    c->level_buf = level > 0 ? malloc(level_buf_sizes[level]) : NULL;
    if (c->gz == NULL || (level > 0 && c->level_buf == NULL)) {
      bs_comp_free(c);
      return NULL;
    }
    isal_deflate_init(c->gz);
    c->gz->gzip_flag = IGZIP_GZIP;
    c->gz->level = (uint32_t)level;
    c->gz->level_buf = c->level_buf;
    c->gz->level_buf_size = level > 0 ? level_buf_sizes[level] : 0;
  } else {
    c->zs = ZSTD_createCCtx();
    if (c->zs == NULL || ZSTD_isError(ZSTD_CCtx_setParameter(c->zs, ZSTD_c_compressionLevel, level))) {
      bs_comp_free(c);
      return NULL;
    }
  }
  return c;
}

void bs_comp_free(bs_comp *c) {
  if (c == NULL) return;
  free(c->gz);
  free(c->level_buf);
  ZSTD_freeCCtx(c->zs);
  free(c);
}

bs_comp_status bs_comp_run(bs_comp *c, const uint8_t *in, size_t in_len, size_t *in_used, uint8_t *out,
                           size_t out_cap, size_t *out_len, int finish) {
  *in_used = 0;
  *out_len = 0;
  if (c == NULL || (in == NULL && in_len > 0) || out == NULL || in_len > UINT32_MAX) return BS_COMP_FAILED;
  if (out_cap > UINT32_MAX) out_cap = UINT32_MAX;
  if (c->kind == BS_DECOMP_GZIP) {
    struct isal_zstream *s = c->gz;
    s->next_in = (uint8_t *)in;
    s->avail_in = (uint32_t)in_len;
    s->next_out = out;
    s->avail_out = (uint32_t)out_cap;
    s->end_of_stream = finish ? 1 : 0;
    s->flush = NO_FLUSH;
    if (isal_deflate(s) != COMP_OK) return BS_COMP_FAILED;
    *in_used = in_len - s->avail_in;
    *out_len = out_cap - s->avail_out;
    return s->internal_state.state == ZSTATE_END ? BS_COMP_END : BS_COMP_MORE;
  }
  ZSTD_inBuffer input = {in, in_len, 0};
  ZSTD_outBuffer output = {out, out_cap, 0};
  size_t left = ZSTD_compressStream2(c->zs, &output, &input, finish ? ZSTD_e_end : ZSTD_e_continue);
  if (ZSTD_isError(left)) return BS_COMP_FAILED;
  *in_used = input.pos;
  *out_len = output.pos;
  return finish && left == 0 && input.pos == in_len ? BS_COMP_END : BS_COMP_MORE;
}
