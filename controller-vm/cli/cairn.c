/* cairn: the command line over the management API (docs/api.md).
 *
 * It reads API_URL (https://host:port), CA_CERT (the cluster CA that the
 * server's certificate must verify against) and either API_TOKEN or
 * ADMIN_PASSWORD_FILE (a file whose first line is the admin password)
 * from the environment, so that a shell which exported build/demo/demo.env
 * needs nothing else. It follows a follower's redirect to the leader with
 * the same credentials (every node's certificate comes from the same CA).
 * Each command sends one Idempotency-Key with its map change and retries
 * it on connection errors and while the cluster has no leader, so a
 * retried create is applied once.
 *
 * Output: tables, or the API's JSON with --json. Exit status: 0 done,
 * 1 an error (from the server, the network or the environment), 2 usage. */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "file.h"
#include "http_body.h"
#include "size.h"

static bool opt_json;

static void die(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	fputs("cairn: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
static void usage_error(const char *fmt, ...)
{
	va_list ap;
	fputs("cairn: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n(try: cairn --help)\n", stderr);
	exit(2);
}

static void usage(FILE *f)
{
	fputs("usage: cairn [--json] COMMAND\n"
	      "  cluster status\n"
	      "  node list\n"
	      "  node remove ID [--wait]\n"
	      "  node token [SECONDS]           one-time join token\n"
	      "  pool create NAME (--replicas N | --ec K+M) [--no-spread]\n"
	      "  pool list\n"
	      "  pool delete NAME\n"
	      "  vdisk create NAME --pool POOL --size SIZE   (SIZE: 10G, 512M, "
	      "4096...)\n"
	      "  vdisk list\n"
	      "  vdisk delete NAME\n"
	      "  task show ID [--wait]\n"
	      "  password change [--generate]\n"
	      "  token create --role admin|viewer [--expires SECONDS] "
	      "[--name NAME]\n"
	      "  token list\n"
	      "  token revoke ID\n"
	      "environment:\n"
	      "  API_URL              https://HOST:PORT of any node (or several,\n"
	      "                       comma-separated: tried in turn)\n"
	      "  CA_CERT              the cluster CA certificate (PEM)\n"
	      "  ADMIN_PASSWORD_FILE  file holding the admin password, or\n"
	      "  API_TOKEN            a token from `cairn token create`\n",
	      f);
}

static char *read_password_file(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		die("ADMIN_PASSWORD_FILE %s: %s", path, strerror(errno));
	char line[512];
	if (!fgets(line, sizeof(line), f))
		line[0] = 0;
	fclose(f);
	line[strcspn(line, "\r\n")] = 0;
	if (!line[0])
		die("ADMIN_PASSWORD_FILE %s is empty", path);
	return strdup(line);
}

/* One key per command: every retry of its map-changing request carries
 * it, so the cluster applies the change once (docs/api.md). */
static char op_key[40];

static void make_op_key(void)
{
	unsigned char r[16];
	if (RAND_bytes(r, sizeof(r)) != 1)
		die("no randomness");
	snprintf(op_key, sizeof(op_key), "cli-");
	for (int i = 0; i < 16; i++)
		snprintf(op_key + 4 + 2 * i, 3, "%02x", r[i]);
}

/* Worth another try: the node or the connection went away, the cluster
 * is between leaders, or the node that keeps a task did not answer. */
static bool retryable(CURLcode rc, long code, json_t *j)
{
	switch (rc) {
	case CURLE_OK:
		break;
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PARTIAL_FILE:
		return true;
	default:
		return false;
	}
	const char *c = json_string_value(
	    json_object_get(json_object_get(j, "error"), "code"));
	return code == 503 && c &&
	       (!strcmp(c, "no_leader") || !strcmp(c, "unavailable") ||
		!strcmp(c, "leader_unreachable") ||
		!strcmp(c, "node_unreachable"));
}

#define API_ATTEMPTS 8

/* One request; returns the HTTP status and the parsed JSON (or NULL).
 * API_URL may list several nodes, comma-separated: a node that cannot be
 * reached is skipped. Connection errors and "no leader" answers are
 * retried (8 attempts, 0.25 s to 2 s apart) with the same Idempotency-Key.
 */
static long api(const char *method, const char *path, json_t *body,
		json_t **out)
{
	const char *urls = getenv("API_URL"), *ca = getenv("CA_CERT");
	const char *token = getenv("API_TOKEN");
	const char *pwfile = getenv("ADMIN_PASSWORD_FILE");
	if (!urls || !*urls)
		die("API_URL is not set (e.g. https://localhost:8443; see "
		    "build/demo/demo.env)");
	if ((!token || !*token) && (!pwfile || !*pwfile))
		die("no credentials: set API_TOKEN or ADMIN_PASSWORD_FILE");
	bool changes = strcmp(method, "GET") != 0;
	if (changes && !op_key[0])
		make_op_key();
	char *pw = (token && *token) ? NULL : read_password_file(pwfile);
	char *bs = body ? json_dumps(body, JSON_COMPACT) : NULL;
	char full[2048], hdr[256], keyhdr[80], errbuf[CURL_ERROR_SIZE];
	size_t nurls = 1;
	for (const char *p = urls; *p; p++)
		nurls += *p == ',';
	CURLcode rc = CURLE_OK;
	long code = 0;
	struct http_body b = {.max = 64u << 20};
	unsigned delay_ms = 250;
	for (unsigned attempt = 0;; attempt++) {
		/* the (attempt % nurls)-th URL of the list */
		const char *u = urls;
		for (size_t k = attempt % nurls; k; k--)
			u = strchr(u, ',') + 1;
		size_t ul = strcspn(u, ",");
		while (ul && u[ul - 1] == '/')
			ul--;
		snprintf(full, sizeof(full), "%.*s%s", (int)ul, u, path);
		CURL *c = curl_easy_init();
		struct curl_slist *h = NULL;
		errbuf[0] = 0;
		free(b.data);
		b = (struct http_body){.max = 64u << 20};
		curl_easy_setopt(c, CURLOPT_URL, full);
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, http_body_write);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
		curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
		curl_easy_setopt(c, CURLOPT_SSLVERSION, CURL_SSLVERSION_TLSv1_2);
		curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
		curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "https");
		curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
		curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
		/* A follower answers 307 to the leader: same method, body and
		 * credentials; the leader's certificate is checked like any. */
		curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
		curl_easy_setopt(c, CURLOPT_MAXREDIRS, 3L);
		curl_easy_setopt(c, CURLOPT_UNRESTRICTED_AUTH, 1L);
		curl_easy_setopt(c, CURLOPT_POSTREDIR, CURL_REDIR_POST_ALL);
		if (ca && *ca)
			curl_easy_setopt(c, CURLOPT_CAINFO, ca);
		if (!pw) {
			snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s",
				 token);
			h = curl_slist_append(h, hdr);
		} else {
			curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
			curl_easy_setopt(c, CURLOPT_USERNAME, "admin");
			curl_easy_setopt(c, CURLOPT_PASSWORD, pw);
		}
		if (changes) {
			snprintf(keyhdr, sizeof(keyhdr), "Idempotency-Key: %s",
				 op_key);
			h = curl_slist_append(h, keyhdr);
		}
		if (bs) {
			curl_easy_setopt(c, CURLOPT_POSTFIELDS, bs);
			h = curl_slist_append(h, "Content-Type: application/json");
		}
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
		rc = curl_easy_perform(c);
		code = 0;
		if (rc == CURLE_OK)
			curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
		curl_slist_free_all(h);
		curl_easy_cleanup(c);
		json_error_t e;
		*out = (rc == CURLE_OK && b.data) ? json_loads(b.data, 0, &e) : NULL;
		if (attempt + 1 >= API_ATTEMPTS || !retryable(rc, code, *out))
			break;
		json_decref(*out);
		*out = NULL;
		usleep(delay_ms * 1000);
		if (delay_ms < 2000)
			delay_ms *= 2;
	}
	if (pw) {
		memset(pw, 0, strlen(pw));
		free(pw);
	}
	free(bs);
	if (rc != CURLE_OK) {
		free(b.data);
		die("%s: %s", full,
		    errbuf[0] ? errbuf : curl_easy_strerror(rc));
	}
	if (code >= 400 || !*out) {
		const char *msg = json_string_value(
		    json_object_get(json_object_get(*out, "error"), "message"));
		if (opt_json && *out) {
			json_dumpf(*out, stderr, JSON_INDENT(2));
			fputc('\n', stderr);
		}
		if (code >= 400)
			die("%s (HTTP %ld)", msg ? msg : "request failed",
			    code);
		die("the server answered HTTP %ld without JSON", code);
	}
	free(b.data);
	return code;
}

