/* "Am I still a member?" — for a node that was removed while it was down.
 *
 * Such a node never applied its node.leave: when it comes back it is
 * outside the others' Raft configuration, nobody sends it anything, and it
 * knows no leader. So, while it knows no leader, it asks the members of
 * its own (stale) map, every API_PROBE_MS: POST /api/v1/membership, signed
 * with its node key, to their APIs (whose certificates it checks against
 * the cluster CA). Any node answers through the leader after a read
 * barrier (a follower forwards), so the answer is the current map's; only
 * a definite {"member": false} marks this node removed
 * (cluster_mark_removed: 410 node_removed from then on). Anything else —
 * unreachable, no leader, 503 — proves nothing and it asks again later.
 *
 * The request is authenticated by the node's certificate: h2o does not
 * expose the TLS peer certificate, so the body carries the certificate
 * ("node-<id>", checked against the cluster CA) and an ECDSA signature
 * over "cairn-membership-v1\n<id>\n<name>\n<time>" with its key, the time
 * within API_PROBE_SKEW_S of the answering node's clock. A stranger learns
 * nothing; a replay learns only what the member already knew. */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <stdlib.h>
#include <string.h>

#include <cairn/cluster.h>
#include <cairn/pki.h>

#include "api_internal.h"

#define API_PROBE_FIRST_MS 500
#define API_PROBE_MS 3000
#define API_PROBE_SKEW_S 300
#define API_PROBE_MAX_PEERS 64

struct api_probe {
	struct api_server *srv;
	uv_timer_t timer;
	uv_work_t work;
	bool busy;
	char *ca_file, *cert_pem;
	EVP_PKEY *key;
	/* one round, filled on the loop, read on the pool */
	char *body;
	char *peers[API_PROBE_MAX_PEERS];
	size_t npeers;
	int verdict; /* 1 member, 0 not a member, -1 no answer */
	char who[128];
};

static void membership__message(char *out, size_t len, json_int_t id,
				const char *name, json_int_t t)
{
	snprintf(out, len, "cairn-membership-v1\n%" PRId64 "\n%s\n%" PRId64,
		 (int64_t)id, name, (int64_t)t);
}

/* ---- the answering side ---- */

/* The body's certificate chains to the cluster CA and names node-<id>,
 * and the signature is its key's. 0 or a reason. */
static const char *membership__verify(struct api_server *srv,
				      const json_t *b)
{
	json_int_t id = json_integer_value(json_object_get(b, "id"));
	json_int_t t = json_integer_value(json_object_get(b, "time"));
	const char *name = json_string_value(json_object_get(b, "name"));
	const char *cert = json_string_value(json_object_get(b, "cert"));
	const char *sig = json_string_value(json_object_get(b, "sig"));
	if (id < 1 || !name || !cert || !sig || strlen(sig) > 512 ||
	    strlen(name) > 63)
		return "membership needs id, name, time, cert, sig";
	if (llabs((long long)(t - time(NULL))) > API_PROBE_SKEW_S)
		return "time too far from this node's clock";
	if (!srv->ca_pem)
		return "this node has no cluster CA";
	const char *why = "certificate not from the cluster CA";
	BIO *cb = BIO_new_mem_buf(cert, -1), *ab = BIO_new_mem_buf(srv->ca_pem, -1);
	X509 *x = cb ? PEM_read_bio_X509(cb, NULL, NULL, NULL) : NULL;
	X509 *ca = ab ? PEM_read_bio_X509(ab, NULL, NULL, NULL) : NULL;
	X509_STORE *st = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char raw[512];
	char cn[64], want[32], msg[192];
	int n;
	if (!x || !ca || !st || !ctx || !md || !X509_STORE_add_cert(st, ca) ||
	    !X509_STORE_CTX_init(ctx, st, x, NULL) ||
	    X509_verify_cert(ctx) != 1)
		goto out;
	why = "certificate does not name this node id";
	snprintf(want, sizeof(want), "node-%" PRId64, (int64_t)id);
	if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName,
				      cn, sizeof(cn)) < 0 ||
	    strcmp(cn, want))
		goto out;
	why = "bad signature";
	n = EVP_DecodeBlock(raw, (const unsigned char *)sig, (int)strlen(sig));
	if (n <= 0)
		goto out;
	for (size_t p = strlen(sig); p > 0 && sig[p - 1] == '='; p--)
		n--;
	membership__message(msg, sizeof(msg), id, name, t);
	if (EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL,
				 X509_get0_pubkey(x)) == 1 &&
	    EVP_DigestVerify(md, raw, (size_t)n, (const unsigned char *)msg,
			     strlen(msg)) == 1)
		why = NULL;
