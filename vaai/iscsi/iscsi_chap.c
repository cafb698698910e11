/* CHAP for iSCSI login (RFC 7143 § 12.1.3 over RFC 1994), one-way and
 * mutual, target side. The refusals RFC 7143 asks for:
 *   - § 12.1.3: a challenge from the initiator equal to one we sent
 *     (a reflection attack) closes the login;
 *   - § 12.1.3 / RFC 3723: secrets under 96 bits (12 bytes) are refused;
 *   - § 12.1.3: "the same CHAP secret SHOULD NOT be configured for
 *     authentication of multiple initiators or multiple targets": the
 *     inbound and outbound secrets must differ.
 * Pure apart from MD5 (OpenSSL EVP); randomness comes from the caller. */
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "iscsi_proto.h"
#include "util.h"

int iscsi_chap_check_secrets(const char *user, const char *secret,
			     const char *mutual_user, const char *mutual_secret,
			     char *err, size_t errlen)
{
	if (!user || !*user || strlen(user) > 255) {
		snprintf(err, errlen, "CHAP user must be 1..255 bytes");
		return -EINVAL;
	}
	if (!secret || strlen(secret) < ISCSI_CHAP_SECRET_MIN ||
	    strlen(secret) > ISCSI_CHAP_SECRET_MAX) {
		snprintf(err, errlen,
			 "CHAP secret must be %d..%d bytes (RFC 7143 12.1.3)",
			 ISCSI_CHAP_SECRET_MIN, ISCSI_CHAP_SECRET_MAX);
		return -EINVAL;
	}
	if (!mutual_user && !mutual_secret)
		return 0;
	if (!mutual_user || !*mutual_user || strlen(mutual_user) > 255) {
		snprintf(err, errlen, "mutual CHAP user must be 1..255 bytes");
		return -EINVAL;
	}
	if (!mutual_secret || strlen(mutual_secret) < ISCSI_CHAP_SECRET_MIN ||
	    strlen(mutual_secret) > ISCSI_CHAP_SECRET_MAX) {
		snprintf(err, errlen, "mutual CHAP secret must be %d..%d bytes",
			 ISCSI_CHAP_SECRET_MIN, ISCSI_CHAP_SECRET_MAX);
		return -EINVAL;
	}
	if (!strcmp(secret, mutual_secret)) {
		snprintf(err, errlen,
			 "inbound and outbound CHAP secrets must differ "
			 "(RFC 7143 12.1.3)");
		return -EINVAL;
	}
	return 0;
}

static int iscsi_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int iscsi_b64val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* § 6.1: binary-value = hex-constant / base64-constant. An odd number of
 * hex digits has an implied leading zero. */
int iscsi_chap_decode(const char *s, uint8_t *out, size_t cap)
{
	if (strlen(s) < 3 || s[0] != '0')
		return -EINVAL;
	const char *p = s + 2;
	size_t n = strlen(p), o = 0;
	if (s[1] == 'x' || s[1] == 'X') {
		size_t i = 0;
		if (n % 2) {
			int v = iscsi_hexval(p[0]);
			if (v < 0 || cap < 1)
				return -EINVAL;
			out[o++] = (uint8_t)v;
			i = 1;
		}
		for (; i < n; i += 2) {
			int hi = iscsi_hexval(p[i]),
			    lo = iscsi_hexval(p[i + 1]);
			if (hi < 0 || lo < 0 || o == cap)
				return -EINVAL;
			out[o++] = (uint8_t)(hi << 4 | lo);
		}
		return (int)o;
	}
	if (s[1] == 'b' || s[1] == 'B') {
		uint32_t acc = 0;
		int bits = 0;
		size_t i;
		for (i = 0; i < n && p[i] != '='; i++) {
			int v = iscsi_b64val(p[i]);
			if (v < 0)
				return -EINVAL;
			acc = (acc << 6) | (uint32_t)v;
			bits += 6;
			if (bits >= 8) {
				bits -= 8;
				if (o == cap)
					return -EINVAL;
				out[o++] = (uint8_t)(acc >> bits);
			}
		}
		for (; i < n; i++)
			if (p[i] != '=')
				return -EINVAL;
		return o ? (int)o : -EINVAL;
	}
	return -EINVAL;
}

void iscsi_chap_encode(const uint8_t *in, size_t len, char *out, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	if (cap < 2 * len + 3) {
		if (cap)
			out[0] = '\0';
		return;
	}
	out[0] = '0';
	out[1] = 'x';
	for (size_t i = 0; i < len; i++) {
		out[2 + 2 * i] = hex[in[i] >> 4];
		out[3 + 2 * i] = hex[in[i] & 15];
	}
	out[2 + 2 * len] = '\0';
}

