/* The combiner: an open-addressing hash table mapping keys to dense group ids, with
 * built-in aggregates. See bs_combiner.h. */
#include "bs_combiner.h"
#include "bs_error.h"
#include "bs_hash.h"
#include "bs_memory.h"
#include "bs_radix.h"
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One table slot. k is the key itself in u64 mode and the key's tag in bytes mode (see
 * key_tag); gid_plus1 == 0 marks an empty slot.
 *
 * The table is linear probing over buckets of four slots (one 64-byte cache line): a key's
 * probe sequence starts at the bucket holding slot h & mask and visits whole buckets in
 * turn. A bucket's four slots are compared at once without branches, and slots fill in
 * order within a bucket (there are no deletions), so a bucket whose last slot is empty ends
 * the probe. At load <= 1/2 nearly every lookup reads one line, and the loop has one
 * predictable branch instead of a mispredicted probe exit on a third of the rows. */
typedef struct {
  uint64_t k;
  uint32_t gid_plus1;
  uint32_t hlo; /* low 32 bits of the key's hash: rehashing reads no per-group array */
} comb_slot;

/* The table grows (doubles) when it would hold more than LOAD_NUM / LOAD_DEN groups per
 * slot. */
#ifndef LOAD_NUM
#define LOAD_NUM 1
#define LOAD_DEN 2
#endif
#define MIN_SLOTS ((size_t)16)
#define MIN_GROUPS ((size_t)8)
#define MIN_KEY_BYTES ((size_t)256)
/* Rows ahead whose slot (or aggregate) is prefetched: far enough ahead for the line to
 * arrive before its row, near enough that it is still in cache then. */
#ifndef PREFETCH_AHEAD
#define PREFETCH_AHEAD 32
#endif
/* Fixed mode: rows ahead whose candidate key is prefetched, once their slot has arrived. */
#ifndef KEY_AHEAD
#define KEY_AHEAD 12
#endif
/* gid_plus1 is a u32, and 0 means empty. */
#define MAX_GROUPS ((size_t)UINT32_MAX - 1)

struct bs_combiner {
  bs_comb_key_kind kind;
  comb_slot *slots; /* cap + BUCKET slots, from bs_big_alloc */
  size_t cap;     /* slots, a power of two */
  size_t grow_at; /* the table grows before groups exceeds this */
  size_t groups;
  size_t tgroups; /* groups in the slot table: all but those of the direct map */
  size_t gcap; /* capacity of every per-group array */
  uint64_t *hashes;
  uint64_t *keys;    /* u64 mode */
  uint8_t *kfixed;   /* fixed mode: gcap keys of kwidth bytes */
  size_t kwidth;     /* fixed mode: bytes per key */
  int64_t *koff;     /* bytes mode: gcap + 1 entries */
  uint8_t *kbytes;   /* bytes mode: key bytes */
  size_t kbcap;      /* bytes mode: capacity of kbytes */
  int nagg;
  bs_agg_kind akind[BS_COMB_MAX_AGGS];
  void *agg[BS_COMB_MAX_AGGS]; /* int64_t or double arrays of gcap entries */
  /* The direct map of u64 mode (bs_comb_direct_prepare): dmap[key - dbase] is the gid + 1 of
   * key, or 0 when the key has no group yet, for the dspan keys from dbase on. */
  uint32_t *dmap;
  size_t dspan;
  uint64_t dbase;
  int direct; /* bs_comb_direct_prepare was called: a direct map may come (bs_comb_room) */
};

/* bs_big_footprint as a size_t: SIZE_MAX, a size no limit admits, when it is not
 * representable. */
static size_t footprint(size_t bytes) {
  int64_t f = bs_big_footprint(bytes);
  return f < 0 ? SIZE_MAX : (size_t)f;
}

static size_t grow_limit(size_t cap) { return cap / LOAD_DEN * LOAD_NUM; }

static int agg_is_f64(bs_agg_kind k) {
  return k == BS_AGG_SUM_F64 || k == BS_AGG_MIN_F64 || k == BS_AGG_MAX_F64;
}

/* Initial values of aggregate entries [from, to). */
static void agg_init(bs_agg_kind kind, void *arr, size_t from, size_t to) {
  if (agg_is_f64(kind)) {
    double *a = (double *)arr;
    double v = kind == BS_AGG_MIN_F64 ? INFINITY : kind == BS_AGG_MAX_F64 ? -INFINITY : 0.0;
    for (size_t i = from; i < to; i++) a[i] = v;
  } else {
    int64_t *a = (int64_t *)arr;
    int64_t v = kind == BS_AGG_MIN_I64 ? INT64_MAX : kind == BS_AGG_MAX_I64 ? INT64_MIN : 0;
    for (size_t i = from; i < to; i++) a[i] = v;
  }
}

static int mul_overflows(size_t a, size_t b) { return b != 0 && a > SIZE_MAX / b; }

/* Moves *p from old_count to new_count elements of size (bs_big_resize), keeping *p on
 * failure. */
static bs_error resize(void **p, size_t old_count, size_t new_count, size_t size) {
  if (mul_overflows(new_count, size)) return BS_ENOMEM;
  void *q = bs_big_resize(*p, old_count * size, new_count * size);
  if (q == NULL) return BS_ENOMEM;
  *p = q;
  return BS_OK;
}

/* Entries of the key-offset array for gcap groups. */
static size_t koff_count(size_t gcap) { return gcap + 1; }

/* Grows every per-group array to new_gcap entries. Every new array is made before any old
 * one goes, so on failure the combiner is unchanged and valid (each array's size stays what
 * gcap says, which freeing relies on). */
