/* Delimited text (CSV, TSV) into typed columns. Two steps per batch of rows: split finds
 * every field's bytes, column by column, with a vectorised scan for delimiters and line
 * ends; then one kernel per column converts that column's fields in one loop (integers,
 * doubles, booleans, strings). No field is copied or NUL-terminated on the way.
 *
 * Quoting follows RFC 4180 when asked: a field that starts with a double quote ends at the
 * next quote not doubled, must be followed by a delimiter or a line end, and has its
 * doubled quotes read as one. A quote inside an unquoted field is an ordinary byte. A line
 * ends at LF; a CR before it is not part of the last field. */
#ifndef BS_DELIMITED_H
#define BS_DELIMITED_H

#include <stddef.h>
#include <stdint.h>

#include "bs_error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The end offset's top bit: the field was quoted and holds doubled quotes, so its string
 * must be unescaped (and it is no number). */
#define BS_DELIM_ESCAPED 0x80000000u

/* What split found wrong with a row (its start is error_offset). */
typedef enum {
  BS_DELIM_FINE = 0,
  BS_DELIM_FIELD_COUNT = 1,  /* the row has error_column fields, not the format's columns */
  BS_DELIM_AFTER_QUOTE = 2,  /* a closing quote is followed by something other than a delimiter or line end */
  BS_DELIM_UNCLOSED = 3,     /* a quoted field does not close (on its line, without quoted_newlines) */
} bs_delim_problem;

/* The format and the buffers of one split. */
typedef struct {
  uint8_t delimiter;        /* ',' or '\t' or any byte but '\n', '\r' and '"' */
  uint8_t quoting;          /* 1: RFC 4180 quotes */
  uint8_t quoted_newlines;  /* 1: a quoted field may hold line ends; 0: it is unclosed at its line's end */
  uint8_t skip_bad;         /* 1: rows with a problem are skipped and counted, not reported */
  uint32_t columns;         /* fields per row, >= 1 */
  uint32_t capacity;        /* rows the field arrays hold, >= 1 */
  uint32_t *starts;         /* columns * capacity: field c of row r starts at starts[c * capacity + r] */
  uint32_t *ends;           /* the same layout: where it ends, with BS_DELIM_ESCAPED */
  /* Results. */
  uint32_t rows;            /* rows found */
  uint32_t skipped;         /* rows skipped (skip_bad) */
  size_t consumed;          /* bytes those rows (and skipped ones) took, line ends included */
  uint64_t newlines;        /* LF bytes in the consumed bytes */
  bs_delim_problem problem; /* the problem of the row after the rows found, when not skipped */
  size_t error_offset;      /* that row's start */
  size_t error_at;          /* where in it the problem was seen */
  uint32_t error_column;    /* the field (0-based) it was seen in; for a field count, the fields found */
} bs_delim_split;

/* Finds the fields of rows in buf[0 ..< len], which starts at a row's start. Stops after
 * capacity rows, before a row that starts at or after `limit`, at a problem, or where the
 * bytes end: with `final` the last row may lack its line end; without it, a row that the
 * bytes do not complete is left for the next call (consumed stops before it; rows 0 and
 * consumed 0 mean more bytes are needed). Field offsets are relative to buf. Returns BS_OK
 * (problem says whether a row is bad), or BS_EINVAL for NULL buffers, zero columns or
 * capacity, len >= 2^31 or a delimiter that cannot be one. */
bs_error bs_delim_split_rows(bs_delim_split *s, const uint8_t *buf, size_t len, size_t limit, int final);

/* Column kernels over n fields of one column (starts and ends as split left them). Each
 * writes a value per field into out; an empty field, when `nulls` is not NULL, is a null:
 * nulls[r] = 1 and out[r] = 0. A field that does not hold a value of the type sets bad[r] = 1
 * (bad holds n bytes, zeroed by the caller). Each returns how many fields were bad, or
 * BS_EINVAL for a NULL pointer with n > 0.
 *
 * Integers: an optional sign and decimal digits, in range. Doubles: what strtod reads in the
 * C locale, whole, without spaces (decimals, exponents, inf, nan). Booleans: true or false
 * in any case, 1 or 0. */
