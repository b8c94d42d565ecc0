/* Delimited text into columns: split, then convert column by column (bs_delimited.h). */
#include "bs_delimited.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* A 64-byte window of the buffer, as a bit per byte that is the delimiter or LF. */
typedef struct {
  const uint8_t *buf;
  size_t len;
  size_t block;  /* the window's start (a multiple of 64), or SIZE_MAX before the first */
  uint64_t mask;
  uint8_t delimiter;
} scan;

static uint64_t special_bits(const uint8_t *p, uint8_t d) {
#if defined(__SSE2__)
  const __m128i vd = _mm_set1_epi8((char)d), vn = _mm_set1_epi8('\n');
  uint64_t m = 0;
  for (int i = 0; i < 4; i++) {
    __m128i v = _mm_loadu_si128((const __m128i *)(p + 16 * i));
    __m128i hit = _mm_or_si128(_mm_cmpeq_epi8(v, vd), _mm_cmpeq_epi8(v, vn));
    m |= (uint64_t)(uint16_t)_mm_movemask_epi8(hit) << (16 * i);
  }
  return m;
#else
  uint64_t m = 0;
  for (int i = 0; i < 64; i++) m |= (uint64_t)(p[i] == d || p[i] == '\n') << i;
  return m;
#endif
}

/* The first delimiter or LF at or after pos, or len. */
static inline size_t next_special(scan *s, size_t pos) {
  while (pos < s->len) {
    size_t b = pos & ~(size_t)63;
    if (b != s->block) {
      s->block = b;
      if (s->len - b >= 64) {
        s->mask = special_bits(s->buf + b, s->delimiter);
      } else {
        uint8_t tail[64] = {0};
        memcpy(tail, s->buf + b, s->len - b);
        s->mask = special_bits(tail, s->delimiter) & ((1ULL << (s->len - b)) - 1);
      }
    }
    uint64_t m = s->mask & (~0ULL << (pos & 63));
    if (m) return b + (size_t)__builtin_ctzll(m);
    pos = b + 64;
  }
  return s->len;
}

static uint64_t count_lf(const uint8_t *p, size_t n) {
  uint64_t c = 0;
  const uint8_t *end = p + n;
  while (p < end) {
    const uint8_t *h = memchr(p, '\n', (size_t)(end - p));
    if (!h) break;
    c++;
    p = h + 1;
  }
  return c;
}

/* The end of the line that holds pos (just after its LF), or len. */
static size_t line_end(const uint8_t *buf, size_t len, size_t pos) {
  const uint8_t *h = pos < len ? memchr(buf + pos, '\n', len - pos) : NULL;
  return h ? (size_t)(h - buf) + 1 : len;
}

