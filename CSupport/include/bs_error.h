/* Error codes shared by every CSupport kernel, and the conventions every header follows.
 *
 * Returns. A function that can fail returns one of:
 *   - a bs_error: BS_OK (0) on success, a negative code on failure (bs_partition_permutation
 *     and bs_group_values_fixed return theirs as an int);
 *   - an int64_t size, count or index: >= 0 on success, a negative bs_error on failure;
 *   - a pointer (a new object or buffer): NULL on failure, as its header says.
 * A function that cannot fail returns void (the free functions) or its value (a hash).
 * No function aborts or prints.
 *
 * NULL. A pointer to n elements may be NULL when n is 0. Otherwise every header says, for
 * each pointer parameter, whether NULL is an error (BS_EINVAL, or a NULL result), a no-op
 * (the free functions, as free(NULL)), or undefined behaviour (the few per-value inline
 * helpers and benchmark baselines, which check nothing on purpose). NULL never stands for
 * a default object. */
#ifndef BS_ERROR_H
#define BS_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum bs_error {
  BS_OK = 0,
  BS_EINVAL = -1,          /* an argument is out of its documented range, or NULL */
  BS_ENOMEM = -2,          /* an allocation failed */
  BS_ESHORT = -3,          /* block: fewer bytes than the header or the header's lengths need */
  BS_EMAGIC = -4,          /* block: the magic number is wrong (not a block) */
  BS_EVERSION = -5,        /* block: a version this code does not read */
  BS_EHEADER = -6,         /* block: the header checksum does not match the header */
  BS_ECODEC = -7,          /* block: unknown codec, or reserved bits set */
  BS_ELENGTH = -8,         /* block or key row: a length is over its bound or inconsistent */
  BS_EDECOMPRESS = -9,     /* block: zstd rejected the payload */
  BS_ECHECKSUM = -10,      /* block: the payload checksum does not match */
  BS_EDSTSIZE = -11,       /* the destination buffer is too small */
  BS_ECOMPRESS = -12,      /* block: zstd failed to compress */
  BS_EUNSUPPORTED = -13,   /* the platform's C library does not offer the operation */
} bs_error;

/* A static, NUL-terminated description of code: its constant's name, a colon and its
 * meaning ("BS_ECHECKSUM: the payload checksum does not match"). Any other value, negative
 * or positive, gives "unknown CSupport error code". Never NULL; the caller does not free
 * it. */
const char *bs_error_name(int code);

#ifdef __cplusplus
}
#endif
#endif
