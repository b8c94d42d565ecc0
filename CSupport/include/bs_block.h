/* The one block format, on disk and on the wire: spill files, shuffle partitions and cache
 * files are sequences of blocks.
 *
 * Header, 40 bytes, little-endian:
 *   0  u32 magic "BSBK" (0x4B425342)
 *   4  u16 version (1)
 *   6  u16 codec: 0 = stored raw, 1 = zstd, 2 = runs
 *   8  u64 rows            (opaque to the block layer; the frame codec's row count)
 *   16 u32 raw_len         (<= BS_BLOCK_MAX_RAW)
 *   20 u32 payload_len     (bytes after the header; == raw_len when stored raw;
 *                           8 < payload_len < raw_len for zstd and runs)
 *   24 u64 raw_checksum    XXH3-64 of the raw bytes, seed 0
 *   32 u64 header_checksum XXH3-64 of header bytes 0..<32, seed 0
 * then payload_len bytes: the raw bytes (codec 0), or (codec 1) one zstd frame (with its
 * content size) followed by a u64 frame_checksum, XXH3-64 of the frame bytes, seed 0, or
 * (codec 2) runs tokens followed by their XXH3-64 in the same way. A runs token is a u32
 * (length << 1 | kind), length >= 1, then one byte repeated length times (kind 1) or length
 * literal bytes (kind 0): it costs about memcpy's time, and shrinks the constant byte planes
 * that shuffling makes of small integers (though not their low planes, as zstd's entropy
 * coding does), but nothing else.
 * The zstd frame checksum is needed because zstd ignores a few bits of a frame (an unused
 * header bit, padding bits of its table descriptions): flipping one of those decodes to
 * the same bytes, which the raw checksum alone cannot notice.
 *
 * The decoder checks, in order: enough bytes for a header, magic, version, header checksum,
 * codec, lengths against their bounds and the input, the destination size, the frame or
 * tokens checksum, the frame's content size, zstd or the tokens, the decompressed size, and
 * the raw checksum. A single flipped bit anywhere in a block fails one of these checks. */
#ifndef BS_BLOCK_H
#define BS_BLOCK_H

#include <stddef.h>
#include <stdint.h>

#include "bs_error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BS_BLOCK_MAGIC 0x4B425342u
#define BS_BLOCK_VERSION 1u
#define BS_BLOCK_HEADER_SIZE 40u
#define BS_BLOCK_MAX_RAW (1u << 30)

typedef enum { BS_CODEC_RAW = 0, BS_CODEC_ZSTD = 1, BS_CODEC_RUNS = 2 } bs_codec;

typedef struct {
  uint64_t rows;
  uint32_t raw_len;
  uint32_t payload_len;
  uint16_t codec;
  uint64_t raw_checksum;
} bs_block_info;

/* A reusable compression / decompression context (wraps ZSTD_CCtx / ZSTD_DCtx), for one
 * thread at a time. _new returns NULL on OOM; _free of NULL is a no-op, as for free. */
typedef struct bs_block_encoder bs_block_encoder;
typedef struct bs_block_decoder bs_block_decoder;
bs_block_encoder *bs_block_encoder_new(void);
void bs_block_encoder_free(bs_block_encoder *e);
bs_block_decoder *bs_block_decoder_new(void);
void bs_block_decoder_free(bs_block_decoder *d);

/* Largest encoded size of raw_len bytes: use it to size dst. BS_EINVAL when raw_len is over
 * BS_BLOCK_MAX_RAW (such input cannot be encoded). */
int64_t bs_block_bound(size_t raw_len);

/* Encodes raw[0..<raw_len] as one block into dst. level is a zstd level (negative levels are
 * zstd's fast modes), except for two reserved values: BS_BLOCK_LEVEL_RAW stores the bytes
 * uncompressed; BS_BLOCK_LEVEL_FAST codes them as runs, and tries zstd -1 only on blocks of
 * at least 1 KiB that runs leave over 3/4 of their size, keeping it at 4/5 of the runs size
 * or less. After zstd fails to get there, the encoder skips it for the next 32 such blocks,
 * then tries again: with this level, a block's coding depends on the blocks the same encoder
 * coded before it (never its bytes once decoded). When the codec does not shrink the bytes,
 * the block is stored raw. Returns the block's total size, or BS_EINVAL (raw_len over the
 * bound; e or dst NULL; raw NULL with raw_len > 0), BS_EDSTSIZE, BS_ECOMPRESS. */
#define BS_BLOCK_LEVEL_RAW (-1000)
#define BS_BLOCK_LEVEL_FAST (-1001)
int64_t bs_block_encode(bs_block_encoder *e, const void *raw, size_t raw_len, uint64_t rows,
                        int level, void *dst, size_t dst_cap);

/* Validates a header (magic, version, header checksum, codec, length bounds) from the first
 * len bytes of src and fills info (unless info is NULL). Returns the block's total size
 * (header + payload) so a stream reader knows how much to read, or BS_EINVAL (src NULL with
 * len > 0), BS_ESHORT (len < header size), BS_EMAGIC, BS_EVERSION, BS_EHEADER, BS_ECODEC,
 * BS_ELENGTH. */
int64_t bs_block_peek(const void *src, size_t len, bs_block_info *info);

/* Decodes the block at src[0..<len] into dst (capacity dst_cap >= info.raw_len), after
 * every check above, and fills info (unless info is NULL). Returns the raw length, or any
 * error of bs_block_peek, BS_EINVAL (d NULL; dst NULL for a non-empty block), BS_ESHORT
 * (payload truncated), BS_EDSTSIZE, BS_ECHECKSUM (frame or raw checksum),
 * BS_ELENGTH (the frame's content size or the decompressed size differs from raw_len),
 * BS_EDECOMPRESS. Bytes after the block (len > its total size) are ignored. Never reads
 * outside src[0..<len] or writes outside dst[0..<dst_cap]; on an error, dst may hold
 * partial output. */
int64_t bs_block_decode(bs_block_decoder *d, const void *src, size_t len, void *dst,
                        size_t dst_cap, bs_block_info *info);

/* Baselines for benchmarks: one ZSTD_compress call at level, returning the compressed size
 * or BS_ECOMPRESS; and one ZSTD_decompress, returning the decompressed size or
 * BS_EDECOMPRESS. The pointers go to zstd unchecked: NULL is undefined behaviour unless its
 * length is 0. */
int64_t bs_bench_zstd_compress(const void *src, size_t len, int level, void *dst, size_t cap);
int64_t bs_bench_zstd_decompress(const void *src, size_t len, void *dst, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
