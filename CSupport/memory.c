#define _GNU_SOURCE
#include "bs_memory.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/mman.h>

#if defined(__GLIBC__)
#include <malloc.h>
int bs_release_free_memory(void) {
  bs_pool_empty(NULL);
  return malloc_trim(0);
}
int bs_disable_fastbins(void) { return mallopt(M_MXFAST, 0); }
#else
int bs_release_free_memory(void) {
  bs_pool_empty(NULL);
  return 0;
}
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

/* The pool of freed mappings. A fresh page costs a fault and the kernel's zeroing of it, and
 * on a virtual machine whose host takes freed memory back, often a fault in the host too:
 * page faults were a quarter to a third of W3's CPU time, in-process and on machines alike
 * (perf). A task's big buffers (a combiner's table, a column of a few million rows) are much
 * the same size as the last task's, so freed ones wait here, still mapped, up to `cap` bytes
 * in all, and at most POOL_SLOTS of them. The process has one (`global`); tests make their
 * own. */
#define POOL_SLOTS 64
struct bs_pool {
  pthread_mutex_t lock;
  void *p[POOL_SLOTS];
  size_t len[POOL_SLOTS];
  size_t count;
  size_t bytes;
  size_t cap;
  uint64_t reused, mapped;
};
static bs_pool global = {PTHREAD_MUTEX_INITIALIZER, {0}, {0}, 0, 0, (size_t)512 << 20, 0, 0};

bs_pool *bs_pool_new(size_t cap) {
  bs_pool *pool = (bs_pool *)calloc(1, sizeof *pool);
  if (pool == NULL) return NULL;
  if (pthread_mutex_init(&pool->lock, NULL) != 0) {
    free(pool);
    return NULL;
  }
  pool->cap = cap;
  return pool;
}

void bs_pool_destroy(bs_pool *pool) {
  if (pool == NULL || pool == &global) return;
  bs_pool_empty(pool);
  pthread_mutex_destroy(&pool->lock);
  free(pool);
}

/* Keeps a freed mapping if the pool has room, else gives it back. */
static void pool_put(bs_pool *pool, void *p, size_t len) {
  pthread_mutex_lock(&pool->lock);
  if (pool->count < POOL_SLOTS && pool->bytes + len <= pool->cap) {
    pool->p[pool->count] = p;
    pool->len[pool->count] = len;
    pool->count++;
    pool->bytes += len;
    p = NULL;
  }
  pthread_mutex_unlock(&pool->lock);
  if (p != NULL) munmap(p, len);
}

/* A mapping of exactly `len` bytes (a multiple of HUGE_PAGE) from the pool, or NULL: the
 * smallest one that is big enough, the rest of it put back as a mapping of its own; else the
 * biggest smaller one, grown by mremap (its pages come along, faulted in, and only the growth
 * faults; a moved one may no longer start on a huge-page boundary). Without the growing, a
 * pool that holds only smaller mappings than a task asks for maps fresh memory every time
 * while it stays full: W3 on 2 machines measured 1.16-1.65x in-process (median 1.38x, 6
 * invocations) without it, 1.16-1.35x (median 1.24x, 4) with it. */
static void *pool_take(bs_pool *pool, size_t len) {
  pthread_mutex_lock(&pool->lock);
  size_t best = SIZE_MAX, below = SIZE_MAX;
  for (size_t i = 0; i < pool->count; i++) {
    if (pool->len[i] >= len) {
      if (best == SIZE_MAX || pool->len[i] < pool->len[best]) best = i;
    } else if (below == SIZE_MAX || pool->len[i] > pool->len[below]) {
      below = i;
    }
  }
#ifndef __linux__
  below = SIZE_MAX; /* no mremap */
#endif
  size_t pick = best != SIZE_MAX ? best : below;
  if (pick == SIZE_MAX) {
    pthread_mutex_unlock(&pool->lock);
    return NULL;
  }
  void *p = pool->p[pick];
  size_t have = pool->len[pick];
  pool->bytes -= have;
  pool->count--;
  pool->p[pick] = pool->p[pool->count];
  pool->len[pick] = pool->len[pool->count];
  pthread_mutex_unlock(&pool->lock);
  if (have < len) {
#ifdef __linux__
    void *q = mremap(p, have, len, MREMAP_MAYMOVE);
    if (q == MAP_FAILED) {
      pool_put(pool, p, have);
      return NULL;
    }
#ifdef MADV_HUGEPAGE
    madvise(q, len, MADV_HUGEPAGE);
#endif
    p = q;
#endif
  } else if (have > len) {
    pool_put(pool, (uint8_t *)p + len, have - len);
  }
  pthread_mutex_lock(&pool->lock);
  pool->reused++;
  pthread_mutex_unlock(&pool->lock);
  return p;
}