static void print_json(json_t *j)
{
	json_dumpf(j, stdout, JSON_INDENT(2));
	putchar('\n');
}

static const char *str(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "-";
}

static void human(json_int_t v, char *out, size_t len)
{
	static const char *const u[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	double d = (double)v;
	int i = 0;
	while (d >= 1024 && i < 5) {
		d /= 1024;
		i++;
	}
	if (i == 0)
		snprintf(out, len, "%lld B", (long long)v);
	else
		snprintf(out, len, "%.4g %s", d, u[i]);
}

static void policy_str(json_t *p, char *out, size_t len)
{
	json_t *ec = json_object_get(p, "ec");
	if (json_is_integer(json_object_get(p, "replicas")))
		snprintf(out, len, "replicas=%lld",
			 (long long)json_integer_value(
			     json_object_get(p, "replicas")));
	else if (ec)
		snprintf(
		    out, len, "ec=%lld+%lld",
		    (long long)json_integer_value(json_object_get(ec, "k")),
		    (long long)json_integer_value(json_object_get(ec, "m")));
	else
		snprintf(out, len, "-");
}

static long long parse_ll(const char *s, const char *what)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < 0)
		usage_error("%s: not a number: '%s'", what, s);
	return v;
}

/* 4096, 512K, 10G, 1T (binary units). */
static long long parse_size(const char *s)
{
	uint64_t v;
	if (size_parse(s, &v) < 0)
		usage_error("bad size '%s' (a number, then K, M, G or T)", s);
	if (v > (1ULL << 62))
		usage_error("size '%s' too large", s);
	return (long long)v;
}

