/* The allocator's hold on freed memory. */
#ifndef BS_MEMORY_H
#define BS_MEMORY_H

#ifdef __cplusplus
extern "C" {
#endif

/* Returns freed heap memory of every malloc arena to the system (glibc's malloc_trim), so
 * the resident set follows what is live rather than what was ever used. Returns 1 if memory
 * was released; 0 otherwise, and always 0 where the C library has no such call. */
int bs_release_free_memory(void);

#ifdef __cplusplus
}
#endif
#endif