static bs_error grow_groups(bs_combiner *c, size_t new_gcap) {
  const size_t old = c->gcap;
  if (new_gcap == SIZE_MAX || mul_overflows(koff_count(new_gcap), sizeof(int64_t)) ||
      mul_overflows(new_gcap, c->kwidth))
    return BS_ENOMEM;
  void **arrays[2 + BS_COMB_MAX_AGGS];
  size_t old_bytes[2 + BS_COMB_MAX_AGGS], new_bytes[2 + BS_COMB_MAX_AGGS];
  void *fresh[2 + BS_COMB_MAX_AGGS];
  int n = 0;
  arrays[n] = (void **)&c->hashes, old_bytes[n] = old * 8, new_bytes[n++] = new_gcap * 8;
  if (c->kind == BS_COMB_KEY_U64)
    arrays[n] = (void **)&c->keys, old_bytes[n] = old * 8, new_bytes[n++] = new_gcap * 8;
  else if (c->kind == BS_COMB_KEY_FIXED)
    arrays[n] = (void **)&c->kfixed, old_bytes[n] = old * c->kwidth, new_bytes[n++] = new_gcap * c->kwidth;
  else
    arrays[n] = (void **)&c->koff, old_bytes[n] = koff_count(old) * 8, new_bytes[n++] = koff_count(new_gcap) * 8;
  for (int a = 0; a < c->nagg; a++) arrays[n] = &c->agg[a], old_bytes[n] = old * 8, new_bytes[n++] = new_gcap * 8;
  for (int i = 0; i < n; i++) {
    fresh[i] = bs_big_alloc(new_bytes[i]);
    if (fresh[i] == NULL) {
      while (i-- > 0) bs_big_free(fresh[i], new_bytes[i]);
      return BS_ENOMEM;
    }
  }
  for (int i = 0; i < n; i++) {
    memcpy(fresh[i], *arrays[i], old_bytes[i]);
    bs_big_free(*arrays[i], old_bytes[i]);
    *arrays[i] = fresh[i];
  }
  for (int a = 0; a < c->nagg; a++) agg_init(c->akind[a], c->agg[a], old, new_gcap);
  c->gcap = new_gcap;
  return BS_OK;
}

static bs_error ensure_group_room(bs_combiner *c) {
  if (c->groups < c->gcap) return BS_OK;
  if (c->groups >= MAX_GROUPS) return BS_ENOMEM;
  size_t n = c->gcap * 2;
  if (n > MAX_GROUPS) n = MAX_GROUPS;
  return grow_groups(c, n);
}

#define BUCKET 4u
/* Tables up to this mask rehash from the hash bits kept in the slots (a macro so that tests
 * can exercise the other path). */
#ifndef HLO_MASK_MAX
#define HLO_MASK_MAX ((size_t)UINT32_MAX)
#endif

/* Bytes of a table of cap slots (with a bucket of slack past the end). */
static size_t slot_bytes(size_t cap) { return (cap + BUCKET) * sizeof(comb_slot); }

/* A zeroed, 64-byte aligned array of cap slots. */
static comb_slot *slots_alloc(size_t cap) {
  if (cap > SIZE_MAX / sizeof(comb_slot) - BUCKET) return NULL;
  return (comb_slot *)bs_big_alloc(slot_bytes(cap));
}

/* Index of the first slot of the bucket where key hash h starts probing. */
static inline size_t bucket_of(uint64_t h, size_t mask) {
  return (size_t)h & mask & ~(size_t)(BUCKET - 1);
}

/* Occupied slots of a bucket (they are a prefix), when its last slot is empty. */
static inline unsigned bucket_fill(const comb_slot *b) {
  return (unsigned)(b[0].gid_plus1 != 0) + (unsigned)(b[1].gid_plus1 != 0) +
         (unsigned)(b[2].gid_plus1 != 0);
}

/* Bytes mode: a key of up to SHORT_KEY bytes is its own tag, its bytes in the low bytes and
 * its length in the top byte, so equal tags mean equal keys and a lookup never touches the
 * stored key bytes. A longer key's tag is its hash with the top byte forced to 8 or more,
 * which no short key's tag has; equal tags are then confirmed on the key bytes. */
#define SHORT_KEY 7u
static inline uint64_t key_tag(const uint8_t *key, size_t len, uint64_t h) {
  if (len > SHORT_KEY) return (h & ~((uint64_t)0xFF << 56)) | ((uint64_t)(8u | (unsigned)(h >> 59)) << 56);
  uint64_t t = (uint64_t)len << 56;
  for (size_t j = 0; j < len; j++) t |= (uint64_t)key[j] << (8 * j);
  return t;
}

/* Fixed mode: every key's tag is its hash, confirmed on the key's bytes. */
static inline uint64_t fixed_tag(uint64_t h) { return h; }

/* Doubles the slot table and reinserts every group from its stored hash. */
static bs_error grow_table(bs_combiner *c) {
  if (c->cap > SIZE_MAX / 4 / sizeof(comb_slot)) return BS_ENOMEM;
  const size_t ncap = c->cap * 2, mask = ncap - 1;
  comb_slot *ns = slots_alloc(ncap);
  if (ns == NULL) return BS_ENOMEM;
  if (mask <= HLO_MASK_MAX) {
    /* Walk the old table in order: an entry of old slot j lands near slot j or j + cap of
     * the new table, so both tables are read and written as streams (a walk in group order
     * would write the new table at random, a page fault and a cache miss per entry). Any
     * insertion order yields a valid table, as there are no deletions. */
    const comb_slot *os = c->slots;
    for (size_t j = 0; j < c->cap; j++) {
      if (os[j].gid_plus1 == 0) continue;
      size_t base = bucket_of(os[j].hlo, mask);
      while (ns[base + BUCKET - 1].gid_plus1 != 0) base = (base + BUCKET) & mask;
      ns[base + bucket_fill(&ns[base])] = os[j];
    }
  } else {
    /* Slots too many for the kept hash bits: each group's whole hash, from its array. The
     * old table is walked, not the groups, since groups of the direct map are not in it. */
    const comb_slot *os = c->slots;
    for (size_t j = 0; j < c->cap; j++) {
      if (os[j].gid_plus1 == 0) continue;
      const uint64_t h = c->hashes[os[j].gid_plus1 - 1];
      size_t base = bucket_of(h, mask);
      while (ns[base + BUCKET - 1].gid_plus1 != 0) base = (base + BUCKET) & mask;
      ns[base + bucket_fill(&ns[base])] = os[j];
    }
  }
  bs_big_free(c->slots, slot_bytes(c->cap));
  c->slots = ns;
  c->cap = ncap;
  c->grow_at = grow_limit(ncap);
  return BS_OK;
}

static size_t pow2_at_least(size_t x) {
  size_t p = 1;
  while (p < x && p <= SIZE_MAX / 2) p *= 2;
  return p;
}

