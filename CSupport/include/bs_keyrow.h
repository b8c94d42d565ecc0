/* Key rows: the key columns of a row written side by side as one key, so that a key of
 * several columns is grouped by the combiner like a key of one.
 *
 * Three forms:
 * - packed: fixed-width columns whose widths sum to at most 8 bytes, in one u64 per row,
 *   column 0 in the lowest bytes (the combiner's u64 mode);
 * - fixed: wider fixed-width columns as rows of the sum of their widths, their values side
 *   by side as stored (the combiner's fixed mode);
 * - rows: any fixed-width and byte-string columns as one byte string per row (its bytes
 *   mode). A fixed-width value is its width's bytes as stored; a byte string is its length
 *   as a little-endian u32, then its bytes. Equal keys have equal rows and unequal keys
 *   unequal rows, so rows compare as the keys do for equality (not for order).
 *
 * Decoding reverses each form into columns. bs_keyrow_measure checks every row's layout
 * before bs_keyrow_decode trusts it. */
#ifndef BS_KEYROW_H
#define BS_KEYROW_H

#include <stddef.h>
#include <stdint.h>

#include "bs_error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One key column to encode. */
typedef struct {
  const uint8_t *values;  /* fixed: n × width bytes; byte strings: the column's bytes */
  const int64_t *offsets; /* byte strings: n + 1 offsets into values; NULL for fixed */
  size_t width;           /* fixed: 1, 2, 4 or 8; 0 for byte strings */
} bs_key_column;

/* One key column to decode into. */
typedef struct {
  uint8_t *values;  /* fixed: room for n × width bytes; byte strings: capacity bytes */
  int64_t *offsets; /* byte strings: room for n + 1 offsets; NULL for fixed */
  size_t width;     /* as in bs_key_column */
  size_t capacity;  /* byte strings: bytes values holds */
} bs_key_output;

/* Bytes of the rows of n keys; BS_EINVAL for a bad width, offsets that decrease, a byte
 * string of 2^32 bytes or more, or a total past INT64_MAX. */
int64_t bs_keyrow_size(const bs_key_column *cols, size_t ncols, size_t n);

/* Writes the rows of n keys: row i is bytes[offsets[i] ..< offsets[i + 1]], offsets[0] = 0.
 * bytes holds bs_keyrow_size bytes. BS_EINVAL as for bs_keyrow_size, before writing. */
bs_error bs_keyrow_encode(const bs_key_column *cols, size_t ncols, size_t n, int64_t *offsets,
                          uint8_t *bytes);

/* Writes n keys of fixed-width columns as rows of the sum of their widths: row i at
 * rows + i * width, column 0 first. */
bs_error bs_keyrow_pack_fixed(const bs_key_column *cols, size_t ncols, size_t n, uint8_t *rows);

/* Splits n rows written by bs_keyrow_pack_fixed back into the columns. */
bs_error bs_keyrow_unpack_fixed(const uint8_t *rows, size_t n, const bs_key_output *cols,
                                size_t ncols);

/* Packs n keys of fixed-width columns (widths summing to at most 8) into keys[i]. */
bs_error bs_keyrow_pack_u64(const bs_key_column *cols, size_t ncols, size_t n, uint64_t *keys);

/* Splits n packed keys back into fixed-width columns. */
bs_error bs_keyrow_unpack_u64(const uint64_t *keys, size_t n, const bs_key_output *cols,
                              size_t ncols);

/* totals[c] = the bytes byte-string column c needs for the n rows at offsets/bytes (0 for a
 * fixed column), checking that every row holds exactly its columns: BS_ELENGTH when one is
 * short, long or holds a length past its end; BS_EINVAL for bad arguments. */
bs_error bs_keyrow_measure(const int64_t *offsets, const uint8_t *bytes, size_t n,
                           const size_t *widths, size_t ncols, int64_t *totals);

/* Decodes n rows into the columns, whose byte-string capacities must hold what
 * bs_keyrow_measure found (BS_EINVAL otherwise; BS_ELENGTH for a bad row). */
bs_error bs_keyrow_decode(const int64_t *offsets, const uint8_t *bytes, size_t n,
                          const bs_key_output *cols, size_t ncols);

#ifdef __cplusplus
}
#endif
#endif
