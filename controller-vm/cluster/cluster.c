/* One node of the cluster: libraft (canonical raft 0.15, libuv backend)
 * over the mutual-TLS transport, with the cluster map as its state
 * machine. Only this file talks to libraft, so the library can be swapped
 * (DESIGN.md: upstream moved to the cowsql fork).
 *
 * Voters: the leader keeps 1 voter for clusters of 1-2 nodes, 3 for 3-4,
 * 5 from 5 on (cluster_voters.c); the other nodes are standbys that
 * replicate the log and can be promoted when a voter leaves. */
#include <cairn/cluster.h>
#include <cairn/pki.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <time.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_int.h"
#include "cluster_map.h"
#include "cluster_voters.h"
#include "log.h"
#include "raft_tls.h"
#include "util.h"

#define CLUSTER_TICK_MS 100
#define CLUSTER_SNAPSHOT_THRESHOLD 64
#define CLUSTER_SNAPSHOT_TRAILING 32

struct cluster_apply_result {
	int status;
	json_t *result;
	char msg[256];
};

struct cluster_op {
	struct cluster *c;
	cluster_op_cb cb;
	void *arg;
	union {
		struct raft_apply apply;
		struct raft_barrier barrier;
		struct raft_change change;
	} u;
	/* node add: the steps after raft_add */
	json_t *node;
	int step;
};

static void cluster__check_removed(struct cluster *c);

/* ---- the state machine --------------------------------------------------- */

/* libraft's wire and disk formats put entry data on 8-byte boundaries and
 * expect buffers whose length is a multiple of 8: pad JSON with spaces. */
static void *cluster__padded(const char *text, size_t *len)
{
	size_t n = strlen(text), padded = (n + 7) & ~(size_t)7;
	char *b = raft_malloc(padded ? padded : 8);
	if (!b)
		return NULL;
	memcpy(b, text, n);
	memset(b + n, ' ', (padded ? padded : 8) - n);
	*len = padded ? padded : 8;
	return b;
}

static int cluster__fsm_apply(struct raft_fsm *fsm,
			      const struct raft_buffer *buf, void **result)
{
	struct cluster *c = fsm->data;
	struct cluster_apply_result *ar = calloc(1, sizeof(*ar));
	if (!ar)
		return RAFT_NOMEM;
	json_error_t jerr;
	json_t *op = json_loadb(buf->base, buf->len, 0, &jerr);
	if (!op) {
		ar->status = -EINVAL;
		snprintf(ar->msg, sizeof(ar->msg), "bad entry: %s", jerr.text);
	} else {
		ar->status = cluster_map_apply(c->map, op, &ar->result, ar->msg,
					       sizeof(ar->msg));
		json_decref(op);
		if (!ar->status)
			cluster__check_removed(c);
	}
	/* libraft hands the result to a callback only on the node that
	 * proposed the entry: keep the last one here so followers do not
	 * leak it. */
	if (c->last_result) {
		json_decref(c->last_result->result);
		free(c->last_result);
	}
	c->last_result = ar;
	*result = ar;
	return 0;
}

static int cluster__fsm_snapshot(struct raft_fsm *fsm,
				 struct raft_buffer *bufs[], unsigned *n)
{
	struct cluster *c = fsm->data;
	char *text = json_dumps(c->map, JSON_COMPACT | JSON_SORT_KEYS);
	*bufs = raft_malloc(sizeof(**bufs));
	if (!text || !*bufs) {
		free(text);
		raft_free(*bufs);
		return RAFT_NOMEM;
	}
	(*bufs)[0].base = cluster__padded(text, &(*bufs)[0].len);
	if (!(*bufs)[0].base) {
		free(text);
		raft_free(*bufs);
		return RAFT_NOMEM;
	}
	*n = 1;
	free(text);
	return 0;
}

static int cluster__fsm_snapshot_finalize(struct raft_fsm *fsm,
					  struct raft_buffer *bufs[],
					  unsigned *n)
{
	(void)fsm;
	for (unsigned i = 0; i < *n; i++)
		raft_free((*bufs)[i].base);
	raft_free(*bufs);
	*bufs = NULL;
	*n = 0;
	return 0;
}

static int cluster__fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
	struct cluster *c = fsm->data;
	json_t *map = json_loadb(buf->base, buf->len, 0, NULL);
	if (!json_is_object(map)) {
		json_decref(map);
		return RAFT_MALFORMED;
	}
	raft_free(buf->base); /* ours on success */
	json_decref(c->map);
	c->map = map;
	cluster__check_removed(c);
	return 0;
}

/* ---- operations ---------------------------------------------------------- */