/* A new combiner of kind (with key_width bytes per key in fixed mode). */
static bs_combiner *comb_new(bs_comb_key_kind kind, size_t key_width, size_t expected_groups) {
  /* Keep absurd hints from asking for absurd memory up front. */
  if (expected_groups > ((size_t)1 << 32)) expected_groups = (size_t)1 << 32;
  bs_combiner *c = (bs_combiner *)calloc(1, sizeof *c);
  if (c == NULL) return NULL;
  c->kind = kind;
  c->kwidth = key_width;
  size_t gcap = expected_groups < MIN_GROUPS ? MIN_GROUPS : expected_groups;
  if (gcap > MAX_GROUPS) gcap = MAX_GROUPS;
  size_t cap = pow2_at_least(gcap / LOAD_NUM * LOAD_DEN); /* holds gcap groups */
  if (cap < MIN_SLOTS) cap = MIN_SLOTS;
  /* The group arrays and the table's growth limit start equal, so they grow together. */
  if (grow_limit(cap) > gcap) gcap = grow_limit(cap);
  c->slots = slots_alloc(cap);
  c->cap = cap;
  c->grow_at = grow_limit(cap);
  c->gcap = gcap;
  c->hashes = (uint64_t *)bs_big_alloc(gcap * sizeof(uint64_t));
  int ok = c->slots != NULL && c->hashes != NULL;
  if (kind == BS_COMB_KEY_U64) {
    c->keys = (uint64_t *)bs_big_alloc(gcap * sizeof(uint64_t));
    ok = ok && c->keys != NULL;
  } else if (kind == BS_COMB_KEY_FIXED) {
    c->kfixed = (uint8_t *)bs_big_alloc(gcap * key_width);
    ok = ok && c->kfixed != NULL;
  } else {
    c->koff = (int64_t *)bs_big_alloc(koff_count(gcap) * sizeof(int64_t));
    c->kbcap = MIN_KEY_BYTES;
    c->kbytes = (uint8_t *)bs_big_alloc(c->kbcap);
    ok = ok && c->koff != NULL && c->kbytes != NULL;
  }
  if (!ok) {
    bs_comb_free(c);
    return NULL;
  }
  return c;
}

bs_combiner *bs_comb_new(bs_comb_key_kind kind, size_t expected_groups) {
  if (kind != BS_COMB_KEY_U64 && kind != BS_COMB_KEY_BYTES) return NULL;
  return comb_new(kind, 0, expected_groups);
}

bs_combiner *bs_comb_new_fixed(size_t key_width, size_t expected_groups) {
  if (key_width == 0 || key_width > BS_COMB_MAX_FIXED_KEY) return NULL;
  return comb_new(BS_COMB_KEY_FIXED, key_width, expected_groups);
}

void bs_comb_free(bs_combiner *c) {
  if (c == NULL) return;
  bs_big_free(c->slots, slot_bytes(c->cap));
  bs_big_free(c->hashes, c->gcap * sizeof(uint64_t));
  bs_big_free(c->keys, c->gcap * sizeof(uint64_t));
  bs_big_free(c->kfixed, c->gcap * c->kwidth);
  bs_big_free(c->koff, koff_count(c->gcap) * sizeof(int64_t));
  bs_big_free(c->kbytes, c->kbcap);
  for (int a = 0; a < c->nagg; a++) bs_big_free(c->agg[a], c->gcap * 8);
  bs_big_free(c->dmap, c->dspan * sizeof(uint32_t));
  free(c);
}

bs_error bs_comb_reset(bs_combiner *c) {
  if (c == NULL) return BS_EINVAL;
  /* The capacity stays: a combiner that spilled once fills up again, and growing it back
   * would rehash and fault in the same memory again. */
  memset(c->slots, 0, slot_bytes(c->cap));
  if (c->dmap != NULL) memset(c->dmap, 0, c->dspan * sizeof(uint32_t));
  if (c->kind == BS_COMB_KEY_BYTES) c->koff[0] = 0;
  for (int a = 0; a < c->nagg; a++) agg_init(c->akind[a], c->agg[a], 0, c->groups);
  c->groups = 0;
  c->tgroups = 0;
  return BS_OK;
}

int64_t bs_comb_add_agg(bs_combiner *c, bs_agg_kind kind) {
  if (c == NULL || c->groups != 0 || c->nagg >= BS_COMB_MAX_AGGS) return BS_EINVAL;
  if (kind < BS_AGG_SUM_I64 || kind > BS_AGG_COUNT) return BS_EINVAL;
  void *arr = bs_big_alloc(c->gcap * 8);
  if (arr == NULL) return BS_ENOMEM;
  agg_init(kind, arr, 0, c->gcap);
  c->akind[c->nagg] = kind;
  c->agg[c->nagg] = arr;
  return c->nagg++;
}

static inline unsigned first_bit(unsigned m) { /* m != 0 */
#if defined(__GNUC__) || defined(__clang__)
  return (unsigned)__builtin_ctz(m);
#else
  unsigned j = 0;
  while (!(m & 1u)) { m >>= 1; j++; }
  return j;
#endif
}

/* Bit j set when slot j of bucket b holds k (or is an empty slot and k == 0). */
static inline unsigned bucket_match(const comb_slot *b, uint64_t k) {
  return (unsigned)(b[0].k == k) | (unsigned)(b[1].k == k) << 1 |
         (unsigned)(b[2].k == k) << 2 | (unsigned)(b[3].k == k) << 3;
}

/* Bytes mode: equal tags (key_tag) of keys longer than SHORT_KEY are confirmed on the key
 * bytes. */
static inline int same_key(const bs_combiner *c, size_t g, const uint8_t *key, size_t len) {
  size_t a0 = (size_t)c->koff[g], a1 = (size_t)c->koff[g + 1];
  return a1 - a0 == len && (len == 0 || memcmp(c->kbytes + a0, key, len) == 0);
}

/* Fixed mode: whether group g's key is the kwidth bytes at key. Keys of 16 bytes, the
 * commonest (two 64-bit columns), compare as two words. */
