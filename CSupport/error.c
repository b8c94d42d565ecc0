/* Names of the error codes. See bs_error.h. */
#include "bs_error.h"

const char *bs_error_name(int code) {
  switch (code) {
  case BS_OK: return "BS_OK: success";
  case BS_EINVAL: return "BS_EINVAL: an argument is out of its documented range, or NULL";
  case BS_ENOMEM: return "BS_ENOMEM: an allocation failed";
  case BS_ESHORT: return "BS_ESHORT: fewer bytes than the block header or its lengths need";
  case BS_EMAGIC: return "BS_EMAGIC: the block's magic number is wrong (not a block)";
  case BS_EVERSION: return "BS_EVERSION: a block version this code does not read";
  case BS_EHEADER: return "BS_EHEADER: the block header checksum does not match the header";
  case BS_ECODEC: return "BS_ECODEC: an unknown block codec, or reserved bits set";
  case BS_ELENGTH: return "BS_ELENGTH: a block length is over its bound or inconsistent";
  case BS_EDECOMPRESS: return "BS_EDECOMPRESS: zstd rejected the block payload";
  case BS_ECHECKSUM: return "BS_ECHECKSUM: the payload checksum does not match";
  case BS_EDSTSIZE: return "BS_EDSTSIZE: the destination buffer is too small";
  case BS_ECOMPRESS: return "BS_ECOMPRESS: zstd failed to compress the block";
  case BS_EUNSUPPORTED: return "BS_EUNSUPPORTED: the platform's C library does not offer the operation";
  default: return "unknown CSupport error code";
  }
}
