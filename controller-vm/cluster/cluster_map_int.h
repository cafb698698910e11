/* Private to the cluster map: the helpers its operation files share
 * (cluster_map.c: the map, nodes, pools, vdisks, join tokens;
 * cluster_map_auth.c: the admin password and API tokens). */
#ifndef CAIRN_CLUSTER_MAP_INT_H
#define CAIRN_CLUSTER_MAP_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Fills msg and returns rc (a -errno). */
int map__err(char *msg, size_t len, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
bool map__name_ok(const char *n);
const char *map__str(const json_t *op, const char *key);
bool map__int(const json_t *op, const char *key, json_int_t *out);
bool map__hex64(const char *h);

/* {"salt": 32 hex, "hash": 64 hex, "iterations": 1..2^30} */
bool map__pwhash_ok(const json_t *h);
void map__set_admin(json_t *map, const json_t *h, bool must_change);

int map_op_auth_password(json_t *map, const json_t *op, json_t **res,
			 char *msg, size_t ml);
int map_op_auth_token_add(json_t *map, const json_t *op, json_t **res,
			  char *msg, size_t ml);
int map_op_auth_token_revoke(json_t *map, const json_t *op, json_t **res,
			     char *msg, size_t ml);

#endif