static inline int same_fixed(const bs_combiner *c, size_t g, const uint8_t *key) {
  const uint8_t *k = c->kfixed + g * c->kwidth;
  if (c->kwidth == 16) {
    uint64_t a0, a1, b0, b1;
    memcpy(&a0, k, 8), memcpy(&a1, k + 8, 8), memcpy(&b0, key, 8), memcpy(&b1, key + 8, 8);
    return ((a0 ^ b0) | (a1 ^ b1)) == 0;
  }
  return memcmp(k, key, c->kwidth) == 0;
}

/* Whether the group g, whose slot's tag matched, holds the key (len bytes at key): always in
 * u64 mode and for short byte strings, whose tags are the keys themselves. */
static inline int key_matches(const bs_combiner *c, size_t g, const uint8_t *key, size_t len) {
  if (c->kind == BS_COMB_KEY_FIXED) return same_fixed(c, g, key);
  return len <= SHORT_KEY || same_key(c, g, key, len);
}

/* Bytes mode: stores the key of the group about to be made (c->groups). */
static bs_error append_key(bs_combiner *c, const uint8_t *key, size_t len) {
  size_t used = (size_t)c->koff[c->groups];
  if (len > SIZE_MAX - used || used + len > (size_t)INT64_MAX) return BS_ENOMEM;
  if (used + len > c->kbcap) {
    size_t ncap = c->kbcap * 2;
    if (ncap < used + len) ncap = used + len;
    if (resize((void **)&c->kbytes, c->kbcap, ncap, 1) != BS_OK) return BS_ENOMEM;
    c->kbcap = ncap;
  }
  if (len) memcpy(c->kbytes + used, key, len);
  c->koff[c->groups + 1] = (int64_t)(used + len);
  return BS_OK;
}

/* The slow path of one row: a full probe from the key's bucket, inserting the key when it
 * is new (growing the table first when needed). k is the slot key: the key itself in u64
 * mode (key NULL, len 0), else the tag of the len bytes at key (fixed mode: len is the key
 * width). Returns the gid or
 * BS_ENOMEM. Kept out of line so the hot loops stay small. */
static BS_NOINLINE int64_t find_or_insert(bs_combiner *c, uint64_t k, const uint8_t *key,
                                          size_t len, uint64_t h) {
  for (;;) {
    size_t mask = c->cap - 1, base = bucket_of(h, mask);
    for (;;) {
      comb_slot *b = &c->slots[base];
      /* An empty slot matches k == 0 but holds no group (gid_plus1 == 0). Occupied slots
       * precede empty ones, so in u64 mode the first occupied match is the key's slot; in
       * bytes mode a long key's tag may match other keys, which same_key rules out. */
      for (unsigned m = bucket_match(b, k); m != 0; m &= m - 1) {
        uint32_t g1 = b[first_bit(m)].gid_plus1;
        if (g1 != 0 && key_matches(c, g1 - 1, key, len)) return (int64_t)(g1 - 1);
      }
      if (b[BUCKET - 1].gid_plus1 == 0) break; /* the key is new */
      base = (base + BUCKET) & mask;
    }
    if (c->tgroups < c->grow_at) {
      if (ensure_group_room(c) != BS_OK) return BS_ENOMEM;
      if (c->kind == BS_COMB_KEY_BYTES && append_key(c, key, len) != BS_OK) return BS_ENOMEM;
      comb_slot *b = &c->slots[base];
      comb_slot *s = &b[bucket_fill(b)];
      size_t g = c->groups++;
      c->tgroups++;
      c->hashes[g] = h;
      if (c->kind == BS_COMB_KEY_U64) c->keys[g] = k;
      if (c->kind == BS_COMB_KEY_FIXED) memcpy(c->kfixed + g * c->kwidth, key, c->kwidth);
      s->k = k;
      s->gid_plus1 = (uint32_t)(g + 1);
      s->hlo = (uint32_t)h;
      return (int64_t)g;
    }
    if (grow_table(c) != BS_OK) return BS_ENOMEM;
  }
}

static int64_t groups_mapped(bs_combiner *c, const uint64_t *keys, const uint64_t *hashes, size_t width,
                             uint64_t seed, size_t n, uint32_t *gids);

int64_t bs_comb_groups_u64(bs_combiner *c, const uint64_t *keys, const uint64_t *hashes,
                           size_t n, uint32_t *gids) {
  if (c == NULL || c->kind != BS_COMB_KEY_U64) return BS_EINVAL;
  if (n == 0) return 0;
  if (keys == NULL || hashes == NULL || gids == NULL) return BS_EINVAL;
  if (c->dmap != NULL) return groups_mapped(c, keys, hashes, 8, 0, n, gids);
  const size_t before = c->groups;
  const comb_slot *slots = c->slots;
  size_t mask = c->cap - 1;
  for (size_t i = 0; i < n; i++) {
    if (BS_LIKELY(i + PREFETCH_AHEAD < n))
      BS_PREFETCH_WRITE(&slots[bucket_of(hashes[i + PREFETCH_AHEAD], mask)]);
    const uint64_t key = keys[i];
    /* Fast path: the key sits in its home bucket. Which slot holds it is random, so it is
     * found from a mask of the four comparisons, with no branch per slot (a select per slot
     * was compiled into branches, mispredicted about once a row). At most one occupied slot
     * holds the key; an empty slot whose k (0) equals the key has a gid_plus1 of 0 and
     * sends the row to the slow path. */
    const comb_slot *b = &slots[bucket_of(hashes[i], mask)];
    const unsigned m = bucket_match(b, key);
    const uint32_t g1 = BS_LIKELY(m != 0) ? b[first_bit(m)].gid_plus1 : 0;
    if (BS_LIKELY(g1 != 0)) {
      gids[i] = g1 - 1;
      continue;
    }
    int64_t g = find_or_insert(c, key, NULL, 0, hashes[i]);
    if (g < 0) return g;
    gids[i] = (uint32_t)g;
    slots = c->slots; /* the table may have grown */
    mask = c->cap - 1;
  }
  return (int64_t)(c->groups - before);
}

