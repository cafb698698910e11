/* lincheck: concurrent clients on the management API, and a
 * linearizability checker for the history they record.
 *
 *   lincheck run --addr IP:PORT --ca FILE --password-file FILE --prefix P
 *                --pool POOL --out FILE [--names 8] [--workers 1]
 *                [--worker-base 0] [--max-seconds 900] [--seed N]
 *   lincheck check [--min-definite N] FILE...
 *   lincheck selftest
 *
 * `run` starts WORKERS threads, each a sequential client of one node's API
 * (https://localhost:PORT, connected to IP:PORT: the API certificate names
 * "localhost"), issuing vdisk create / delete / list on the names P0..P<n-1>
 * until SIGTERM or SIGINT (or --max-seconds). Every operation is recorded
 * with its invoke and return times on CLOCK_MONOTONIC (one clock for all
 * processes of the machine, so histories of several `run`s, each in its own
 * network namespace, merge) and the HTTP status. The history is one JSON
 * object per line.
 *
 * `check` merges histories and decides whether they are linearizable with
 * respect to a set of names: create succeeds iff the name is absent, delete
 * iff present, list returns the set. Linearizability is local (Herlihy &
 * Wing 1990, theorem 1), so each name's sub-history is checked alone; a list
 * becomes one read per name (this checks every name's history, not the
 * atomicity of one list across names).
 *
 * An operation is definite when the answer says what happened: create 201
 * (done) or 409 exists (the name was there), delete 200 or 404, list 200.
 * Anything else (503 while there is no quorum, a 307, a timeout, a refused
 * connection) is indeterminate: it may or may not have taken effect, so it
 * never returns (Jepsen's "info" operations) and may be linearized at any
 * point after its invocation, or never. Indeterminate lists observe nothing
 * and are dropped.
 *
 * The search is Wing & Gong's (1993) with Lowe's memoization (2017): a
 * configuration is the set of definite operations already linearized and
 * the model's state; the next operation may be any not yet linearized one
 * invoked before the earliest return among those left. Indeterminate
 * operations of one kind on one name are interchangeable once invoked (they
 * never return, so nothing orders them), so a configuration counts how many
 * creates and deletes it has used instead of naming them, and one that has
 * used fewer of each than another with the same set and state dominates it. */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hmap.h"
#include "http_body.h"
#include "util.h"

#define LC_NAME_MAX 64
#define LC_NEVER INT64_MAX	   /* the return time of an indeterminate op */
#define LC_STATE_BUDGET 20000000u  /* configurations per name */
#define LC_VDISK_SIZE "1073741824" /* 1 GiB: the map only, no data */

enum lc_kind { LC_CREATE, LC_DELETE, LC_READ };
static const char *const lc_kind_name[] = {"create", "delete", "list"};

/* One operation on one name, as the checker sees it. */
struct lc_op {
	int64_t inv, ret; /* ret = LC_NEVER when indeterminate */
	enum lc_kind kind;
	bool ok; /* create/delete: took effect; read: name present */
	int worker;
	int status; /* HTTP status, 0 for a transport error */
};

struct lc_name {
	char name[LC_NAME_MAX];
	struct lc_op *ops;
	size_t n, cap;
};

struct lc_history {
	struct lc_name *names;
	size_t nnames, capnames;
	/* what was read */
	size_t records, creates, deletes, lists;
	size_t definite, indeterminate, dropped_reads;
	size_t no_effect; /* refused before anything was sent or submitted */
};

static int64_t lc_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint64_t lc_rand(uint64_t *s)
{ /* xorshift64* */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dULL;
}

/* ======================================================================
 * The history: parsing and classification
 * ====================================================================== */

static struct lc_name *lc_name_get(struct lc_history *h, const char *name)
{
	for (size_t i = 0; i < h->nnames; i++)
		if (!strcmp(h->names[i].name, name))
			return &h->names[i];
	if (strlen(name) >= LC_NAME_MAX)
		return NULL;
	if (h->nnames == h->capnames) {
		size_t cap = h->capnames ? 2 * h->capnames : 16;
		struct lc_name *p = realloc(h->names, cap * sizeof(*p));
		if (!p)
			return NULL;
		h->names = p;
		h->capnames = cap;
	}
	struct lc_name *nm = &h->names[h->nnames++];
	memset(nm, 0, sizeof(*nm));
	snprintf(nm->name, sizeof(nm->name), "%s", name);
	return nm;
}

