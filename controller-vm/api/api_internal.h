/* The management API's private header: the server (server.c: h2o, TLS,
 * connections, the request pipeline), credentials (auth.c), the endpoint
 * table and its handlers (routes.c) and long-operation tasks (tasks.c). */
#ifndef CAIRN_API_INTERNAL_H
#define CAIRN_API_INTERNAL_H

#define H2O_USE_LIBUV 1
#include <h2o.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <cairn/api.h>

#define API_MAX_BODY (1u << 20)
#define API_PBKDF2_ITER 600000
#define API_MIN_PASSWORD 12
#define API_MAX_PASSWORD 256
#define API_MAX_BASIC 360 /* base64 of "admin:" + the longest password */
#define API_MAX_TASKS 256
#define API_MAX_TOKENS 1024
#define API_IDLE_TIMEOUT_MS 10000
#define API_AUTH_CACHE_SEC 300

enum api_role { API_ROLE_NONE = 0, API_ROLE_VIEWER = 1, API_ROLE_ADMIN = 2 };

const char *api_role_name(enum api_role r);
int api_role_parse(const char *s, enum api_role *out);

/* ---- credentials (auth.c) ---- */

struct api_pwhash {
	unsigned char salt[16];
	unsigned char hash[32];
	unsigned iter;
};

struct api_admin {
	struct api_pwhash pw;
	bool must_change;
};

/* PBKDF2-HMAC-SHA256; slow on purpose: call it off the loop. */
int api_pw_derive(const char *pw, const unsigned char salt[16], unsigned iter,
		  unsigned char out[32]);
int api_pw_new(const char *pw, unsigned iter, struct api_pwhash *out);
bool api_pw_check(const struct api_pwhash *h, const char *pw);
/* {"salt", "hash", "iterations"}: what auth.password carries. */
json_t *api_pwhash_json(const struct api_pwhash *h);

/* The admin account from a map's secrets: 0, -ENOENT (none yet) or
 * -EINVAL (damaged: nobody logs in). */
int api_admin_from_map(const json_t *map, struct api_admin *a);

/* A new token secret (shown once) and the hex SHA-256 the map keeps. */
int api_token_new(char *secret_out, size_t len, char hash_hex[65]);
/* The map's token entry whose hash matches `secret`, or NULL. */
const json_t *api_token_lookup(const json_t *map, const char *secret);

/* Random printable password of len-1 characters. */
int api_random_password(char *out, size_t len);

/* ---- tasks (tasks.c) ---- */

enum api_task_state { API_TASK_RUNNING, API_TASK_DONE, API_TASK_FAILED };

struct api_task {
	uint64_t id;
	char op[32];
	enum api_task_state state;
	double progress;
	json_t *result; /* owned; NULL until done */
	char error[256];
	int status; /* -errno on failure */
	int64_t created, finished;
};

/* A task id names its node: node id * 2^32 + a per-server sequence that
 * starts at a random point (so a restarted node rarely reuses an id), so
 * any node can tell whom to ask (api_task_node). Node ids stay far below
 * 2^21, so ids stay below 2^53 (exact in JavaScript). */
#define API_TASK_NODE_SHIFT 32
struct api_tasks {
	struct api_task v[API_MAX_TASKS]; /* a ring; oldest finished reused */
	size_t n;
	uint64_t node;	   /* this server's cluster node id */
	uint32_t next_seq; /* 0 is skipped */
};

struct api_task *api_task_new(struct api_tasks *ts, const char *op,
			      int64_t now);
struct api_task *api_task_find(struct api_tasks *ts, uint64_t id);
/* The node that keeps task `id`. */
static inline uint64_t api_task_node(uint64_t id)
{
	return id >> API_TASK_NODE_SHIFT;
}
json_t *api_task_json(const struct api_task *t);
void api_tasks_free(struct api_tasks *ts);

/* ---- forwarding to the leader (forward.c) ---- */

struct api_fwd;
struct api_call;
int api_fwd_create(struct api_server *srv, const char *ca_file,
		   struct api_fwd **out);
/* 0: the answer comes later through the call; else answer it yourself. */
int api_fwd_start(struct api_fwd *f, struct api_call *call, const char *leader);
void api_fwd_close(struct api_fwd *f);
bool api_fwd_closed(struct api_fwd *f);
void api_fwd_free(struct api_fwd *f);

/* ---- "am I still a member?" (membership.c) ---- */

struct api_probe;
/* Starts asking when cfg names the node's certificate; 0 or -errno. */
int api_probe_start(struct api_server *srv, const struct api_config *cfg);
void api_probe_close(struct api_probe *p); /* NULL: nothing */
void api_probe_free(struct api_probe *p);  /* after it closed */
void api_membership_post(struct api_call *call);