int64_t bs_comb_groups_bytes(bs_combiner *c, const int64_t *offsets, const uint8_t *bytes,
                             const uint64_t *hashes, size_t n, uint32_t *gids) {
  if (c == NULL || c->kind != BS_COMB_KEY_BYTES) return BS_EINVAL;
  if (n == 0) return 0;
  if (offsets == NULL || hashes == NULL || gids == NULL) return BS_EINVAL;
  /* Check the offsets first, so a bad batch changes nothing. */
  if (offsets[0] < 0) return BS_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (offsets[i + 1] < offsets[i]) return BS_EINVAL;
  if (bytes == NULL && offsets[n] != offsets[0]) return BS_EINVAL;
  const size_t before = c->groups;
  const comb_slot *slots = c->slots;
  size_t mask = c->cap - 1;
  for (size_t i = 0; i < n; i++) {
    if (BS_LIKELY(i + PREFETCH_AHEAD < n))
      BS_PREFETCH_WRITE(&slots[bucket_of(hashes[i + PREFETCH_AHEAD], mask)]);
    const uint64_t h = hashes[i];
    const size_t len = (size_t)(offsets[i + 1] - offsets[i]);
    const uint8_t *key = len ? bytes + offsets[i] : NULL;
    /* Fast path: the first slot with the key's tag in the home bucket holds the key. */
    const uint64_t tag = key_tag(key, len, h);
    const comb_slot *b = &slots[bucket_of(h, mask)];
    unsigned m = bucket_match(b, tag);
    if (BS_LIKELY(m != 0)) {
      uint32_t g1 = b[first_bit(m)].gid_plus1;
      if (BS_LIKELY(g1 != 0) && (len <= SHORT_KEY || same_key(c, g1 - 1, key, len))) {
        gids[i] = g1 - 1;
        continue;
      }
    }
    int64_t g = find_or_insert(c, tag, key, len, h);
    if (g < 0) return g;
    gids[i] = (uint32_t)g;
    slots = c->slots;
    mask = c->cap - 1;
  }
  return (int64_t)(c->groups - before);
}

int64_t bs_comb_groups_fixed(bs_combiner *c, const uint8_t *keys, const uint64_t *hashes,
                             size_t n, uint32_t *gids) {
  if (c == NULL || c->kind != BS_COMB_KEY_FIXED) return BS_EINVAL;
  if (n == 0) return 0;
  if (keys == NULL || hashes == NULL || gids == NULL) return BS_EINVAL;
  const size_t before = c->groups, w = c->kwidth;
  const comb_slot *slots = c->slots;
  size_t mask = c->cap - 1;
  for (size_t i = 0; i < n; i++) {
    if (BS_LIKELY(i + PREFETCH_AHEAD < n))
      BS_PREFETCH_WRITE(&slots[bucket_of(hashes[i + PREFETCH_AHEAD], mask)]);
    /* A second stage: the slot of a nearer row has arrived by now, so the key its tag points
     * at (the one that row will be compared with) can be fetched before the row needs it. */
    if (BS_LIKELY(i + KEY_AHEAD < n)) {
      const uint64_t ha = hashes[i + KEY_AHEAD];
      const comb_slot *ba = &slots[bucket_of(ha, mask)];
      unsigned ma = bucket_match(ba, fixed_tag(ha));
      if (ma != 0 && ba[first_bit(ma)].gid_plus1 != 0)
        BS_PREFETCH_READ(c->kfixed + (size_t)(ba[first_bit(ma)].gid_plus1 - 1) * w);
    }
    const uint64_t h = hashes[i];
    const uint8_t *key = keys + i * w;
    /* Fast path: the first slot with the key's tag in the home bucket holds the key. */
    const comb_slot *b = &slots[bucket_of(h, mask)];
    unsigned m = bucket_match(b, fixed_tag(h));
    if (BS_LIKELY(m != 0)) {
      uint32_t g1 = b[first_bit(m)].gid_plus1;
      if (BS_LIKELY(g1 != 0) && same_fixed(c, g1 - 1, key)) {
        gids[i] = g1 - 1;
        continue;
      }
    }
    int64_t g = find_or_insert(c, fixed_tag(h), key, w, h);
    if (g < 0) return g;
    gids[i] = (uint32_t)g;
    slots = c->slots;
    mask = c->cap - 1;
  }
  return (int64_t)(c->groups - before);
}

/* Direct mode (bs_comb_direct_prepare). While a direct map exists, a key inside its window
 * is found through the map and one outside through the slot table, by every entry point. A
 * new key inside the window gets a group that the slot table never holds: a new key then
 * costs its hash and a few sequential stores, not a probe at a random slot. Groups made
 * through the table before the map, or outside its window, are in the table; those inside a
 * new window are entered in the map when it is built, and a window only ever widens (until
 * bs_comb_reset empties everything).
 *
 * The map may take at most this share of the bytes the table and the per-group arrays hold,
 * memory the caller's limit already admitted (bs_comb_room), which also keeps a sparse range
 * from being mapped: a key range spanning more than a few entries per group is declined. */
#define DIRECT_SHARE 4
/* Rows ahead whose direct-map entry is prefetched. */
#define DIRECT_AHEAD 16

/* XXH3-64 of a key of width bytes widened to u64, as bs_hash_fixed hashes the narrow value. */
static inline uint64_t hash_widened(uint64_t key, size_t width, uint64_t seed) {
  switch (width) {
  case 1: {
    uint8_t v = (uint8_t)key;
    return XXH3_64bits_withSeed(&v, 1, seed);
  }
  case 2: {
    uint16_t v = (uint16_t)key;
    return XXH3_64bits_withSeed(&v, 2, seed);
  }
  case 4: {
    uint32_t v = (uint32_t)key;
    return XXH3_64bits_withSeed(&v, 4, seed);
  }
  default:
    return XXH3_64bits_withSeed(&key, 8, seed);
  }
}

/* Replaces the direct map with one of span entries from base (a window holding the old
 * one), filled from the groups. On failure the old map stays: its groups are in no table. */
static bs_error direct_rebuild(bs_combiner *c, uint64_t base, size_t span) {
  uint32_t *m = (uint32_t *)bs_big_alloc(span * sizeof(uint32_t));
  if (m == NULL) return BS_ENOMEM;
  for (size_t g = 0; g < c->groups; g++) {
    uint64_t off = c->keys[g] - base;
    if (off < span) m[off] = (uint32_t)(g + 1);
  }
  bs_big_free(c->dmap, c->dspan * sizeof(uint32_t));
  c->dmap = m;
  c->dspan = span;
  c->dbase = base;
  return BS_OK;
}