/* ---- commands ---- */

static void cmd_cluster_status(void)
{
	json_t *j;
	api("GET", "/api/v1/cluster", NULL, &j);
	if (opt_json) {
		print_json(j);
	} else {
		json_t *st = json_object_get(j, "status");
		json_t *map = json_object_get(j, "map");
		printf("cluster:      %s\n", str(map, "name"));
		printf("this node:    %lld (%s), %s\n",
		       (long long)json_integer_value(json_object_get(st, "id")),
		       str(st, "name"), str(st, "state"));
		printf("leader:       %lld at %s\n",
		       (long long)json_integer_value(
			   json_object_get(st, "leader")),
		       str(st, "leader_api"));
		printf(
		    "term:         %lld\n",
		    (long long)json_integer_value(json_object_get(st, "term")));
		printf("epoch:        %lld\n",
		       (long long)json_integer_value(
			   json_object_get(map, "epoch")));
		json_t *sv, *servers = json_object_get(st, "servers");
		size_t i, voters = 0;
		json_array_foreach(servers, i, sv) voters +=
		    !strcmp(str(sv, "role"), "voter");
		printf("nodes:        %zu (%zu voters)\n",
		       json_object_size(json_object_get(map, "nodes")), voters);
		printf("pools:        %zu\n",
		       json_object_size(json_object_get(map, "pools")));
		printf("vdisks:       %zu\n",
		       json_object_size(json_object_get(map, "vdisks")));
	}
	json_decref(j);
}

static void cmd_list(const char *what)
{
	char path[64];
	json_t *j, *v;
	size_t i;
	snprintf(path, sizeof(path), "/api/v1/%s", what);
	api("GET", path, NULL, &j);
	if (opt_json) {
		print_json(json_object_get(j, what));
		json_decref(j);
		return;
	}
	json_t *l = json_object_get(j, what);
	if (!strcmp(what, "nodes")) {
		printf("%-6s %-20s %-8s %-10s %s\n", "ID", "NAME", "DOMAIN",
		       "STATE", "API");
		json_array_foreach(l, i, v) printf(
		    "%-6lld %-20s %-8lld %-10s %s\n",
		    (long long)json_integer_value(json_object_get(v, "id")),
		    str(v, "name"),
		    (long long)json_integer_value(json_object_get(v, "domain")),
		    json_is_true(json_object_get(v, "leaving"))    ? "leaving"
		    : json_is_true(json_object_get(v, "draining")) ? "draining"
								   : "active",
		    str(v, "api"));
	} else if (!strcmp(what, "pools")) {
		printf("%-24s %s\n", "NAME", "POLICY");
		json_array_foreach(l, i, v)
		{
			char p[64];
			policy_str(json_object_get(v, "policy"), p, sizeof(p));
			printf("%-24s %s\n", str(v, "name"), p);
		}
	} else if (!strcmp(what, "vdisks")) {
		printf("%-24s %-16s %s\n", "NAME", "POOL", "SIZE");
		json_array_foreach(l, i, v)
		{
			char s[32];
			human(json_integer_value(json_object_get(v, "size")), s,
			      sizeof(s));
			printf("%-24s %-16s %s\n", str(v, "name"),
			       str(v, "pool"), s);
		}
	} else { /* tokens */
		printf("%-10s %-8s %-20s %s\n", "ID", "ROLE", "EXPIRES",
		       "NAME");
		json_array_foreach(l, i, v)
		{
			char e[32] = "never";
			json_t *x = json_object_get(v, "expires");
			if (json_is_integer(x)) {
				time_t t = (time_t)json_integer_value(x);
				strftime(e, sizeof(e), "%Y-%m-%d %H:%M:%S",
					 gmtime(&t));
			}
			printf("%-10s %-8s %-20s %s\n", str(v, "id"),
			       str(v, "role"), e, str(v, "name"));
		}
	}
	json_decref(j);
}