static json_t *cluster__map_node(struct cluster *c, raft_id id)
{
	char key[24];
	snprintf(key, sizeof(key), "%" PRIu64, (uint64_t)id);
	return json_object_get(json_object_get(c->map, "nodes"), key);
}

static const char *cluster__node_api(struct cluster *c, raft_id id)
{
	json_t *n = cluster__map_node(c, id);
	return n ? json_string_value(json_object_get(n, "api")) : NULL;
}

/* Removal is for good: once this node applied its own node.leave (or saw
 * itself leave the map), it refuses cluster work, even after a restart
 * (the entries replay). It stays a standby in its own view of the
 * configuration, and a standby never campaigns, so it cannot disturb the
 * cluster. */
static void cluster__check_removed(struct cluster *c)
{
	json_t *me = cluster__map_node(c, c->cfg.id);
	if (me)
		c->was_member = true;
	if (c->removed)
		return;
	if ((me && json_is_true(json_object_get(me, "leaving"))) ||
	    (!me && c->was_member)) {
		c->removed = true;
		log_warn("cluster", "node %" PRIu64 " was removed from the "
			 "cluster: it refuses cluster work from now on",
			 c->cfg.id);
	}
}

void cluster_mark_removed(struct cluster *c, const char *who)
{
	if (c->removed)
		return;
	c->removed = true;
	log_warn("cluster", "node %" PRIu64 " was removed from the cluster "
		 "while it was down (%s says so): it refuses cluster work "
		 "from now on", c->cfg.id, who);
}

/* Not the leader: tell the caller where the leader's API is. */
static bool cluster__redirect(struct cluster *c, cluster_op_cb cb, void *arg)
{
	if (c->closing) {
		cb(arg, -ESHUTDOWN, NULL, "node is stopping");
		return true;
	}
	if (c->removed) {
		cb(arg, -EIDRM, NULL,
		   "this node was removed from the cluster; it does no "
		   "cluster work (wipe its state directory to join again)");
		return true;
	}
	if (raft_state(&c->raft) == RAFT_LEADER)
		return false;
	raft_id id = 0;
	const char *addr = NULL;
	raft_leader(&c->raft, &id, &addr);
	const char *api = id ? cluster__node_api(c, id) : NULL;
	if (!api)
		cb(arg, -EAGAIN, NULL, "no leader (no quorum?)");
	else
		cb(arg, -EREMOTE, NULL, api);
	return true;
}

