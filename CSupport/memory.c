#define _GNU_SOURCE
#include "bs_memory.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>

static void cache_drop(void *unused);

#if defined(__GLIBC__)
#include <malloc.h>
int64_t bs_release_free_memory(void) {
  int64_t bytes = bs_pool_empty(bs_pool_process());
  cache_drop(NULL);
  malloc_trim(0);
  return bytes;
}
bs_error bs_disable_fastbins(void) { return mallopt(M_MXFAST, 0) == 1 ? BS_OK : BS_EUNSUPPORTED; }
#else
int64_t bs_release_free_memory(void) {
  cache_drop(NULL);
  return bs_pool_empty(bs_pool_process());
}
bs_error bs_disable_fastbins(void) { return BS_EUNSUPPORTED; }
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
 * on a virtual machine whose host takes freed memory back, often a fault in the host too,
 * which makes page faults a large share of a shuffle's CPU time. A task's big buffers (a
 * combiner's table, a column of a few million rows) are much the same size as the last
 * task's, so freed ones wait here, still mapped, up to `cap` bytes in all, and at most
 * POOL_SLOTS of them. The process has one (`process_pool`); tests make their own. */
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
static bs_pool process_pool = {PTHREAD_MUTEX_INITIALIZER, {0}, {0}, 0, 0, (size_t)512 << 20, 0, 0};

bs_pool *bs_pool_process(void) { return &process_pool; }

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

bs_error bs_pool_destroy(bs_pool *pool) {
  if (pool == NULL) return BS_OK;
  if (pool == &process_pool) return BS_EINVAL;
  bs_pool_empty(pool);
  pthread_mutex_destroy(&pool->lock);
  free(pool);
  return BS_OK;
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
 * faults; a moved one may not start on a huge-page boundary). Without the growing, a pool
 * that holds only smaller mappings than a task asks for would map fresh memory every time
 * while it stays full. */
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

bs_error bs_pool_lower_cap(bs_pool *pool, size_t bytes) {
  if (pool == NULL) return BS_EINVAL;
  pthread_mutex_lock(&pool->lock);
  int over = 0;
  if (bytes < pool->cap) {
    pool->cap = bytes;
    over = pool->bytes > bytes;
  }
  pthread_mutex_unlock(&pool->lock);
  if (over) bs_pool_empty(pool);
  return BS_OK;
}

int64_t bs_pool_empty(bs_pool *pool) {
  if (pool == NULL) return BS_EINVAL;
  void *p[POOL_SLOTS];
  size_t len[POOL_SLOTS];
  pthread_mutex_lock(&pool->lock);
  size_t n = pool->count, bytes = pool->bytes;
  memcpy(p, pool->p, n * sizeof p[0]);
  memcpy(len, pool->len, n * sizeof len[0]);
  pool->count = 0;
  pool->bytes = 0;
  pthread_mutex_unlock(&pool->lock);
  for (size_t i = 0; i < n; i++) munmap(p[i], len[i]);
  return (int64_t)bytes;
}

bs_error bs_pool_read_stats(bs_pool *pool, bs_pool_stats *stats) {
  if (pool == NULL || stats == NULL) return BS_EINVAL;
  pthread_mutex_lock(&pool->lock);
  *stats = (bs_pool_stats){pool->bytes, pool->cap, pool->reused, pool->mapped};
  pthread_mutex_unlock(&pool->lock);
  return BS_OK;
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

int64_t bs_big_footprint(size_t bytes) {
  size_t len = bytes < BIG_MIN ? round_up(bytes ? bytes : 1, ALIGN) : round_up(bytes, HUGE_PAGE);
  return len == 0 || len > (size_t)INT64_MAX ? BS_EINVAL : (int64_t)len;
}

/* Each thread's freed mid-size buffers (CACHED_MIN up to BIG_MIN), reused by exact size. A
 * task makes the same working buffers as the last one (a combiner's table, a partition
 * count), and malloc would split the holes they leave for the small objects that outlive the
 * task (its output's bookkeeping): the next task's buffers then come from fresh heap, and
 * thousands of small tasks grew the heap by their working set each. Kept here, they are
 * never split. A thread keeps at most CACHED_SLOTS of them and cached_cap bytes in all
 * (CACHED_BYTES until lowered); they are freed when it exits. */
#define CACHED_MIN ((size_t)2 << 10)
#define CACHED_SLOTS 32
#define CACHED_BYTES ((size_t)8 << 20)
static _Atomic size_t cached_cap = CACHED_BYTES; /* each thread's bytes; lowered, never raised */
struct buffer_cache {
  size_t count, bytes;
  size_t len[CACHED_SLOTS];
  void *p[CACHED_SLOTS];
};
static _Thread_local struct buffer_cache thread_cache;
static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void cache_drop(void *unused) {
  (void)unused;
  struct buffer_cache *c = &thread_cache;
  for (size_t i = 0; i < c->count; i++) free(c->p[i]);
  c->count = 0;
  c->bytes = 0;
}
static void cache_key_make(void) { pthread_key_create(&cache_key, cache_drop); }

/* A cached buffer of exactly `len` bytes, or NULL. */
static void *cache_take(size_t len) {
  struct buffer_cache *c = &thread_cache;
  for (size_t i = c->count; i-- > 0;) {
    if (c->len[i] != len) continue;
    void *p = c->p[i];
    c->count--;
    c->bytes -= len;
    c->p[i] = c->p[c->count];
    c->len[i] = c->len[c->count];
    return p;
  }
  return NULL;
}

/* Keeps `p` (of `len` bytes) for this thread if there is room; else frees it. */
static void cache_put(void *p, size_t len) {
  struct buffer_cache *c = &thread_cache;
  if (len < CACHED_MIN) {
    free(p);
    return;
  }
  if (c->count == 0) {
    pthread_once(&cache_once, cache_key_make);
    pthread_setspecific(cache_key, c); /* so that cache_drop runs when the thread exits */
  }
  size_t cap = atomic_load_explicit(&cached_cap, memory_order_relaxed);
  if (len > cap) {
    free(p);
    return;
  }
  /* Make room by dropping the oldest. */
  while (c->count > 0 && (c->count == CACHED_SLOTS || c->bytes + len > cap)) {
    free(c->p[0]);
    c->bytes -= c->len[0];
    c->count--;
    memmove(c->p, c->p + 1, c->count * sizeof c->p[0]);
    memmove(c->len, c->len + 1, c->count * sizeof c->len[0]);
  }
  c->p[c->count] = p;
  c->len[c->count] = len;
  c->count++;
  c->bytes += len;
}

size_t bs_thread_cached_bytes(void) { return thread_cache.bytes; }

void bs_thread_cache_lower_cap(size_t bytes) {
  size_t cap = atomic_load(&cached_cap);
  while (bytes < cap && !atomic_compare_exchange_weak(&cached_cap, &cap, bytes)) {
  }
}

/* A buffer of `len` bytes (a multiple of ALIGN, below BIG_MIN) from malloc or the cache. */
static void *heap_alloc(size_t len) {
  void *p = len >= CACHED_MIN ? cache_take(len) : NULL;
  return p != NULL ? p : aligned_alloc(ALIGN, len);
}

void *bs_pool_buffer_alloc(bs_pool *pool, size_t bytes) {
  if (pool == NULL) return NULL;
  if (bytes < BIG_MIN) return heap_alloc(round_up(bytes ? bytes : 1, ALIGN));
  size_t len = round_up(bytes, HUGE_PAGE);
  if (len == 0) return NULL;
  void *p = pool_take(pool, len);
  return p != NULL ? p : map_fresh(pool, len);
}

bs_error bs_pool_buffer_free(bs_pool *pool, void *p, size_t bytes) {
  if (pool == NULL) return BS_EINVAL;
  if (p == NULL) return BS_OK;
  if (bytes < BIG_MIN)
    cache_put(p, round_up(bytes ? bytes : 1, ALIGN));
  else
    pool_put(pool, p, round_up(bytes, HUGE_PAGE));
  return BS_OK;
}

void *bs_pool_big_alloc(bs_pool *pool, size_t bytes) {
  if (pool == NULL) return NULL;
  if (bytes < BIG_MIN) {
    size_t len = round_up(bytes ? bytes : 1, ALIGN);
    void *p = heap_alloc(len);
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

void *bs_buffer_alloc(size_t bytes) { return bs_pool_buffer_alloc(&process_pool, bytes); }
void bs_buffer_free(void *p, size_t bytes) { bs_pool_buffer_free(&process_pool, p, bytes); }
void *bs_big_alloc(size_t bytes) { return bs_pool_big_alloc(&process_pool, bytes); }
void bs_big_free(void *p, size_t bytes) { bs_pool_buffer_free(&process_pool, p, bytes); }

void *bs_big_resize(void *p, size_t old_bytes, size_t new_bytes) {
  if (p == NULL) return bs_big_alloc(new_bytes);
  int64_t old_len = bs_big_footprint(old_bytes), new_len = bs_big_footprint(new_bytes);
  if (new_len < 0) return NULL;
  if (old_len == new_len && (old_bytes < BIG_MIN) == (new_bytes < BIG_MIN)) return p;
  void *q = bs_big_alloc(new_bytes);
  if (q == NULL) return NULL;
  memcpy(q, p, old_bytes < new_bytes ? old_bytes : new_bytes);
  bs_big_free(p, old_bytes);
  return q;
}

/* Long-lived buffers (a task's output held in memory until its readers are done). Left in
 * the heap among a task's short-lived buffers, those of a few KiB to a few hundred KiB pin the
 * holes the short-lived ones leave: a many-way shuffle's thousands of held outputs made the
 * process's RSS about twice their size. So they are carved one after another from chunks of
 * their own (big buffers from the pool), one chunk at a time for the whole process (a chunk
 * per thread left too much of each unused), and a chunk goes back to the pool once every
 * buffer carved from it is freed. Each buffer starts with the address of its chunk; a chunk
 * counts its live buffers, and one more while it is the one being carved. */
#define LASTING_MIN ((size_t)8 << 10)
#define LASTING_MAX ((size_t)256 << 10)
#define CHUNK ((size_t)4 << 20)

struct lasting_chunk {
  _Atomic size_t live;
};
#define CHUNK_HEAD ALIGN /* the chunk's count, in a cache line of its own */
#define BUFFER_HEAD ALIGN /* each buffer's chunk address, keeping the buffer aligned */

static pthread_mutex_t carving_lock = PTHREAD_MUTEX_INITIALIZER;
static struct lasting_chunk *carving;
static size_t carved;

static void chunk_release(struct lasting_chunk *chunk) {
  if (atomic_fetch_sub(&chunk->live, 1) == 1) bs_big_free(chunk, CHUNK);
}

void *bs_lasting_alloc(size_t bytes) {
  if (bytes < LASTING_MIN || bytes >= LASTING_MAX) return bs_buffer_alloc(bytes);
  size_t len = BUFFER_HEAD + round_up(bytes, ALIGN);
  struct lasting_chunk *full = NULL;
  pthread_mutex_lock(&carving_lock);
  if (carving == NULL || carved + len > CHUNK) {
    struct lasting_chunk *chunk = (struct lasting_chunk *)bs_big_alloc(CHUNK);
    if (chunk == NULL) {
      pthread_mutex_unlock(&carving_lock);
      return NULL;
    }
    atomic_init(&chunk->live, 1);
    full = carving;
    carving = chunk;
    carved = CHUNK_HEAD;
  }
  uint8_t *at = (uint8_t *)carving + carved;
  carved += len;
  atomic_fetch_add(&carving->live, 1);
  *(struct lasting_chunk **)at = carving;
  pthread_mutex_unlock(&carving_lock);
  if (full != NULL) chunk_release(full);
  return at + BUFFER_HEAD;
}

void bs_lasting_free(void *p, size_t bytes) {
  if (p == NULL) return;
  if (bytes < LASTING_MIN || bytes >= LASTING_MAX) return bs_buffer_free(p, bytes);
  chunk_release(*(struct lasting_chunk **)((uint8_t *)p - BUFFER_HEAD));
}
