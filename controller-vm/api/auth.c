/* Credentials: the admin password (a salted PBKDF2-HMAC-SHA256 hash) and
 * API tokens (SHA-256 of a 160-bit random secret: the secret has full
 * entropy, so a fast hash is enough). Both live in JSON files under the
 * state directory, written to a temporary file, fsynced and renamed, mode
 * 0600. Nothing here touches the loop: the caller decides where the slow
 * hash runs. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api_internal.h"

#define ADMIN_FILE "api-admin.json"
#define TOKENS_FILE "api-tokens.json"
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

static int path_of(const char *dir, const char *name, char *out, size_t len)
{
	int n = snprintf(out, len, "%s/%s", dir, name);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* Writes `j` to dir/name atomically (tmp + fsync + rename + dir fsync). */
static int store_json(const char *dir, const char *name, json_t *j)
{
	char path[4096], tmp[4200];
	int rc = path_of(dir, name, path, sizeof(path));
	if (rc)
		return rc;
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	char *s = json_dumps(j, JSON_INDENT(1) | JSON_SORT_KEYS);
	if (!s)
		return -ENOMEM;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		free(s);
		return rc;
	}
	size_t len = strlen(s), off = 0;
	while (off < len) {
		ssize_t w = write(fd, s + off, len - off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		off += (size_t)w;
	}
	free(s);
	if (!rc && fsync(fd))
		rc = -errno;
	close(fd);
	if (!rc && rename(tmp, path))
		rc = -errno;
	if (rc) {
		unlink(tmp);
		return rc;
	}
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
}

static int load_json(const char *dir, const char *name, json_t **out)
{
	char path[4096];
	int rc = path_of(dir, name, path, sizeof(path));
	if (rc)
		return rc;
	if (access(path, F_OK))
		return -errno;
	json_error_t e;
	*out = json_load_file(path, JSON_REJECT_DUPLICATES, &e);
	return *out ? 0 : -EINVAL;
}

int api_admin_load(const char *dir, struct api_admin *a)
{
	json_t *j;
	int rc = load_json(dir, ADMIN_FILE, &j);
	if (rc)
		return rc;
	const char *salt = NULL, *hash = NULL;
	json_int_t iter = 0;
	int must = 1;
	rc = -EINVAL;
	if (!json_unpack(j, "{s:s, s:s, s:I, s:b}", "salt", &salt, "hash",
			 &hash, "iterations", &iter, "must_change", &must) &&
	    iter > 0 && iter < (1 << 30) &&
	    !unhex(salt, a->pw.salt, sizeof(a->pw.salt)) &&
	    !unhex(hash, a->pw.hash, sizeof(a->pw.hash))) {
		a->pw.iter = (unsigned)iter;
		a->must_change = must;
		rc = 0;
	}
	json_decref(j);
	return rc;
}

int api_admin_store(const char *dir, const struct api_admin *a)
{
	char salt[33], hash[65];
	hex(a->pw.salt, sizeof(a->pw.salt), salt);
	hex(a->pw.hash, sizeof(a->pw.hash), hash);
	json_t *j = json_pack("{s:s, s:s, s:s, s:I, s:b}", "algorithm",
			      "pbkdf2-hmac-sha256", "salt", salt, "hash", hash,
			      "iterations", (json_int_t)a->pw.iter,
			      "must_change", a->must_change);
	if (!j)
		return -ENOMEM;
	int rc = store_json(dir, ADMIN_FILE, j);
	json_decref(j);
	return rc;
}

int api_admin_init(const char *state_dir, char *password_out, size_t len)
{
	struct api_admin a;
	if (len < 21)
		return -EINVAL;
	password_out[0] = 0;
	int rc = api_admin_load(state_dir, &a);
	if (!rc)
		return 0;
	if (rc != -ENOENT)
		return rc;
	if (mkdir(state_dir, 0700) && errno != EEXIST)
		return -errno;
	char pw[25];
	if ((rc = api_random_password(pw, sizeof(pw))) ||
	    (rc = api_pw_new(pw, API_PBKDF2_ITER, &a.pw)))
		return rc;
	a.must_change = true;
	if ((rc = api_admin_store(state_dir, &a)))
		return rc;
	snprintf(password_out, len, "%s", pw);
	OPENSSL_cleanse(pw, sizeof(pw));
	return 1;
}

void api_tokens_free(struct api_tokens *t)
{
	free(t->v);
	t->v = NULL;
	t->n = 0;
}

