/* Key rows: several key columns as one combiner key. See bs_keyrow.h. */
#include "bs_keyrow.h"
#include "internal.h"

#include <string.h>

static int valid_width(size_t w) { return w == 1 || w == 2 || w == 4 || w == 8; }

/* Copies one value of a constant width (the switch is outside every loop that calls this
 * with a literal width, so each copy compiles to one move). */
static inline void copy_value(uint8_t *dst, const uint8_t *src, size_t width) {
  switch (width) {
  case 1: *dst = *src; break;
  case 2: memcpy(dst, src, 2); break;
  case 4: memcpy(dst, src, 4); break;
  default: memcpy(dst, src, 8); break;
  }
}

/* Copies n values of width bytes from src to dst, value i from src + i * src_stride to
 * dst + i * dst_stride: a column into its place in every row, or back. */
#define STRIDED(W)                                                                          \
  for (size_t i = 0; i < n; i++) memcpy(dst + i * dst_stride, src + i * src_stride, (W));
static void copy_strided(uint8_t *dst, size_t dst_stride, const uint8_t *src, size_t src_stride,
                         size_t width, size_t n) {
  switch (width) {
  case 1: STRIDED(1) break;
  case 2: STRIDED(2) break;
  case 4: STRIDED(4) break;
  default: STRIDED(8) break;
  }
}
#undef STRIDED

/* Checks the columns; sets *fixed to the bytes of a row's fixed-width values and
 * *all_fixed to whether no column holds byte strings. */
static bs_error check_columns(const bs_key_column *cols, size_t ncols, size_t n, size_t *fixed,
                              int *all_fixed) {
  if (cols == NULL || ncols == 0) return BS_EINVAL;
  *fixed = 0;
  *all_fixed = 1;
  for (size_t c = 0; c < ncols; c++) {
    if (cols[c].width == 0) {
      *all_fixed = 0;
      if (cols[c].offsets == NULL || cols[c].offsets[0] < 0) return BS_EINVAL;
      for (size_t i = 0; i < n; i++) {
        int64_t len = cols[c].offsets[i + 1] - cols[c].offsets[i];
        if (len < 0 || len > (int64_t)UINT32_MAX) return BS_EINVAL;
      }
      if (cols[c].values == NULL && cols[c].offsets[n] != cols[c].offsets[0]) return BS_EINVAL;
    } else {
      if (!valid_width(cols[c].width) || (n > 0 && cols[c].values == NULL)) return BS_EINVAL;
      *fixed += cols[c].width;
    }
  }
  return BS_OK;
}

/* Rows of fixed-width columns, checked: column by column, each value to its place in every
 * row of `fixed` bytes. */
static void pack_rows(const bs_key_column *cols, size_t ncols, size_t n, size_t fixed, uint8_t *rows) {
  size_t at = 0;
  for (size_t c = 0; c < ncols; c++) {
    copy_strided(rows + at, fixed, cols[c].values, cols[c].width, cols[c].width, n);
    at += cols[c].width;
  }
}

/* bs_keyrow_size, also giving check_columns' results to a caller that goes on to encode. */
static int64_t rows_size(const bs_key_column *cols, size_t ncols, size_t n, size_t *fixed_out,
                         int *all_fixed_out) {
  size_t fixed;
  int all_fixed;
  bs_error e = check_columns(cols, ncols, n, &fixed, &all_fixed);
  if (e != BS_OK) return e;
  *fixed_out = fixed;
  *all_fixed_out = all_fixed;
  if (n > (size_t)INT64_MAX / (fixed + 4 * ncols)) return BS_EINVAL;
  uint64_t total = (uint64_t)fixed * n;
  for (size_t c = 0; c < ncols; c++) {
    if (cols[c].width != 0) continue;
    uint64_t bytes = (uint64_t)(cols[c].offsets[n] - cols[c].offsets[0]);
    total += 4 * (uint64_t)n;
    if (bytes > (uint64_t)INT64_MAX - total) return BS_EINVAL;
    total += bytes;
  }
  return (int64_t)total;
}

int64_t bs_keyrow_size(const bs_key_column *cols, size_t ncols, size_t n) {
  size_t fixed;
  int all_fixed;
  return rows_size(cols, ncols, n, &fixed, &all_fixed);
}