static void cmd_delete(const char *what, const char *name)
{
	char path[512];
	json_t *j;
	snprintf(path, sizeof(path), "/api/v1/%ss/%s", what, name);
	api("DELETE", path, NULL, &j);
	if (opt_json)
		print_json(j);
	else
		printf("%s %s deleted\n", what, name);
	json_decref(j);
}

static void print_task(json_t *t)
{
	if (opt_json) {
		print_json(t);
		return;
	}
	printf("task %lld: %s %s (%.0f%%)\n",
	       (long long)json_integer_value(json_object_get(t, "id")),
	       str(t, "op"), str(t, "state"),
	       100 * json_number_value(json_object_get(t, "progress")));
	if (json_object_get(t, "error"))
		printf("error: %s\n", str(t, "error"));
}

/* Returns the exit status: a failed task is an error. */
static int task_show(const char *id, bool wait)
{
	char path[128];
	json_t *t;
	snprintf(path, sizeof(path), "/api/v1/tasks/%s", id);
	for (;;) {
		api("GET", path, NULL, &t);
		if (!wait || strcmp(str(t, "state"), "running"))
			break;
		json_decref(t);
		usleep(200 * 1000);
	}
	print_task(t);
	int rc = !strcmp(str(t, "state"), "failed") ? 1 : 0;
	json_decref(t);
	return rc;
}

static int cmd_node_remove(const char *id, bool wait)
{
	char path[128];
	json_t *j;
	parse_ll(id, "node id");
	snprintf(path, sizeof(path), "/api/v1/nodes/%s", id);
	api("DELETE", path, NULL, &j);
	json_t *t = json_object_get(j, "task");
	char tid[32];
	snprintf(tid, sizeof(tid), "%lld",
		 (long long)json_integer_value(json_object_get(t, "id")));
	if (!wait) {
		print_task(t);
		json_decref(j);
		return 0;
	}
	json_decref(j);
	return task_show(tid, true);
}

/* A one-time join token, for `cairnd --join URL --token TOKEN`. */
static void cmd_node_token(const char *secs)
{
	json_t *j;
	json_t *body = json_pack("{s:I}", "expires_in",
				 (json_int_t)(secs ? parse_ll(secs, "seconds")
						   : 3600));
	api("POST", "/api/v1/nodes/token", body, &j);
	json_decref(body);
	if (opt_json)
		print_json(j);
	else
		printf("%s\n", str(j, "token"));
	json_decref(j);
}

static void random_password(char *out, size_t len)
{
	static const char a[] =
	    "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
	    "23456789";
	size_t i = 0, na = sizeof(a) - 1;
	while (i + 1 < len) {
		unsigned char b;
		if (RAND_bytes(&b, 1) != 1)
			die("no randomness");
		if (b < 256 - 256 % na)
			out[i++] = a[b % na];
	}
	out[i] = 0;
}

static void read_secret(const char *prompt, char *out, size_t len)
{
	bool tty = isatty(STDIN_FILENO);
	struct termios old, quiet;
	if (tty) {
		fputs(prompt, stderr);
		tcgetattr(STDIN_FILENO, &old);
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	}
	if (!fgets(out, (int)len, stdin))
		out[0] = 0;
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		fputc('\n', stderr);
	}
	out[strcspn(out, "\r\n")] = 0;
}

