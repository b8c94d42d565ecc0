/* The combiner: an open-addressing hash table (linear probing, power-of-two capacity) that
 * maps keys to dense group ids 0, 1, 2, … in order of first appearance, with built-in
 * aggregates over those ids.
 *
 * Keys are u64 (any fixed-width key up to 8 bytes, widened by the caller), fixed-width
 * keys of more bytes (several key columns side by side, bs_keyrow.h), or byte strings. The caller passes each key's hash (bs_hash_*), so a column is hashed once and the
 * same hash serves partitioning and combining; tests can force collisions this way.
 *
 * Group-id mode: bs_comb_groups_* fills gids, and the caller combines any value type
 * column-at-a-time with them. Built-in mode: bs_comb_update_* folds value columns into the
 * aggregates declared with bs_comb_add_agg.
 *
 * The table never shrinks; bs_comb_bytes reports its memory, and bs_comb_room how many new
 * keys fit under a byte limit, so the caller can spill before the table would outgrow it
 * (drain, then bs_comb_reset). Large arrays live in huge pages (bs_big_alloc). */
#ifndef BS_COMBINER_H
#define BS_COMBINER_H

#include <stddef.h>
#include <stdint.h>

#include "bs_error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { BS_COMB_KEY_U64 = 1, BS_COMB_KEY_BYTES = 2, BS_COMB_KEY_FIXED = 3 } bs_comb_key_kind;

/* The widest key of a fixed-width combiner, in bytes. */
#define BS_COMB_MAX_FIXED_KEY 64

typedef enum {
  BS_AGG_SUM_I64 = 1, BS_AGG_MIN_I64, BS_AGG_MAX_I64,
  BS_AGG_SUM_F64, BS_AGG_MIN_F64, BS_AGG_MAX_F64,
  BS_AGG_COUNT, /* an i64 count of rows per group; needs no value column */
} bs_agg_kind;

/* At most this many aggregates per combiner. */
#define BS_COMB_MAX_AGGS 16

typedef struct bs_combiner bs_combiner;

/* A NULL combiner is BS_EINVAL for every function below that returns a bs_error or an
 * int64_t, and NULL for those that return a pointer; so is a NULL pointer to more than zero
 * elements. */

/* A new, empty combiner sized for about expected_groups groups. NULL on bad kind or OOM.
 * kind is BS_COMB_KEY_U64 or BS_COMB_KEY_BYTES; bs_comb_new_fixed makes the third kind. */
bs_combiner *bs_comb_new(bs_comb_key_kind kind, size_t expected_groups);
/* A new combiner of keys of key_width bytes each (1 ... BS_COMB_MAX_FIXED_KEY), compared as
 * bytes. NULL on a bad width or OOM. */
bs_combiner *bs_comb_new_fixed(size_t key_width, size_t expected_groups);
/* Frees the combiner and everything it holds. NULL is a no-op, as for free. */
void bs_comb_free(bs_combiner *c);

/* Drops every group, keeping the table's capacity (a combiner that filled once is likely to
 * fill again). Aggregates stay declared. Free the combiner to return its memory. Returns
 * BS_OK. */
bs_error bs_comb_reset(bs_combiner *c);

/* Declares an aggregate and returns its index (>= 0), or BS_EINVAL (bad kind, too many, or
 * groups already exist), or BS_ENOMEM. Sums wrap on i64 overflow (two's complement), as
 * Swift's &+. Initial values: sums and counts 0, MIN_I64 INT64_MAX, MAX_I64 INT64_MIN,
 * MIN_F64 +inf, MAX_F64 -inf. f64 min/max propagate NaN: a NaN value makes the group's
 * result NaN for good; between -0.0 and +0.0 the first one seen stays. f64 sums add in row
 * order. */
int64_t bs_comb_add_agg(bs_combiner *c, bs_agg_kind kind);

/* gids[i] = group id of keys[i], inserting new keys. Returns the number of new groups, or
 * BS_EINVAL (wrong key kind) / BS_ENOMEM (the table could not grow; the groups of rows
 * before the failure are inserted and their gids are valid up to the returned error's row,
 * which the caller should treat as fatal for this batch). */
int64_t bs_comb_groups_u64(bs_combiner *c, const uint64_t *keys, const uint64_t *hashes,
                           size_t n, uint32_t *gids);
/* The same for byte-string keys: key i is bytes[offsets[i] ..< offsets[i+1]]. BS_EINVAL,
 * before any key is inserted, for offsets that are negative or decrease. bytes may be NULL
 * when every key is empty. */
int64_t bs_comb_groups_bytes(bs_combiner *c, const int64_t *offsets, const uint8_t *bytes,
                             const uint64_t *hashes, size_t n, uint32_t *gids);

/* The same for fixed-width keys: key i is keys[i * width ..< (i + 1) * width], width the
 * combiner's key width. */
int64_t bs_comb_groups_fixed(bs_combiner *c, const uint8_t *keys, const uint64_t *hashes,
                             size_t n, uint32_t *gids);

