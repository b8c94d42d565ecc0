/* Sealed frames: AES-256-GCM through OpenSSL's EVP interface, one context per direction of
 * a connection, kept for the connection's life so that a frame costs no key schedule and no
 * allocation. The nonce of a frame is its counter: 4 zero bytes, then the counter as 8
 * big-endian bytes. */
#ifndef BS_SEAL_H
#define BS_SEAL_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BS_SEAL_KEY 32
#define BS_SEAL_TAG 16

typedef struct bs_seal bs_seal;

/* A context that seals (opens = 0) or opens (opens = 1) under the 32-byte key; NULL when the
 * library cannot make one (out of memory). */
bs_seal *bs_seal_new(const uint8_t *key, int opens);
void bs_seal_free(bs_seal *s);

/* Seals in[0, n) into out[0, n) (out may equal in) under nonce `counter`, authenticating
 * aad[0, aad_len) too, and writes the 16-byte tag to tag. Returns 0, or -1 if the library
 * failed (or the context opens). */
int bs_seal_frame(bs_seal *s, uint64_t counter, const uint8_t *aad, size_t aad_len, const uint8_t *in, uint8_t *out,
                  size_t n, uint8_t *tag);

/* Opens in[0, n) into out[0, n) (out may equal in) under nonce `counter`, checking aad and
 * the 16-byte tag. Returns 0 when everything is authentic; -1 otherwise, with out's bytes
 * not to be used. */
int bs_open_frame(bs_seal *s, uint64_t counter, const uint8_t *aad, size_t aad_len, const uint8_t *in, uint8_t *out,
                  size_t n, const uint8_t *tag);

/* The library's benchmark entry point: seals `frames` frames of n bytes in place with one
 * context; returns 0, or -1 on failure. */
int bs_bench_seal(uint8_t *buf, size_t n, int frames);

#ifdef __cplusplus
}
#endif
#endif