static int lc_name_add(struct lc_name *nm, const struct lc_op *op)
{
	if (nm->n == nm->cap) {
		size_t cap = nm->cap ? 2 * nm->cap : 64;
		struct lc_op *p = realloc(nm->ops, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		nm->ops = p;
		nm->cap = cap;
	}
	nm->ops[nm->n++] = *op;
	return 0;
}

static int lc_add(struct lc_history *h, const char *name,
		  const struct lc_op *op)
{
	struct lc_name *nm = lc_name_get(h, name);
	return nm ? lc_name_add(nm, op) : -ENOMEM;
}

static void lc_history_free(struct lc_history *h)
{
	for (size_t i = 0; i < h->nnames; i++)
		free(h->names[i].ops);
	free(h->names);
	memset(h, 0, sizeof(*h));
}

/* The answer's meaning (docs/api.md, Errors): see the comment on top. */
static bool lc_definite(enum lc_kind k, int status, const char *code, bool *ok)
{
	switch (k) {
	case LC_CREATE:
		*ok = status == 201;
		return status == 201 ||
		       (status == 409 && code && !strcmp(code, "exists"));
	case LC_DELETE:
		*ok = status == 200;
		return status == 200 ||
		       (status == 404 && code && !strcmp(code, "not_found"));
	case LC_READ:
		*ok = false;
		return status == 200;
	}
	return false;
}

/* One record: {"w", "op", "name" (not for list), "inv", "ret", "status",
 * "code" (error code, if any), "names" (list: the names present)}. */
static int lc_record(struct lc_history *h, json_t *j, char *err, size_t errlen)
{
	const char *opn = json_string_value(json_object_get(j, "op"));
	const char *name = json_string_value(json_object_get(j, "name"));
	const char *code = json_string_value(json_object_get(j, "code"));
	json_t *jinv = json_object_get(j, "inv"),
	       *jret = json_object_get(j, "ret");
	json_t *jst = json_object_get(j, "status"),
	       *jw = json_object_get(j, "w");
	enum lc_kind k;
	if (!opn || !json_is_integer(jinv) || !json_is_integer(jst) ||
	    !json_is_integer(jw)) {
		snprintf(err, errlen, "record lacks op, inv, status or w");
		return -EINVAL;
	}
	if (!strcmp(opn, "create"))
		k = LC_CREATE;
	else if (!strcmp(opn, "delete"))
		k = LC_DELETE;
	else if (!strcmp(opn, "list"))
		k = LC_READ;
	else {
		snprintf(err, errlen, "unknown op '%s'", opn);
		return -EINVAL;
	}
	if (k != LC_READ && !name) {
		snprintf(err, errlen, "%s without a name", opn);
		return -EINVAL;
	}
	/* Certainly no effect: never sent, or refused by a node that knows no
	 * leader before anything was submitted (503 no_leader, docs/api.md).
	 * Such an op is as if it had not been issued. */
	if (json_is_false(json_object_get(j, "sent")) ||
	    (json_integer_value(jst) == 503 && code &&
	     !strcmp(code, "no_leader"))) {
		h->records++;
		h->no_effect++;
		return 0;
	}
	struct lc_op op = {.inv = json_integer_value(jinv),
			   .kind = k,
			   .worker = (int)json_integer_value(jw),
			   .status = (int)json_integer_value(jst)};
	bool def = lc_definite(k, op.status, code, &op.ok);
	if (def && !json_is_integer(jret)) {
		snprintf(err, errlen, "definite %s without ret", opn);
		return -EINVAL;
	}
	op.ret = def ? json_integer_value(jret) : LC_NEVER;
	if (def && op.ret < op.inv) {
		snprintf(err, errlen, "%s returns before it is invoked", opn);
		return -EINVAL;
	}
	h->records++;
	h->creates += k == LC_CREATE;
	h->deletes += k == LC_DELETE;
	h->lists += k == LC_READ;
	if (k != LC_READ) {
		def ? h->definite++ : h->indeterminate++;
		return lc_add(h, name, &op);
	}
	if (!def) {
		h->dropped_reads++;
		return 0;
	}
	h->definite++;
	/* A read of every name this history knows, and of any name the list
	 * shows: names are added below, and lc_reads_complete() gives names
	 * first seen later a read of "absent" for this list. */
	json_t *names = json_object_get(j, "names"), *v;
	size_t i;
	if (!json_is_array(names)) {
		snprintf(err, errlen, "list without names");
		return -EINVAL;
	}
	json_array_foreach(names, i, v)
	{
		if (!json_is_string(v) ||
		    !lc_name_get(h, json_string_value(v))) {
			snprintf(err, errlen,
				 "bad name in a list (or no memory)");
			return -EINVAL;
		}
	}
	for (size_t n = 0; n < h->nnames; n++) {
		struct lc_op r = op;
		r.ok = false;
		json_array_foreach(names, i, v)
		{
			if (!strcmp(json_string_value(v), h->names[n].name))
				r.ok = true;
		}
		int rc = lc_name_add(&h->names[n], &r);
		if (rc)
			return rc;
	}
	return 0;
}

/* Lists recorded before a name first appeared did not show it: give that
 * name an "absent" read for each of them (every list reads every name). */
struct lc_list_ref {
	int64_t inv, ret;
	int worker;
};

static int lc_reads_complete(struct lc_history *h, const struct lc_list_ref *l,
			     size_t nl)
{
	for (size_t n = 0; n < h->nnames; n++) {
		struct lc_name *nm = &h->names[n];
		for (size_t i = 0; i < nl; i++) {
			bool have = false;
			for (size_t k = 0; k < nm->n && !have; k++)
				have = nm->ops[k].kind == LC_READ &&
				       nm->ops[k].inv == l[i].inv &&
				       nm->ops[k].worker == l[i].worker;
			if (have)
				continue;
			struct lc_op r = {.inv = l[i].inv,
					  .ret = l[i].ret,
					  .kind = LC_READ,
					  .ok = false,
					  .worker = l[i].worker,
					  .status = 200};
			int rc = lc_name_add(nm, &r);
			if (rc)
				return rc;
		}
	}
	return 0;
}

/* Reads one history text (JSON lines) into h. */
static int lc_parse(struct lc_history *h, const char *text, const char *src,
		    struct lc_list_ref **lists, size_t *nlists,
		    size_t *caplists)
{
	char err[256] = "";
	size_t line = 0;
	const char *p = text;
	while (*p) {
		const char *e = strchr(p, '\n');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		line++;
		if (len) {
			json_error_t je;
			json_t *j = json_loadb(p, len, 0, &je);
			int rc =
			    j ? lc_record(h, j, err, sizeof(err)) : -EINVAL;
			if (!j)
				snprintf(err, sizeof(err), "%s", je.text);
			if (!rc &&
			    !strcmp(json_string_value(json_object_get(j, "op")),
				    "list") &&
			    json_integer_value(json_object_get(j, "status")) ==
				200) {
				if (*nlists == *caplists) {
					size_t c =
					    *caplists ? 2 * *caplists : 64;
					struct lc_list_ref *q =
					    realloc(*lists, c * sizeof(*q));
					if (!q)
						rc = -ENOMEM;
					else {
						*lists = q;
						*caplists = c;
					}
				}
				if (!rc)
					(*lists)[(*nlists)++] =
					    (struct lc_list_ref){
						json_integer_value(
						    json_object_get(j, "inv")),
						json_integer_value(
						    json_object_get(j, "ret")),
						(int)json_integer_value(
						    json_object_get(j, "w"))};
			}
			json_decref(j);
			if (rc) {
				fprintf(stderr, "lincheck: %s:%zu: %s\n", src,
					line, err[0] ? err : strerror(-rc));
				return rc;
			}
		}
		p += len + (e ? 1 : 0);
	}
	return 0;
}

/* ======================================================================
 * The search (one name)
 * ====================================================================== */

struct lc_memo_entry {
	uint64_t *bits;
	uint32_t next; /* index + 1 of the next entry with the same hash */
	uint32_t used_c, used_d;
	bool present;
};

struct lc_search {
	const struct lc_op *def; /* definite ops, by invocation */
	size_t n, words;
	const int64_t *ind_c, *ind_d; /* indeterminate invocations, sorted */
	size_t nind_c, nind_d;
	uint64_t *bits; /* linearized definite ops */
	size_t done;	/* how many */
	struct hmap memo;
	struct lc_memo_entry *ent;
	size_t nent, capent;
	size_t deepest; /* the most definite ops any path linearized */
	size_t stuck;	/* on that path, the first op left */
	bool budget_out;
};

static uint64_t lc_hash(const struct lc_search *s, bool present)
{
	uint64_t x = 0x9e3779b97f4a7c15ULL ^ present;
	for (size_t i = 0; i < s->words; i++) {
		x ^= s->bits[i];
		x *= 0xff51afd7ed558ccdULL;
		x ^= x >> 33;
	}
	return x | 1; /* 0 is hmap's empty key */
}

/* Records the configuration; false when it (or one dominating it) was
 * seen already. */
static bool lc_memo_visit(struct lc_search *s, bool present, uint32_t uc,
			  uint32_t ud)
{
	uint64_t key = lc_hash(s, present), head = 0;
	hmap_get(&s->memo, key, &head);
	for (uint64_t i = head; i; i = s->ent[i - 1].next) {
		const struct lc_memo_entry *e = &s->ent[i - 1];
		if (e->present == present && e->used_c <= uc &&
		    e->used_d <= ud &&
		    !memcmp(e->bits, s->bits, s->words * sizeof(uint64_t)))
			return false;
	}
	if (s->nent >= LC_STATE_BUDGET) {
		s->budget_out = true;
		return false;
	}
	if (s->nent == s->capent) {
		size_t cap = s->capent ? 2 * s->capent : 1024;
		struct lc_memo_entry *p = realloc(s->ent, cap * sizeof(*p));
		if (!p) {
			s->budget_out = true;
			return false;
		}
		s->ent = p;
		s->capent = cap;
	}
	struct lc_memo_entry *e = &s->ent[s->nent];
	e->bits = malloc(s->words * sizeof(uint64_t));
	if (!e->bits || hmap_put(&s->memo, key, s->nent + 1)) {
		free(e->bits);
		s->budget_out = true;
		return false;
	}
	memcpy(e->bits, s->bits, s->words * sizeof(uint64_t));
	e->present = present;
	e->used_c = uc;
	e->used_d = ud;
	e->next = (uint32_t)head;
	s->nent++;
	return true;
}

static bool lc_bit(const struct lc_search *s, size_t i)
{
	return s->bits[i / 64] >> (i % 64) & 1;
}

static void lc_flip(struct lc_search *s, size_t i)
{
	s->bits[i / 64] ^= 1ULL << (i % 64);
}

static size_t lc_count_le(const int64_t *a, size_t n, int64_t t)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (a[mid] <= t)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The sequential model of one name: does op, with its observed outcome,
 * fit state *present (and what state follows)? */
static bool lc_step(const struct lc_op *op, bool *present)
{
	switch (op->kind) {
	case LC_CREATE:
		if (op->ok == *present)
			return false; /* created while there, or "exists" while
					 absent */
		*present = true;
		return true;
	case LC_DELETE:
		if (op->ok != *present)
			return false;
		*present = false;
		return true;
	case LC_READ:
		return op->ok == *present;
	}
	return false;
}

/* Depth-first: true when every definite op can be linearized from here.
 * `lo` is the first op not yet linearized (all before it are). */
static bool lc_dfs(struct lc_search *s, size_t lo, bool present, uint32_t uc,
		   uint32_t ud)
{
	while (lo < s->n && lc_bit(s, lo))
		lo++;
	if (lo == s->n)
		return true;
	if (s->done > s->deepest || (s->done == s->deepest && lo > s->stuck)) {
		s->deepest = s->done;
		s->stuck = lo;
	}
	if (!lc_memo_visit(s, present, uc, ud))
		return false;
	/* The earliest return among the ops left bounds what may go next. */
	int64_t minret = LC_NEVER;
	for (size_t i = lo; i < s->n && s->def[i].inv <= minret; i++)
		if (!lc_bit(s, i) && s->def[i].ret < minret)
			minret = s->def[i].ret;
	for (size_t i = lo; i < s->n && s->def[i].inv <= minret; i++) {
		bool p = present;
		if (lc_bit(s, i) || !lc_step(&s->def[i], &p))
			continue;
		lc_flip(s, i);
		s->done++;
		bool ok = lc_dfs(s, lo, p, uc, ud);
		s->done--;
		lc_flip(s, i);
		if (ok || s->budget_out)
			return ok;
	}
	/* An indeterminate op invoked by now may take effect here. */
	if (!present && uc < lc_count_le(s->ind_c, s->nind_c, minret))
		if (lc_dfs(s, lo, true, uc + 1, ud) || s->budget_out)
			return !s->budget_out;
	if (present && ud < lc_count_le(s->ind_d, s->nind_d, minret))
		if (lc_dfs(s, lo, false, uc, ud + 1) || s->budget_out)
			return !s->budget_out;
	return false;
}

static int lc_cmp_inv(const void *a, const void *b)
{
	const struct lc_op *x = a, *y = b;
	if (x->inv != y->inv)
		return x->inv < y->inv ? -1 : 1;
	return (x->ret > y->ret) - (x->ret < y->ret);
}

static int lc_cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static void lc_print_op(FILE *f, const struct lc_op *o, int64_t t0)
{
	const char *res;
	if (o->ret == LC_NEVER)
		res = "indeterminate";
	else if (o->kind == LC_READ)
		res = o->ok ? "present" : "absent";
	else
		res = o->ok ? "ok"
			    : (o->kind == LC_CREATE ? "exists" : "not found");
	fprintf(f, "    w%-3d %-6s [%10.3f, ", o->worker, lc_kind_name[o->kind],
		(double)(o->inv - t0) / 1e6);
	if (o->ret == LC_NEVER)
		fprintf(f, "%10s] ", "never");
	else
		fprintf(f, "%10.3f] ", (double)(o->ret - t0) / 1e6);
	fprintf(f, "%s (HTTP %d)\n", res, o->status);
}

enum lc_verdict { LC_LINEARIZABLE, LC_NOT_LINEARIZABLE, LC_UNKNOWN };

/* Checks one name's sub-history; prints it around the point where every
 * search got stuck when it is not linearizable. */
static enum lc_verdict lc_check_name(struct lc_name *nm, size_t *states,
				     bool verbose)
{
	struct lc_search s = {0};
	struct lc_op *def = calloc(nm->n + 1, sizeof(*def));
	int64_t *ic = calloc(nm->n + 1, sizeof(*ic));
	int64_t *id = calloc(nm->n + 1, sizeof(*id));
	enum lc_verdict v = LC_UNKNOWN;
	if (!def || !ic || !id)
		goto out;
	for (size_t i = 0; i < nm->n; i++) {
		const struct lc_op *o = &nm->ops[i];
		if (o->ret != LC_NEVER)
			def[s.n++] = *o;
		else if (o->kind == LC_CREATE)
			ic[s.nind_c++] = o->inv;
		else if (o->kind == LC_DELETE)
			id[s.nind_d++] = o->inv;
	}
	qsort(def, s.n, sizeof(*def), lc_cmp_inv);
	qsort(ic, s.nind_c, sizeof(*ic), lc_cmp_i64);
	qsort(id, s.nind_d, sizeof(*id), lc_cmp_i64);
	s.def = def;
	s.ind_c = ic;
	s.ind_d = id;
	s.words = DIV_ROUND_UP(s.n + 1, 64);
	s.bits = calloc(s.words, sizeof(uint64_t));
	if (!s.bits)
		goto out;
	hmap_init(&s.memo);
	bool ok = lc_dfs(&s, 0, false, 0, 0);
	v = s.budget_out ? LC_UNKNOWN
	    : ok	 ? LC_LINEARIZABLE
			 : LC_NOT_LINEARIZABLE;
	*states = s.nent;
	if (v != LC_LINEARIZABLE && verbose) {
		int64_t t0 = s.n ? def[0].inv : 0;
		size_t from = s.stuck > 12 ? s.stuck - 12 : 0;
		size_t to = MIN(s.n, s.stuck + 12);
		fprintf(stderr,
			"lincheck: %s: %s; at most %zu of %zu definite ops "
			"linearize, every order fails at op %zu; definite ops "
			"%zu..%zu (ms from the first):\n",
			nm->name,
			v == LC_UNKNOWN ? "search budget exceeded"
					: "NOT linearizable",
			s.deepest, s.n, s.stuck, from, to ? to - 1 : 0);
		for (size_t i = from; i < to; i++) {
			fprintf(stderr, "%s", i == s.stuck ? "  ->" : "");
			lc_print_op(stderr, &def[i], t0);
		}
		if (s.nind_c + s.nind_d) {
			fprintf(stderr, "  indeterminate ops of %s:\n",
				nm->name);
			for (size_t i = 0; i < nm->n; i++)
				if (nm->ops[i].ret == LC_NEVER &&
				    nm->ops[i].kind != LC_READ)
					lc_print_op(stderr, &nm->ops[i], t0);
		}
	}
	for (size_t i = 0; i < s.nent; i++)
		free(s.ent[i].bits);
	free(s.ent);
	hmap_free(&s.memo);
out:
	free(s.bits);
	free(def);
	free(ic);
	free(id);
	return v;
}

/* ======================================================================
 * check: merge histories, check every name
 * ====================================================================== */

struct lc_totals {
	size_t names, bad, unknown, states;
};

static enum lc_verdict lc_check_all(struct lc_history *h, bool verbose,
				    struct lc_totals *t)
{
	memset(t, 0, sizeof(*t));
	for (size_t i = 0; i < h->nnames; i++) {
		size_t st = 0;
		enum lc_verdict v = lc_check_name(&h->names[i], &st, verbose);
		t->names++;
		t->states += st;
		t->bad += v == LC_NOT_LINEARIZABLE;
		t->unknown += v == LC_UNKNOWN;
		if (verbose)
			printf("lincheck: %-16s %5zu ops, %8zu configurations: "
			       "%s\n",
			       h->names[i].name, h->names[i].n, st,
			       v == LC_LINEARIZABLE	  ? "linearizable"
			       : v == LC_NOT_LINEARIZABLE ? "NOT linearizable"
							  : "unknown (budget)");
	}
	return t->bad	    ? LC_NOT_LINEARIZABLE
	       : t->unknown ? LC_UNKNOWN
			    : LC_LINEARIZABLE;
}

static char *lc_slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	size_t cap = 1 << 16, len = 0;
	char *b = malloc(cap);
	while (b) {
		size_t r = fread(b + len, 1, cap - len - 1, f);
		len += r;
		if (len + 1 < cap)
			break;
		char *nb = realloc(b, cap *= 2);
		if (!nb) {
			free(b);
			b = NULL;
		} else
			b = nb;
	}
	if (b)
		b[len] = 0;
	fclose(f);
	return b;
}

