/* A cluster node as cairnd runs it: its state directory, its PKI, the
 * cluster (Raft) and the management API, for the three ways a node starts:
 *
 *   create  a new cluster: make the CA, this node's certificates, bootstrap
 *   join    an existing one: fetch its CA over HTTPS and check it against
 *           the token's fingerprint, then POST the token; the leader
 *           answers with our id and certificates
 *   resume  a node that ran before: everything is in the state directory
 *
 * State directory: node.json (id, name, addresses, cluster), pki/ (ca.crt,
 * ca.key on the creating node only, node-<id>.crt/.key, api.crt/.key),
 * raft/ (libraft), api/ (reserved for the API), admin-password (the
 * generated admin password, 0600, on the creating node; its hash is in the
 * cluster map, shared by every node, and must be changed first). */
#include <cairn/api.h>
#include <cairn/cluster.h>
#include <cairn/node.h>
#include <cairn/pki.h>
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file.h"
#include "http_body.h"
#include "log.h"
#include "util.h"

struct cairn_node {
	uv_loop_t *loop;
	struct cluster *cluster;
	struct api_server *api;
	char dir[1024];
	char name[64];
	char raft[128], api_addr[128];
	uint64_t id;
	void (*stop_cb)(void *arg);
	void *stop_arg;
};

static int node__path(char *out, size_t len, const char *dir, const char *f)
{
	int n = snprintf(out, len, "%s/%s", dir, f);
	return n > 0 && (size_t)n < len ? 0 : -ENAMETOOLONG;
}

static int node__mkdirs(const char *dir)
{
	const char *subs[] = {"", "/pki", "/raft", "/api"};
	for (size_t i = 0; i < ARRAY_SIZE(subs); i++) {
		char p[1100];
		snprintf(p, sizeof(p), "%s%s", dir, subs[i]);
		if (mkdir(p, 0700) != 0 && errno != EEXIST)
			return -errno;
	}
	return 0;
}

/* A text file, written atomically and durably (lib/file.c). */
static int node__write(const char *path, const char *text, mode_t mode)
{
	return file_write_atomic(path, text, strlen(text), mode);
}

/* ---- HTTPS to the cluster we join --------------------------------------- */

/* One blocking HTTPS request (start-up only). ca NULL: the server is not
 * verified by the TLS stack; the caller checks what it got instead. */