int64_t bs_delim_parse_i64(const uint8_t *buf, const uint32_t *starts, const uint32_t *ends, size_t n,
                           int64_t *out, uint8_t *nulls, uint8_t *bad);
int64_t bs_delim_parse_i32(const uint8_t *buf, const uint32_t *starts, const uint32_t *ends, size_t n,
                           int32_t *out, uint8_t *nulls, uint8_t *bad);
int64_t bs_delim_parse_f64(const uint8_t *buf, const uint32_t *starts, const uint32_t *ends, size_t n,
                           double *out, uint8_t *nulls, uint8_t *bad);
int64_t bs_delim_parse_bool(const uint8_t *buf, const uint32_t *starts, const uint32_t *ends, size_t n,
                            uint8_t *out, uint8_t *nulls, uint8_t *bad);

/* The bytes n string fields take (at most: doubled quotes shrink). */
size_t bs_delim_string_bytes(const uint32_t *starts, const uint32_t *ends, size_t n);

/* Copies n string fields one after another to dst + offsets[0], unescaping doubled quotes,
 * and sets offsets[1 ... n] to where each ends (offsets as an offsets+bytes column has
 * them). dst must hold bs_delim_string_bytes more. Empty fields are empty strings; with
 * `nulls`, they are also marked there. Returns BS_OK, or BS_EINVAL for a NULL pointer with
 * n > 0. */
bs_error bs_delim_copy_strings(const uint8_t *buf, const uint32_t *starts, const uint32_t *ends, size_t n,
                               int64_t *offsets, uint8_t *dst, uint8_t *nulls);

/* Writing. A field's text is built column by column (as offsets plus bytes, offsets[0] where
 * the first starts, offsets[r + 1] where field r ends), then rows are joined. */

/* Writes n integers as decimal text one after another to dst + offsets[0], setting
 * offsets[1 ... n]; dst must hold 20 bytes per value more. Returns BS_OK, or BS_EINVAL for a
 * NULL pointer with n > 0. */
bs_error bs_delim_format_i64(const int64_t *values, size_t n, int64_t *offsets, uint8_t *dst);
bs_error bs_delim_format_u64(const uint64_t *values, size_t n, int64_t *offsets, uint8_t *dst);

/* Writes n strings (string r is bytes[in_offsets[r] ..< in_offsets[r + 1]]) as fields to
 * dst + offsets[0], setting offsets[1 ... n]. With quoting, a string that holds the
 * delimiter, a quote, CR or LF is quoted, its quotes doubled; dst must hold twice the
 * strings' bytes plus 2 per string more. Without quoting a string is copied as it is, and
 * must hold no delimiter, CR or LF. Returns -1 when every string was written, the index of
 * the first that cannot be (without quoting), or BS_EINVAL for a NULL pointer with n > 0. */
int64_t bs_delim_format_strings(const int64_t *in_offsets, const uint8_t *bytes, size_t n, uint8_t delimiter,
                                int quoting, int64_t *offsets, uint8_t *dst);

/* Joins n rows of cols text columns into dst: row r is field r of each column, separated by
 * the delimiter and ended by LF. Column c's text is texts[c] with its offsets in
 * offsets[c]. dst must hold every field's bytes plus cols per row. Returns the bytes
 * written, or BS_EINVAL for a NULL pointer with n > 0 or cols 0. */
int64_t bs_delim_join_rows(const uint8_t *const *texts, const int64_t *const *offsets, size_t cols, size_t n,
                           uint8_t delimiter, uint8_t *dst);

/* Baseline for benchmarks: the two integer columns of TSV text (rows of "key\tvalue\n", the
 * last ending in LF) read the naive way, strtoll per field, and summed (wrapping) into
 * *key_sum and *value_sum. Returns the rows read. No checks: text must hold len bytes. */
int64_t bs_bench_tsv_strtoll(const uint8_t *text, size_t len, uint64_t *key_sum, uint64_t *value_sum);

#ifdef __cplusplus
}
#endif

#endif
