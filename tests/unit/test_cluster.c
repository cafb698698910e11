/* The cluster map on Raft, with real libraft, real mutual TLS and real
 * sockets on loopback: nodes run in this process on one loop (the
 * multi-process tests with cairnd come when cairnd hosts the cluster).
 *
 * Forms a cluster, adds nodes, refuses a pool the map cannot hold, kills
 * the leader and checks a new one takes over with every committed change,
 * checks that a minority refuses changes, restarts the stopped nodes and
 * checks every map converges — and that a history of operations matches a
 * sequential model (each accepted op applied once, in commit order). */
#include <cairn/cluster.h>
#include <cairn/pki.h>
#include <errno.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdarg.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../../controller-vm/cluster/cluster_map.h"
#include "check.h"

int failures;

#define N 5

struct node {
	struct cluster *c;
	struct cluster_config cfg;
	char name[16], dir[256], raft[32], api[32], crt[256], key[256];
};

struct env {
	uv_loop_t loop;
	char base[64], ca[128], caf[160], cakey[160];
	struct node n[N];
	json_t *model; /* the sequential model of the map */
	unsigned ops_checked;
};

struct result {
	bool done;
	int status;
	char msg[256];
	json_t *res;
};

static void op_cb(void *arg, int status, json_t *res, const char *msg)
{
	struct result *r = arg;
	r->done = true;
	r->status = status;
	snprintf(r->msg, sizeof(r->msg), "%s", msg ? msg : "");
	r->res = res ? json_deep_copy(res) : NULL;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs the loop until *flag or the deadline (seconds); true if flagged. */
static bool run_until(struct env *e, bool *flag, double secs)
{
	double end = now() + secs;
	while (!*flag && now() < end)
		uv_run(&e->loop, UV_RUN_NOWAIT), usleep(1000);
	return *flag;
}

static void run_for(struct env *e, double secs)
{
	bool never = false;
	run_until(e, &never, secs);
}

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof(a);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) ||
	    getsockname(fd, (struct sockaddr *)&a, &l))
		abort();
	close(fd);
	return ntohs(a.sin_port);
}

static void node_start(struct env *e, int i, bool bootstrap)
{
	struct node *nd = &e->n[i];
	char err[256];
	nd->cfg.bootstrap = bootstrap;
	int rc = cluster_start(&e->loop, &nd->cfg, &nd->c, err, sizeof(err));
	if (rc)
		fprintf(stderr, "node %d: %s\n", i + 1, err);
	CHECK_EQ(rc, 0);
}

static void stopped(void *arg)
{
	*(bool *)arg = true;
}

static void node_stop(struct env *e, int i)
{
	bool done = false;
	cluster_stop(e->n[i].c, stopped, &done);
	CHECK(run_until(e, &done, 10));
	e->n[i].c = NULL;
}

static int leader(struct env *e)
{
	for (int i = 0; i < N; i++)
		if (e->n[i].c && cluster_is_leader(e->n[i].c))
			return i;
	return -1;
}

static int wait_leader(struct env *e, double secs)
{
	double end = now() + secs;
	while (now() < end) {
		int l = leader(e);
		if (l >= 0)
			return l;
		uv_run(&e->loop, UV_RUN_NOWAIT);
		usleep(2000);
	}
	return -1;
}

/* Submits on the leader, retrying through elections; checks the answer
 * against the sequential model: the same status, and the same map after. */
static int submit(struct env *e, json_t *op, double secs)
{
	double end = now() + secs;
	struct result r = {0};
	while (now() < end) {
		int l = wait_leader(e, end - now());
		if (l < 0)
			break;
		memset(&r, 0, sizeof(r));
		cluster_submit(e->n[l].c, op, op_cb, &r);
		run_until(e, &r.done, end - now());
		if (r.done && r.status != -EAGAIN && r.status != -EREMOTE)
			break;
		json_decref(r.res);
		r.res = NULL;
	}
	if (!r.done) {
		json_decref(op);
		return -ETIMEDOUT;
	}
	/* The model applies the same op; both must agree. */
	json_t *res = NULL;
	char msg[256];
	int mrc = cluster_map_apply(e->model, op, &res, msg, sizeof(msg));
	CHECK_EQ(r.status, mrc);
	e->ops_checked++;
	json_decref(res);
	json_decref(r.res);
	json_decref(op);
	return r.status;
}