bs_error bs_delim_split_rows(bs_delim_split *s, const uint8_t *buf, size_t len, size_t limit, int final) {
  if (!s || (!buf && len > 0) || s->columns == 0 || s->capacity == 0 || !s->starts || !s->ends ||
      len >= ((size_t)1 << 31) || s->delimiter == '\n' || s->delimiter == '\r' || s->delimiter == '"') {
    return BS_EINVAL;
  }
  const uint8_t d = s->delimiter;
  const uint32_t cols = s->columns, cap = s->capacity;
  scan sc = {buf, len, SIZE_MAX, 0, d};
  uint32_t rows = 0, skipped = 0;
  uint64_t nl = 0;
  size_t pos = 0;
  s->problem = BS_DELIM_FINE;
  while (rows < cap && pos < len && pos < limit) {
    const size_t row_start = pos;
    const uint64_t nl_row = nl;
    uint32_t col = 0;
    bs_delim_problem problem = BS_DELIM_FINE;
    size_t problem_at = 0;
    uint32_t problem_col = 0;
    int more = 0;
    for (;;) {
      size_t fs = pos, fe;
      uint32_t flag = 0;
      int row_ends;
      if (s->quoting && pos < len && buf[pos] == '"') {
        /* A quoted field: find its closing quote, then check it is on the field's line
         * unless quoted_newlines (each byte of the field is looked at a bounded number of
         * times, however many fields the line has). */
        size_t q = pos + 1, close = SIZE_MAX;
        while (q < len) {
          const uint8_t *h = memchr(buf + q, '"', len - q);
          if (!h) break;
          size_t at = (size_t)(h - buf);
          if (at + 1 < len && buf[at + 1] == '"') {
            flag = BS_DELIM_ESCAPED;
            q = at + 2;
            continue;
          }
          if (at + 1 >= len && !final) break; /* the next byte may be a quote */
          close = at;
          break;
        }
        if (!s->quoted_newlines) {
          size_t to = close != SIZE_MAX ? close : len;
          const uint8_t *lf = memchr(buf + pos + 1, '\n', to - pos - 1);
          if (lf) {
            problem = BS_DELIM_UNCLOSED;
            problem_at = pos;
            problem_col = col;
            pos = (size_t)(lf - buf) + 1;
            break;
          }
        }
        if (close == SIZE_MAX) {
          if (!final) {
            more = 1;
            break;
          }
          problem = BS_DELIM_UNCLOSED;
          problem_at = pos;
          problem_col = col;
          pos = len;
          break;
        }
        if (s->quoted_newlines) nl += count_lf(buf + pos + 1, close - pos - 1);
        fs = pos + 1;
        fe = close;
        pos = close + 1;
        if (pos >= len) {
          row_ends = 1;
        } else if (buf[pos] == d) {
          row_ends = 0;
          pos++;
        } else if (buf[pos] == '\n') {
          row_ends = 1;
          pos++;
          nl++;
        } else if (buf[pos] == '\r' && pos + 1 < len && buf[pos + 1] == '\n') {
          row_ends = 1;
          pos += 2;
          nl++;
        } else if (buf[pos] == '\r' && pos + 1 >= len && !final) {
          more = 1;
          break;
        } else {
          size_t next = line_end(buf, len, pos);
          if (s->skip_bad && !final && (next == 0 || buf[next - 1] != '\n')) {
            more = 1; /* the rest of the row to skip is not here yet */
            break;
          }
          problem = BS_DELIM_AFTER_QUOTE;
          problem_at = pos;
          problem_col = col;
          pos = next;
          break;
        }
      } else {
        size_t at = next_special(&sc, pos);
        if (at >= len) {
          if (!final) {
            more = 1;
            break;
          }
          fe = len;
          pos = len;
          row_ends = 1;
        } else {
          fe = at;
          pos = at + 1;
          row_ends = buf[at] == '\n';
          nl += row_ends;
        }
        if (row_ends && fe > fs && buf[fe - 1] == '\r') fe--;
      }
      if (col < cols) {
        s->starts[(size_t)col * cap + rows] = (uint32_t)fs;
        s->ends[(size_t)col * cap + rows] = (uint32_t)fe | flag;
      }
      col++;
      if (row_ends) break;
    }
    if (more) {
      pos = row_start;
      nl = nl_row;
      break;
    }
    if (problem == BS_DELIM_FINE && col != cols) {
      problem = BS_DELIM_FIELD_COUNT;
      problem_at = row_start;
      problem_col = col;
    }
    if (problem != BS_DELIM_FINE) {
      nl = nl_row + count_lf(buf + row_start, pos - row_start);
      if (s->skip_bad) {
        skipped++;
        continue;
      }
      s->problem = problem;
      s->error_offset = row_start;
      s->error_at = problem_at;
      s->error_column = problem_col;
      pos = row_start;
      nl = nl_row;
      break;
    }
    rows++;
  }
  s->rows = rows;
  s->skipped = skipped;
  s->consumed = pos;
  s->newlines = nl;
  return BS_OK;
}