static int lc_cmd_check(int argc, char **argv)
{
	size_t min_definite = 0;
	int i = 0;
	if (argc >= 2 && !strcmp(argv[0], "--min-definite")) {
		min_definite = strtoul(argv[1], NULL, 10);
		i = 2;
	}
	if (i >= argc) {
		fprintf(stderr,
			"usage: lincheck check [--min-definite N] FILE...\n");
		return 2;
	}
	struct lc_history h = {0};
	struct lc_list_ref *lists = NULL;
	size_t nl = 0, cl = 0;
	int rc = 0;
	for (; i < argc && !rc; i++) {
		char *text = lc_slurp(argv[i]);
		if (!text) {
			fprintf(stderr, "lincheck: %s: %s\n", argv[i],
				strerror(errno ? errno : ENOMEM));
			rc = -EIO;
			break;
		}
		rc = lc_parse(&h, text, argv[i], &lists, &nl, &cl);
		free(text);
	}
	if (!rc)
		rc = lc_reads_complete(&h, lists, nl);
	free(lists);
	if (rc) {
		lc_history_free(&h);
		return 2;
	}
	printf("lincheck: %zu ops (%zu create, %zu delete, %zu list, %zu "
	       "refused before anything was sent or submitted): %zu definite, "
	       "%zu indeterminate create/delete, %zu indeterminate lists "
	       "dropped\n",
	       h.records, h.creates, h.deletes, h.lists, h.no_effect,
	       h.definite, h.indeterminate, h.dropped_reads);
	struct lc_totals t;
	enum lc_verdict v = lc_check_all(&h, true, &t);
	printf("lincheck: result: %s (%zu names, %zu ops checked, %zu "
	       "indeterminate, %zu configurations)\n",
	       v == LC_LINEARIZABLE	  ? "linearizable"
	       : v == LC_NOT_LINEARIZABLE ? "NOT LINEARIZABLE"
					  : "UNKNOWN (search budget)",
	       t.names, h.definite, h.indeterminate, t.states);
	rc = v == LC_LINEARIZABLE ? 0 : v == LC_NOT_LINEARIZABLE ? 1 : 2;
	if (!rc && h.definite < min_definite) {
		printf("lincheck: only %zu definite ops, want at least %zu\n",
		       h.definite, min_definite);
		rc = 1;
	}
	lc_history_free(&h);
	return rc;
}