/* ---- the server and a request in flight (server.c) ---- */

struct api_route;
struct api_server;

struct api_server {
	uv_loop_t *loop;
	struct cluster *cluster;
	char *state_dir, *openapi_file, *leader_scheme;
	char *ca_pem; /* the cluster CA certificate, served to joining nodes */
	uv_tcp_t listener;
	h2o_globalconf_t h2o_config;
	h2o_context_t h2o_ctx;
	h2o_accept_ctx_t accept_ctx;
	SSL_CTX *ssl_ctx;
	int port;
	struct api_fwd *fwd; /* NULL: answer 307 instead of forwarding */
	struct api_probe *probe; /* NULL: does not ask (membership.c) */

	struct api_tasks tasks;
	/* A verified Basic password, so that PBKDF2 runs once per TTL; the
	 * digest covers the stored hash too, so a password changed through
	 * any node invalidates it. */
	unsigned char cache_key[32], cache_digest[32];
	time_t cache_until;

	/* accounting for close and /metrics */
	unsigned nconns, nwork, nops;
	uint64_t conns_total;
	uint64_t status_count[600];
	uint64_t *route_count;
	time_t started;

	bool closing, closed_listener, fwd_closing;
	uv_timer_t close_timer;
	void (*close_cb)(void *);
	void *close_arg;
};

struct api_call {
	struct api_server *srv;
	h2o_req_t *req;		/* NULL once the client has gone */
	struct api_call **slot; /* in req->pool; cleared on either side */
	const struct api_route *route;
	char param[128]; /* the {…} path segment, if any */
	enum api_role role;
	bool via_basic;
	json_t *body; /* parsed request body or NULL */
	/* PBKDF2 on the thread pool */
	uv_work_t work;
	char pw[API_MAX_PASSWORD + 1];
	struct api_pwhash pwh;
	int work_rc;
	bool work_ok;
	char op_id[72]; /* the client's Idempotency-Key, or "" */
	/* A forward to a node other than the leader (its id; 0: the
	 * leader), for the error when it cannot be reached. */
	uint64_t fwd_node;
	bool replay_tried; /* a replayed password change was checked */
	char token_hash[65]; /* tokens POST: the hash this call made */
	void (*work_done)(struct api_call *);
	struct api_task *task;
};

struct api_route {
	const char *method;
	const char *path; /* "{x}" matches one segment */
	enum api_role min_role;
	unsigned flags;
	void (*handle)(struct api_call *call);
};
#define API_R_BASIC_ONLY 1u    /* only the admin's password, not a token */
#define API_R_BEFORE_CHANGE 2u /* allowed while the password must change */
#define API_R_BODY 4u	       /* takes a JSON object body */
/* No credentials: the joining node's CA fetch and its join, which the
 * one-time token itself authenticates. */
#define API_R_PUBLIC 8u

extern const struct api_route api_routes[];
extern const size_t api_nroutes;

/* Answers the call (once) and frees it. body may be NULL; it is stolen. */
void api_reply(struct api_call *call, int status, json_t *body);
void api_reply_error(struct api_call *call, int status, const char *code,
		     const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Hands the call to node `node`'s API at `addr` (forward, or 307 when
 * this server does not forward or the call was forwarded already). */
void api_forward_to_node(struct api_call *call, uint64_t node,
			 const char *addr);
/* Maps a cluster error to HTTP (-EREMOTE becomes a 307 to the leader). */
void api_reply_cluster_error(struct api_call *call, int status,
			     const char *msg);
void api_reply_text(struct api_call *call, int status, const char *ctype,
		    const char *text, size_t len);
/* Runs PBKDF2 of call->pw on the thread pool, then done(call). */
void api_call_hash(struct api_call *call, bool verify,
		   void (*done)(struct api_call *));
void api_call_free(struct api_call *call);
void api_metrics(struct api_server *srv, struct api_call *call);
void api_auth_cache_set(struct api_server *srv, const char *pw);
/* The admin account as this node's map has it (see api_admin_from_map). */
int api_admin_get(struct api_server *srv, struct api_admin *a);
/* A linearizable read of the map (routes.c), then done(call, map). */
void api_read_map(struct api_call *call,
		  void (*done)(struct api_call *, json_t *));
/* Adds the call's Idempotency-Key to an operation as "op_id". */
void api_op_id(struct api_call *call, json_t *op);
void api_auth_cache_clear(struct api_server *srv);

extern const char api_openapi_json[];

#endif