/* Public maps: the secrets (CA key, tokens) differ from the model only
 * in what the model cannot know (token hashes and times). */
static bool maps_equal(struct env *e)
{
	json_t *m = cluster_map_public(e->model);
	bool eq = true;
	for (int i = 0; i < N && eq; i++) {
		if (!e->n[i].c)
			continue;
		json_t *l = cluster_map_public(cluster_local_map(e->n[i].c));
		eq = json_equal(l, m);
		json_decref(l);
	}
	json_decref(m);
	return eq;
}

static bool wait_converged(struct env *e, double secs)
{
	double end = now() + secs;
	while (now() < end) {
		if (maps_equal(e))
			return true;
		uv_run(&e->loop, UV_RUN_NOWAIT);
		usleep(2000);
	}
	return false;
}

static void add_node(struct env *e, int i)
{
	node_start(e, i, false);
	struct node *nd = &e->n[i];
	struct cluster_node cn = {.id = nd->cfg.id,
				  .name = nd->name,
				  .raft_address = nd->raft,
				  .api_address = nd->api,
				  .domain = nd->cfg.domain,
				  .capacity = 1};
	int l = wait_leader(e, 10);
	CHECK(l >= 0);
	struct result r = {0};
	cluster_add_node(e->n[l].c, &cn, op_cb, &r);
	CHECK(run_until(e, &r.done, 20));
	if (r.status)
		fprintf(stderr, "add node %d: %s\n", i + 1, r.msg);
	CHECK_EQ(r.status, 0);
	json_decref(r.res);
	/* The model learns of it as the map did. */
	json_t *op = json_pack("{s:s, s:I, s:s, s:s, s:s, s:I, s:f}", "op",
			       "node.add", "id", (json_int_t)nd->cfg.id, "name",
			       nd->name, "raft", nd->raft, "api", nd->api,
			       "domain", (json_int_t)nd->cfg.domain,
			       "capacity", 1.0);
	json_t *res = NULL;
	char msg[256];
	CHECK_EQ(cluster_map_apply(e->model, op, &res, msg, sizeof(msg)), 0);
	json_decref(res);
	json_decref(op);
}

/* Formats through a local buffer: the fields share one struct. */
static void fmt(char *dst, size_t n, const char *f, ...)
	__attribute__((format(printf, 3, 4)));