/* ======================================================================
 * selftest: the checker must accept and reject known histories
 * ====================================================================== */

struct lc_case {
	const char *what;
	bool linearizable;
	const char *history;
};

#define R(w, op, name, inv, ret, st)                                           \
	"{\"w\":" #w ",\"op\":\"" op "\",\"name\":\"" name "\",\"inv\":" #inv  \
	",\"ret\":" #ret ",\"status\":" #st "}\n"
#define RC(w, op, name, inv, ret, st, code)                                    \
	"{\"w\":" #w ",\"op\":\"" op "\",\"name\":\"" name "\",\"inv\":" #inv  \
	",\"ret\":" #ret ",\"status\":" #st ",\"code\":\"" code "\"}\n"
#define L(w, inv, ret, names)                                                  \
	"{\"w\":" #w ",\"op\":\"list\",\"inv\":" #inv ",\"ret\":" #ret         \
	",\"status\":200,\"names\":[" names "]}\n"

static const struct lc_case lc_cases[] = {
    {"sequential create, list, delete, list", true,
     R(0, "create", "a", 0, 10, 201) L(0, 20, 30, "\"a\"")
	 R(0, "delete", "a", 40, 50, 200) L(0, 60, 70, "")},
    {"two concurrent creates: one wins, one sees it", true,
     R(0, "create", "a", 0, 100, 201)
	 RC(1, "create", "a", 10, 50, 409, "exists")},
    {"a list concurrent with a create may see either state", true,
     R(0, "create", "a", 0, 100, 201) L(1, 10, 20, "") L(2, 30, 40, "\"a\"")},
    {"an indeterminate create explains a later present", true,
     R(0, "create", "a", 0, 10, 503) L(1, 50, 60, "\"a\"")
	 RC(1, "create", "a", 70, 80, 409, "exists")},
    {"an indeterminate create may never happen", true,
     R(0, "create", "a", 0, 10, 0) L(1, 50, 60, "")
	 R(1, "create", "a", 70, 80, 201)},
    {"an indeterminate delete takes effect late", true,
     R(0, "create", "a", 0, 10, 201) R(1, "delete", "a", 20, 30, 0)
	 L(0, 40, 50, "\"a\"") L(0, 60, 70, "")},
    {"two names are independent", true,
     R(0, "create", "a", 0, 10, 201) R(1, "create", "b", 5, 15, 201)
	 L(2, 20, 30, "\"a\",\"b\"") R(0, "delete", "b", 40, 50, 200)
	     L(1, 60, 70, "\"a\"")},
    {"a second create succeeds with no delete between", false,
     R(0, "create", "a", 0, 10, 201) R(1, "create", "a", 20, 30, 201)},
    {"a stale read after a create returned", false,
     R(0, "create", "a", 0, 10, 201) L(1, 20, 30, "")},
    {"a delete of a name never created", false,
     R(0, "delete", "a", 0, 10, 200)},
    {"'exists' for a name that is absent", false,
     RC(0, "create", "a", 0, 10, 409, "exists") L(0, 20, 30, "")},
    {"a read sees a name before its create was invoked", false,
     L(1, 0, 10, "\"a\"") R(0, "create", "a", 20, 30, 201)},
    {"an indeterminate create invoked after the read cannot explain it", false,
     L(1, 0, 10, "\"a\"") R(0, "create", "a", 20, 30, 0)},
    {"reads flip back and forth with one create", false,
     R(0, "create", "a", 0, 100, 201) L(1, 10, 20, "\"a\"") L(2, 30, 40, "")},
    {"one indeterminate create cannot be used twice", false,
     R(0, "create", "a", 0, 5, 0) L(1, 10, 20, "\"a\"")
	 R(1, "delete", "a", 30, 40, 200) L(1, 50, 60, "\"a\"")},
    {"a create never sent cannot explain a present name", false,
     "{\"w\":0,\"op\":\"create\",\"name\":\"a\",\"inv\":0,\"ret\":5,"
     "\"status\":0,\"sent\":false}\n" L(1, 10, 20, "\"a\"")},
    {"a create refused with no_leader cannot explain a present name", false,
     RC(0, "create", "a", 0, 5, 503, "no_leader") L(1, 10, 20, "\"a\"")},
    {"a create refused as unavailable may have been committed", true,
     RC(0, "create", "a", 0, 5, 503, "unavailable") L(1, 10, 20, "\"a\"")},
    {"a name vanishes with no delete", false,
     R(0, "create", "a", 0, 10, 201) RC(0, "create", "a", 0, 20, 409, "exists")
	 L(1, 30, 40, "")},
};

