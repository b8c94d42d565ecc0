/* Pieces: the reading side of a many-way shuffle held in memory. Each reading task takes
 * its partition's rows from every upstream chunk, so it looks up one partition in thousands
 * of partition indexes and copies thousands of short row ranges. Done one at a time, each is
 * a cache miss the next must wait for; these kernels walk them in batches, prefetching ahead. */
#ifndef BS_PIECES_H
#define BS_PIECES_H

#include <stddef.h>
#include <stdint.h>

#include "bs_error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A chunk's partition index: where each partition's rows are in a frame whose rows are in
 * partition order. Dense (ids 0): entry p is where partition p starts, for p in 0 ... parts.
 * Sparse (ids > 0): entries 0 ... ids are where the rows of the ids non-empty partitions
 * start and end, and entries ids + 1 ... 2 * ids are those partitions, ascending. Entries
 * are 16 bits when narrow, else 32. starts NULL: every row is partition 0. */
typedef struct {
  const void *starts;
  uint32_t rows;   /* the chunk's rows */
  uint32_t parts;  /* dense: the partitions; sparse: unused */
  uint32_t ids;    /* sparse: the non-empty partitions; dense: 0 */
  uint8_t narrow;
  uint8_t sparse;
} bs_part_index;

/* The rows of partition p in each of n chunks: chunk i's are start[i] ..< end[i] (equal when
 * it has none, as when p is past a dense index's partitions). Returns BS_OK, or BS_EINVAL for
 * a NULL pointer with n > 0. */
bs_error bs_partition_ranges(const bs_part_index *idx, size_t n, uint32_t p, uint32_t *start, uint32_t *end);

/* Copies n row ranges of a column of fixed-width values one after another into dst: range
 * k is rows[k] values of `width` bytes (1, 2, 4, 8 or 16) from src[k]. Returns BS_OK, or
 * BS_EINVAL for another width or a NULL pointer with n > 0. */
bs_error bs_copy_pieces(const void *const *src, const uint32_t *rows, size_t n, size_t width, void *dst);

/* Asks for the cache line at p to be loaded, for a read soon (p may be NULL or any
 * address: a prefetch never faults). */
static inline void bs_prefetch(const void *p) {
#if defined(__GNUC__) || defined(__clang__)
  __builtin_prefetch(p, 0, 3);
#else
  (void)p;
#endif
}

#ifdef __cplusplus
}
#endif
#endif