static void fmt(char *dst, size_t n, const char *f, ...)
{
	char tmp[512];
	va_list ap;
	va_start(ap, f);
	vsnprintf(tmp, sizeof(tmp), f, ap);
	va_end(ap);
	size_t l = strnlen(tmp, n - 1);
	memcpy(dst, tmp, l);
	dst[l] = 0;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

static char *make_token(struct env *e, unsigned ttl)
{
	int l = wait_leader(e, 10);
	struct result r = {0};
	cluster_token_create(e->n[l].c, ttl, op_cb, &r);
	CHECK(run_until(e, &r.done, 10));
	CHECK_EQ(r.status, 0);
	char *t = r.res ? strdup(json_string_value(json_object_get(r.res,
								   "token")))
			: NULL;
	json_decref(r.res);
	return t;
}

static int join(struct env *e, const char *token, const char *name,
		const char *raft, const char *api, json_t **reply)
{
	int l = wait_leader(e, 10);
	json_t *req = json_pack("{s:s, s:s, s:s, s:s, s:i, s:f}", "token",
				token, "name", name, "raft", raft, "api", api,
				"domain", 9, "capacity", 1.0);
	struct result r = {0};
	cluster_join(e->n[l].c, req, op_cb, &r);
	json_decref(req);
	CHECK(run_until(e, &r.done, 20));
	if (reply)
		*reply = r.res;
	else
		json_decref(r.res);
	return r.status;
}

/* A node joins with a one-time token: it gets its id and certificate from
 * the leader, then starts; the model learns what the map did. */
static void join_node(struct env *e, int i)
{
	struct node *nd = &e->n[i];
	char *token = make_token(e, 600);
	json_t *rep = NULL;
	int rc = join(e, token, nd->name, nd->raft, nd->api, &rep);
	CHECK_EQ(rc, 0);
	CHECK_EQ(join(e, token, "again", "127.0.0.1:1", "x", NULL), -EACCES);
	if (rc || !rep) {
		free(token);
		return;
	}
	json_int_t id = json_integer_value(json_object_get(rep, "id"));
	CHECK_EQ(id, i + 1);
	nd->cfg.id = (uint64_t)id;
	write_file(nd->crt, json_string_value(json_object_get(rep, "cert")));
	write_file(nd->key, json_string_value(json_object_get(rep, "key")));
	json_decref(rep);
	node_start(e, i, false);
	/* the model: the token's use reserved the id, then node.add */
	char hash[65];
	const char *secret = strrchr(token, ':') + 1;
	unsigned char md[32];
	unsigned int mdn;
	EVP_Digest(secret, strlen(secret), md, &mdn, EVP_sha256(), NULL);
	for (int k = 0; k < 32; k++)
		snprintf(hash + 2 * k, 3, "%02x", md[k]);
	json_t *ops[3] = {
		json_pack("{s:s, s:s, s:i, s:i}", "op", "token.create", "hash",
			  hash, "now", 0, "expires", 1 << 30),
		json_pack("{s:s, s:s, s:i}", "op", "token.use", "hash", hash,
			  "now", 0),
		json_pack("{s:s, s:I, s:s, s:s, s:s, s:i, s:f}", "op",
			  "node.add", "id", id, "name", nd->name, "raft",
			  nd->raft, "api", nd->api, "domain", 9, "capacity",
			  1.0)};
	for (int k = 0; k < 3; k++) {
		json_t *res = NULL;
		char msg[256];
		CHECK_EQ(cluster_map_apply(e->model, ops[k], &res, msg,
					   sizeof(msg)),
			 0);
		json_decref(res);
		json_decref(ops[k]);
	}
	free(token);
}

static unsigned voters(struct env *e)
{
	int l = wait_leader(e, 10);
	if (l < 0)
		return 0;
	json_t *st = cluster_status(e->n[l].c), *s;
	unsigned v = 0;
	size_t k;
	json_array_foreach(json_object_get(st, "servers"), k, s)
		v += !strcmp(json_string_value(json_object_get(s, "role")),
			     "voter");
	json_decref(st);
	return v;
}

/* Removes node i through the leader; want: 0 or the refusal. On success
 * the node refuses cluster work, is stopped, and the model learns the
 * removal as the map did (drain, leave, remove). */
static void remove_node(struct env *e, int i, int want)
{
	int l = wait_leader(e, 10);
	CHECK(l >= 0);
	json_int_t epoch0 = json_integer_value(
	    json_object_get(cluster_local_map(e->n[l].c), "epoch"));
	struct result r = {0};
	char op_id[32];
	snprintf(op_id, sizeof(op_id), "rm-%d", i + 1);
	cluster_remove_node(e->n[l].c, e->n[i].cfg.id, op_id, op_cb, &r);
	CHECK(run_until(e, &r.done, 40));
	if (r.status != want)
		fprintf(stderr, "remove node %d: %d %s\n", i + 1, r.status,
			r.msg);
	CHECK_EQ(r.status, want);
	json_decref(r.res);
	if (want) {
		CHECK(strstr(r.msg, "too few") != NULL);
		CHECK_EQ(json_integer_value(json_object_get(
			     cluster_local_map(e->n[l].c), "epoch")),
			 epoch0);
		return;
	}
	/* the removed node knows, and says so */
	json_t *st = NULL;
	for (double end = now() + 10; now() < end; run_for(e, 0.05)) {
		json_decref(st);
		st = cluster_status(e->n[i].c);
		if (json_is_true(json_object_get(st, "removed")))
			break;
	}
	CHECK(json_is_true(json_object_get(st, "removed")));
	json_decref(st);
	memset(&r, 0, sizeof(r));
	json_t *op = json_pack("{s:s, s:s}", "op", "vdisk.delete", "name", "x");
	cluster_submit(e->n[i].c, op, op_cb, &r);
	json_decref(op);
	CHECK(r.done && r.status == -EIDRM);
	json_decref(r.res);
	node_stop(e, i);
	static const char *const steps[] = {"node.drain", "node.leave",
					    "node.remove"};
	for (int k = 0; k < 3; k++) {
		json_t *res = NULL, *o = json_pack("{s:s, s:I}", "op", steps[k],
						   "id",
						   (json_int_t)e->n[i].cfg.id);
		char msg[256];
		CHECK_EQ(cluster_map_apply(e->model, o, &res, msg, sizeof(msg)),
			 0);
		json_decref(res);
		json_decref(o);
	}
	e->ops_checked += 3;
	CHECK(wait_converged(e, 20));
}

static void setup(struct env *e)
{
	memset(e, 0, sizeof(*e));
	uv_loop_init(&e->loop);
	fmt(e->base, sizeof(e->base), "/tmp/cairn-test-cluster-XXXXXX");
	if (!mkdtemp(e->base))
		abort();
	char err[256];
	fmt(e->ca, sizeof(e->ca), "%s/ca", e->base);
	fmt(e->caf, sizeof(e->caf), "%s/ca.crt", e->ca);
	fmt(e->cakey, sizeof(e->cakey), "%s/ca.key", e->ca);
	CHECK_EQ(pki_ca_create(e->ca, "test", 30, err, sizeof(err)), 0);
	for (int i = 0; i < N; i++) {
		struct node *nd = &e->n[i];
		fmt(nd->name, sizeof(nd->name), "node-%d", i + 1);
		fmt(nd->dir, sizeof(nd->dir), "%s/%s", e->base, nd->name);
		fmt(nd->raft, sizeof(nd->raft), "127.0.0.1:%d",
			 free_port());
		fmt(nd->api, sizeof(nd->api), "127.0.0.1:%d",
			 20000 + i);
		fmt(nd->crt, sizeof(nd->crt), "%s/%s.crt", nd->dir,
			 nd->name);
		fmt(nd->key, sizeof(nd->key), "%s/%s.key", nd->dir,
			 nd->name);
		CHECK_EQ(pki_cert_issue(e->ca, nd->name, nd->dir, 0, 30, err,
					sizeof(err)),
			 0);
		nd->cfg = (struct cluster_config){
			.id = (uint64_t)i + 1,
			.name = nd->name,
			.dir = nd->dir,
			.raft_address = nd->raft,
			.api_address = nd->api,
			.ca_file = e->caf,
			.cert_file = nd->crt,
			.key_file = nd->key,
			.domain = (uint32_t)i,
			.capacity = 1,
			.cluster_name = "test",
			.election_ms = 400,
		};
		if (i == 0)
			nd->cfg.ca_key_file = e->cakey;
	}
	e->model = cluster_map_new();
}

int main(void)
{
	struct env e;
	signal(SIGPIPE, SIG_IGN); /* as cairnd: a peer may vanish mid-write */
	setup(&e);
	double t0 = now();

	/* Form: one node bootstraps and registers itself. */
	node_start(&e, 0, true);
	CHECK(wait_leader(&e, 15) == 0);
	json_t *res = NULL;
	char msg[256];
	char *cacrt = pki_read_file(e.caf), *cakey = pki_read_file(e.cakey);
	json_t *init = json_pack("{s:s, s:s, s:s, s:s}", "op", "cluster.init",
				 "name", "test", "ca_crt", cacrt, "ca_key",
				 cakey);
	free(cacrt);
	free(cakey);
	cluster_map_apply(e.model, init, &res, msg, sizeof(msg));
	json_decref(init);
	json_t *self = json_pack("{s:s, s:I, s:s, s:s, s:s, s:I, s:f}", "op",
				 "node.add", "id", (json_int_t)1, "name",
				 "node-1", "raft", e.n[0].raft, "api",
				 e.n[0].api, "domain", (json_int_t)0,
				 "capacity", 1.0);
	cluster_map_apply(e.model, self, &res, msg, sizeof(msg));
	json_decref(res);
	json_decref(self);
	CHECK(wait_converged(&e, 10));

	/* A pool the cluster cannot satisfy is refused, nothing changes. */
	add_node(&e, 1);
	CHECK_EQ(submit(&e,
			json_pack("{s:s, s:s, s:{s:i}}", "op", "pool.create",
				  "name", "rf3", "policy", "replicas", 3),
			10),
		 -ENOSPC);
	add_node(&e, 2);
	CHECK(wait_converged(&e, 10));
	/* standbys become voters once caught up */
	double tv3 = now() + 15;
	while (voters(&e) != 3 && now() < tv3)
		run_for(&e, 0.1);
	CHECK_EQ(voters(&e), 3);
	json_t *st = cluster_status(e.n[0].c);
	CHECK_EQ(json_array_size(json_object_get(st, "servers")), 3);
	json_decref(st);

	CHECK_EQ(submit(&e,
			json_pack("{s:s, s:s, s:{s:i}}", "op", "pool.create",
				  "name", "rf3", "policy", "replicas", 3),
			10),
		 0);
	for (int i = 0; i < 10; i++) {
		char name[16];
		snprintf(name, sizeof(name), "v%d", i);
		CHECK_EQ(submit(&e,
				json_pack("{s:s, s:s, s:s, s:I}", "op",
					  "vdisk.create", "pool", "rf3", "name",
					  name, "size", (json_int_t)1 << 30),
				10),
			 0);
	}
	CHECK_EQ(submit(&e,
			json_pack("{s:s, s:s, s:s, s:I}", "op", "vdisk.create",
				  "pool", "rf3", "name", "v0", "size",
				  (json_int_t)4096),
			10),
		 -EEXIST);
	CHECK(wait_converged(&e, 10));

	/* A follower redirects to the leader's API. */
	int l = leader(&e);
	int f = (l + 1) % 3;
	struct result r = {0};
	json_t *op = json_pack("{s:s, s:s}", "op", "vdisk.delete", "name",
			       "v1");
	cluster_submit(e.n[f].c, op, op_cb, &r);
	json_decref(op);
	CHECK(r.done && r.status == -EREMOTE &&
	      !strcmp(r.msg, e.n[l].api));

	/* Kill the leader: a new one takes over with everything committed. */
	double tk = now();
	node_stop(&e, l);
	int l2 = wait_leader(&e, 15);
	double recovery = now() - tk;
	CHECK(l2 >= 0 && l2 != l);
	CHECK_EQ(submit(&e,
			json_pack("{s:s, s:s}", "op", "vdisk.delete", "name",
				  "v1"),
			15),
		 0);
	CHECK(wait_converged(&e, 10));

	/* Two of three gone: the last one refuses changes. */
	node_stop(&e, l2);
	int last = 3 - l - l2; /* the remaining index of 0, 1, 2 */
	run_for(&e, 1.5);      /* past an election timeout */
	memset(&r, 0, sizeof(r));
	op = json_pack("{s:s, s:s}", "op", "vdisk.delete", "name", "v2");
	cluster_submit(e.n[last].c, op, op_cb, &r);
	json_decref(op);
	CHECK(run_until(&e, &r.done, 10));
	CHECK(r.status == -EAGAIN || r.status == -EREMOTE);
	json_decref(r.res);
	memset(&r, 0, sizeof(r));
	cluster_read(e.n[last].c, op_cb, &r);
	CHECK(run_until(&e, &r.done, 10));
	CHECK(r.status == -EAGAIN || r.status == -EREMOTE);
	json_decref(r.res);

	/* Restart both: the cluster recovers, every map converges. */
	node_start(&e, l, false);
	node_start(&e, l2, false);
	CHECK(wait_leader(&e, 15) >= 0);
	CHECK_EQ(submit(&e,
			json_pack("{s:s, s:s}", "op", "vdisk.delete", "name",
				  "v2"),
			15),
		 0);
	CHECK(wait_converged(&e, 15));

	/* Join refusals: a malformed, an unknown and an expired token. */
	CHECK_EQ(join(&e, "cairn1:xx:yy", "n9", "127.0.0.1:1", "a", NULL),
		 -EACCES);
	CHECK_EQ(join(&e, "cairn1:00:"
			  "000000000000000000000000000000000000000000000000000"
			  "0000000000000",
		      "n9", "127.0.0.1:1", "a", NULL),
		 -EACCES);
	char *old = make_token(&e, 0);
	json_t *tc = json_pack("{s:s, s:s, s:i, s:i}", "op", "token.create",
			       "hash", "00000000000000000000000000000000000"
				       "00000000000000000000000000000",
			       "now", 0, "expires", 0);
	cluster_map_apply(e.model, tc, &res, msg, sizeof(msg)); /* epoch */
	json_decref(tc);
	json_decref(res);
	run_for(&e, 1.2);
	CHECK_EQ(join(&e, old, "n9", "127.0.0.1:1", "a", NULL), -EACCES);
	free(old);

	/* Two nodes join with tokens: five nodes, five voters; a
	 * linearizable read sees the latest map, without its secrets. */
	join_node(&e, 3);
	join_node(&e, 4);
	CHECK(wait_converged(&e, 15));
	double tv = now() + 15;
	while (voters(&e) != 5 && now() < tv)
		run_for(&e, 0.1);
	CHECK_EQ(voters(&e), 5);
	l = wait_leader(&e, 10);
	memset(&r, 0, sizeof(r));
	cluster_read(e.n[l].c, op_cb, &r);
	CHECK(run_until(&e, &r.done, 10));
	CHECK_EQ(r.status, 0);
	json_t *pub = cluster_map_public(e.model);
	CHECK(r.res && json_equal(r.res, pub));
	if (r.res && !json_equal(r.res, pub)) {
		char *a = json_dumps(r.res, JSON_SORT_KEYS | JSON_INDENT(1));
		char *b = json_dumps(pub, JSON_SORT_KEYS | JSON_INDENT(1));
		fprintf(stderr, "map:\n%s\nmodel:\n%s\n", a, b);
		free(a);
		free(b);
	}
	CHECK(r.res && !json_object_get(r.res, "secrets"));
	json_decref(pub);
	json_decref(r.res);

	/* Remove the leader, then a follower: each drains, leaves and is
	 * gone from every other map; it refuses cluster work. Then a
	 * removal the RF3 pool cannot take is refused. */
	double tr = now();
	l = wait_leader(&e, 10);
	remove_node(&e, l, 0);
	int l3 = wait_leader(&e, 15);
	CHECK(l3 >= 0 && l3 != l);
	/* 5 voters less the removed one leave 4, and no standby: the
	 * leader demotes one (cluster_voters.c), never keeping an even
	 * count it can avoid */
	double t4 = now() + 15;
	while (voters(&e) != 3 && now() < t4)
		run_for(&e, 0.1);
	CHECK_EQ(voters(&e), 3);
	int fo = -1;
	for (int i = 0; i < N; i++)
		if (e.n[i].c && i != l3)
			fo = i;
	remove_node(&e, fo, 0);
	CHECK(wait_converged(&e, 15));
	CHECK_EQ(voters(&e), 3);
	int nl = wait_leader(&e, 10);
	for (int i = 0; i < N; i++)
		if (e.n[i].c && i != nl) {
			remove_node(&e, i, -ENOSPC); /* rf3: 3 domains left */
			break;
		}
	CHECK_EQ(submit(&e,
			json_pack("{s:s, s:s, s:s, s:I}", "op", "vdisk.create",
				  "pool", "rf3", "name", "after-remove", "size",
				  (json_int_t)4096),
			15),
		 0);
	CHECK(wait_converged(&e, 15));
	double removals = now() - tr;

	printf("cluster: %u operations checked against the model; leader "
	       "recovered %.2fs after a kill; two removals (leader, "
	       "follower) and a refusal %.1fs; whole run %.1fs\n",
	       e.ops_checked, recovery, removals, now() - t0);
	for (int i = 0; i < N; i++)
		if (e.n[i].c)
			node_stop(&e, i);
	run_for(&e, 0.2);
	json_decref(e.model);
	uv_loop_close(&e.loop);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e.base);
	if (system(cmd) != 0)
		failures++;
	if (failures) {
		fprintf(stderr, "test_cluster: %d check(s) failed\n", failures);
		return 1;
	}
	printf("test_cluster: ok\n");
	return 0;
}
