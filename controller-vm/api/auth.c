/* Credentials: the admin password (a salted PBKDF2-HMAC-SHA256 hash) and
 * API tokens (SHA-256 of a 160-bit random secret: the secret has full
 * entropy, so a fast hash is enough). Both live in the cluster map's
 * secrets (controller-vm/cluster/cluster_map_auth.c), so every node
 * authenticates the same users; this file makes and checks the hashes.
 * Nothing here touches the loop: the caller decides where the slow hash
 * runs. */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"

#define TOKEN_PREFIX "cairn_"

const char *api_role_name(enum api_role r)
{
	switch (r) {
	case API_ROLE_ADMIN:
		return "admin";
	case API_ROLE_VIEWER:
		return "viewer";
	default:
		return "none";
	}
}

int api_role_parse(const char *s, enum api_role *out)
{
	if (!strcmp(s, "admin"))
		*out = API_ROLE_ADMIN;
	else if (!strcmp(s, "viewer"))
		*out = API_ROLE_VIEWER;
	else
		return -EINVAL;
	return 0;
}

static void hex(const unsigned char *b, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[b[i] >> 4];
		out[2 * i + 1] = d[b[i] & 15];
	}
	out[2 * n] = 0;
}

static int unhex(const char *s, unsigned char *b, size_t n)
{
	if (!s || strlen(s) != 2 * n)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		unsigned v = 0;
		for (int j = 0; j < 2; j++) {
			char c = s[2 * i + j];
			v <<= 4;
			if (c >= '0' && c <= '9')
				v |= (unsigned)(c - '0');
			else if (c >= 'a' && c <= 'f')
				v |= (unsigned)(c - 'a' + 10);
			else
				return -EINVAL;
		}
		b[i] = (unsigned char)v;
	}
	return 0;
}

int api_pw_derive(const char *pw, const unsigned char salt[16], unsigned iter,
		  unsigned char out[32])
{
	if (!PKCS5_PBKDF2_HMAC(pw, (int)strlen(pw), salt, 16, (int)iter,
			       EVP_sha256(), 32, out))
		return -EIO;
	return 0;
}

int api_pw_new(const char *pw, unsigned iter, struct api_pwhash *out)
{
	if (RAND_bytes(out->salt, sizeof(out->salt)) != 1)
		return -EIO;
	out->iter = iter;
	return api_pw_derive(pw, out->salt, iter, out->hash);
}

bool api_pw_check(const struct api_pwhash *h, const char *pw)
{
	unsigned char got[32];
	if (api_pw_derive(pw, h->salt, h->iter, got))
		return false;
	return CRYPTO_memcmp(got, h->hash, 32) == 0;
}

int api_random_password(char *out, size_t len)
{
	static const char alpha[] = "ABCDEFGHJKLMNPQRSTUVWXYZ"
				    "abcdefghijkmnopqrstuvwxyz23456789";
	const size_t na = sizeof(alpha) - 1; /* 57 */
	size_t i = 0;
	if (!len)
		return -EINVAL;
	while (i + 1 < len) {
		unsigned char b[32];
		if (RAND_bytes(b, sizeof(b)) != 1)
			return -EIO;
		/* Rejection sampling keeps every character equally likely. */
		for (size_t j = 0; j < sizeof(b) && i + 1 < len; j++)
			if (b[j] < 256 - 256 % na)
				out[i++] = alpha[b[j] % na];
	}
	out[i] = 0;
	return 0;
}

json_t *api_pwhash_json(const struct api_pwhash *h)
{
	char salt[33], hash[65];
	hex(h->salt, sizeof(h->salt), salt);
	hex(h->hash, sizeof(h->hash), hash);
	return json_pack("{s:s, s:s, s:I}", "salt", salt, "hash", hash,
			 "iterations", (json_int_t)h->iter);
}

int api_admin_from_map(const json_t *map, struct api_admin *a)
{
	const json_t *j =
	    json_object_get(json_object_get(map, "secrets"), "admin");
	if (!j)
		return -ENOENT;
	json_t *it = json_object_get(j, "iterations");
	json_int_t iter = json_integer_value(it);
	if (!json_is_integer(it) || iter < 1 || iter > (1 << 30) ||
	    unhex(json_string_value(json_object_get(j, "salt")), a->pw.salt,
		  sizeof(a->pw.salt)) ||
	    unhex(json_string_value(json_object_get(j, "hash")), a->pw.hash,
		  sizeof(a->pw.hash)))
		return -EINVAL;
	a->pw.iter = (unsigned)iter;
	a->must_change = !json_is_false(json_object_get(j, "must_change"));
	return 0;
}

int api_admin_create(char *password_out, size_t len, json_t **hash_out)
{
	struct api_pwhash h;
	char pw[25];
	int rc;
	if (len < sizeof(pw))
		return -EINVAL;
	if ((rc = api_random_password(pw, sizeof(pw))) ||
	    (rc = api_pw_new(pw, API_PBKDF2_ITER, &h)))
		return rc;
	if (!(*hash_out = api_pwhash_json(&h)))
		return -ENOMEM;
	snprintf(password_out, len, "%s", pw);
	OPENSSL_cleanse(pw, sizeof(pw));
	OPENSSL_cleanse(&h, sizeof(h));
	return 0;
}

static void sha256(const char *s, unsigned char out[32])
{
	EVP_Digest(s, strlen(s), out, NULL, EVP_sha256(), NULL);
}

int api_token_new(char *secret_out, size_t len, char hash_hex[65])
{
	unsigned char rnd[20], h[32];
	char rhex[41];
	if (len < sizeof(TOKEN_PREFIX) + 40)
		return -EINVAL;
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return -EIO;
	hex(rnd, sizeof(rnd), rhex);
	snprintf(secret_out, len, TOKEN_PREFIX "%s", rhex);
	sha256(secret_out, h);
	hex(h, sizeof(h), hash_hex);
	OPENSSL_cleanse(rnd, sizeof(rnd));
	OPENSSL_cleanse(rhex, sizeof(rhex));
	return 0;
}

/* Every token is compared (in constant time each), so the time taken
 * does not tell which one matched. */
const json_t *api_token_lookup(const json_t *map, const char *secret)
{
	unsigned char h[32], th[32];
	const json_t *found = NULL, *t;
	const char *k;
	sha256(secret, h);
	json_object_foreach(
	    json_object_get(json_object_get(map, "secrets"), "api_tokens"), k,
	    t)
	{
		if (unhex(json_string_value(json_object_get(t, "hash")), th,
			  sizeof(th)))
			continue; /* a damaged entry grants nothing */
		if (!CRYPTO_memcmp(h, th, 32))
			found = t;
	}
	return found;
}