static int node__https(const char *url, const char *body, const char *ca,
		       json_t **out, char *err, size_t errlen)
{
	CURL *c = curl_easy_init();
	if (!c)
		return -ENOMEM;
	struct http_body b = {.max = 1u << 20}; /* a join answer is a few KiB */
	struct curl_slist *h =
		curl_slist_append(NULL, "Content-Type: application/json");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, http_body_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
	if (ca) {
		/* The chain is checked against the pinned cluster CA (the
		 * token's fingerprint), not the host: --join may name the
		 * node by any name or address. */
		curl_easy_setopt(c, CURLOPT_CAINFO, ca);
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
	} else {
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (body)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	CURLcode cc = curl_easy_perform(c);
	long code = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	int rc = 0;
	*out = NULL;
	if (cc != CURLE_OK) {
		snprintf(err, errlen, "%s: %s", url, curl_easy_strerror(cc));
		rc = -EIO;
	} else {
		*out = b.data ? json_loads(b.data, 0, NULL) : NULL;
		if (code < 200 || code > 299 || !*out) {
			const char *m = json_string_value(json_object_get(
				json_object_get(*out, "error"), "message"));
			snprintf(err, errlen, "%s: HTTP %ld%s%s", url, code,
				 m ? ": " : "", m ? m : "");
			json_decref(*out);
			*out = NULL;
			rc = code == 401 || code == 403 ? -EACCES : -EIO;
		}
	}
	free(b.data);
	return rc;
}

static int node__join(const struct node_config *cfg, uint64_t *id,
		      char *cluster, size_t clen, char *err, size_t errlen)
{
	/* cairn1:<fingerprint>:<secret> */
	const char *t = cfg->join_token;
	const char *c1 = t ? strchr(t, ':') : NULL;
	const char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
	if (!t || strncmp(t, "cairn1:", 7) || !c2 || c2 - c1 - 1 != 64) {
		snprintf(err, errlen, "malformed join token");
		return -EINVAL;
	}
	char fp_want[65], fp[65];
	memcpy(fp_want, c1 + 1, 64);
	fp_want[64] = 0;
	char url[1100];
	snprintf(url, sizeof(url), "%s/api/v1/ca", cfg->join_url);
	json_t *j;
	int rc = node__https(url, NULL, NULL, &j, err, errlen);
	if (rc)
		return rc;
	const char *ca = json_string_value(json_object_get(j, "ca"));
	if (!ca || pki_fingerprint(ca, fp) || strcmp(fp, fp_want)) {
		json_decref(j);
		snprintf(err, errlen,
			 "%s does not serve the CA the token names: refused",
			 cfg->join_url);
		return -EACCES;
	}
	char cafile[1100];
	node__path(cafile, sizeof(cafile), cfg->state_dir, "pki/ca.crt");
	rc = node__write(cafile, ca, 0644);
	json_decref(j);
	if (rc)
		return rc;
	json_t *req = json_pack("{s:s, s:s, s:s, s:s, s:I, s:f}", "token", t,
				"name", cfg->name, "raft", cfg->raft_address,
				"api", cfg->api_address, "domain",
				(json_int_t)cfg->domain, "capacity",
				cfg->capacity > 0 ? cfg->capacity : 1.0);
	char *body = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	snprintf(url, sizeof(url), "%s/api/v1/join", cfg->join_url);
	rc = node__https(url, body, cafile, &j, err, errlen);
	free(body);
	if (rc)
		return rc;
	*id = (uint64_t)json_integer_value(json_object_get(j, "id"));
	snprintf(cluster, clen, "%s",
		 json_string_value(json_object_get(j, "cluster")) ?: "");
	char p[1100], f[64];
	const char *files[][2] = {{"cert", "crt"}, {"key", "key"}};
	for (int i = 0; i < 2 && !rc; i++) {
		snprintf(f, sizeof(f), "pki/node-%" PRIu64 ".%s", *id,
			 files[i][1]);
		node__path(p, sizeof(p), cfg->state_dir, f);
		const char *v = json_string_value(json_object_get(j, files[i][0]));
		rc = v ? node__write(p, v, 0600) : -EPROTO;
	}
	if (!rc) {
		node__path(p, sizeof(p), cfg->state_dir, "pki/api.crt");
		const char *v = json_string_value(json_object_get(j, "api_cert"));
		rc = v ? node__write(p, v, 0644) : -EPROTO;
	}
	if (!rc) {
		node__path(p, sizeof(p), cfg->state_dir, "pki/api.key");
		const char *v = json_string_value(json_object_get(j, "api_key"));
		rc = v ? node__write(p, v, 0600) : -EPROTO;
	}
	json_decref(j);
	if (rc)
		snprintf(err, errlen, "join answer incomplete");
	return rc;
}

/* The creating node: CA, its node certificate, its API certificate. */
static int node__create_pki(const struct node_config *cfg, char *err,
			    size_t errlen)
{
	char pki[1100];
	node__path(pki, sizeof(pki), cfg->state_dir, "pki");
	int rc = pki_ca_create(pki, cfg->create_cluster, 3650, err, errlen);
	if (!rc)
		rc = pki_cert_issue(pki, "node-1", pki, 0, 3650, err, errlen);
	char names[256];
	if (!rc && pki_api_names(cfg->api_address, names, sizeof(names))) {
		snprintf(err, errlen, "bad API address '%s'", cfg->api_address);
		rc = -EINVAL;
	}
	if (!rc)
		rc = pki_cert_issue(pki, names, pki, 0, 3650, err, errlen);
	char a[1100], b[1100];
	const char *mv[][2] = {{"pki/localhost.crt", "pki/api.crt"},
			       {"pki/localhost.key", "pki/api.key"}};
	for (int i = 0; i < 2 && !rc; i++) {
		node__path(a, sizeof(a), cfg->state_dir, mv[i][0]);
		node__path(b, sizeof(b), cfg->state_dir, mv[i][1]);
		if (rename(a, b) != 0)
			rc = -errno;
	}
	return rc;
}

int node_start(uv_loop_t *loop, const struct node_config *cfg,
	       struct cairn_node **out, char *err, size_t errlen)
{
	struct cairn_node *n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	n->loop = loop;
	snprintf(n->dir, sizeof(n->dir), "%s", cfg->state_dir);
	char path[1100];
	node__path(path, sizeof(path), n->dir, "node.json");
	json_t *st = json_load_file(path, 0, NULL);
	int rc = 0;
	char cluster[64] = "";
	bool bootstrap = false;
	if (st) {
		/* resume: addresses and identity come from the state */
		n->id = (uint64_t)json_integer_value(json_object_get(st, "id"));
		snprintf(n->name, sizeof(n->name), "%s",
			 json_string_value(json_object_get(st, "name")) ?: "");
		snprintf(n->raft, sizeof(n->raft), "%s",
			 json_string_value(json_object_get(st, "raft")) ?: "");
		snprintf(n->api_addr, sizeof(n->api_addr), "%s",
			 json_string_value(json_object_get(st, "api")) ?: "");
		snprintf(cluster, sizeof(cluster), "%s",
			 json_string_value(json_object_get(st, "cluster")) ?: "");
		json_decref(st);
		if (!n->id || !n->raft[0] || !n->api_addr[0]) {
			snprintf(err, errlen, "%s: incomplete", path);
			rc = -EINVAL;
		}
	} else if (!cfg->create_cluster && !cfg->join_url) {
		snprintf(err, errlen,
			 "%s: no node state; create a cluster or join one",
			 n->dir);
		rc = -ENOENT;
	} else if (!cfg->name || !cfg->raft_address || !cfg->api_address) {
		snprintf(err, errlen, "a new node needs a name, a raft "
				      "address and an API address");
		rc = -EINVAL;
	} else {
		snprintf(n->name, sizeof(n->name), "%s", cfg->name);
		snprintf(n->raft, sizeof(n->raft), "%s", cfg->raft_address);
		snprintf(n->api_addr, sizeof(n->api_addr), "%s",
			 cfg->api_address);
		if ((rc = node__mkdirs(n->dir)))
			snprintf(err, errlen, "%s: %s", n->dir, strerror(-rc));
		else if (cfg->create_cluster) {
			n->id = 1;
			bootstrap = true;
			snprintf(cluster, sizeof(cluster), "%s",
				 cfg->create_cluster);
			rc = node__create_pki(cfg, err, errlen);
		} else {
			rc = node__join(cfg, &n->id, cluster, sizeof(cluster),
					err, errlen);
		}
		if (!rc) {
			json_t *j = json_pack("{s:I, s:s, s:s, s:s, s:s}", "id",
					      (json_int_t)n->id, "name", n->name,
					      "raft", n->raft, "api",
					      n->api_addr, "cluster", cluster);
			char *text = json_dumps(j, JSON_INDENT(2));
			json_decref(j);
			rc = node__write(path, text, 0600);
			free(text);
		}
	}
	if (rc) {
		free(n);
		return rc;
	}
	char raftdir[1100], ca[1100], cakey[1100], crt[1100], key[1100];
	char acrt[1100], akey[1100], apidir[1100], f[64];
	node__path(raftdir, sizeof(raftdir), n->dir, "raft");
	node__path(apidir, sizeof(apidir), n->dir, "api");
	node__path(ca, sizeof(ca), n->dir, "pki/ca.crt");
	node__path(cakey, sizeof(cakey), n->dir, "pki/ca.key");
	snprintf(f, sizeof(f), "pki/node-%" PRIu64 ".crt", n->id);
	node__path(crt, sizeof(crt), n->dir, f);
	snprintf(f, sizeof(f), "pki/node-%" PRIu64 ".key", n->id);
	node__path(key, sizeof(key), n->dir, f);
	node__path(acrt, sizeof(acrt), n->dir, "pki/api.crt");
	node__path(akey, sizeof(akey), n->dir, "pki/api.key");
	struct cluster_config cc = {
		.id = n->id,
		.name = n->name,
		.dir = raftdir,
		.raft_address = n->raft,
		.api_address = n->api_addr,
		.ca_file = ca,
		.cert_file = crt,
		.key_file = key,
		.ca_key_file = bootstrap ? cakey : NULL,
		.domain = cfg->domain,
		.capacity = cfg->capacity > 0 ? cfg->capacity : 1,
		.bootstrap = bootstrap,
		.cluster_name = cluster,
		.election_ms = cfg->election_ms,
	};
	/* A new cluster's admin: the password goes to admin-password (0600)
	 * once, its hash into the map (cluster.init), shared by every node. */
	json_t *admin = NULL;
	if (bootstrap) {
		char pw[128], line[160];
		if ((rc = api_admin_create(pw, sizeof(pw), &admin))) {
			snprintf(err, errlen, "admin account: %s",
				 strerror(-rc));
			free(n);
			return rc;
		}
		node__path(path, sizeof(path), n->dir, "admin-password");
		snprintf(line, sizeof(line), "%s\n", pw);
		rc = node__write(path, line, 0600);
		OPENSSL_cleanse(pw, sizeof(pw));
		OPENSSL_cleanse(line, sizeof(line));
		if (rc) {
			snprintf(err, errlen, "%s: %s", path, strerror(-rc));
			json_decref(admin);
			free(n);
			return rc;
		}
		cc.admin = admin;
	}
	rc = cluster_start(loop, &cc, &n->cluster, err, errlen);
	json_decref(admin);
	if (rc) {
		free(n);
		return rc;
	}
	struct api_config ac = {.listen = n->api_addr,
				.cert_file = acrt,
				.key_file = akey,
				.state_dir = apidir,
				.ca_file = ca,
				.node_cert_file = crt,
				.node_key_file = key};
	if ((rc = api_server_start(loop, &ac, n->cluster, &n->api, err,
				   errlen))) {
		/* The cluster stops on the loop; the caller exits. */
		cluster_stop(n->cluster, NULL, NULL);
		free(n);
		return rc;
	}
	log_info("node", "node %" PRIu64 " (%s) of cluster %s: raft %s, api "
			 "https://%s",
		 n->id, n->name, cluster, n->raft, n->api_addr);
	*out = n;
	return 0;
}

int node_api_port(const struct cairn_node *n)
{
	return api_server_port(n->api);
}

static void node__cluster_stopped(void *arg)
{
	struct cairn_node *n = arg;
	void (*cb)(void *) = n->stop_cb;
	void *a = n->stop_arg;
	free(n);
	if (cb)
		cb(a);
}

static void node__api_closed(void *arg)
{
	struct cairn_node *n = arg;
	cluster_stop(n->cluster, node__cluster_stopped, n);
}

/* The API first: its pending cluster callbacks point into it. */
void node_stop(struct cairn_node *n, void (*cb)(void *arg), void *arg)
{
	n->stop_cb = cb;
	n->stop_arg = arg;
	api_server_close(n->api, node__api_closed, n);
}
