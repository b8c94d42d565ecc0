/* Streaming decompression of whole input files: gzip (Intel ISA-L's inflate, 2.3x zlib's
 * speed on this machine and streaming, which libdeflate is not) and zstd, recognised by their
 * magic bytes. */
#ifndef BS_DECOMPRESS_H
#define BS_DECOMPRESS_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { BS_DECOMP_NONE = 0, BS_DECOMP_GZIP = 1, BS_DECOMP_ZSTD = 2 } bs_decomp_kind;

/* What bs_decomp_run did. */
typedef enum {
  BS_DECOMP_MORE = 0,     /* it wants more input or more room */
  BS_DECOMP_END = 1,      /* a stream ended; more input may start another (a gzip member, a
                           * zstd frame), or the file is done */
  BS_DECOMP_CORRUPT = -1, /* the input is not valid: see bs_decomp_problem */
  BS_DECOMP_NOMEM = -2
} bs_decomp_status;

typedef struct bs_decomp bs_decomp;

/* The compression the first len bytes of a file start with, or BS_DECOMP_NONE. */
bs_decomp_kind bs_decomp_sniff(const uint8_t *head, size_t len);

/* A decompressor of kind, or NULL (out of memory, or kind NONE). */
bs_decomp *bs_decomp_new(bs_decomp_kind kind);
void bs_decomp_free(bs_decomp *d);

/* Decompresses from in[0, in_len) into out[0, out_cap): *in_used bytes read, *out_len
 * written. After END, the next call with input starts the next stream, which must begin with
 * the same magic (anything else is CORRUPT). */
bs_decomp_status bs_decomp_run(bs_decomp *d, const uint8_t *in, size_t in_len, size_t *in_used,
                               uint8_t *out, size_t out_cap, size_t *out_len);

/* What was wrong, after CORRUPT: a static string. */
const char *bs_decomp_problem(const bs_decomp *d);

#ifdef __cplusplus
}
#endif
#endif