int api_tokens_load(const char *dir, struct api_tokens *t)
{
	json_t *j;
	memset(t, 0, sizeof(*t));
	t->next_id = 1;
	int rc = load_json(dir, TOKENS_FILE, &j);
	if (rc == -ENOENT)
		return 0;
	if (rc)
		return rc;
	json_t *arr = json_object_get(j, "tokens");
	json_int_t next = json_integer_value(json_object_get(j, "next_id"));
	if (!json_is_array(arr) || json_array_size(arr) > API_MAX_TOKENS) {
		json_decref(j);
		return -EINVAL;
	}
	t->v = calloc(json_array_size(arr) + 1, sizeof(*t->v));
	if (!t->v) {
		json_decref(j);
		return -ENOMEM;
	}
	t->next_id = next > 0 ? (uint64_t)next : 1;
	size_t i;
	json_t *e;
	json_array_foreach(arr, i, e)
	{
		struct api_token *k = &t->v[t->n];
		const char *id, *hash, *role, *name = "";
		json_int_t created = 0, expires = 0;
		if (json_unpack(e, "{s:s, s:s, s:s, s:I, s:I, s?s}", "id", &id,
				"hash", &hash, "role", &role, "created",
				&created, "expires", &expires, "name", &name) ||
		    unhex(hash, k->hash, sizeof(k->hash)) ||
		    api_role_parse(role, &k->role))
			continue; /* a damaged entry grants nothing */
		snprintf(k->id, sizeof(k->id), "%s", id);
		snprintf(k->name, sizeof(k->name), "%s", name);
		k->created = created;
		k->expires = expires;
		t->n++;
	}
	json_decref(j);
	return 0;
}

int api_tokens_store(const char *dir, const struct api_tokens *t)
{
	json_t *arr = json_array();
	for (size_t i = 0; i < t->n; i++) {
		const struct api_token *k = &t->v[i];
		char hash[65];
		hex(k->hash, sizeof(k->hash), hash);
		json_array_append_new(
		    arr,
		    json_pack("{s:s, s:s, s:s, s:I, s:I, s:s}", "id", k->id,
			      "hash", hash, "role", api_role_name(k->role),
			      "created", (json_int_t)k->created, "expires",
			      (json_int_t)k->expires, "name", k->name));
	}
	json_t *j = json_pack("{s:o, s:I}", "tokens", arr, "next_id",
			      (json_int_t)t->next_id);
	if (!j)
		return -ENOMEM;
	int rc = store_json(dir, TOKENS_FILE, j);
	json_decref(j);
	return rc;
}

static void sha256(const char *s, unsigned char out[32])
{
	EVP_Digest(s, strlen(s), out, NULL, EVP_sha256(), NULL);
}

int api_tokens_add(struct api_tokens *t, enum api_role role, int64_t now,
		   int64_t expires, const char *name, char *secret_out,
		   size_t len, struct api_token **out)
{
	unsigned char rnd[20];
	char rhex[41];
	if (t->n >= API_MAX_TOKENS)
		return -ENOSPC;
	if (len < sizeof(TOKEN_PREFIX) + 40)
		return -EINVAL;
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return -EIO;
	hex(rnd, sizeof(rnd), rhex);
	struct api_token *v = realloc(t->v, (t->n + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	t->v = v;
	struct api_token *k = &v[t->n++];
	memset(k, 0, sizeof(*k));
	snprintf(k->id, sizeof(k->id), "tk%llu",
		 (unsigned long long)t->next_id++);
	snprintf(secret_out, len, TOKEN_PREFIX "%s", rhex);
	sha256(secret_out, k->hash);
	k->role = role;
	k->created = now;
	k->expires = expires;
	snprintf(k->name, sizeof(k->name), "%s", name ? name : "");
	OPENSSL_cleanse(rnd, sizeof(rnd));
	*out = k;
	return 0;
}

const struct api_token *api_tokens_find(const struct api_tokens *t,
					const char *secret)
{
	unsigned char h[32];
	const struct api_token *found = NULL;
	sha256(secret, h);
	for (size_t i = 0; i < t->n; i++)
		if (!CRYPTO_memcmp(h, t->v[i].hash, 32))
			found = &t->v[i];
	return found;
}

int api_tokens_remove(struct api_tokens *t, const char *id)
{
	for (size_t i = 0; i < t->n; i++) {
		if (strcmp(t->v[i].id, id))
			continue;
		memmove(&t->v[i], &t->v[i + 1], (t->n - i - 1) * sizeof(*t->v));
		t->n--;
		return 0;
	}
	return -ENOENT;
}
