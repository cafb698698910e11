/* The management API's credentials as cluster map operations, so that
 * every node authenticates the same admin and the same tokens. Only hashes
 * are in the map, under "secrets" (never returned by reads):
 *
 *   secrets.admin      {"algorithm": "pbkdf2-hmac-sha256", "salt", "hash",
 *                       "iterations", "must_change"}
 *   secrets.api_tokens {"tk<N>": {"id", "hash" (SHA-256 of the secret),
 *                       "role", "created", "expires" (0: never), "name"}}
 *   secrets.next_api_token
 *
 * The slow hash is computed by the API before it submits (off the loop);
 * the map only checks shapes, so applying stays cheap and deterministic. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cluster_map.h"
#include "cluster_map_int.h"

#define AUTH_MAX_TOKENS 1024

static bool auth__hex(const char *h, size_t n)
{
	if (!h || strlen(h) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
			return false;
	return true;
}

bool map__pwhash_ok(const json_t *h)
{
	json_int_t it;
	return json_is_object(h) && auth__hex(map__str(h, "salt"), 32) &&
	       auth__hex(map__str(h, "hash"), 64) &&
	       map__int(h, "iterations", &it) && it >= 1 && it <= (1 << 30);
}

static json_t *auth__secrets(json_t *map)
{
	json_t *s = json_object_get(map, "secrets");
	if (!json_is_object(s)) {
		s = json_object();
		json_object_set_new(map, "secrets", s);
	}
	return s;
}

void map__set_admin(json_t *map, const json_t *h, bool must_change)
{
	json_object_set_new(
		auth__secrets(map), "admin",
		json_pack("{s:s, s:s, s:s, s:O, s:b}", "algorithm",
			  "pbkdf2-hmac-sha256", "salt", map__str(h, "salt"),
			  "hash", map__str(h, "hash"), "iterations",
			  json_object_get(h, "iterations"), "must_change",
			  must_change));
}

/* {"op": "auth.password", "salt", "hash", "iterations"}: the changed
 * password (the API checked the current one and the new one's length). */
int map_op_auth_password(json_t *map, const json_t *op, json_t **res,
			 char *msg, size_t ml)
{
	if (!map__pwhash_ok(op))
		return map__err(msg, ml, -EINVAL,
				"auth.password needs salt (32 hex), hash (64 "
				"hex), iterations");
	map__set_admin(map, op, false);
	*res = json_pack("{s:b}", "changed", 1);
	return 0;
}

/* {"op": "auth.token.add", "hash", "role", "created", "expires", "name"}:
 * the map names the token (tk<N>). */
int map_op_auth_token_add(json_t *map, const json_t *op, json_t **res,
			  char *msg, size_t ml)
{
	const char *hash = map__str(op, "hash"), *role = map__str(op, "role");
	const char *name = map__str(op, "name");
	json_int_t created, expires;
	if (!map__hex64(hash) || !role ||
	    (strcmp(role, "admin") && strcmp(role, "viewer")) ||
	    !map__int(op, "created", &created) ||
	    !map__int(op, "expires", &expires) || expires < 0 ||
	    (json_object_get(op, "name") && (!name || strlen(name) > 63)))
		return map__err(msg, ml, -EINVAL,
				"auth.token.add needs hash (64 hex), role "
				"admin|viewer, created, expires >= 0, name "
				"(63 characters at most)");
	json_t *sec = auth__secrets(map);
	json_t *toks = json_object_get(sec, "api_tokens");
	if (!json_is_object(toks)) {
		toks = json_object();
		json_object_set_new(sec, "api_tokens", toks);
	}
	if (json_object_size(toks) >= AUTH_MAX_TOKENS)
		return map__err(msg, ml, -ENOSPC, "%d API tokens already",
				AUTH_MAX_TOKENS);
	const char *k;
	json_t *t;
	json_object_foreach(toks, k, t)
		if (!strcmp(map__str(t, "hash") ?: "", hash))
			return map__err(msg, ml, -EEXIST, "token exists");
	json_int_t next = json_integer_value(json_object_get(sec,
							     "next_api_token"));
	if (next < 1)
		next = 1;
	char id[32];
	snprintf(id, sizeof(id), "tk%lld", (long long)next);
	json_object_set_new(sec, "next_api_token", json_integer(next + 1));
	json_object_set_new(toks, id,
			    json_pack("{s:s, s:s, s:s, s:I, s:I, s:s}", "id", id,
				      "hash", hash, "role", role, "created",
				      created, "expires", expires, "name",
				      name ? name : ""));
	/* The hash lets the API tell a replayed add (same op_id, another
	 * secret) from its own. */
	*res = json_pack("{s:s, s:s}", "id", id, "hash", hash);
	return 0;
}

/* {"op": "auth.token.revoke", "id"} */
int map_op_auth_token_revoke(json_t *map, const json_t *op, json_t **res,
			     char *msg, size_t ml)
{
	const char *id = map__str(op, "id");
	json_t *toks = json_object_get(json_object_get(map, "secrets"),
				       "api_tokens");
	if (!id || !json_object_get(toks, id))
		return map__err(msg, ml, -ENOENT, "no token '%s'", id ? id : "");
	json_object_del(toks, id);
	*res = json_pack("{s:s}", "deleted", id);
	return 0;
}
