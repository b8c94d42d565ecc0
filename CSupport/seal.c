#include "bs_seal.h"

#include <limits.h>
#include <openssl/evp.h>
#include <stdlib.h>

struct bs_seal {
  EVP_CIPHER_CTX *ctx;
  int opens;
};

bs_seal *bs_seal_new(const uint8_t *key, int opens) {
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  if (!ctx) return NULL;
  int ok = opens ? EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, NULL)
                 : EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, NULL);
  bs_seal *s = ok == 1 ? malloc(sizeof *s) : NULL;
  if (!s) {
    EVP_CIPHER_CTX_free(ctx);
    return NULL;
  }
  s->ctx = ctx;
  s->opens = opens;
  return s;
}

void bs_seal_free(bs_seal *s) {
  if (!s) return;
  EVP_CIPHER_CTX_free(s->ctx);
  free(s);
}

static void nonce_of(uint64_t counter, uint8_t nonce[12]) {
  for (int i = 0; i < 4; i++) nonce[i] = 0;
  for (int i = 0; i < 8; i++) nonce[4 + i] = (uint8_t)(counter >> (56 - 8 * i));
}

/* EVP takes int lengths: longer inputs go in int-sized pieces. */
static int update(EVP_CIPHER_CTX *ctx, int opens, uint8_t *out, const uint8_t *in, size_t n) {
  while (n > 0) {
    int piece = n > (size_t)INT_MAX / 2 ? INT_MAX / 2 : (int)n;
    int len = 0;
    int ok = opens ? EVP_DecryptUpdate(ctx, out, &len, in, piece) : EVP_EncryptUpdate(ctx, out, &len, in, piece);
    if (ok != 1 || len != piece) return -1;
    if (out) out += piece;
    in += piece;
    n -= (size_t)piece;
  }
  return 0;
}

int bs_seal_frame(bs_seal *s, uint64_t counter, const uint8_t *aad, size_t aad_len, const uint8_t *in, uint8_t *out,
                  size_t n, uint8_t *tag) {
  if (s->opens) return -1;
  uint8_t nonce[12];
  nonce_of(counter, nonce);
  int len = 0;
  if (EVP_EncryptInit_ex(s->ctx, NULL, NULL, NULL, nonce) != 1) return -1;
  if (update(s->ctx, 0, NULL, aad, aad_len) != 0 || update(s->ctx, 0, out, in, n) != 0) return -1;
  if (EVP_EncryptFinal_ex(s->ctx, out + n, &len) != 1 || len != 0) return -1;
  return EVP_CIPHER_CTX_ctrl(s->ctx, EVP_CTRL_GCM_GET_TAG, BS_SEAL_TAG, tag) == 1 ? 0 : -1;
}

int bs_open_frame(bs_seal *s, uint64_t counter, const uint8_t *aad, size_t aad_len, const uint8_t *in, uint8_t *out,
                  size_t n, const uint8_t *tag) {
  if (!s->opens) return -1;
  uint8_t nonce[12];
  nonce_of(counter, nonce);
  int len = 0;
  if (EVP_DecryptInit_ex(s->ctx, NULL, NULL, NULL, nonce) != 1) return -1;
  if (update(s->ctx, 1, NULL, aad, aad_len) != 0 || update(s->ctx, 1, out, in, n) != 0) return -1;
  if (EVP_CIPHER_CTX_ctrl(s->ctx, EVP_CTRL_GCM_SET_TAG, BS_SEAL_TAG, (void *)tag) != 1) return -1;
  return EVP_DecryptFinal_ex(s->ctx, out + n, &len) == 1 && len == 0 ? 0 : -1;
}

int bs_bench_seal(uint8_t *buf, size_t n, int frames) {
  static const uint8_t key[BS_SEAL_KEY] = {1};
  uint8_t aad[9] = {0}, tag[BS_SEAL_TAG];
  bs_seal *s = bs_seal_new(key, 0);
  if (!s) return -1;
  int rc = 0;
  for (int i = 0; i < frames && rc == 0; i++) rc = bs_seal_frame(s, (uint64_t)i, aad, sizeof aad, buf, buf, n, tag);
  bs_seal_free(s);
  return rc;
}