/* A history linearizable by construction: W sequential workers, each op's
 * effect at a random point inside its interval, applied in that order to
 * the model to get its result; one in ten is indeterminate, of which half
 * never take effect. The checker must accept it, in bounded work. */
struct lc_gen_op {
	int64_t inv, ret, at;
	enum lc_kind kind;
	unsigned name, worker;
	bool indet, applied;
};

static int lc_cmp_at(const void *a, const void *b)
{
	const struct lc_gen_op *x = a, *y = b;
	return (x->at > y->at) - (x->at < y->at);
}

static int lc_selftest_random(uint64_t seed, size_t nops)
{
	enum { W = 6, NAMES = 8 };
	uint64_t rng = seed * 0x9e3779b97f4a7c15ULL | 1;
	struct lc_gen_op *g = calloc(nops, sizeof(*g));
	int64_t clock[W] = {0};
	bool present[NAMES] = {0};
	struct lc_history h = {0};
	int rc = g ? 0 : -ENOMEM;
	for (size_t i = 0; i < nops && !rc; i++) {
		unsigned w = (unsigned)(lc_rand(&rng) % W);
		g[i].worker = w;
		g[i].inv = clock[w] + (int64_t)(lc_rand(&rng) % 1000);
		g[i].ret = g[i].inv + 1 + (int64_t)(lc_rand(&rng) % 5000);
		g[i].at = g[i].inv + (int64_t)(lc_rand(&rng) %
					       (uint64_t)(g[i].ret - g[i].inv));
		clock[w] = g[i].ret;
		g[i].kind = (enum lc_kind)(lc_rand(&rng) % 3);
		g[i].name = (unsigned)(lc_rand(&rng) % NAMES);
		g[i].indet = g[i].kind != LC_READ && lc_rand(&rng) % 10 == 0;
		g[i].applied = !g[i].indet || lc_rand(&rng) % 2;
		if (g[i].indet) /* its worker gave up at ret and went on */
			g[i].ret = LC_NEVER;
	}
	if (!rc)
		qsort(g, nops, sizeof(*g), lc_cmp_at);
	for (size_t i = 0; i < nops && !rc; i++) {
		char nm[16];
		snprintf(nm, sizeof(nm), "r%u", g[i].name);
		struct lc_op op = {.inv = g[i].inv,
				   .ret = g[i].ret,
				   .kind = g[i].kind,
				   .worker = (int)g[i].worker,
				   .status = 200};
		if (g[i].kind == LC_READ) {
			/* every name is read: one op per name */
			for (unsigned n = 0; n < NAMES && !rc; n++) {
				snprintf(nm, sizeof(nm), "r%u", n);
				op.ok = present[n];
				rc = lc_add(&h, nm, &op);
			}
			continue;
		}
		bool *p = &present[g[i].name];
		op.ok = g[i].kind == LC_CREATE ? !*p : *p;
		if (g[i].applied)
			*p = g[i].kind == LC_CREATE;
		h.definite += !g[i].indet;
		h.indeterminate += g[i].indet;
		rc = lc_add(&h, nm, &op);
	}
	struct lc_totals t = {0};
	enum lc_verdict v = rc ? LC_UNKNOWN : lc_check_all(&h, false, &t);
	printf(
	    "lincheck selftest: %s: random linearizable history, seed %" PRIu64
	    ", %zu ops (%zu indeterminate) on %d names by %d workers: %s, "
	    "%zu configurations\n",
	    v == LC_LINEARIZABLE ? "ok" : "FAIL", seed, nops, h.indeterminate,
	    NAMES, W, v == LC_LINEARIZABLE ? "accepted" : "rejected", t.states);
	if (v != LC_LINEARIZABLE && !rc)
		lc_check_all(&h, true, &t);
	lc_history_free(&h);
	free(g);
	return v == LC_LINEARIZABLE ? 0 : 1;
}