/* Writes the new password where ADMIN_PASSWORD_FILE points, atomically. */
static void update_password_file(const char *path, const char *pw)
{
	char line[320];
	int n = snprintf(line, sizeof(line), "%s\n", pw);
	int rc = n < (int)sizeof(line)
		     ? file_write_atomic(path, line, (size_t)n, 0600)
		     : -E2BIG;
	OPENSSL_cleanse(line, sizeof(line));
	if (rc < 0)
		die("the password changed, but writing %s failed: %s", path,
		    strerror(-rc));
}

static int cmd_password_change(bool generate)
{
	char pw[300], again[300];
	const char *file = getenv("ADMIN_PASSWORD_FILE");
	if (getenv("API_TOKEN") && *getenv("API_TOKEN"))
		die("a password change needs ADMIN_PASSWORD_FILE, not "
		    "API_TOKEN");
	if (generate) {
		random_password(pw, 25);
	} else {
		read_secret("new admin password: ", pw, sizeof(pw));
		if (isatty(STDIN_FILENO)) {
			read_secret("again: ", again, sizeof(again));
			if (strcmp(pw, again))
				die("the passwords differ");
		}
	}
	json_t *j, *body = json_pack("{s:s}", "password", pw);
	api("POST", "/api/v1/password", body, &j);
	json_decref(body);
	json_decref(j);
	if (file && *file) {
		update_password_file(file, pw);
		if (!opt_json)
			printf("password changed; %s updated\n", file);
	} else if (generate) {
		printf("%s\n", pw);
	} else if (!opt_json) {
		printf("password changed\n");
	}
	if (opt_json)
		printf("{\"changed\": true}\n");
	memset(pw, 0, sizeof(pw));
	return 0;
}

static void cmd_token_create(int argc, char **argv)
{
	const char *role = NULL, *name = NULL;
	long long expires = 0;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--role") && i + 1 < argc)
			role = argv[++i];
		else if (!strcmp(argv[i], "--name") && i + 1 < argc)
			name = argv[++i];
		else if (!strcmp(argv[i], "--expires") && i + 1 < argc)
			expires = parse_ll(argv[++i], "--expires");
		else
			usage_error("token create: unexpected '%s'", argv[i]);
	}
	if (!role)
		usage_error("token create needs --role admin|viewer");
	json_t *j, *body = json_pack("{s:s}", "role", role);
	if (name)
		json_object_set_new(body, "name", json_string(name));
	if (expires)
		json_object_set_new(body, "expires_in", json_integer(expires));
	api("POST", "/api/v1/tokens", body, &j);
	json_decref(body);
	if (opt_json)
		print_json(j);
	else
		printf("token %s (%s): %s\n(shown once: keep it, e.g. "
		       "export API_TOKEN=...)\n",
		       str(j, "id"), str(j, "role"), str(j, "token"));
	json_decref(j);
}

static void cmd_pool_create(int argc, char **argv)
{
	const char *name = NULL;
	json_t *policy = NULL;
	bool spread = true;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--replicas") && i + 1 < argc) {
			long long r = parse_ll(argv[++i], "--replicas");
			json_decref(policy);
			policy = json_pack("{s:I}", "replicas", (json_int_t)r);
		} else if (!strcmp(argv[i], "--ec") && i + 1 < argc) {
			unsigned k, m;
			char tail;
			if (sscanf(argv[++i], "%u+%u%c", &k, &m, &tail) != 2)
				usage_error("--ec takes K+M, e.g. 4+2");
			json_decref(policy);
			policy = json_pack("{s:{s:i, s:i}}", "ec", "k", (int)k,
					   "m", (int)m);
		} else if (!strcmp(argv[i], "--no-spread")) {
			spread = false;
		} else if (argv[i][0] != '-' && !name) {
			name = argv[i];
		} else {
			usage_error("pool create: unexpected '%s'", argv[i]);
		}
	}
	if (!name || !policy)
		usage_error("usage: cairn pool create NAME (--replicas N | "
			    "--ec K+M)");
	json_t *j,
	    *body = json_pack("{s:s, s:o}", "name", name, "policy", policy);
	if (!spread)
		json_object_set_new(body, "spread_domains", json_false());
	api("POST", "/api/v1/pools", body, &j);
	json_decref(body);
	if (opt_json)
		print_json(j);
	else
		printf("pool %s created\n", name);
	json_decref(j);
}