static int cluster__raft_errno(int rv)
{
	switch (rv) {
	case RAFT_NOTLEADER:
	case RAFT_LEADERSHIPLOST:
	case RAFT_CANCELED:
	case RAFT_SHUTDOWN:
		return -EAGAIN;
	case RAFT_NOMEM:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

static void cluster__applied(struct raft_apply *req, int status, void *result)
{
	struct cluster_op *o = req->data;
	struct cluster *c = o->c;
	if (status) {
		o->cb(o->arg, cluster__raft_errno(status), NULL,
		      raft_strerror(status));
	} else {
		struct cluster_apply_result *ar = result;
		if (c->last_result == ar)
			c->last_result = NULL;
		o->cb(o->arg, ar->status, ar->result, ar->msg);
		json_decref(ar->result);
		free(ar);
	}
	free(o);
}

void cluster_submit(struct cluster *c, json_t *op, cluster_op_cb cb,
		    void *arg)
{
	if (cluster__redirect(c, cb, arg))
		return;
	char *text = json_dumps(op, JSON_COMPACT);
	struct cluster_op *o = calloc(1, sizeof(*o));
	struct raft_buffer buf = {0};
	if (text)
		buf.base = cluster__padded(text, &buf.len);
	free(text);
	if (!o || !buf.base) {
		free(o);
		raft_free(buf.base);
		cb(arg, -ENOMEM, NULL, "out of memory");
		return;
	}
	o->c = c;
	o->cb = cb;
	o->arg = arg;
	o->u.apply.data = o;
	int rv = raft_apply(&c->raft, &o->u.apply, &buf, 1, cluster__applied);
	if (rv) {
		raft_free(buf.base);
		free(o);
		cb(arg, cluster__raft_errno(rv), NULL, raft_errmsg(&c->raft));
	}
}

static void cluster__barrier_done(struct raft_barrier *req, int status)
{
	struct cluster_op *o = req->data;
	if (status)
		o->cb(o->arg, cluster__raft_errno(status), NULL,
		      raft_strerror(status));
	else {
		json_t *pub = cluster_map_public(o->c->map);
		o->cb(o->arg, 0, pub, "");
		json_decref(pub);
	}
	free(o);
}

/* Linearizable: the barrier commits only while this node still leads, and
 * applies everything before it (etcd #741: a deposed leader must not
 * answer from its own state). */
void cluster_read(struct cluster *c, cluster_op_cb cb, void *arg)
{
	if (cluster__redirect(c, cb, arg))
		return;
	struct cluster_op *o = calloc(1, sizeof(*o));
	if (!o) {
		cb(arg, -ENOMEM, NULL, "out of memory");
		return;
	}
	o->c = c;
	o->cb = cb;
	o->arg = arg;
	o->u.barrier.data = o;
	int rv = raft_barrier(&c->raft, &o->u.barrier, cluster__barrier_done);
	if (rv) {
		free(o);
		cb(arg, cluster__raft_errno(rv), NULL, raft_errmsg(&c->raft));
	}
}

static const char *cluster__role(int role)
{
	switch (role) {
	case RAFT_VOTER:
		return "voter";
	case RAFT_STANDBY:
		return "standby";
	default:
		return "spare";
	}
}

json_t *cluster_status(struct cluster *c)
{
	static const char *const states[] = {"unavailable", "follower",
					     "candidate", "leader"};
	raft_id lid = 0;
	const char *laddr = NULL;
	raft_leader(&c->raft, &lid, &laddr);
	int st = raft_state(&c->raft);
	json_t *servers = json_array();
	for (unsigned i = 0; i < c->raft.configuration.n; i++) {
		const struct raft_server *s = &c->raft.configuration.servers[i];
		json_array_append_new(
			servers, json_pack("{s:I, s:s, s:s}", "id",
					   (json_int_t)s->id, "address",
					   s->address, "role",
					   cluster__role(s->role)));
	}
	const char *lapi = lid ? cluster__node_api(c, lid) : NULL;
	return json_pack(
		"{s:I, s:s, s:s, s:I, s:s?, s:I, s:I, s:I, s:I, s:o, s:b}",
		"id",
		(json_int_t)c->cfg.id, "name", c->cfg.name, "state",
		st >= 0 && st <= 3 ? states[st] : "?", "leader",
		(json_int_t)lid, "leader_api", lapi, "term",
		(json_int_t)c->raft.current_term, "commit_index",
		(json_int_t)c->raft.commit_index, "applied",
		(json_int_t)raft_last_applied(&c->raft), "epoch",
		json_integer_value(json_object_get(c->map, "epoch")),
		"servers", servers, "removed", c->removed);
}

bool cluster_is_leader(struct cluster *c)
{
	return raft_state(&c->raft) == RAFT_LEADER;
}

const json_t *cluster_local_map(struct cluster *c)
{
	return c->map;
}

/* ---- membership ------------------------------------------------------------ */

/* A server answered within the last CLUSTER_ALIVE_MS (two election
 * timeouts at the default): libraft's recent_recv alone drops to false at
 * every election timeout until the next reply. A server first seen now
 * gets the benefit of the doubt. */
#define CLUSTER_ALIVE_MS 2500

static void cluster__liveness(struct cluster *c, bool *alive)
{
	uint64_t now = uv_now(c->loop);
	const struct raft_configuration *conf = &c->raft.configuration;
	for (unsigned i = 0; i < conf->n; i++) {
		raft_id id = conf->servers[i].id;
		unsigned k, free_k = CLUSTER_SEEN_MAX;
		for (k = 0; k < CLUSTER_SEEN_MAX && c->seen[k].id != id; k++)
			if (!c->seen[k].id && free_k == CLUSTER_SEEN_MAX)
				free_k = k;
		if (k == CLUSTER_SEEN_MAX) {
			if (free_k == CLUSTER_SEEN_MAX) { /* untracked: up */
				alive[i] = true;
				continue;
			}
			k = free_k;
			c->seen[k].id = id;
			c->seen[k].seen = now;
		}
		if (id == c->cfg.id ||
		    c->raft.leader_state.progress[i].recent_recv)
			c->seen[k].seen = now;
		alive[i] = now - c->seen[k].seen < CLUSTER_ALIVE_MS;
	}
}

static void cluster__node_added(void *arg, int status, json_t *res,
				const char *msg);

/* raft_add makes the node a spare; it then becomes a standby at once
 * (a standby replicates the log but does not vote), and cluster__tick
 * promotes standbys to voters up to the target once they can catch up —
 * so a node can be added before it is running (joins work that way). */
static void cluster__add_step(struct raft_change *req, int status)
{
	struct cluster_op *o = req->data;
	struct cluster *c = o->c;
	if (status) {
		o->cb(o->arg, cluster__raft_errno(status), NULL,
		      raft_strerror(status));
		json_decref(o->node);
		free(o);
		return;
	}
	if (o->step == 0) {
		o->step = 1;
		json_int_t id = json_integer_value(json_object_get(o->node,
								   "id"));
		int rv = raft_assign(&c->raft, &o->u.change, (raft_id)id,
				     RAFT_STANDBY, cluster__add_step);
		if (rv)
			cluster__add_step(&o->u.change, rv);
		return;
	}
	/* In the configuration: now in the map. */
	cluster_submit(c, o->node, cluster__node_added, o);
}

static void cluster__node_added(void *arg, int status, json_t *res,
				const char *msg)
{
	struct cluster_op *o = arg;
	o->cb(o->arg, status, res, msg);
	json_decref(o->node);
	free(o);
}

void cluster_add_node(struct cluster *c, const struct cluster_node *n,
		      cluster_op_cb cb, void *arg)
{
	if (cluster__redirect(c, cb, arg))
		return;
	struct cluster_op *o = calloc(1, sizeof(*o));
	if (o)
		o->node = json_pack("{s:s, s:I, s:s, s:s, s:s, s:I, s:f}", "op",
				    "node.add", "id", (json_int_t)n->id, "name",
				    n->name, "raft", n->raft_address, "api",
				    n->api_address, "domain",
				    (json_int_t)n->domain, "capacity",
				    n->capacity);
	if (!o || !o->node) {
		free(o);
		cb(arg, -ENOMEM, NULL, "out of memory");
		return;
	}
	o->c = c;
	o->cb = cb;
	o->arg = arg;
	o->u.change.data = o;
	int rv = raft_add(&c->raft, &o->u.change, n->id, n->raft_address,
			  cluster__add_step);
	if (rv) {
		json_decref(o->node);
		free(o);
		cb(arg, rv == RAFT_DUPLICATEID ? -EEXIST
					       : cluster__raft_errno(rv),
		   NULL, raft_errmsg(&c->raft));
	}
}

static void cluster__registered(void *arg, int status, json_t *res,
				const char *msg)
{
	(void)res;
	struct cluster *c = arg;
	c->registering = false;
	if (status && status != -EEXIST)
		log_warn("cluster", "registering node %" PRIu64 ": %s",
			 c->cfg.id, msg);
}

static void cluster__promoted(struct raft_change *req, int status)
{
	struct cluster *c = req->data;
	c->promoting = false;
	if (status)
		log_warn("cluster", "promotion: %s", raft_strerror(status));
}

/* ---- removing a node -------------------------------------------------------- */

static void cluster__leave_reset(struct cluster *c)
{
	c->leave_index = 0;
	c->leave_waits = 0;
}

struct cluster_removal {
	struct cluster_removal *next;
	struct cluster *c;
	uint64_t id;
	uint64_t deadline; /* uv_now */
	bool drained;      /* node.drain committed */
	cluster_op_cb cb;
	void *arg;
};

#define CLUSTER_REMOVE_WAIT_MS 60000
/* Ticks to wait for the leaving node to hold its node.leave entry before
 * taking it out of the configuration anyway (it may be down). */
#define CLUSTER_LEAVE_WAITS 50

static void cluster__remove_done(void *arg, int status, json_t *res,
				 const char *msg)
{
	(void)res;
	struct cluster *c = arg;
	c->removing = false;
	if (status)
		log_warn("cluster", "removing a node: %s", msg);
}

static void cluster__remove_changed(struct raft_change *req, int status)
{
	struct cluster *c = req->data;
	c->removing = false;
	if (status)
		log_warn("cluster", "removing a node: %s",
			 raft_strerror(status));
}

static void cluster__transferred(struct raft_transfer *req)
{
	struct cluster *c = req->data;
	c->removing = false;
}

static void cluster__leave_barrier(struct raft_barrier *req, int status)
{
	struct cluster *c = req->data;
	c->removing = false;
	if (!status)
		c->leave_index = c->raft.commit_index;
}

static void cluster__remove_submit(struct cluster *c, const char *op,
				   raft_id id)
{
	json_t *o = json_pack("{s:s, s:I}", "op", op, "id", (json_int_t)id);
	c->removing = true;
	cluster__leave_reset(c);
	cluster_submit(c, o, cluster__remove_done, c);
	json_decref(o);
}

/* One step of removing the first draining node, driven by the leader from
 * the map (so a new leader picks it up where the old one left it; every
 * step is safe to repeat). The voter count was topped up by the caller. */
static void cluster__remove_step(struct cluster *c)
{
	if (c->removing)
		return;
	const char *k;
	json_t *nd;
	raft_id x = 0;
	bool leaving = false;
	json_object_foreach(json_object_get(c->map, "nodes"), k, nd)
	{
		if (!json_is_true(json_object_get(nd, "draining")))
			continue;
		x = (raft_id)json_integer_value(json_object_get(nd, "id"));
		leaving = json_is_true(json_object_get(nd, "leaving"));
		break;
	}
	if (!x)
		return;
	unsigned i;
	const struct raft_configuration *conf = &c->raft.configuration;
	for (i = 0; i < conf->n && conf->servers[i].id != x; i++)
		;
	if (i == conf->n) { /* out of the configuration: out of the map */
		cluster__remove_submit(c, "node.remove", x);
		return;
	}
	int rv = 0;
	c->removing = true;
	if (x == c->cfg.id) {
		/* A leader cannot remove itself cleanly: hand over first
		 * (0: libraft picks the most up-to-date voter). */
		c->transfer.data = c;
		rv = raft_transfer(&c->raft, &c->transfer, 0,
				   cluster__transferred);
	} else if (conf->servers[i].role == RAFT_VOTER) {
		c->remove_change.data = c;
		rv = raft_assign(&c->raft, &c->remove_change, x, RAFT_STANDBY,
				 cluster__remove_changed);
	} else if (!leaving) {
		c->removing = false;
		cluster__remove_submit(c, "node.leave", x);
		return;
	} else if (!c->leave_index) {
		/* Let the node apply its node.leave first, so that it knows
		 * it was removed (it no longer hears from us after): an entry
		 * appended after node.leave committed reaches it with a commit
		 * index that covers node.leave. */
		c->leave_barrier.data = c;
		rv = raft_barrier(&c->raft, &c->leave_barrier,
				  cluster__leave_barrier);
	} else {
		if (c->raft.leader_state.progress[i].match_index <
			    c->leave_index &&
		    ++c->leave_waits < CLUSTER_LEAVE_WAITS) {
			c->removing = false;
			return;
		}
		c->remove_change.data = c;
		rv = raft_remove(&c->raft, &c->remove_change, x,
				 cluster__remove_changed);
	}
	if (rv) {
		c->removing = false;
		log_warn("cluster", "removing node %" PRIu64 ": %s",
			 (uint64_t)x, raft_strerror(rv));
	}
}

/* Callers of cluster_remove_node wait for the node to leave their map. */
static void cluster__removals_check(struct cluster *c, bool stopping)
{
	struct cluster_removal **pp = &c->removals;
	while (*pp) {
		struct cluster_removal *r = *pp;
		int st = 1;
		const char *msg = "";
		if (stopping) {
			st = -ESHUTDOWN;
			msg = "node is stopping";
		} else if (r->drained &&
			   (!cluster__map_node(c, r->id) ||
			    (r->id == c->cfg.id && c->removed))) {
			st = 0;
		} else if (uv_now(c->loop) > r->deadline) {
			st = -ETIMEDOUT;
			msg = "the node is still being removed: see the node "
			      "list";
		}
		if (st > 0) {
			pp = &r->next;
			continue;
		}
		*pp = r->next;
		json_t *res = st ? NULL
				 : json_pack("{s:I, s:s}", "removed",
					     (json_int_t)r->id, "note",
					     "drained and removed; data "
					     "evacuation is not built yet "
					     "(replication issue)");
		r->cb(r->arg, st, res, msg);
		json_decref(res);
		free(r);
	}
}

static void cluster__drain_done(void *arg, int status, json_t *res,
				const char *msg)
{
	(void)res;
	struct cluster_removal *r = arg;
	struct cluster *c = r->c;
	if (status) {
		r->cb(r->arg, status, NULL, msg);
		free(r);
		return;
	}
	r->drained = true;
	r->deadline = uv_now(c->loop) + CLUSTER_REMOVE_WAIT_MS;
	r->next = c->removals;
	c->removals = r;
}

void cluster_remove_node(struct cluster *c, uint64_t id, const char *op_id,
			 cluster_op_cb cb, void *arg)
{
	if (cluster__redirect(c, cb, arg))
		return;
	struct cluster_removal *r = calloc(1, sizeof(*r));
	json_t *op = json_pack("{s:s, s:I, s:s*}", "op", "node.drain", "id",
			       (json_int_t)id, "op_id", op_id);
	if (!r || !op) {
		free(r);
		json_decref(op);
		cb(arg, -ENOMEM, NULL, "out of memory");
		return;
	}
	r->c = c;
	r->id = id;
	r->cb = cb;
	r->arg = arg;
	cluster_submit(c, op, cluster__drain_done, r);
	json_decref(op);
}

/* Leader housekeeping: register the bootstrap node in the map, keep the
 * number of voters at its target by promoting standbys, and drive node
 * removals. Every node: answer the callers waiting for a removal. */
static void cluster__tick(uv_timer_t *t)
{
	struct cluster *c = t->data;
	if (c->removals)
		cluster__removals_check(c, false);
	if (c->closing || c->removed || raft_state(&c->raft) != RAFT_LEADER) {
		memset(c->seen, 0, sizeof(c->seen));
		return;
	}
	if (c->cfg.bootstrap && !c->registering &&
	    !cluster__node_api(c, c->cfg.id)) {
		c->registering = true;
		char *crt = c->cfg.ca_key_file ? pki_read_file(c->cfg.ca_file)
					       : NULL;
		char *key = c->cfg.ca_key_file
			? pki_read_file(c->cfg.ca_key_file)
			: NULL;
		json_t *ops[2] = {
			json_pack("{s:s, s:s, s:s?, s:s?, s:O*}", "op",
				  "cluster.init", "name", c->cfg.cluster_name,
				  "ca_crt", crt, "ca_key", key, "admin",
				  c->admin),
			json_pack("{s:s, s:I, s:s, s:s, s:s, s:I, s:f}", "op",
				  "node.add", "id", (json_int_t)c->cfg.id,
				  "name", c->cfg.name, "raft",
				  c->cfg.raft_address, "api",
				  c->cfg.api_address, "domain",
				  (json_int_t)c->cfg.domain, "capacity",
				  c->cfg.capacity)};
		if (!json_string_length(json_object_get(c->map, "name")))
			cluster_submit(c, ops[0], cluster__registered, c);
		cluster_submit(c, ops[1], cluster__registered, c);
		json_decref(ops[0]);
		json_decref(ops[1]);
		free(crt);
		free(key);
		return;
	}
	if (c->promoting)
		return;
	bool alive[c->raft.configuration.n + 1];
	cluster__liveness(c, alive);
	struct cluster_voter_change ch = cluster_voters_plan(
		c->map, &c->raft.configuration, c->cfg.id, alive);
	if (!ch.id) {
		cluster__remove_step(c);
		return;
	}
	c->promoting = true;
	c->promote.data = c;
	log_info("cluster", "%s node %" PRIu64 " (voters kept at 1, 3 or 5)",
		 ch.role == RAFT_VOTER ? "promoting" : "demoting",
		 (uint64_t)ch.id);
	if (raft_assign(&c->raft, &c->promote, ch.id, ch.role,
			cluster__promoted))
		c->promoting = false;
}

/* ---- joining ---------------------------------------------------------------- */

#define CLUSTER_TOKEN_PREFIX "cairn1:"

static void cluster__hex(const unsigned char *b, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static void cluster__sha256_hex(const char *s, char out[65])
{
	unsigned char md[32];
	unsigned int n = 0;
	EVP_Digest(s, strlen(s), md, &n, EVP_sha256(), NULL);
	cluster__hex(md, 32, out);
}

struct cluster_join_op {
	struct cluster *c;
	cluster_op_cb cb;
	void *arg;
	json_t *req;
	json_t *reply;
	char name[64];
	char token[160];
};

static const char *cluster__secret(const json_t *map, const char *k)
{
	return json_string_value(
		json_object_get(json_object_get(map, "secrets"), k));
}

static void cluster__token_made(void *arg, int status, json_t *res,
				const char *msg)
{
	(void)res;
	struct cluster_join_op *o = arg;
	json_t *r = status ? NULL
			   : json_pack("{s:s}", "token", o->token);
	o->cb(o->arg, status, r, msg);
	json_decref(r);
	free(o);
}

void cluster_token_create(struct cluster *c, unsigned ttl_s, cluster_op_cb cb,
			  void *arg)
{
	if (cluster__redirect(c, cb, arg))
		return;
	const char *ca = cluster__secret(c->map, "ca_crt");
	char fp[65];
	unsigned char secret[32];
	char shex[65], hash[65];
	struct cluster_join_op *o = calloc(1, sizeof(*o));
	if (!o || !ca || pki_fingerprint(ca, fp) ||
	    RAND_bytes(secret, sizeof(secret)) != 1) {
		free(o);
		cb(arg, ca ? -ENOMEM : -ENOENT, NULL,
		   ca ? "out of memory" : "the cluster has no CA in its map");
		return;
	}
	cluster__hex(secret, sizeof(secret), shex);
	cluster__sha256_hex(shex, hash);
	snprintf(o->token, sizeof(o->token), CLUSTER_TOKEN_PREFIX "%s:%s", fp,
		 shex);
	o->c = c;
	o->cb = cb;
	o->arg = arg;
	json_int_t now = (json_int_t)time(NULL);
	json_t *op = json_pack("{s:s, s:s, s:I, s:I}", "op", "token.create",
			       "hash", hash, "now", now, "expires",
			       now + (json_int_t)ttl_s);
	cluster_submit(c, op, cluster__token_made, o);
	json_decref(op);
}

static void cluster__join_end(struct cluster_join_op *o, int status,
			      const char *msg)
{
	o->cb(o->arg, status, status ? NULL : o->reply, msg);
	json_decref(o->reply);
	json_decref(o->req);
	free(o);
}

static void cluster__join_added(void *arg, int status, json_t *res,
				const char *msg)
{
	(void)res;
	cluster__join_end(arg, status, msg);
}

static void cluster__join_token_spent(void *arg, int status, json_t *res,
				      const char *msg)
{
	struct cluster_join_op *o = arg;
	struct cluster *c = o->c;
	if (status) {
		cluster__join_end(o, status, msg);
		return;
	}
	json_int_t id = json_integer_value(json_object_get(res, "id"));
	char cn[32], err[256];
	snprintf(cn, sizeof(cn), "node-%" PRId64, (int64_t)id);
	char *crt = NULL, *key = NULL, *acrt = NULL, *akey = NULL;
	const char *ca = cluster__secret(c->map, "ca_crt");
	const char *ca_key = cluster__secret(c->map, "ca_key");
	/* Two certificates: the node's own ("node-<id>", node to node) and
	 * its management API's (loopback and its API address). */
	char api_names[256];
	if (!ca || !ca_key ||
	    pki_api_names(json_string_value(json_object_get(o->req, "api")),
			  api_names, sizeof(api_names)) ||
	    pki_cert_issue_pem(ca, ca_key, cn, 3650, &crt, &key, err,
			       sizeof(err)) ||
	    pki_cert_issue_pem(ca, ca_key, api_names, 3650, &acrt, &akey,
			       err, sizeof(err))) {
		free(crt);
		free(key);
		cluster__join_end(o, -EIO, "cannot issue the node certificate");
		return;
	}
	o->reply = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "id",
			     id, "name", o->name, "cert", crt, "key", key,
			     "api_cert", acrt, "api_key", akey, "ca", ca,
			     "cluster",
			     json_string_value(json_object_get(c->map, "name")));
	free(crt);
	free(key);
	free(acrt);
	free(akey);
	const json_t *q = o->req;
	json_int_t dom = 0;
	const json_t *jd = json_object_get(q, "domain");
	const json_t *jc = json_object_get(q, "capacity");
	if (json_is_integer(jd))
		dom = json_integer_value(jd);
	struct cluster_node n = {
		.id = (uint64_t)id,
		.name = o->name,
		.raft_address = json_string_value(json_object_get(q, "raft")),
		.api_address = json_string_value(json_object_get(q, "api")),
		.domain = (uint32_t)dom,
		.capacity = json_is_number(jc) ? json_number_value(jc) : 1,
	};
	cluster_add_node(c, &n, cluster__join_added, o);
}

void cluster_join(struct cluster *c, const json_t *req, cluster_op_cb cb,
		  void *arg)
{
	if (cluster__redirect(c, cb, arg))
		return;
	const char *tok = json_string_value(json_object_get(req, "token"));
	const char *name = json_string_value(json_object_get(req, "name"));
	const json_t *dom = json_object_get(req, "domain");
	if (!tok || !name || strlen(name) > 63 ||
	    !json_is_string(json_object_get(req, "raft")) ||
	    !json_is_string(json_object_get(req, "api")) ||
	    (dom && (!json_is_integer(dom) || json_integer_value(dom) < 0 ||
		     json_integer_value(dom) > UINT32_MAX))) {
		cb(arg, -EINVAL, NULL,
		   "join needs token, name, raft, api (domain, capacity)");
		return;
	}
	/* cairn1:<fingerprint>:<secret>; only the secret matters here. */
	const char *secret = strrchr(tok, ':');
	if (strncmp(tok, CLUSTER_TOKEN_PREFIX, strlen(CLUSTER_TOKEN_PREFIX)) ||
	    !secret || strlen(secret + 1) != 64) {
		cb(arg, -EACCES, NULL, "malformed join token");
		return;
	}
	const char *k;
	json_t *nd;
	json_object_foreach(json_object_get(c->map, "nodes"), k, nd)
		if (!strcmp(json_string_value(json_object_get(nd, "name")),
			    name)) {
			cb(arg, -EEXIST, NULL, "node name taken");
			return;
		}
	struct cluster_join_op *o = calloc(1, sizeof(*o));
	if (!o) {
		cb(arg, -ENOMEM, NULL, "out of memory");
		return;
	}
	o->c = c;
	o->cb = cb;
	o->arg = arg;
	o->req = json_deep_copy(req);
	snprintf(o->name, sizeof(o->name), "%s", name);
	char hash[65];
	cluster__sha256_hex(secret + 1, hash);
	json_t *op = json_pack("{s:s, s:s, s:I}", "op", "token.use", "hash",
			       hash, "now", (json_int_t)time(NULL));
	cluster_submit(c, op, cluster__join_token_spent, o);
	json_decref(op);
}

/* ---- lifecycle ----------------------------------------------------------- */

static void cluster__free(struct cluster *c)
{
	if (c->transport_ready)
		raft_tls_free(&c->transport);
	tls_ctx_free(c->tls);
	json_decref(c->map);
	json_decref(c->admin);
	if (c->last_result) {
		json_decref(c->last_result->result);
		free(c->last_result);
	}
	free(c);
}

static void cluster__raft_closed(struct raft *r);

int cluster_start(uv_loop_t *loop, const struct cluster_config *cfg,
		  struct cluster **out, char *err, size_t errlen)
{
	struct cluster *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->loop = loop;
	c->cfg = *cfg;
	c->cfg.admin = NULL;
	c->admin = cfg->admin ? json_deep_copy(cfg->admin) : NULL;
	c->map = cluster_map_new();
	int rc = tls_ctx_create(cfg->ca_file, cfg->cert_file, cfg->key_file,
				&c->tls, err, errlen);
	if (rc) {
		cluster__free(c);
		return rc;
	}
	raft_tls_init(&c->transport, loop, c->tls);
	c->transport_ready = true;
	c->fsm.version = 2;
	c->fsm.data = c;
	c->fsm.apply = cluster__fsm_apply;
	c->fsm.snapshot = cluster__fsm_snapshot;
	c->fsm.snapshot_finalize = cluster__fsm_snapshot_finalize;
	c->fsm.restore = cluster__fsm_restore;
	int rv = raft_uv_init(&c->io, loop, cfg->dir, &c->transport);
	if (rv) {
		snprintf(err, errlen, "raft io %s: %s", cfg->dir,
			 c->io.errmsg);
		cluster__free(c);
		return -EIO;
	}
	rv = raft_init(&c->raft, &c->io, &c->fsm, cfg->id, cfg->raft_address);
	if (rv) {
		snprintf(err, errlen, "raft init: %s", raft_strerror(rv));
		raft_uv_close(&c->io);
		cluster__free(c);
		return -EIO;
	}
	if (cfg->bootstrap) {
		struct raft_configuration conf;
		raft_configuration_init(&conf);
		raft_configuration_add(&conf, cfg->id, cfg->raft_address,
				       RAFT_VOTER);
		rv = raft_bootstrap(&c->raft, &conf);
		raft_configuration_close(&conf);
		if (rv && rv != RAFT_CANTBOOTSTRAP) {
			snprintf(err, errlen, "raft bootstrap: %s",
				 raft_errmsg(&c->raft));
			goto fail_started;
		}
	}
	unsigned el = cfg->election_ms ? cfg->election_ms : 1000;
	raft_set_election_timeout(&c->raft, el);
	raft_set_heartbeat_timeout(&c->raft, MAX(el / 10, 10u));
	raft_set_pre_vote(&c->raft, true);
	raft_set_snapshot_threshold(&c->raft, CLUSTER_SNAPSHOT_THRESHOLD);
	raft_set_snapshot_trailing(&c->raft, CLUSTER_SNAPSHOT_TRAILING);
	rv = raft_start(&c->raft);
	if (rv) {
		snprintf(err, errlen, "raft start: %s", raft_errmsg(&c->raft));
		goto fail_started;
	}
	uv_timer_init(loop, &c->tick);
	c->tick.data = c;
	uv_timer_start(&c->tick, cluster__tick, CLUSTER_TICK_MS,
		       CLUSTER_TICK_MS);
	*out = c;
	return 0;
fail_started:
	/* raft_close is asynchronous: the caller's loop runs it to its end,
	 * which frees everything. */
	c->closing = true;
	raft_close(&c->raft, cluster__raft_closed);
	return -EIO;
}

static void cluster__raft_closed(struct raft *r)
{
	struct cluster *c = container_of(r, struct cluster, raft);
	raft_uv_close(&c->io);
	void (*cb)(void *) = c->stop_cb;
	void *arg = c->stop_arg;
	cluster__free(c);
	if (cb)
		cb(arg);
}

static void cluster__tick_closed(uv_handle_t *h)
{
	struct cluster *c = h->data;
	raft_close(&c->raft, cluster__raft_closed);
}

/* Never from inside a libraft callback (DESIGN.md pitfall): callers stop
 * from their own loop callbacks. */
void cluster_stop(struct cluster *c, void (*cb)(void *arg), void *arg)
{
	c->closing = true;
	c->stop_cb = cb;
	c->stop_arg = arg;
	cluster__removals_check(c, true);
	uv_timer_stop(&c->tick);
	uv_close((uv_handle_t *)&c->tick, cluster__tick_closed);
}