static int lc_cmd_selftest(void)
{
	int bad = 0;
	for (size_t c = 0; c < ARRAY_SIZE(lc_cases); c++) {
		struct lc_history h = {0};
		struct lc_list_ref *lists = NULL;
		size_t nl = 0, cl = 0;
		int rc = lc_parse(&h, lc_cases[c].history, "selftest", &lists,
				  &nl, &cl);
		if (!rc)
			rc = lc_reads_complete(&h, lists, nl);
		free(lists);
		struct lc_totals t;
		enum lc_verdict v =
		    rc ? LC_UNKNOWN : lc_check_all(&h, false, &t);
		bool pass =
		    v == (lc_cases[c].linearizable ? LC_LINEARIZABLE
						   : LC_NOT_LINEARIZABLE);
		printf("lincheck selftest: %s: %s (%s)\n", pass ? "ok" : "FAIL",
		       lc_cases[c].what,
		       v == LC_LINEARIZABLE ? "accepted" : "rejected");
		if (!pass && !rc)
			lc_check_all(&h, true, &t);
		bad += !pass;
		lc_history_free(&h);
	}
	printf("lincheck selftest: %zu histories, %d wrong\n",
	       ARRAY_SIZE(lc_cases), bad);
	for (uint64_t seed = 1; seed <= 3; seed++)
		bad += lc_selftest_random(seed, 4000);
	return bad ? 1 : 0;
}