static void cmd_vdisk_create(int argc, char **argv)
{
	const char *name = NULL, *pool = NULL;
	long long size = -1;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--pool") && i + 1 < argc)
			pool = argv[++i];
		else if (!strcmp(argv[i], "--size") && i + 1 < argc)
			size = parse_size(argv[++i]);
		else if (argv[i][0] != '-' && !name)
			name = argv[i];
		else
			usage_error("vdisk create: unexpected '%s'", argv[i]);
	}
	if (!name || !pool || size < 0)
		usage_error("usage: cairn vdisk create NAME --pool POOL --size "
			    "SIZE");
	json_t *j, *body = json_pack("{s:s, s:s, s:I}", "name", name, "pool",
				     pool, "size", (json_int_t)size);
	api("POST", "/api/v1/vdisks", body, &j);
	json_decref(body);
	if (opt_json)
		print_json(j);
	else
		printf("vdisk %s created\n", name);
	json_decref(j);
}

#define NARGS(n, use)                                                          \
	do {                                                                   \
		if (argc != (n))                                               \
			usage_error("usage: cairn %s", use);                   \
	} while (0)

int main(int argc, char **argv)
{
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--json")) {
			opt_json = true;
		} else if (!strcmp(argv[i], "--help") ||
			   !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		} else {
			usage_error("unknown option '%s'", argv[i]);
		}
	}
	argc -= i;
	argv += i;
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	/* --json may also come after the command. */
	for (int k = 0; k < argc; k++)
		if (!strcmp(argv[k], "--json")) {
			opt_json = true;
			memmove(&argv[k], &argv[k + 1],
				(size_t)(argc - k - 1) * sizeof(*argv));
			argc--;
			k--;
		}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	const char *obj = argv[0], *verb = argv[1];
	int rc = 0;
	bool wait = argc > 2 && !strcmp(argv[argc - 1], "--wait");
	if (!strcmp(obj, "cluster") && !strcmp(verb, "status")) {
		NARGS(2, "cluster status");
		cmd_cluster_status();
	} else if (!strcmp(obj, "node") && !strcmp(verb, "list")) {
		NARGS(2, "node list");
		cmd_list("nodes");
	} else if (!strcmp(obj, "node") && !strcmp(verb, "remove")) {
		NARGS(3 + wait, "node remove ID [--wait]");
		rc = cmd_node_remove(argv[2], wait);
	} else if (!strcmp(obj, "node") && !strcmp(verb, "token")) {
		if (argc != 2 && argc != 3)
			usage_error("usage: cairn node token [SECONDS]");
		cmd_node_token(argc == 3 ? argv[2] : NULL);
	} else if (!strcmp(obj, "pool") && !strcmp(verb, "create")) {
		cmd_pool_create(argc - 2, argv + 2);
	} else if (!strcmp(obj, "pool") && !strcmp(verb, "list")) {
		NARGS(2, "pool list");
		cmd_list("pools");
	} else if (!strcmp(obj, "pool") && !strcmp(verb, "delete")) {
		NARGS(3, "pool delete NAME");
		cmd_delete("pool", argv[2]);
	} else if (!strcmp(obj, "vdisk") && !strcmp(verb, "create")) {
		cmd_vdisk_create(argc - 2, argv + 2);
	} else if (!strcmp(obj, "vdisk") && !strcmp(verb, "list")) {
		NARGS(2, "vdisk list");
		cmd_list("vdisks");
	} else if (!strcmp(obj, "vdisk") && !strcmp(verb, "delete")) {
		NARGS(3, "vdisk delete NAME");
		cmd_delete("vdisk", argv[2]);
	} else if (!strcmp(obj, "task") && !strcmp(verb, "show")) {
		NARGS(3 + wait, "task show ID [--wait]");
		parse_ll(argv[2], "task id");
		rc = task_show(argv[2], wait);
	} else if (!strcmp(obj, "password") && !strcmp(verb, "change")) {
		bool gen = argc == 3 && !strcmp(argv[2], "--generate");
		NARGS(2 + gen, "password change [--generate]");
		rc = cmd_password_change(gen);
	} else if (!strcmp(obj, "token") && !strcmp(verb, "create")) {
		cmd_token_create(argc - 2, argv + 2);
	} else if (!strcmp(obj, "token") && !strcmp(verb, "list")) {
		NARGS(2, "token list");
		cmd_list("tokens");
	} else if (!strcmp(obj, "token") && !strcmp(verb, "revoke")) {
		NARGS(3, "token revoke ID");
		cmd_delete("token", argv[2]);
	} else {
		usage_error("unknown command '%s %s'", obj, verb);
	}
	curl_global_cleanup();
	return rc;
}