int iscsi_chap_response(uint8_t id, const char *secret, const uint8_t *chal,
			size_t chal_len, uint8_t out[16])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int n = 0;
	int ok = ctx && EVP_DigestInit_ex(ctx, EVP_md5(), NULL) &&
		 EVP_DigestUpdate(ctx, &id, 1) &&
		 EVP_DigestUpdate(ctx, secret, strlen(secret)) &&
		 EVP_DigestUpdate(ctx, chal, chal_len) &&
		 EVP_DigestFinal_ex(ctx, out, &n) && n == 16;
	EVP_MD_CTX_free(ctx);
	return ok ? 0 : -EIO;
}

int iscsi_chap_start(struct iscsi_chap *c, const char *algs,
		     const uint8_t rnd[1 + ISCSI_CHAP_CHALLENGE_LEN],
		     struct iscsi_text *resp, char *err, size_t errlen)
{
	char tmp[256];
	bool md5 = false;
	if (!algs || strlen(algs) >= sizeof(tmp)) {
		snprintf(err, errlen, "missing or long CHAP_A");
		return -EACCES;
	}
	strcpy(tmp, algs);
	for (char *save, *tok = strtok_r(tmp, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save))
		if (!strcmp(tok, "5"))
			md5 = true;
	if (!md5) {
		snprintf(err, errlen, "CHAP_A without MD5 (5)");
		return -EACCES;
	}
	c->id = rnd[0];
	memcpy(c->chal, rnd + 1, sizeof(c->chal));
	c->sent = true;
	char hex[2 * ISCSI_CHAP_CHALLENGE_LEN + 3];
	iscsi_chap_encode(c->chal, sizeof(c->chal), hex, sizeof(hex));
	iscsi_text_add(resp, "CHAP_A", "%d", ISCSI_CHAP_MD5);
	iscsi_text_add(resp, "CHAP_I", "%u", (unsigned)c->id);
	iscsi_text_add(resp, "CHAP_C", "%s", hex);
	return 0;
}

/* Constant time, so the comparison does not leak how much matched. */
static bool iscsi_chap_equal(const uint8_t *a, const uint8_t *b, size_t n)
{
	uint8_t d = 0;
	for (size_t i = 0; i < n; i++)
		d |= a[i] ^ b[i];
	return d == 0;
}

int iscsi_chap_finish(struct iscsi_chap *c, const char *user,
		      const char *secret, const char *mutual_user,
		      const char *mutual_secret, const char *n, const char *r,
		      const char *i, const char *chal, struct iscsi_text *resp,
		      char *err, size_t errlen)
{
	uint8_t got[ISCSI_CHAP_MAX_BIN], want[16];
	if (!c->sent) {
		snprintf(err, errlen, "CHAP response before a challenge");
		return -EACCES;
	}
	c->sent = false; /* one answer per challenge */
	if (!n || !r) {
		snprintf(err, errlen, "CHAP_N or CHAP_R missing");
		return -EACCES;
	}
	if (strcmp(n, user)) {
		snprintf(err, errlen, "unknown CHAP user");
		return -EACCES;
	}
	int len = iscsi_chap_decode(r, got, sizeof(got));
	if (len != 16 ||
	    iscsi_chap_response(c->id, secret, c->chal, sizeof(c->chal), want) <
		0 ||
	    !iscsi_chap_equal(got, want, 16)) {
		snprintf(err, errlen, "CHAP response does not match");
		return -EACCES;
	}
	if (!i && !chal)
		return 0;
	/* Mutual CHAP: the initiator authenticates us. */
	if (!i || !chal) {
		snprintf(err, errlen,
			 "mutual CHAP needs both CHAP_I and CHAP_C");
		return -EACCES;
	}
	if (!mutual_user || !mutual_secret) {
		snprintf(err, errlen, "mutual CHAP asked but not configured");
		return -EACCES;
	}
	char *end;
	errno = 0;
	unsigned long id = strtoul(i, &end, 0);
	if (errno || *end || !*i || id > 255) {
		snprintf(err, errlen, "bad CHAP_I");
		return -EACCES;
	}
	len = iscsi_chap_decode(chal, got, sizeof(got));
	if (len <= 0) {
		snprintf(err, errlen, "bad CHAP_C");
		return -EACCES;
	}
	/* § 12.1.3: "the target MUST NOT ... answer a challenge equal to
	 * one it sent" (reflection). Compared on the full value. */
	if ((size_t)len == sizeof(c->chal) &&
	    iscsi_chap_equal(got, c->chal, sizeof(c->chal))) {
		snprintf(err, errlen, "reflected CHAP challenge");
		return -EACCES;
	}
	uint8_t mine[16];
	if (iscsi_chap_response((uint8_t)id, mutual_secret, got, (size_t)len,
				mine) < 0) {
		snprintf(err, errlen, "MD5 failed");
		return -EACCES;
	}
	char hex[2 * 16 + 3];
	iscsi_chap_encode(mine, 16, hex, sizeof(hex));
	iscsi_text_add(resp, "CHAP_N", "%s", mutual_user);
	iscsi_text_add(resp, "CHAP_R", "%s", hex);
	return 0;
}