/* ======================================================================
 * run: the clients
 * ====================================================================== */

struct lc_run {
	const char *addr, *ca, *prefix, *pool, *out;
	char password[512];
	char url[128];	      /* https://localhost:PORT */
	char connect_to[256]; /* localhost:PORT:IP:PORT */
	unsigned names, workers, worker_base, max_seconds;
	uint64_t seed;
	atomic_bool stop;
};

struct lc_worker {
	struct lc_run *run;
	unsigned id;
	uint64_t rng;
	pthread_t thread;
	json_t *records; /* array */
	size_t counts[3], definite;
};

/* One request; the record gets status, code, inv and ret. Returns the
 * parsed body (or NULL). */
static json_t *lc_request(struct lc_worker *w, CURL *c, const char *method,
			  const char *path, const char *body, json_t *rec)
{
	struct lc_run *r = w->run;
	char url[512];
	struct http_body b = {.max = 4u << 20};
	struct curl_slist *h = NULL, *ct = NULL;
	snprintf(url, sizeof(url), "%s%s", r->url, path);
	ct = curl_slist_append(NULL, r->connect_to);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CONNECT_TO, ct);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, http_body_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_CAINFO, r->ca);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	/* Longer than the API's own forward (3 s to connect, 15 s in all),
	 * so that a slow answer is the server's, not ours. */
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 3L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
	curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
	curl_easy_setopt(c, CURLOPT_USERNAME, "admin");
	curl_easy_setopt(c, CURLOPT_PASSWORD, r->password);
	/* No redirects: a 307 is an answer (indeterminate) like any. */
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	if (body) {
		h = curl_slist_append(h, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	} else {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, NULL);
		curl_easy_setopt(c, CURLOPT_HTTPGET, !strcmp(method, "GET"));
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	int64_t inv = lc_now();
	CURLcode cc = curl_easy_perform(c);
	int64_t ret = lc_now();
	long status = 0;
	if (cc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(c, CURLOPT_CONNECT_TO, NULL);
	curl_slist_free_all(h);
	curl_slist_free_all(ct);
	json_t *j =
	    cc == CURLE_OK && b.data ? json_loads(b.data, 0, NULL) : NULL;
	free(b.data);
	const char *code = json_string_value(
	    json_object_get(json_object_get(j, "error"), "code"));
	json_object_set_new(rec, "inv", json_integer(inv));
	json_object_set_new(rec, "ret", json_integer(ret));
	json_object_set_new(rec, "status", json_integer(status));
	if (code)
		json_object_set_new(rec, "code", json_string(code));
	if (cc != CURLE_OK)
		json_object_set_new(rec, "curl",
				    json_string(curl_easy_strerror(cc)));
	/* Nothing reached the server: the op certainly had no effect. */
	if (cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST)
		json_object_set_new(rec, "sent", json_false());
	return j;
}

static void lc_one_op(struct lc_worker *w, CURL *c)
{
	struct lc_run *r = w->run;
	uint64_t x = lc_rand(&w->rng);
	char name[LC_NAME_MAX], path[160], body[256];
	snprintf(name, sizeof(name), "%s%u", r->prefix,
		 (unsigned)(x % r->names));
	json_t *rec = json_pack("{s:I}", "w", (json_int_t)w->id), *j = NULL;
	unsigned pick = (unsigned)(x >> 32) % 100;
	enum lc_kind k = pick < 40   ? LC_CREATE
			 : pick < 75 ? LC_DELETE
				     : LC_READ;
	json_object_set_new(rec, "op", json_string(lc_kind_name[k]));
	if (k != LC_READ)
		json_object_set_new(rec, "name", json_string(name));
	switch (k) {
	case LC_CREATE:
		snprintf(body, sizeof(body),
			 "{\"name\":\"%s\",\"pool\":\"%s\",\"size\":%s}", name,
			 r->pool, LC_VDISK_SIZE);
		j = lc_request(w, c, "POST", "/api/v1/vdisks", body, rec);
		break;
	case LC_DELETE:
		snprintf(path, sizeof(path), "/api/v1/vdisks/%s", name);
		j = lc_request(w, c, "DELETE", path, NULL, rec);
		break;
	case LC_READ: {
		j = lc_request(w, c, "GET", "/api/v1/vdisks", NULL, rec);
		json_t *names = json_array(), *v;
		size_t i, pl = strlen(r->prefix);
		json_array_foreach(json_object_get(j, "vdisks"), i, v)
		{
			const char *n =
			    json_string_value(json_object_get(v, "name"));
			if (n && !strncmp(n, r->prefix, pl))
				json_array_append_new(names, json_string(n));
		}
		json_object_set_new(rec, "names", names);
		break;
	}
	}
	int st = (int)json_integer_value(json_object_get(rec, "status"));
	bool ok;
	const char *code = json_string_value(json_object_get(rec, "code"));
	bool def = lc_definite(k, st, code, &ok);
	w->counts[k]++;
	w->definite += def;
	json_array_append_new(w->records, rec);
	json_decref(j);
	/* A node that is down or cut off answers fast with an error: do not
	 * spin on it. */
	struct timespec ts = {0, (long)(def ? lc_rand(&w->rng) % 20 : 200) *
				     1000000L};
	nanosleep(&ts, NULL);
}

static void *lc_worker_main(void *arg)
{
	struct lc_worker *w = arg;
	CURL *c = curl_easy_init();
	if (!c)
		return NULL;
	while (!atomic_load(&w->run->stop))
		lc_one_op(w, c);
	curl_easy_cleanup(c);
	return NULL;
}

static int lc_write_history(struct lc_run *r, struct lc_worker *ws)
{
	char tmp[1024];
	snprintf(tmp, sizeof(tmp), "%s.tmp", r->out);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return -errno;
	for (unsigned i = 0; i < r->workers; i++) {
		json_t *v;
		size_t k;
		json_array_foreach(ws[i].records, k, v)
		{
			char *line = json_dumps(v, JSON_COMPACT);
			if (line)
				fprintf(f, "%s\n", line);
			free(line);
		}
	}
	int rc = fflush(f) || ferror(f) ? -EIO : 0;
	fclose(f);
	if (!rc && rename(tmp, r->out))
		rc = -errno;
	return rc;
}

static int lc_cmd_run(int argc, char **argv)
{
	struct lc_run r = {
	    .names = 8, .workers = 1, .max_seconds = 900, .pool = "lc"};
	const char *pwfile = NULL;
	static const struct option opts[] = {
	    {"addr", required_argument, NULL, 'a'},
	    {"ca", required_argument, NULL, 'c'},
	    {"password-file", required_argument, NULL, 'p'},
	    {"prefix", required_argument, NULL, 'x'},
	    {"pool", required_argument, NULL, 'P'},
	    {"out", required_argument, NULL, 'o'},
	    {"names", required_argument, NULL, 'n'},
	    {"workers", required_argument, NULL, 'w'},
	    {"worker-base", required_argument, NULL, 'b'},
	    {"max-seconds", required_argument, NULL, 't'},
	    {"seed", required_argument, NULL, 's'},
	    {0}};
	int o;
	optind = 1;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'a':
			r.addr = optarg;
			break;
		case 'c':
			r.ca = optarg;
			break;
		case 'p':
			pwfile = optarg;
			break;
		case 'x':
			r.prefix = optarg;
			break;
		case 'P':
			r.pool = optarg;
			break;
		case 'o':
			r.out = optarg;
			break;
		case 'n':
			r.names = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'w':
			r.workers = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'b':
			r.worker_base = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 't':
			r.max_seconds = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 's':
			r.seed = strtoull(optarg, NULL, 10);
			break;
		default:
			return 2;
		}
	}
	const char *colon = r.addr ? strrchr(r.addr, ':') : NULL;
	if (!colon || !r.ca || !pwfile || !r.prefix || !r.out || !r.names ||
	    r.names > 1000 || !r.workers || r.workers > 64 ||
	    strlen(r.prefix) > 40) {
		fprintf(stderr,
			"usage: lincheck run --addr IP:PORT --ca FILE "
			"--password-file FILE --prefix P --out FILE [--pool "
			"NAME] [--names 8] [--workers 1] [--worker-base 0] "
			"[--max-seconds 900] [--seed N]\n");
		return 2;
	}
	FILE *pf = fopen(pwfile, "r");
	if (!pf || !fgets(r.password, sizeof(r.password), pf)) {
		fprintf(stderr, "lincheck: %s: cannot read a password\n",
			pwfile);
		if (pf)
			fclose(pf);
		return 2;
	}
	fclose(pf);
	r.password[strcspn(r.password, "\r\n")] = 0;
	snprintf(r.url, sizeof(r.url), "https://localhost:%s", colon + 1);
	snprintf(r.connect_to, sizeof(r.connect_to), "localhost:%s:%.*s:%s",
		 colon + 1, (int)(colon - r.addr), r.addr, colon + 1);
	if (!r.seed)
		r.seed = (uint64_t)lc_now() ^ (uint64_t)getpid() << 32;

	/* Signals are taken by sigtimedwait below, in this thread only. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	struct lc_worker *ws = calloc(r.workers, sizeof(*ws));
	unsigned started = 0;
	for (unsigned i = 0; ws && i < r.workers; i++) {
		ws[i].run = &r;
		ws[i].id = r.worker_base + i;
		ws[i].rng =
		    (r.seed + 0x9e3779b97f4a7c15ULL * (ws[i].id + 1)) | 1;
		ws[i].records = json_array();
		if (pthread_create(&ws[i].thread, NULL, lc_worker_main, &ws[i]))
			break;
		started++;
	}
	struct timespec limit = {(time_t)r.max_seconds, 0};
	if (started == r.workers)
		sigtimedwait(&set, NULL, &limit);
	atomic_store(&r.stop, true);
	size_t total[3] = {0}, definite = 0;
	for (unsigned i = 0; i < started; i++) {
		pthread_join(ws[i].thread, NULL);
		for (int k = 0; k < 3; k++)
			total[k] += ws[i].counts[k];
		definite += ws[i].definite;
	}
	int rc = started == r.workers ? lc_write_history(&r, ws) : -EAGAIN;
	printf("lincheck run %s: %u workers, %zu create, %zu delete, %zu "
	       "list, %zu definite answers%s%s\n",
	       r.addr, r.workers, total[0], total[1], total[2], definite,
	       rc ? ": " : "", rc ? strerror(-rc) : "");
	for (unsigned i = 0; ws && i < r.workers; i++)
		json_decref(ws[i].records);
	free(ws);
	curl_global_cleanup();
	return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "run"))
		return lc_cmd_run(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "check"))
		return lc_cmd_check(argc - 2, argv + 2);
	if (argc == 2 && !strcmp(argv[1], "selftest"))
		return lc_cmd_selftest();
	fprintf(stderr, "usage: lincheck run ... | check [--min-definite N] "
			"FILE... | selftest\n");
	return 2;
}