bs_error bs_keyrow_encode(const bs_key_column *cols, size_t ncols, size_t n, int64_t *offsets,
                          uint8_t *bytes) {
  size_t fixed;
  int all_fixed;
  int64_t size = rows_size(cols, ncols, n, &fixed, &all_fixed);
  if (size < 0) return (bs_error)size;
  if (offsets == NULL || (size > 0 && bytes == NULL)) return BS_EINVAL;
  if (all_fixed) {
    for (size_t i = 0; i <= n; i++) offsets[i] = (int64_t)(i * fixed);
    pack_rows(cols, ncols, n, fixed, bytes);
    return BS_OK;
  }
  int64_t pos = 0;
  offsets[0] = 0;
  for (size_t i = 0; i < n; i++) {
    for (size_t c = 0; c < ncols; c++) {
      const bs_key_column *k = &cols[c];
      if (k->width) {
        copy_value(bytes + pos, k->values + i * k->width, k->width);
        pos += (int64_t)k->width;
      } else {
        uint32_t len = (uint32_t)(k->offsets[i + 1] - k->offsets[i]);
        bs_store32le(bytes + pos, len);
        pos += 4;
        if (len) memcpy(bytes + pos, k->values + k->offsets[i], len);
        pos += len;
      }
    }
    offsets[i + 1] = pos;
  }
  return BS_OK;
}

bs_error bs_keyrow_pack_fixed(const bs_key_column *cols, size_t ncols, size_t n, uint8_t *rows) {
  size_t fixed;
  int all_fixed;
  bs_error e = check_columns(cols, ncols, n, &fixed, &all_fixed);
  if (e != BS_OK) return e;
  if (!all_fixed || (n > 0 && rows == NULL)) return BS_EINVAL;
  pack_rows(cols, ncols, n, fixed, rows);
  return BS_OK;
}

/* Checks fixed-width output columns for n values; *fixed = the sum of their widths. */
static bs_error check_fixed_outputs(const bs_key_output *cols, size_t ncols, size_t n, size_t *fixed) {
  if (cols == NULL || ncols == 0) return BS_EINVAL;
  *fixed = 0;
  for (size_t c = 0; c < ncols; c++) {
    if (!valid_width(cols[c].width) || (n > 0 && cols[c].values == NULL)) return BS_EINVAL;
    *fixed += cols[c].width;
  }
  return BS_OK;
}

bs_error bs_keyrow_unpack_fixed(const uint8_t *rows, size_t n, const bs_key_output *cols,
                                size_t ncols) {
  size_t fixed;
  if (check_fixed_outputs(cols, ncols, n, &fixed) != BS_OK || (n > 0 && rows == NULL)) return BS_EINVAL;
  size_t at = 0;
  for (size_t c = 0; c < ncols; c++) {
    copy_strided(cols[c].values, cols[c].width, rows + at, fixed, cols[c].width, n);
    at += cols[c].width;
  }
  return BS_OK;
}

bs_error bs_keyrow_pack_u64(const bs_key_column *cols, size_t ncols, size_t n, uint64_t *keys) {
  size_t fixed;
  int all_fixed;
  bs_error e = check_columns(cols, ncols, n, &fixed, &all_fixed);
  if (e != BS_OK) return e;
  if (!all_fixed || fixed > 8 || (n > 0 && keys == NULL)) return BS_EINVAL;
  memset(keys, 0, n * sizeof(uint64_t));
  unsigned shift = 0;
  for (size_t c = 0; c < ncols; c++) {
    const uint8_t *v = cols[c].values;
    switch (cols[c].width) {
    case 1:
      for (size_t i = 0; i < n; i++) keys[i] |= (uint64_t)v[i] << shift;
      break;
    case 2:
      for (size_t i = 0; i < n; i++) keys[i] |= (uint64_t)bs_load16le(v + 2 * i) << shift;
      break;
    case 4:
      for (size_t i = 0; i < n; i++) keys[i] |= (uint64_t)bs_load32le(v + 4 * i) << shift;
      break;
    default:
      for (size_t i = 0; i < n; i++) keys[i] = bs_load64le(v + 8 * i);
      break;
    }
    shift += 8 * (unsigned)cols[c].width;
  }
  return BS_OK;
}