/* Direct mode, for u64 keys that are one scalar column of 1, 2, 4 or 8 bytes (zero-extended
 * to u64): keys of a range narrow enough for the combiner's size are mapped straight to group
 * ids, with no hash and no probe per row, as a perfect-hash aggregation does.
 *
 * bs_comb_direct_prepare looks at the batch's keys (as signed values) and returns 1 when the
 * direct map covers all of them, making or widening it when the range, with the window so
 * far, needs no more 4-byte entries than a quarter of the bytes of the table and per-group
 * arrays allow: memory the combiner already holds, and never a sparse range. Otherwise 0,
 * and the batch goes through bs_comb_groups_u64 (which uses the map for keys inside its
 * window). A NULL combiner, a combiner of another kind, no keys or a failed allocation are 0
 * too. The map counts in bs_comb_bytes and bs_comb_room.
 *
 * bs_comb_groups_direct then fills gids as bs_comb_groups_u64 does, hashing a key only when
 * it is new (as bs_hash_fixed hashes a key of width bytes with seed): group ids, stored hashes
 * and drains are those of the hash path. BS_EINVAL for a bad width or kind, BS_ENOMEM as
 * bs_comb_groups_u64. Once a combiner has a direct map, every u64 entry point keeps it
 * current, so the hashes given to bs_comb_groups_u64 must be those bs_comb_groups_direct
 * would compute. */
int bs_comb_direct_prepare(bs_combiner *c, const uint64_t *keys, size_t n);
int64_t bs_comb_groups_direct(bs_combiner *c, const uint64_t *keys, size_t n, size_t width,
                              uint64_t seed, uint32_t *gids);
/* Entries of the direct map (0 when there is none), or BS_EINVAL. */
int64_t bs_comb_direct_span(const bs_combiner *c);

/* Folds vals[i] into aggregate agg of group gids[i]. The aggregate's kind must match the
 * function (i64 or f64 family; count takes no values). Returns BS_OK or BS_EINVAL (also
 * when a gid is >= the number of groups; nothing is updated then). */
bs_error bs_comb_update_i64(bs_combiner *c, int agg, const uint32_t *gids, const int64_t *vals,
                            size_t n);
bs_error bs_comb_update_f64(bs_combiner *c, int agg, const uint32_t *gids, const double *vals,
                            size_t n);
bs_error bs_comb_update_count(bs_combiner *c, int agg, const uint32_t *gids, size_t n);

/* Number of groups, and bytes held (table, keys, hashes and aggregates). */
int64_t bs_comb_groups(const bs_combiner *c);
int64_t bs_comb_bytes(const bs_combiner *c);

/* How many new groups the combiner can take before its memory, counting the old and new
 * blocks held while a structure grows, would exceed limit bytes. extra_per_group is memory
 * the caller keeps per group in arrays that grow as the combiner's do (a closure's
 * accumulators). Inserting at most that many new keys keeps the combiner within the limit;
 * 0 means it is full. */
int64_t bs_comb_room(const bs_combiner *c, size_t limit, size_t extra_per_group);

/* Per-group arrays, indexed by group id, valid until the next insert, reset or free.
 * keys_u64 is NULL but for a u64 combiner, keys_fixed (groups keys of the key width) but for
 * a fixed-width one, and key_offsets (groups+1 entries) and key_bytes but for a byte-string
 * one. agg_values points at int64_t or double values by kind, or is
 * NULL for an agg that is not declared. */
const uint64_t *bs_comb_hashes(const bs_combiner *c);
const uint64_t *bs_comb_keys_u64(const bs_combiner *c);
const uint8_t *bs_comb_keys_fixed(const bs_combiner *c);
const int64_t *bs_comb_key_offsets(const bs_combiner *c);
const uint8_t *bs_comb_key_bytes(const bs_combiner *c);
const void *bs_comb_agg_values(const bs_combiner *c, int agg);

/* perm[0..<groups] = group ids in ascending hash order, ties by group id. Scratch: tmp_keys
 * and tmp_perm hold `groups` entries each, keys_buf holds `groups` u64. Returns BS_OK or
 * BS_EINVAL. */
bs_error bs_comb_hash_order(const bs_combiner *c, uint32_t *perm, uint64_t *keys_buf,
                            uint64_t *tmp_keys, uint32_t *tmp_perm);

/* Baseline for benchmarks: a plain C hash aggregation, the sums of vals by keys with nothing
 * else around it. One linear-probing table of {key, sum} slots, a multiplicative hash, the
 * sum kept in the slot, grown by doubling at half load. Returns the number of groups and sets
 * *checksum to the sum over groups of key * sum (wrapping), or BS_ENOMEM. keys and vals must
 * hold n values. */
int64_t bs_bench_hash_aggregate(const int64_t *keys, const int64_t *vals, size_t n, uint64_t *checksum);

#ifdef __cplusplus
}
#endif
#endif
