/* Memory: the allocator's hold on freed memory, column buffers, large blocks for hash
 * tables, and the pools of freed big mappings that both come from. */
#ifndef BS_MEMORY_H
#define BS_MEMORY_H

#include <stddef.h>
#include <stdint.h>

#include "bs_error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Returns freed memory to the system, so the resident set follows what is live rather than
 * what was ever used: every mapping held in the process's pool (bs_pool_empty on
 * bs_pool_process()), the calling thread's cache of freed buffers, then the free heap memory
 * of every malloc arena (glibc's malloc_trim; nothing where the C library has no such call).
 * Returns the bytes the pool gave back (>= 0; the heap's part and the cache's are not
 * counted: malloc_trim does not tell). */
int64_t bs_release_free_memory(void);

/* Turns off glibc's fastbins (mallopt M_MXFAST 0): small frees go to the per-thread cache,
 * then are merged at once, instead of piling up for a later allocation to merge all of them
 * in one long walk. Returns BS_OK, or BS_EUNSUPPORTED where the C library has no such
 * setting or refuses it. */
bs_error bs_disable_fastbins(void);

/* A zeroed, 64-byte aligned block of `bytes` from the process's pool, or NULL: see
 * bs_pool_big_alloc. Free it with bs_big_free and the same size (NULL is a no-op). */
void *bs_big_alloc(size_t bytes);
void bs_big_free(void *p, size_t bytes);
/* Moves a block of old_bytes to one of new_bytes, keeping the common prefix (the rest is
 * zero). Old and new are both held during the copy. p NULL allocates, as realloc does.
 * NULL on failure, p then stays valid. */
void *bs_big_resize(void *p, size_t old_bytes, size_t new_bytes);
/* The memory a block of `bytes` really holds, or BS_EINVAL when that is not representable
 * (bytes near SIZE_MAX). */
int64_t bs_big_footprint(size_t bytes);

/* An uninitialised, 64-byte aligned buffer of `bytes` (a column's values) from the
 * process's pool, or NULL: see bs_pool_buffer_alloc. Free it with bs_buffer_free and the
 * same size (NULL is a no-op). */
void *bs_buffer_alloc(size_t bytes);
void bs_buffer_free(void *p, size_t bytes);

/* A buffer like bs_buffer_alloc's for data that outlives the task making it (an output held
 * in memory), uninitialised and 64-byte aligned, or NULL when out of memory: from 8 KiB to
 * 256 KiB carved from chunks kept apart from the heap's short-lived buffers, else a
 * bs_buffer_alloc buffer. Any thread may free it, with bs_lasting_free and the same size. */
void *bs_lasting_alloc(size_t bytes);
void bs_lasting_free(void *p, size_t bytes);

/* A pool of freed big mappings: buffers from 4 MiB up are mappings of their own, and a
 * freed one waits in a pool, still mapped and faulted in, for the next allocation of about
 * its size, while the pool holds less than its cap.
 *
 * Every function below takes a pool that must not be NULL: NULL is BS_EINVAL (or a NULL
 * result), never a default pool. bs_pool_process() is the process's own pool, which
 * bs_buffer_alloc and bs_big_alloc use. */
typedef struct bs_pool bs_pool;

/* The process's pool: never NULL, the same for every call, never destroyed. Its cap is
 * 512 MiB until lowered. */
bs_pool *bs_pool_process(void);

/* A pool of its own (for tests), keeping at most `cap` bytes; NULL if out of memory. */
bs_pool *bs_pool_new(size_t cap);
/* Empties and frees a pool made by bs_pool_new. NULL is a no-op (BS_OK), as for free; the
 * process's pool is BS_EINVAL and stays as it is. */
bs_error bs_pool_destroy(bs_pool *pool);

/* An uninitialised, 64-byte aligned buffer of `bytes`, or NULL (out of memory, or pool
 * NULL). Below 4 MiB it comes from malloc, or from 2 KiB up from the calling thread's cache
 * of freed buffers of exactly its size (rounded up to 64 bytes); from 4 MiB up it is a
 * mapping in whole huge pages, taken from the pool when one is there (already faulted in),
 * else mapped fresh. */
void *bs_pool_buffer_alloc(bs_pool *pool, size_t bytes);
/* Frees a buffer of bs_pool_buffer_alloc or bs_pool_big_alloc on the same pool, with the
 * same size: a big one goes back to the pool while the pool holds less than its cap, else
 * to the system; one from 2 KiB to 4 MiB to the calling thread's cache (at most 32 buffers
 * and 8 MiB or a lowered cap, the oldest going back to malloc first; freed when the thread
 * exits). p NULL is a no-op (BS_OK); pool NULL is BS_EINVAL, and p is not freed. */
bs_error bs_pool_buffer_free(bs_pool *pool, void *p, size_t bytes);
/* A zeroed, 64-byte aligned block of `bytes`, or NULL (out of memory, or pool NULL). From
 * 4 MiB up it is a mapping of its own in whole huge pages, marked for transparent huge
 * pages: one from the pool, else a fresh one, aligned to 2 MiB and faulted in at once, so
 * random access into it costs no page fault and few TLB misses. Free it with
 * bs_pool_buffer_free. */
void *bs_pool_big_alloc(bs_pool *pool, size_t bytes);

/* Lowers the pool's cap to `bytes` if that is lower (under its lock, so the lowest of
 * concurrent callers wins), giving back what it holds if that is over the new cap. Returns
 * BS_OK, or BS_EINVAL for a NULL pool. */
bs_error bs_pool_lower_cap(bs_pool *pool, size_t bytes);
/* Gives every mapping in the pool back to the system, and returns their bytes (>= 0), or
 * BS_EINVAL for a NULL pool. bs_release_free_memory does it for the process's pool, as does
 * a fresh mapping the system refuses at first. */
int64_t bs_pool_empty(bs_pool *pool);

/* Bytes of freed buffers the calling thread's cache holds now. */
size_t bs_thread_cached_bytes(void);
/* Lowers the bytes each thread's cache may hold (8 MiB at first) to `bytes` if that is
 * lower: the lowest any caller asked for holds. A cache over it shrinks at its next free. */
void bs_thread_cache_lower_cap(size_t bytes);

typedef struct {
  size_t bytes;    /* held in the pool now */
  size_t cap;      /* the most it holds */
  uint64_t reused; /* big allocations served from the pool */
  uint64_t mapped; /* big allocations that needed a fresh mapping */
} bs_pool_stats;
/* Fills stats with the pool's figures at one instant. Returns BS_OK, or BS_EINVAL when pool
 * or stats is NULL. */
bs_error bs_pool_read_stats(bs_pool *pool, bs_pool_stats *stats);

#ifdef __cplusplus
}
#endif
#endif