out:
	EVP_MD_CTX_free(md);
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(st);
	X509_free(x);
	X509_free(ca);
	BIO_free(cb);
	BIO_free(ab);
	return why;
}

static void membership__answer(struct api_call *call, json_t *map)
{
	char key[24];
	snprintf(key, sizeof(key), "%" PRId64,
		 (int64_t)json_integer_value(json_object_get(call->body, "id")));
	const json_t *n = json_object_get(json_object_get(map, "nodes"), key);
	/* An id given to another node since (same id, other name) is not
	 * the asker either. */
	bool member =
	    n && !strcmp(json_string_value(json_object_get(n, "name")) ?: "",
			 json_string_value(json_object_get(call->body, "name")));
	api_reply(call, 200, json_pack("{s:b, s:I}", "member", member, "epoch",
				       json_integer_value(
					   json_object_get(map, "epoch"))));
}

/* POST /api/v1/membership (public: the node certificate authenticates). */
void api_membership_post(struct api_call *call)
{
	const char *why = membership__verify(call->srv, call->body);
	if (why) {
		api_reply_error(call, 401, "unauthorized", "membership: %s",
				why);
		return;
	}
	api_read_map(call, membership__answer);
}

/* ---- the asking side ---- */

static size_t membership__sink(char *p, size_t sz, size_t n, void *arg)
{
	char **buf = arg;
	size_t have = *buf ? strlen(*buf) : 0, add = sz * n;
	if (have + add > 4096)
		return 0;
	char *b = realloc(*buf, have + add + 1);
	if (!b)
		return 0;
	memcpy(b + have, p, add);
	b[have + add] = 0;
	*buf = b;
	return add;
}

/* On the thread pool: ask each peer in turn until one answers. */
static void membership__ask(uv_work_t *w)
{
	struct api_probe *p = w->data;
	p->verdict = -1;
	for (size_t i = 0; i < p->npeers && p->verdict < 0; i++) {
		char url[300], *resp = NULL;
		long code = 0;
		snprintf(url, sizeof(url), "https://%s/api/v1/membership",
			 p->peers[i]);
		CURL *c = curl_easy_init();
		struct curl_slist *h =
		    curl_slist_append(NULL, "Content-Type: application/json");
		if (!c || !h) {
			curl_easy_cleanup(c);
			curl_slist_free_all(h);
			continue;
		}
		curl_easy_setopt(c, CURLOPT_URL, url);
		curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, p->body);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
		curl_easy_setopt(c, CURLOPT_CAINFO, p->ca_file);
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
		curl_easy_setopt(c, CURLOPT_SSLVERSION, CURL_SSLVERSION_TLSv1_2);
		/* the map gives IP:port, the certificate names the node: any
		 * certificate of the cluster CA is a cluster node's */
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
		curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
		curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, membership__sink);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, &resp);
		if (curl_easy_perform(c) == CURLE_OK)
			curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
		curl_slist_free_all(h);
		curl_easy_cleanup(c);
		json_t *j = code == 200 && resp ? json_loads(resp, 0, NULL)
						: NULL;
		json_t *m = json_object_get(j, "member");
		if (json_is_boolean(m)) {
			p->verdict = json_is_true(m);
			snprintf(p->who, sizeof(p->who), "%s", p->peers[i]);
		}
		json_decref(j);
		free(resp);
	}
}

static void membership__round_free(struct api_probe *p)
{
	for (size_t i = 0; i < p->npeers; i++)
		free(p->peers[i]);
	p->npeers = 0;
	free(p->body);
	p->body = NULL;
}

