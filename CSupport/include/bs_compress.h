/* Streaming compression of output files: gzip (Intel ISA-L's deflate at level 1, which
 * decompresses with any gzip reader) and zstd, one stream per file. */
#ifndef BS_COMPRESS_H
#define BS_COMPRESS_H
#include <stddef.h>
#include <stdint.h>

#include "bs_decompress.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What bs_comp_run did. */
typedef enum {
  BS_COMP_MORE = 0,    /* it took input and wants more, or wants more room for its output */
  BS_COMP_END = 1,     /* the stream is finished (after a call with finish) */
  BS_COMP_FAILED = -1, /* the library failed (out of memory, or a bad state) */
} bs_comp_status;

typedef struct bs_comp bs_comp;

/* A compressor of kind (BS_DECOMP_GZIP or BS_DECOMP_ZSTD) at level (gzip: 0 to 3, ISA-L's;
 * zstd: 1 to 19), or NULL (out of memory, or another kind or level). */
bs_comp *bs_comp_new(bs_decomp_kind kind, int level);
void bs_comp_free(bs_comp *c);

/* Compresses in[0, in_len) into out[0, out_cap): *in_used bytes taken, *out_len written.
 * With finish, the stream ends after this input: call again (with the input not yet taken,
 * and room) until it returns END. Returns MORE, END or FAILED. */
bs_comp_status bs_comp_run(bs_comp *c, const uint8_t *in, size_t in_len, size_t *in_used, uint8_t *out,
                           size_t out_cap, size_t *out_len, int finish);

#ifdef __cplusplus
}
#endif
#endif
