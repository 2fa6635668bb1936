#include "checksum.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

static void to_hex(const unsigned char digest[32], char hex[65]) {
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", digest[i]);
}

int file_sha256(const char *path, long long offset, char hex[65], long long *bytes, char *err,
                size_t errlen) {
    FILE *f = fopen(path, "rb");
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char digest[32];
    unsigned int len = 0;
    int ok = f && ctx && fseeko(f, (off_t)offset, SEEK_SET) == 0 &&
             EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1;
    *bytes = 0;
    unsigned char buf[1 << 16];
    for (size_t n; ok && (n = fread(buf, 1, sizeof buf, f)) > 0; *bytes += (long long)n)
        ok = EVP_DigestUpdate(ctx, buf, n) == 1;
    ok = ok && !ferror(f) && EVP_DigestFinal_ex(ctx, digest, &len) == 1 && len == 32;
    if (!ok) snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
    if (ok) to_hex(digest, hex);
    EVP_MD_CTX_free(ctx);
    if (f) fclose(f);
    return ok ? 0 : -1;
}

int text_sha256(const void *text, size_t n, char hex[65]) {
    unsigned char digest[32];
    unsigned int len = 0;
    if (EVP_Digest(text, n, digest, &len, EVP_sha256(), NULL) != 1 || len != 32) return -1;
    to_hex(digest, hex);
    return 0;
}