static size_t group_bytes(const bs_combiner *c, size_t gcap);

/* The most bytes a direct map may hold beside a table of cap slots and group arrays of gcap
 * entries. */
static size_t direct_allowance(const bs_combiner *c, size_t cap, size_t gcap) {
  return (footprint(slot_bytes(cap)) + group_bytes(c, gcap)) / DIRECT_SHARE;
}

/* Whether a map of entries fits the allowance. */
static int direct_fits(const bs_combiner *c, uint64_t entries) {
  const size_t allow = direct_allowance(c, c->cap, c->gcap);
  return entries <= allow / sizeof(uint32_t) && footprint((size_t)entries * sizeof(uint32_t)) <= allow;
}

int bs_comb_direct_prepare(bs_combiner *c, const uint64_t *keys, size_t n) {
  if (c == NULL || c->kind != BS_COMB_KEY_U64 || n == 0 || keys == NULL) return 0;
  c->direct = 1;
  /* The range of the keys as signed values (so a range around zero is narrow), with four
   * independent minima and maxima so the loop is not one chain of dependent selects. */
  int64_t lo4[4], hi4[4];
  for (int j = 0; j < 4; j++) lo4[j] = hi4[j] = (int64_t)keys[0];
  size_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int j = 0; j < 4; j++) {
      const int64_t k = (int64_t)keys[i + j];
      lo4[j] = k < lo4[j] ? k : lo4[j];
      hi4[j] = k > hi4[j] ? k : hi4[j];
    }
  for (; i < n; i++) {
    const int64_t k = (int64_t)keys[i];
    lo4[0] = k < lo4[0] ? k : lo4[0];
    hi4[0] = k > hi4[0] ? k : hi4[0];
  }
  int64_t lo = lo4[0], hi = hi4[0];
  for (int j = 1; j < 4; j++) {
    lo = lo4[j] < lo ? lo4[j] : lo;
    hi = hi4[j] > hi ? hi4[j] : hi;
  }
  int down = 0;
  if (c->dmap != NULL) {
    /* The window never wraps past INT64_MAX (below), so dhi does not overflow. */
    const int64_t dlo = (int64_t)c->dbase, dhi = dlo + (int64_t)(c->dspan - 1);
    if (lo >= dlo && hi <= dhi) return 1;
    down = lo < dlo;
    lo = dlo < lo ? dlo : lo;
    hi = dhi > hi ? dhi : hi;
  }
  const uint64_t need = (uint64_t)hi - (uint64_t)lo + 1; /* 0 when the range is all of u64 */
  if (need == 0 || !direct_fits(c, need)) return 0;
  /* Room to spare: a quarter more than the keys so far span (a sample's range is a little
   * short of its population's), or twice the old map when it grows, so a drifting range
   * rebuilds the map a logarithmic number of times. */
  uint64_t span = need;
  const uint64_t wider = c->dmap != NULL ? 2 * (uint64_t)c->dspan : need + need / 4;
  if (wider > span && direct_fits(c, wider)) span = wider;
  else if (need + need / 4 > span && direct_fits(c, need + need / 4)) span = need + need / 4;
  /* The spare room goes on the side the keys moved towards, or half on each side, with the
   * whole window inside the signed range (it then holds [lo, hi], as span >= need). */
  const uint64_t spare = span - need;
  __int128 b = (__int128)lo - (__int128)(down ? spare : spare / 2);
  const __int128 least = (__int128)INT64_MIN, most = (__int128)INT64_MAX - (__int128)(span - 1);
  b = b < least ? least : b > most ? most : b;
  const uint64_t base = (uint64_t)(int64_t)b;
  return direct_rebuild(c, base, (size_t)span) == BS_OK;
}

/* The groups of n keys with a direct map: through the map inside its window, through the
 * table outside it. hashes are the keys' hashes, or NULL to hash a key of width bytes with
 * seed when it needs one (a new key, or a key outside the window). */
static int64_t groups_mapped(bs_combiner *c, const uint64_t *keys, const uint64_t *hashes, size_t width,
                             uint64_t seed, size_t n, uint32_t *gids) {
  const size_t before = c->groups;
  uint32_t *const dmap = c->dmap;
  const size_t span = c->dspan;
  const uint64_t base = c->dbase;
  for (size_t i = 0; i < n; i++) {
    if (BS_LIKELY(i + DIRECT_AHEAD < n)) {
      const uint64_t ahead = keys[i + DIRECT_AHEAD] - base;
      if (ahead < span) BS_PREFETCH_WRITE(&dmap[ahead]);
    }
    const uint64_t key = keys[i], off = key - base;
    if (BS_LIKELY(off < span)) {
      const uint32_t g1 = dmap[off];
      if (BS_LIKELY(g1 != 0)) {
        gids[i] = g1 - 1;
        continue;
      }
      /* A new key: a group of its own, outside the table. */
      if (ensure_group_room(c) != BS_OK) return BS_ENOMEM;
      const size_t g = c->groups++;
      c->hashes[g] = hashes != NULL ? hashes[i] : hash_widened(key, width, seed);
      c->keys[g] = key;
      dmap[off] = (uint32_t)(g + 1);
      gids[i] = (uint32_t)g;
      continue;
    }
    const int64_t g = find_or_insert(c, key, NULL, 0, hashes != NULL ? hashes[i] : hash_widened(key, width, seed));
    if (g < 0) return g;
    gids[i] = (uint32_t)g;
  }
  return (int64_t)(c->groups - before);
}

int64_t bs_comb_groups_direct(bs_combiner *c, const uint64_t *keys, size_t n, size_t width,
                              uint64_t seed, uint32_t *gids) {
  if (c == NULL || c->kind != BS_COMB_KEY_U64) return BS_EINVAL;
  if (width != 1 && width != 2 && width != 4 && width != 8) return BS_EINVAL;
  if (n == 0) return 0;
  if (keys == NULL || gids == NULL) return BS_EINVAL;
  if (c->dmap == NULL) {
    /* No map (a caller that did not prepare): the hash path, hashing here. */
    const size_t before = c->groups;
    for (size_t i = 0; i < n; i++) {
      const int64_t g = find_or_insert(c, keys[i], NULL, 0, hash_widened(keys[i], width, seed));
      if (g < 0) return g;
      gids[i] = (uint32_t)g;
    }
    return (int64_t)(c->groups - before);
  }
  return groups_mapped(c, keys, NULL, width, seed, n, gids);
}