static void membership__asked(uv_work_t *w, int status)
{
	struct api_probe *p = w->data;
	struct api_server *srv = p->srv;
	srv->nwork--;
	p->busy = false;
	if (!status && p->verdict == 0 && !srv->closing)
		cluster_mark_removed(srv->cluster, p->who);
	membership__round_free(p);
}

/* A signed body for this node, or NULL. */
static char *membership__body(struct api_probe *p, json_int_t id,
			      const char *name)
{
	json_int_t t = (json_int_t)time(NULL);
	char msg[192], sig64[256];
	unsigned char sig[128];
	size_t slen = sizeof(sig);
	membership__message(msg, sizeof(msg), id, name, t);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	bool ok = md &&
		  EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, p->key) == 1 &&
		  EVP_DigestSign(md, sig, &slen, (const unsigned char *)msg,
				 strlen(msg)) == 1;
	EVP_MD_CTX_free(md);
	if (!ok)
		return NULL;
	EVP_EncodeBlock((unsigned char *)sig64, sig, (int)slen);
	json_t *b = json_pack("{s:I, s:s, s:I, s:s, s:s}", "id", id, "name",
			      name, "time", t, "cert", p->cert_pem, "sig",
			      sig64);
	char *s = b ? json_dumps(b, JSON_COMPACT) : NULL;
	json_decref(b);
	return s;
}

static void membership__tick(uv_timer_t *t)
{
	struct api_probe *p = t->data;
	struct api_server *srv = p->srv;
	if (p->busy || srv->closing)
		return;
	json_t *st = cluster_status(srv->cluster);
	json_int_t self = json_integer_value(json_object_get(st, "id"));
	bool ask = !json_is_true(json_object_get(st, "removed")) &&
		   !json_integer_value(json_object_get(st, "leader"));
	char name[64];
	snprintf(name, sizeof(name), "%s",
		 json_string_value(json_object_get(st, "name")) ?: "");
	json_decref(st);
	if (!ask)
		return;
	const char *k;
	json_t *n;
	json_object_foreach(
	    json_object_get(cluster_local_map(srv->cluster), "nodes"), k, n)
	{
		const char *api = json_string_value(json_object_get(n, "api"));
		if (json_integer_value(json_object_get(n, "id")) == self ||
		    !api || p->npeers == API_PROBE_MAX_PEERS)
			continue;
		if (!(p->peers[p->npeers] = strdup(api)))
			break;
		p->npeers++;
	}
	if (!p->npeers || !(p->body = membership__body(p, self, name))) {
		membership__round_free(p);
		return;
	}
	p->work.data = p;
	if (uv_queue_work(srv->loop, &p->work, membership__ask,
			  membership__asked)) {
		membership__round_free(p);
		return;
	}
	p->busy = true;
	srv->nwork++;
}

int api_probe_start(struct api_server *srv, const struct api_config *cfg)
{
	if (!cfg->node_cert_file || !cfg->node_key_file || !cfg->ca_file)
		return 0;
	struct api_probe *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->srv = srv;
	p->ca_file = strdup(cfg->ca_file);
	p->cert_pem = pki_read_file(cfg->node_cert_file);
	FILE *f = fopen(cfg->node_key_file, "r");
	if (f) {
		p->key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
		fclose(f);
	}
	if (!p->ca_file || !p->cert_pem || !p->key) {
		free(p->ca_file);
		free(p->cert_pem);
		EVP_PKEY_free(p->key);
		free(p);
		return -EINVAL;
	}
	uv_timer_init(srv->loop, &p->timer);
	p->timer.data = p;
	uv_timer_start(&p->timer, membership__tick, API_PROBE_FIRST_MS,
		       API_PROBE_MS);
	srv->probe = p;
	srv->nwork++; /* the timer handle, until closed */
	return 0;
}

static void membership__timer_closed(uv_handle_t *h)
{
	struct api_probe *p = h->data;
	p->srv->nwork--;
}

void api_probe_close(struct api_probe *p)
{
	if (p)
		uv_close((uv_handle_t *)&p->timer, membership__timer_closed);
}

void api_probe_free(struct api_probe *p)
{
	if (!p)
		return;
	membership__round_free(p);
	free(p->ca_file);
	free(p->cert_pem);
	EVP_PKEY_free(p->key);
	free(p);
}
