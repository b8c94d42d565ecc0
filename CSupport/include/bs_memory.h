/* Memory: the allocator's hold on freed memory, and large blocks for hash tables. */
#ifndef BS_MEMORY_H
#define BS_MEMORY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Returns freed heap memory of every malloc arena, and the pool of freed big buffers, to the
 * system (glibc's malloc_trim), so the resident set follows what is live rather than what
 * was ever used. Returns 1 if memory
 * was released; 0 otherwise, and always 0 where the C library has no such call. */
int bs_release_free_memory(void);

/* Turns off glibc's fastbins (mallopt M_MXFAST 0): small frees go to the per-thread cache,
 * then are merged at once, instead of piling up for a later allocation to merge all of them
 * in one long walk. Returns 1 if the allocator took the setting (0 elsewhere). */
int bs_disable_fastbins(void);

/* A zeroed, 64-byte aligned block of `bytes`, or NULL. From 4 MiB up the block is a mapping
 * of its own in whole huge pages, marked for transparent huge pages: one freed before and
 * kept in the pool (see bs_buffer_alloc), else a fresh one, aligned to 2 MiB and faulted in
 * at once, so random access into it costs no page fault and few TLB misses. Free it with
 * bs_big_free and the same size. */
void *bs_big_alloc(size_t bytes);
void bs_big_free(void *p, size_t bytes);
/* Moves a block of old_bytes to one of new_bytes, keeping the common prefix (the rest is
 * zero). Old and new are both held during the copy. NULL on failure, p then stays valid. */
void *bs_big_resize(void *p, size_t old_bytes, size_t new_bytes);
/* The memory a block of `bytes` really holds. */
size_t bs_big_footprint(size_t bytes);

/* An uninitialised, 64-byte aligned buffer of `bytes` (a column's values), or NULL. Below
 * 4 MiB it comes from malloc; from 4 MiB up it is a mapping in whole huge pages, taken from
 * the pool of freed ones when one is there, so it is already faulted in. Free it with
 * bs_buffer_free and the same size: a big one goes back to the pool while the pool holds
 * less than its cap, else to the system. */
void *bs_buffer_alloc(size_t bytes);
void bs_buffer_free(void *p, size_t bytes);

/* A pool of freed big mappings. NULL everywhere below means the process's own pool, which
 * bs_buffer_alloc and bs_big_alloc use; its cap is 512 MiB until lowered. */
typedef struct bs_pool bs_pool;
/* A pool of its own (for tests), keeping at most `cap` bytes; NULL if out of memory. */
bs_pool *bs_pool_new(size_t cap);
/* Empties and frees a pool made by bs_pool_new (the process's pool is left alone). */
void bs_pool_destroy(bs_pool *pool);
/* bs_buffer_alloc, bs_buffer_free and bs_big_alloc on `pool` (free a big block with
 * bs_pool_buffer_free too). */
void *bs_pool_buffer_alloc(bs_pool *pool, size_t bytes);
void bs_pool_buffer_free(bs_pool *pool, void *p, size_t bytes);
void *bs_pool_big_alloc(bs_pool *pool, size_t bytes);
/* Lowers the pool's cap to `bytes` if that is lower (under its lock, so the lowest of
 * concurrent callers wins), giving back what it holds if that is over the new cap. */
void bs_pool_lower_cap(bs_pool *pool, size_t bytes);
/* Gives every mapping in the pool back to the system. bs_release_free_memory does it for the
 * process's pool, as does a fresh mapping the system refuses at first. */
void bs_pool_empty(bs_pool *pool);
typedef struct {
  size_t bytes;    /* held in the pool now */
  size_t cap;      /* the most it holds */
  uint64_t reused; /* big allocations served from the pool */
  uint64_t mapped; /* big allocations that needed a fresh mapping */
} bs_pool_stats;
bs_pool_stats bs_pool_read_stats(bs_pool *pool);

#ifdef __cplusplus
}
#endif
#endif