void bs_pool_lower_cap(bs_pool *pool, size_t bytes) {
  if (pool == NULL) pool = &global;
  pthread_mutex_lock(&pool->lock);
  int over = 0;
  if (bytes < pool->cap) {
    pool->cap = bytes;
    over = pool->bytes > bytes;
  }
  pthread_mutex_unlock(&pool->lock);
  if (over) bs_pool_empty(pool);
}

void bs_pool_empty(bs_pool *pool) {
  if (pool == NULL) pool = &global;
  void *p[POOL_SLOTS];
  size_t len[POOL_SLOTS];
  pthread_mutex_lock(&pool->lock);
  size_t n = pool->count;
  memcpy(p, pool->p, n * sizeof p[0]);
  memcpy(len, pool->len, n * sizeof len[0]);
  pool->count = 0;
  pool->bytes = 0;
  pthread_mutex_unlock(&pool->lock);
  for (size_t i = 0; i < n; i++) munmap(p[i], len[i]);
}

bs_pool_stats bs_pool_read_stats(bs_pool *pool) {
  if (pool == NULL) pool = &global;
  pthread_mutex_lock(&pool->lock);
  bs_pool_stats s = {pool->bytes, pool->cap, pool->reused, pool->mapped};
  pthread_mutex_unlock(&pool->lock);
  return s;
}

/* A fresh mapping of `len` bytes (a multiple of HUGE_PAGE), aligned to a huge page. When the
 * system refuses, the pool's idle mappings go back to it and the mapping is tried again. */
static void *map_fresh(bs_pool *pool, size_t len) {
  if (len == 0 || len > SIZE_MAX - HUGE_PAGE) return NULL;
  /* Over-allocate by one huge page and trim, so the block starts on a huge-page boundary. */
  size_t span = len + HUGE_PAGE;
  uint8_t *p = (uint8_t *)mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == (uint8_t *)MAP_FAILED) {
    bs_pool_empty(pool);
    p = (uint8_t *)mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == (uint8_t *)MAP_FAILED) return NULL;
  }
  uint8_t *a = (uint8_t *)(((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
  if (a > p) munmap(p, (size_t)(a - p));
  size_t tail = (size_t)((p + span) - (a + len));
  if (tail) munmap(a + len, tail);
#ifdef MADV_HUGEPAGE
  madvise(a, len, MADV_HUGEPAGE);
#endif
  pthread_mutex_lock(&pool->lock);
  pool->mapped++;
  pthread_mutex_unlock(&pool->lock);
  return a;
}

size_t bs_big_footprint(size_t bytes) {
  if (bytes < BIG_MIN) return round_up(bytes ? bytes : 1, ALIGN);
  size_t len = round_up(bytes, HUGE_PAGE);
  return len ? len : SIZE_MAX;
}

void *bs_pool_buffer_alloc(bs_pool *pool, size_t bytes) {
  if (pool == NULL) pool = &global;
  if (bytes < BIG_MIN) return aligned_alloc(ALIGN, round_up(bytes ? bytes : 1, ALIGN));
  size_t len = round_up(bytes, HUGE_PAGE);
  if (len == 0) return NULL;
  void *p = pool_take(pool, len);
  return p != NULL ? p : map_fresh(pool, len);
}

void bs_pool_buffer_free(bs_pool *pool, void *p, size_t bytes) {
  if (pool == NULL) pool = &global;
  if (p == NULL) return;
  if (bytes < BIG_MIN)
    free(p);
  else
    pool_put(pool, p, round_up(bytes, HUGE_PAGE));
}

void *bs_pool_big_alloc(bs_pool *pool, size_t bytes) {
  if (pool == NULL) pool = &global;
  if (bytes < BIG_MIN) {
    size_t len = bs_big_footprint(bytes);
    void *p = aligned_alloc(ALIGN, len);
    if (p != NULL) memset(p, 0, len);
    return p;
  }
  size_t len = round_up(bytes, HUGE_PAGE);
  if (len == 0) return NULL;
  void *p = pool_take(pool, len);
  if (p != NULL) {
    /* Faulted in already: zeroing here runs at memset's speed. */
    memset(p, 0, len);
    return p;
  }
  p = map_fresh(pool, len);
  if (p == NULL) return NULL;
#ifdef MADV_POPULATE_WRITE
  /* Fault every page in now, in one call: a table probed at random would otherwise take a
   * read fault (mapping the zero page) and then a write fault with a TLB flush on each page.
   * Failure (an old kernel, or no memory right now) leaves the pages to fault on use. */
  madvise(p, len, MADV_POPULATE_WRITE);
#endif
  return p;
}

void *bs_buffer_alloc(size_t bytes) { return bs_pool_buffer_alloc(&global, bytes); }
void bs_buffer_free(void *p, size_t bytes) { bs_pool_buffer_free(&global, p, bytes); }
void *bs_big_alloc(size_t bytes) { return bs_pool_big_alloc(&global, bytes); }
void bs_big_free(void *p, size_t bytes) { bs_pool_buffer_free(&global, p, bytes); }

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