/* All gids < groups? One cheap pass, so that a bad batch changes nothing. */
static int gids_valid(const uint32_t *gids, size_t n, size_t groups) {
  uint32_t m = 0;
  for (size_t i = 0; i < n; i++) m = gids[i] > m ? gids[i] : m;
  return (size_t)m < groups;
}

/* The loop of an update: its body (the statements passed) runs on the rows [i, m) with the
 * aggregate of the row PREFETCH_AHEAD ahead prefetched, then on the rows [m, n). */
#define UPDATE_LOOP(...)                               \
  for (; i < m; i++) {                                 \
    BS_PREFETCH_WRITE(&a[gids[i + PREFETCH_AHEAD]]);   \
    __VA_ARGS__                                        \
  }                                                    \
  for (; i < n; i++) {                                 \
    __VA_ARGS__                                        \
  }

bs_error bs_comb_update_i64(bs_combiner *c, int agg, const uint32_t *gids, const int64_t *vals,
                            size_t n) {
  if (c == NULL || agg < 0 || agg >= c->nagg) return BS_EINVAL;
  bs_agg_kind kind = c->akind[agg];
  if (kind != BS_AGG_SUM_I64 && kind != BS_AGG_MIN_I64 && kind != BS_AGG_MAX_I64)
    return BS_EINVAL;
  if (n == 0) return BS_OK;
  if (gids == NULL || vals == NULL || !gids_valid(gids, n, c->groups)) return BS_EINVAL;
  int64_t *restrict a = (int64_t *)c->agg[agg];
  const size_t m = n > PREFETCH_AHEAD ? n - PREFETCH_AHEAD : 0;
  size_t i = 0;
  switch (kind) {
  case BS_AGG_SUM_I64:
    UPDATE_LOOP(a[gids[i]] = (int64_t)((uint64_t)a[gids[i]] + (uint64_t)vals[i]); /* wraps */)
    break;
  case BS_AGG_MIN_I64:
    UPDATE_LOOP(if (vals[i] < a[gids[i]]) a[gids[i]] = vals[i];)
    break;
  default: /* BS_AGG_MAX_I64 */
    UPDATE_LOOP(if (vals[i] > a[gids[i]]) a[gids[i]] = vals[i];)
    break;
  }
  return BS_OK;
}

/* f64 min/max propagate NaN: a NaN value replaces the group's value, and nothing replaces
 * a NaN (v < NaN and v > NaN are false). Equal values (-0.0 and +0.0) keep the first. */
bs_error bs_comb_update_f64(bs_combiner *c, int agg, const uint32_t *gids, const double *vals,
                            size_t n) {
  if (c == NULL || agg < 0 || agg >= c->nagg) return BS_EINVAL;
  bs_agg_kind kind = c->akind[agg];
  if (!agg_is_f64(kind)) return BS_EINVAL;
  if (n == 0) return BS_OK;
  if (gids == NULL || vals == NULL || !gids_valid(gids, n, c->groups)) return BS_EINVAL;
  double *restrict a = (double *)c->agg[agg];
  const size_t m = n > PREFETCH_AHEAD ? n - PREFETCH_AHEAD : 0;
  size_t i = 0;
  switch (kind) {
  case BS_AGG_SUM_F64:
    UPDATE_LOOP(a[gids[i]] += vals[i];)
    break;
  case BS_AGG_MIN_F64:
    UPDATE_LOOP(double v = vals[i]; if (v < a[gids[i]] || v != v) a[gids[i]] = v;)
    break;
  default: /* BS_AGG_MAX_F64 */
    UPDATE_LOOP(double v = vals[i]; if (v > a[gids[i]] || v != v) a[gids[i]] = v;)
    break;
  }
  return BS_OK;
}

bs_error bs_comb_update_count(bs_combiner *c, int agg, const uint32_t *gids, size_t n) {
  if (c == NULL || agg < 0 || agg >= c->nagg || c->akind[agg] != BS_AGG_COUNT)
    return BS_EINVAL;
  if (n == 0) return BS_OK;
  if (gids == NULL || !gids_valid(gids, n, c->groups)) return BS_EINVAL;
  int64_t *restrict a = (int64_t *)c->agg[agg];
  const size_t m = n > PREFETCH_AHEAD ? n - PREFETCH_AHEAD : 0;
  size_t i = 0;
  UPDATE_LOOP(a[gids[i]]++;)
  return BS_OK;
}
#undef UPDATE_LOOP

int64_t bs_comb_direct_span(const bs_combiner *c) { return c ? (int64_t)c->dspan : BS_EINVAL; }

int64_t bs_comb_groups(const bs_combiner *c) { return c ? (int64_t)c->groups : BS_EINVAL; }

/* Bytes of the per-group arrays at gcap entries. */
static size_t group_bytes(const bs_combiner *c, size_t gcap) {
  size_t b = footprint(gcap * sizeof(uint64_t));
  b += c->kind == BS_COMB_KEY_U64     ? footprint(gcap * sizeof(uint64_t))
       : c->kind == BS_COMB_KEY_FIXED ? footprint(gcap * c->kwidth)
                                      : footprint(koff_count(gcap) * sizeof(int64_t));
  return b + (size_t)c->nagg * footprint(gcap * 8);
}

/* Bytes of the direct map. */
static size_t direct_bytes(const bs_combiner *c) {
  return c->dmap != NULL ? footprint(c->dspan * sizeof(uint32_t)) : 0;
}

