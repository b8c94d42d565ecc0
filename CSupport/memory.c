#define _GNU_SOURCE
#include "bs_memory.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#if defined(__GLIBC__)
#include <malloc.h>
int bs_release_free_memory(void) { return malloc_trim(0); }
int bs_disable_fastbins(void) { return mallopt(M_MXFAST, 0); }
#else
int bs_release_free_memory(void) { return 0; }
int bs_disable_fastbins(void) { return 0; }
#endif

/* Blocks from BIG_MIN bytes up are mappings of their own, in whole huge pages. */
#define BIG_MIN ((size_t)4 << 20)
#define HUGE_PAGE ((size_t)2 << 20)
#define ALIGN ((size_t)64)
#if defined(__linux__) && !defined(MADV_POPULATE_WRITE)
#define MADV_POPULATE_WRITE 23 /* Linux 5.14; older kernels refuse it, harmlessly */
#endif

static size_t round_up(size_t n, size_t to) { return n > SIZE_MAX - (to - 1) ? 0 : (n + to - 1) & ~(to - 1); }

size_t bs_big_footprint(size_t bytes) {
  if (bytes < BIG_MIN) return round_up(bytes ? bytes : 1, ALIGN);
  size_t len = round_up(bytes, HUGE_PAGE);
  return len ? len : SIZE_MAX;
}

void *bs_big_alloc(size_t bytes) {
  if (bytes < BIG_MIN) {
    size_t len = bs_big_footprint(bytes);
    void *p = aligned_alloc(ALIGN, len);
    if (p != NULL) memset(p, 0, len);
    return p;
  }
  size_t len = round_up(bytes, HUGE_PAGE);
  if (len == 0 || len > SIZE_MAX - HUGE_PAGE) return NULL;
  /* Over-allocate by one huge page and trim, so the block starts on a huge-page boundary. */
  size_t span = len + HUGE_PAGE;
  uint8_t *p = (uint8_t *)mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == (uint8_t *)MAP_FAILED) return NULL;
  uint8_t *a = (uint8_t *)(((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
  if (a > p) munmap(p, (size_t)(a - p));
  size_t tail = (size_t)((p + span) - (a + len));
  if (tail) munmap(a + len, tail);
#ifdef MADV_HUGEPAGE
  madvise(a, len, MADV_HUGEPAGE);
#endif
#ifdef MADV_POPULATE_WRITE
  /* Fault every page in now, in one call: a table probed at random would otherwise take a
   * read fault (mapping the zero page) and then a write fault with a TLB flush on each page.
   * Failure (an old kernel, or no memory right now) leaves the pages to fault on use. */
  madvise(a, len, MADV_POPULATE_WRITE);
#endif
  return a;
}

void bs_big_free(void *p, size_t bytes) {
  if (p == NULL) return;
  if (bytes < BIG_MIN)
    free(p);
  else
    munmap(p, round_up(bytes, HUGE_PAGE));
}

void *bs_big_resize(void *p, size_t old_bytes, size_t new_bytes) {
  if (p == NULL) return bs_big_alloc(new_bytes);
  if (bs_big_footprint(old_bytes) == bs_big_footprint(new_bytes) && (old_bytes < BIG_MIN) == (new_bytes < BIG_MIN))
    return p;
  void *q = bs_big_alloc(new_bytes);
  if (q == NULL) return NULL;
  memcpy(q, p, old_bytes < new_bytes ? old_bytes : new_bytes);
  bs_big_free(p, old_bytes);
  return q;
}