/* Parses an integer of digits in p[0 ..< n]: 1 with *v set, or 0. */
static inline int parse_i64(const uint8_t *p, size_t n, int64_t *v) {
  if (n == 0) return 0;
  int neg = 0;
  if (*p == '-' || *p == '+') {
    neg = *p == '-';
    p++;
    n--;
    if (n == 0 || n > 19) return 0;
  } else if (n > 19) {
    return 0;
  }
  uint64_t acc = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned digit = (unsigned)p[i] - '0';
    if (digit > 9) return 0;
    acc = acc * 10 + digit; /* 19 digits fit in a u64 */
  }
  if (neg) {
    if (acc > (uint64_t)INT64_MAX + 1) return 0;
    *v = (int64_t)(0 - acc);
  } else {
    if (acc > (uint64_t)INT64_MAX) return 0;
    *v = (int64_t)acc;
  }
  return 1;
}

static const double pow10_exact[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                       1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* A plain decimal ([sign] digits [. digits] [e [sign] digits]) whose digits and exponent
 * make the result exact in one multiply or divide (Clinger's fast path): 1 with *v set.
 * 0 for anything else, which strtod then reads. */
static inline int parse_f64_fast(const uint8_t *p, size_t n, double *v) {
  size_t i = 0;
  int neg = 0;
  if (i < n && (p[i] == '-' || p[i] == '+')) neg = p[i++] == '-';
  uint64_t mant = 0;
  int digits = 0, scale = 0, any = 0;
  while (i < n && (unsigned)(p[i] - '0') <= 9) {
    if (digits < 19) {
      mant = mant * 10 + (p[i] - '0');
      if (mant) digits++;
    } else {
      return 0;
    }
    i++;
    any = 1;
  }
  if (i < n && p[i] == '.') {
    i++;
    while (i < n && (unsigned)(p[i] - '0') <= 9) {
      if (digits >= 19) return 0;
      mant = mant * 10 + (p[i] - '0');
      if (mant) digits++;
      scale--;
      i++;
      any = 1;
    }
  }
  if (!any) return 0;
  if (i < n && (p[i] == 'e' || p[i] == 'E')) {
    i++;
    int eneg = 0;
    if (i < n && (p[i] == '-' || p[i] == '+')) eneg = p[i++] == '-';
    int e = 0, edigits = 0;
    while (i < n && (unsigned)(p[i] - '0') <= 9) {
      if (e < 10000) e = e * 10 + (p[i] - '0');
      i++;
      edigits++;
    }
    if (!edigits) return 0;
    scale += eneg ? -e : e;
  }
  if (i != n || mant > (1ULL << 53)) return 0;
  double x = (double)mant;
  if (scale < -22 || scale > 22) {
    if (mant != 0) return 0;
  } else if (scale < 0) {
    x /= pow10_exact[-scale];
  } else {
    x *= pow10_exact[scale];
  }
  *v = neg ? -x : x;
  return 1;
}

static int parse_f64_slow(const uint8_t *p, size_t n, double *v) {
  char tmp[512];
  if (n == 0 || n >= sizeof tmp || p[0] == ' ' || p[0] == '\t' || p[0] == '\n' || p[0] == '\r' ||
      p[0] == '\f' || p[0] == '\v') {
    return 0;
  }
  memcpy(tmp, p, n);
  tmp[n] = 0;
  char *end = NULL;
  *v = strtod(tmp, &end);
  return end == tmp + n;
}

static inline int parse_i32(const uint8_t *p, size_t n, int32_t *v) {
  int64_t wide;
  if (!parse_i64(p, n, &wide) || wide < INT32_MIN || wide > INT32_MAX) return 0;
  *v = (int32_t)wide;
  return 1;
}

static inline int parse_f64(const uint8_t *p, size_t n, double *v) {
  return parse_f64_fast(p, n, v) || parse_f64_slow(p, n, v);
}

static inline int ieq(const uint8_t *p, size_t n, const char *word) {
  size_t w = strlen(word);
  if (n != w) return 0;
  for (size_t i = 0; i < n; i++) {
    uint8_t c = p[i];
    if (c >= 'A' && c <= 'Z') c += 'a' - 'A';
    if (c != (uint8_t)word[i]) return 0;
  }
  return 1;
}

static inline int parse_bool(const uint8_t *p, size_t n, uint8_t *v) {
  if (n == 1 && (*p == '1' || *p == '0')) {
    *v = *p == '1';
  } else if (ieq(p, n, "true")) {
    *v = 1;
  } else if (ieq(p, n, "false")) {
    *v = 0;
  } else {
    return 0;
  }
  return 1;
}

/* The body of a column kernel: parse_one(p, len, &value) reads each field that is not
 * empty (or, without nulls, each field) and not escaped. */
#define PARSE_COLUMN(T, parse_one)                                          \
  if (n > 0 && (!buf || !starts || !ends || !out || !bad)) return BS_EINVAL; \
  int64_t bads = 0;                                                         \
  for (size_t r = 0; r < n; r++) {                                          \
    size_t len = (ends[r] & ~BS_DELIM_ESCAPED) - starts[r];                 \
    T v = 0;                                                                \
    if (len == 0 && nulls) {                                                \
      nulls[r] = 1;                                                         \
    } else if ((ends[r] & BS_DELIM_ESCAPED) || !parse_one(buf + starts[r], len, &v)) { \
      bad[r] = 1;                                                           \
      bads++;                                                               \
      v = 0;                                                                \
    }                                                                       \
    out[r] = v;                                                             \
  }                                                                         \
  return bads

int64_t bs_delim_parse_i64(const uint8_t *buf, const uint32_t *starts, const uint32_t *ends, size_t n,
                           int64_t *out, uint8_t *nulls, uint8_t *bad) {
  PARSE_COLUMN(int64_t, parse_i64);
}

int64_t bs_delim_parse_i32(const uint8_t *buf, const uint32_t *starts, const uint32_t *ends, size_t n,
                           int32_t *out, uint8_t *nulls, uint8_t *bad) {
  PARSE_COLUMN(int32_t, parse_i32);
}

int64_t bs_delim_parse_f64(const uint8_t *buf, const uint32_t *starts, const uint32_t *ends, size_t n,
                           double *out, uint8_t *nulls, uint8_t *bad) {
  PARSE_COLUMN(double, parse_f64);
}

int64_t bs_delim_parse_bool(const uint8_t *buf, const uint32_t *starts, const uint32_t *ends, size_t n,
                            uint8_t *out, uint8_t *nulls, uint8_t *bad) {
  PARSE_COLUMN(uint8_t, parse_bool);
}

size_t bs_delim_string_bytes(const uint32_t *starts, const uint32_t *ends, size_t n) {
  size_t total = 0;
  for (size_t r = 0; r < n; r++) total += (ends[r] & ~BS_DELIM_ESCAPED) - starts[r];
  return total;
}

bs_error bs_delim_copy_strings(const uint8_t *buf, const uint32_t *starts, const uint32_t *ends, size_t n,
                               int64_t *offsets, uint8_t *dst, uint8_t *nulls) {
  if (n > 0 && (!buf || !starts || !ends || !offsets || !dst)) return BS_EINVAL;
  int64_t at = offsets[0];
  for (size_t r = 0; r < n; r++) {
    const uint8_t *p = buf + starts[r];
    size_t len = (ends[r] & ~BS_DELIM_ESCAPED) - starts[r];
    if (ends[r] & BS_DELIM_ESCAPED) {
      for (size_t i = 0; i < len; i++) {
        dst[at++] = p[i];
        if (p[i] == '"') i++; /* the doubled quote's second */
      }
    } else {
      memcpy(dst + at, p, len);
      at += (int64_t)len;
    }
    if (nulls && len == 0) nulls[r] = 1;
    offsets[r + 1] = at;
  }
  return BS_OK;
}

/* The decimal digits of v, written backwards from end; returns where they start. */
static inline uint8_t *digits_backwards(uint64_t v, uint8_t *end) {
  static const char pairs[201] =
      "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
      "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
      "8081828384858687888990919293949596979899";
  while (v >= 100) {
    unsigned d = (unsigned)(v % 100) * 2;
    v /= 100;
    *--end = (uint8_t)pairs[d + 1];
    *--end = (uint8_t)pairs[d];
  }
  if (v >= 10) {
    unsigned d = (unsigned)v * 2;
    *--end = (uint8_t)pairs[d + 1];
    *--end = (uint8_t)pairs[d];
  } else {
    *--end = (uint8_t)('0' + v);
  }
  return end;
}

bs_error bs_delim_format_i64(const int64_t *values, size_t n, int64_t *offsets, uint8_t *dst) {
  if (n > 0 && (!values || !offsets || !dst)) return BS_EINVAL;
  int64_t at = offsets[0];
  uint8_t tmp[24];
  for (size_t r = 0; r < n; r++) {
    int64_t v = values[r];
    uint64_t magnitude = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    uint8_t *start = digits_backwards(magnitude, tmp + sizeof tmp);
    if (v < 0) *--start = '-';
    size_t len = (size_t)(tmp + sizeof tmp - start);
    memcpy(dst + at, start, len);
    at += (int64_t)len;
    offsets[r + 1] = at;
  }
  return BS_OK;
}

bs_error bs_delim_format_u64(const uint64_t *values, size_t n, int64_t *offsets, uint8_t *dst) {
  if (n > 0 && (!values || !offsets || !dst)) return BS_EINVAL;
  int64_t at = offsets[0];
  uint8_t tmp[24];
  for (size_t r = 0; r < n; r++) {
    uint8_t *start = digits_backwards(values[r], tmp + sizeof tmp);
    size_t len = (size_t)(tmp + sizeof tmp - start);
    memcpy(dst + at, start, len);
    at += (int64_t)len;
    offsets[r + 1] = at;
  }
  return BS_OK;
}

int64_t bs_delim_format_strings(const int64_t *in_offsets, const uint8_t *bytes, size_t n, uint8_t delimiter,
                                int quoting, int64_t *offsets, uint8_t *dst) {
  if (n > 0 && (!in_offsets || !bytes || !offsets || !dst)) return BS_EINVAL;
  int64_t at = offsets[0];
  for (size_t r = 0; r < n; r++) {
    const uint8_t *p = bytes + in_offsets[r];
    size_t len = (size_t)(in_offsets[r + 1] - in_offsets[r]);
    int special = 0;
    for (size_t i = 0; i < len; i++) {
      uint8_t c = p[i];
      if (c == delimiter || c == '\n' || c == '\r' || (quoting && c == '"')) {
        special = 1;
        break;
      }
    }
    if (!special) {
      memcpy(dst + at, p, len);
      at += (int64_t)len;
    } else if (!quoting) {
      return (int64_t)r;
    } else {
      dst[at++] = '"';
      for (size_t i = 0; i < len; i++) {
        if (p[i] == '"') dst[at++] = '"';
        dst[at++] = p[i];
      }
      dst[at++] = '"';
    }
    offsets[r + 1] = at;
  }
  return -1;
}

int64_t bs_delim_join_rows(const uint8_t *const *texts, const int64_t *const *offsets, size_t cols, size_t n,
                           uint8_t delimiter, uint8_t *dst) {
  if (cols == 0 || (n > 0 && (!texts || !offsets || !dst))) return BS_EINVAL;
  uint8_t *out = dst;
  for (size_t r = 0; r < n; r++) {
    for (size_t c = 0; c < cols; c++) {
      int64_t from = offsets[c][r], to = offsets[c][r + 1];
      memcpy(out, texts[c] + from, (size_t)(to - from));
      out += to - from;
      *out++ = c + 1 < cols ? delimiter : '\n';
    }
  }
  return (int64_t)(out - dst);
}

int64_t bs_bench_tsv_strtoll(const uint8_t *text, size_t len, uint64_t *key_sum, uint64_t *value_sum) {
  const char *p = (const char *)text, *end = p + len;
  uint64_t ks = 0, vs = 0;
  int64_t rows = 0;
  while (p < end) {
    char *q;
    ks += (uint64_t)strtoll(p, &q, 10);
    vs += (uint64_t)strtoll(q + 1, &q, 10);
    p = q + 1;
    rows++;
  }
  *key_sum = ks;
  *value_sum = vs;
  return rows;
}