int64_t bs_comb_room(const bs_combiner *c, size_t limit, size_t extra_per_group) {
  if (c == NULL) return BS_EINVAL;
  /* Every new group is taken to enter the table as well as the arrays (none may go to the
   * direct map). */
  size_t groups = c->groups, tg = c->tgroups, cap = c->cap, gcap = c->gcap, kbcap = c->kbcap;
  /* Bytes mode: new keys are taken to be as long as the ones so far (16 bytes at first). */
  size_t used = c->kind == BS_COMB_KEY_BYTES ? (size_t)c->koff[c->groups] : 0;
  size_t per_key = c->kind != BS_COMB_KEY_BYTES ? 0 : groups ? used / groups + 1 : 16;
  size_t room = 0;
  for (;;) {
    /* Groups insertable before the next growth of any structure. */
    size_t add = grow_limit(cap) > tg ? grow_limit(cap) - tg : 0;
    if (gcap - groups < add) add = gcap - groups;
    if (per_key) {
      size_t kb_add = kbcap > used ? (kbcap - used) / per_key : 0;
      if (kb_add < add) add = kb_add;
    }
    room += add;
    used += add * per_key;
    groups += add;
    tg += add;
    if (room >= ((size_t)1 << 40)) return (int64_t)room;
    size_t table = footprint(slot_bytes(cap)), arrays = group_bytes(c, gcap);
    size_t kb = per_key ? footprint(kbcap) : 0;
    /* A combiner that maps keys directly may, at its next batch, build a map as large as
     * this table and these arrays allow before it lets the old one go. */
    size_t dmap = direct_bytes(c) + (c->direct ? direct_allowance(c, cap, gcap) : 0);
    size_t now = sizeof *c + table + arrays + kb + extra_per_group * gcap + dmap;
    /* The growth that comes next holds the old and the new block of what grows. */
    size_t peak = now, ncap = cap, ngcap = gcap, nkbcap = kbcap;
    if (tg >= grow_limit(cap)) {
      ncap = cap * 2;
      peak += footprint(slot_bytes(ncap));
    }
    if (groups >= gcap) {
      ngcap = gcap * 2;
      /* Every new array is made before the old ones go (grow_groups). */
      peak += group_bytes(c, ngcap) + extra_per_group * ngcap;
    }
    if (per_key && used + per_key > kbcap) {
      nkbcap = kbcap * 2 > used + per_key ? kbcap * 2 : used + per_key;
      peak += footprint(nkbcap);
    }
    if (peak > limit || ncap > SIZE_MAX / 4 / sizeof(comb_slot) || ngcap > MAX_GROUPS)
      return (int64_t)room;
    cap = ncap;
    gcap = ngcap;
    kbcap = nkbcap;
  }
}

int64_t bs_comb_bytes(const bs_combiner *c) {
  if (c == NULL) return BS_EINVAL;
  size_t b = sizeof *c + footprint(slot_bytes(c->cap)) + group_bytes(c, c->gcap) +
             (c->kind == BS_COMB_KEY_BYTES ? footprint(c->kbcap) : 0) + direct_bytes(c);
  return (int64_t)b;
}

const uint64_t *bs_comb_hashes(const bs_combiner *c) { return c ? c->hashes : NULL; }
const uint64_t *bs_comb_keys_u64(const bs_combiner *c) {
  return c && c->kind == BS_COMB_KEY_U64 ? c->keys : NULL;
}
const uint8_t *bs_comb_keys_fixed(const bs_combiner *c) {
  return c && c->kind == BS_COMB_KEY_FIXED ? c->kfixed : NULL;
}
const int64_t *bs_comb_key_offsets(const bs_combiner *c) {
  return c && c->kind == BS_COMB_KEY_BYTES ? c->koff : NULL;
}
const uint8_t *bs_comb_key_bytes(const bs_combiner *c) {
  return c && c->kind == BS_COMB_KEY_BYTES ? c->kbytes : NULL;
}
const void *bs_comb_agg_values(const bs_combiner *c, int agg) {
  if (c == NULL || agg < 0 || agg >= c->nagg) return NULL;
  return c->agg[agg];
}

bs_error bs_comb_hash_order(const bs_combiner *c, uint32_t *perm, uint64_t *keys_buf,
                            uint64_t *tmp_keys, uint32_t *tmp_perm) {
  if (c == NULL) return BS_EINVAL;
  size_t n = c->groups;
  if (n == 0) return BS_OK;
  if (perm == NULL || keys_buf == NULL || tmp_keys == NULL || tmp_perm == NULL)
    return BS_EINVAL;
  memcpy(keys_buf, c->hashes, n * sizeof(uint64_t));
  bs_error e = bs_iota_u32(perm, n);
  if (e != BS_OK) return e;
  return bs_radix_sort_u64(keys_buf, perm, n, tmp_keys, tmp_perm);
}

/* A slot of the baseline's table: the key, its sum, and whether it is used. */
typedef struct {
  int64_t key;
  int64_t sum;
  uint64_t used;
} bench_slot;

static inline size_t bench_home(int64_t key, size_t mask) {
  return (size_t)(((uint64_t)key * 0x9E3779B97F4A7C15ull) >> 17) & mask;
}

int64_t bs_bench_hash_aggregate(const int64_t *keys, const int64_t *vals, size_t n, uint64_t *checksum) {
  size_t cap = 1u << 16, groups = 0;
  bench_slot *t = calloc(cap, sizeof *t);
  if (t == NULL) return BS_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    size_t mask = cap - 1, j = bench_home(keys[i], mask);
    while (t[j].used && t[j].key != keys[i]) j = (j + 1) & mask;
    if (!t[j].used) {
      if (2 * (groups + 1) > cap) {
        size_t ncap = 2 * cap;
        bench_slot *nt = calloc(ncap, sizeof *nt);
        if (nt == NULL) {
          free(t);
          return BS_ENOMEM;
        }
        for (size_t o = 0; o < cap; o++) {
          if (!t[o].used) continue;
          size_t q = bench_home(t[o].key, ncap - 1);
          while (nt[q].used) q = (q + 1) & (ncap - 1);
          nt[q] = t[o];
        }
        free(t);
        t = nt;
        cap = ncap;
        mask = cap - 1;
        j = bench_home(keys[i], mask);
        while (t[j].used) j = (j + 1) & mask;
      }
      t[j].used = 1;
      t[j].key = keys[i];
      t[j].sum = 0;
      groups++;
    }
    t[j].sum = (int64_t)((uint64_t)t[j].sum + (uint64_t)vals[i]);
  }
  uint64_t c = 0;
  for (size_t j = 0; j < cap; j++) {
    if (t[j].used) c += (uint64_t)t[j].key * (uint64_t)t[j].sum;
  }
  free(t);
  *checksum = c;
  return (int64_t)groups;
}
