/* Memory: the allocator's hold on freed memory, and large blocks for hash tables. */
#ifndef BS_MEMORY_H
#define BS_MEMORY_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Returns freed heap memory of every malloc arena to the system (glibc's malloc_trim), so
 * the resident set follows what is live rather than what was ever used. Returns 1 if memory
 * was released; 0 otherwise, and always 0 where the C library has no such call. */
int bs_release_free_memory(void);

/* Turns off glibc's fastbins (mallopt M_MXFAST 0): small frees go to the per-thread cache,
 * then are merged at once, instead of piling up for a later allocation to merge all of them
 * in one long walk. Returns 1 if the allocator took the setting (0 elsewhere). */
int bs_disable_fastbins(void);

/* A zeroed, 64-byte aligned block of `bytes`, or NULL. From 4 MiB up the block is a mapping
 * of its own: aligned to 2 MiB, marked for transparent huge pages and faulted in at once, so
 * random access into it costs no page fault and few TLB misses, and freeing it returns it to
 * the system at once. Free it with bs_big_free and the same size. */
void *bs_big_alloc(size_t bytes);
void bs_big_free(void *p, size_t bytes);
/* Moves a block of old_bytes to one of new_bytes, keeping the common prefix (the rest is
 * zero). Old and new are both held during the copy. NULL on failure, p then stays valid. */
void *bs_big_resize(void *p, size_t old_bytes, size_t new_bytes);
/* The memory a block of `bytes` really holds. */
size_t bs_big_footprint(size_t bytes);

#ifdef __cplusplus
}
#endif
#endif