bs_error bs_keyrow_unpack_u64(const uint64_t *keys, size_t n, const bs_key_output *cols,
                              size_t ncols) {
  size_t total;
  if (check_fixed_outputs(cols, ncols, n, &total) != BS_OK || total > 8 || (n > 0 && keys == NULL))
    return BS_EINVAL;
  unsigned shift = 0;
  for (size_t c = 0; c < ncols; c++) {
    uint8_t *v = cols[c].values;
    switch (cols[c].width) {
    case 1:
      for (size_t i = 0; i < n; i++) v[i] = (uint8_t)(keys[i] >> shift);
      break;
    case 2:
      for (size_t i = 0; i < n; i++) bs_store16le(v + 2 * i, (uint16_t)(keys[i] >> shift));
      break;
    case 4:
      for (size_t i = 0; i < n; i++) bs_store32le(v + 4 * i, (uint32_t)(keys[i] >> shift));
      break;
    default:
      for (size_t i = 0; i < n; i++) bs_store64le(v + 8 * i, keys[i]);
      break;
    }
    shift += 8 * (unsigned)cols[c].width;
  }
  return BS_OK;
}

bs_error bs_keyrow_measure(const int64_t *offsets, const uint8_t *bytes, size_t n,
                           const size_t *widths, size_t ncols, int64_t *totals) {
  if (offsets == NULL || widths == NULL || ncols == 0 || totals == NULL) return BS_EINVAL;
  if (offsets[0] < 0) return BS_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (offsets[i + 1] < offsets[i]) return BS_EINVAL;
  if (bytes == NULL && offsets[n] != offsets[0]) return BS_EINVAL;
  for (size_t c = 0; c < ncols; c++) {
    if (widths[c] != 0 && !valid_width(widths[c])) return BS_EINVAL;
    totals[c] = 0;
  }
  for (size_t i = 0; i < n; i++) {
    const uint64_t end = (uint64_t)offsets[i + 1];
    uint64_t pos = (uint64_t)offsets[i];
    for (size_t c = 0; c < ncols; c++) {
      if (widths[c]) {
        if (end - pos < widths[c]) return BS_ELENGTH;
        pos += widths[c];
        continue;
      }
      if (end - pos < 4) return BS_ELENGTH;
      uint32_t len = bs_load32le(bytes + pos);
      pos += 4;
      if (end - pos < len) return BS_ELENGTH;
      pos += len;
      totals[c] += len;
    }
    if (pos != end) return BS_ELENGTH;
  }
  return BS_OK;
}

bs_error bs_keyrow_decode(const int64_t *offsets, const uint8_t *bytes, size_t n,
                          const bs_key_output *cols, size_t ncols) {
  if (cols == NULL || ncols == 0 || ncols > 64) return BS_EINVAL;
  size_t widths[64];
  int64_t totals[64];
  int all_fixed = 1;
  for (size_t c = 0; c < ncols; c++) {
    widths[c] = cols[c].width;
    all_fixed &= cols[c].width != 0;
  }
  bs_error e = bs_keyrow_measure(offsets, bytes, n, widths, ncols, totals);
  if (e != BS_OK) return e;
  for (size_t c = 0; c < ncols; c++) {
    if (n > 0 && cols[c].values == NULL && (widths[c] != 0 || totals[c] > 0)) return BS_EINVAL;
    if (widths[c] == 0 && (cols[c].offsets == NULL || (uint64_t)totals[c] > cols[c].capacity))
      return BS_EINVAL;
  }
  /* measure found every row of fixed columns exactly `fixed` bytes wide. */
  if (all_fixed && n > 0) return bs_keyrow_unpack_fixed(bytes + offsets[0], n, cols, ncols);
  for (size_t c = 0; c < ncols; c++)
    if (widths[c] == 0) cols[c].offsets[0] = 0;
  for (size_t i = 0; i < n; i++) {
    size_t pos = (size_t)offsets[i];
    for (size_t c = 0; c < ncols; c++) {
      const bs_key_output *k = &cols[c];
      if (k->width) {
        copy_value(k->values + i * k->width, bytes + pos, k->width);
        pos += k->width;
      } else {
        uint32_t len = bs_load32le(bytes + pos);
        pos += 4;
        if (len) memcpy(k->values + k->offsets[i], bytes + pos, len);
        k->offsets[i + 1] = k->offsets[i] + len;
        pos += len;
      }
    }
  }
  return BS_OK;
}
