/* The management API: HTTPS (TLS 1.2+) REST with JSON, served by h2o's
 * libuv flavour on the caller's loop, over the cluster map
 * (include/cairn/cluster.h). The CLI, the UI and the host agents all use
 * it; docs/api.md describes the endpoints, the auth model and the limits,
 * controller-vm/api/openapi.json is the OpenAPI 3.0 description.
 *
 * Auth: the `admin` account (HTTP Basic), whose generated initial password
 * must be changed before anything but POST /api/v1/password answers, and
 * bearer tokens with a role (admin or viewer) created by the admin. Both
 * are kept hashed in the cluster map's secrets, so every node knows the
 * same ones; changes are map operations through the leader. On a
 * follower, requests that need the leader are forwarded to it (or
 * answered 307 without ca_file), and so are credentials it cannot check
 * yet (a change the leader has and it has not applied). Map-changing
 * requests may carry an Idempotency-Key header: a retry gets the first
 * answer.
 *
 * Threading: everything runs on the loop thread that started the server;
 * password hashing (PBKDF2) runs on libuv's thread pool. */
#ifndef CAIRN_API_H
#define CAIRN_API_H

#include <jansson.h>
#include <stddef.h>
#include <uv.h>

struct cluster;
struct api_server;

struct api_config {
	const char *listen;    /* "HOST:PORT"; port 0 picks a free one */
	const char *cert_file; /* PEM server certificate (pki_cert_issue) */
	const char *key_file;  /* its key */
	const char *state_dir; /* this node's state (nothing written yet) */
	/* NULL: the OpenAPI document built into the binary. */
	const char *openapi_file;
	/* The cluster CA: a follower forwards requests to the leader's API
	 * and checks the leader's certificate against it. NULL: answer 307
	 * with the leader's address instead. */
	const char *ca_file;
	/* Prefix of Location on a redirect to the leader, default "https://".
	 */
	const char *leader_scheme;
	/* This node's own certificate ("node-<id>") and key. With ca_file:
	 * while it knows no leader, it asks the members of its map whether
	 * it is still one (controller-vm/api/membership.c), and learns that
	 * it was removed while it was down. NULL: it does not ask. */
	const char *node_cert_file, *node_key_file;
};

/* The first admin account, made at cluster creation: a random password of
 * 24 characters (in password_out: the only time it is readable) and its
 * salted PBKDF2-SHA256 hash for the map ({"salt", "hash", "iterations"},
 * for cluster_config.admin; the map marks it as to be changed). 0 or
 * -errno. */
int api_admin_create(char *password_out, size_t len, json_t **hash_out);

/* Listens and serves on `loop`. 0 or -errno with a message in err. */
int api_server_start(uv_loop_t *loop, const struct api_config *cfg,
		     struct cluster *cluster, struct api_server **out,
		     char *err, size_t errlen);

/* The port it listens on (useful with port 0). */
int api_server_port(const struct api_server *srv);

/* Stops accepting, lets open connections, cluster operations and
 * forwards finish (an idle keep-alive connection ends at the 10 s idle
 * timeout), frees the server and then calls cb(arg) on the loop. Close it
 * before the cluster: pending cluster callbacks point into it. */
void api_server_close(struct api_server *srv, void (*cb)(void *arg), void *arg);

#endif
