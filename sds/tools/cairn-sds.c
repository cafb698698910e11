/* cairn-sds: offline administration of a storage pool through sds.h.
 *
 * The pool must not be open in a running cairnd. Each command opens the
 * pool on its own uv loop, runs the loop until every asynchronous step has
 * completed, and always makes its changes durable (sds_pool_flush) before
 * closing. Errors print "cairn-sds: <message>" and exit 1; usage errors
 * exit 2. */
#include <cairn/sds.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "log.h"
#include "size.h"
#include "util.h"

#define TOOL_EXIT_ERR 1
#define TOOL_EXIT_USAGE 2

static const char tool_usage_text[] =
    "usage: cairn-sds format DIR --disk PATH[:SIZE] [--disk ...]\n"
    "       cairn-sds vdisk create DIR NAME SIZE [--sector 512|4096]\n"
    "       cairn-sds vdisk delete DIR NAME\n"
    "       cairn-sds vdisk resize DIR NAME SIZE\n"
    "       cairn-sds vdisk snapshot DIR SRC SNAP\n"
    "       cairn-sds vdisk clone DIR SRC NAME\n"
    "       cairn-sds vdisk list DIR [--json]\n"
    "       cairn-sds vdisk stat DIR NAME [--json]\n"
    "       cairn-sds pool stat DIR [--json]\n"
    "       cairn-sds pool check DIR [--deep] [--json]  (or: check DIR ...)\n"
    "\n"
    "SIZE is bytes, or a number with a K, M, G or T suffix (powers of\n"
    "1024): 4096, 512M, 1G. A --disk file that does not exist is created\n"
    "with SIZE bytes; without SIZE the disk keeps its size. pool check\n"
    "exits 1 when it finds errors; --deep also reads and verifies every\n"
    "referenced block.\n";

static int tool_usage(const char *fmt, ...)
{
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		fputs("cairn-sds: ", stderr);
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
		va_end(ap);
	}
	fputs(tool_usage_text, stderr);
	return TOOL_EXIT_USAGE;
}

static int tool_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("cairn-sds: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return TOOL_EXIT_ERR;
}


/* ---- arguments ---- */

/* Positional arguments and the flags a command accepts. */
struct tool_args {
	const char *pos[4];
	int npos;
	bool json;
	bool deep;
	const char *sector;
};

/* Flags a command accepts, anywhere among its arguments. */
#define TOOL_F_JSON (1u << 0)	/* --json */
#define TOOL_F_SECTOR (1u << 1) /* --sector N */
#define TOOL_F_DEEP (1u << 2)	/* --deep */

/* Exactly `want` positional arguments and the flags in `ok`. */
static int tool_parse(int argc, char **argv, int want, unsigned ok,
		      struct tool_args *a)
{
	bool sector_ok = ok & TOOL_F_SECTOR;
	memset(a, 0, sizeof(*a));
	for (int i = 0; i < argc; i++) {
		const char *s = argv[i];
		if ((ok & TOOL_F_JSON) && !strcmp(s, "--json")) {
			a->json = true;
		} else if ((ok & TOOL_F_DEEP) && !strcmp(s, "--deep")) {
			a->deep = true;
		} else if (sector_ok && !strcmp(s, "--sector")) {
			if (++i >= argc)
				return tool_usage("--sector needs a value");
			a->sector = argv[i];
		} else if (s[0] == '-' && s[1] == '-') {
			return tool_usage("unknown option '%s'", s);
		} else if (a->npos < want) {
			a->pos[a->npos++] = s;
		} else {
			return tool_usage("unexpected argument '%s'", s);
		}
	}
	if (a->npos < want)
		return tool_usage("missing arguments");
	return 0;
}

/* ---- the pool on a loop ---- */

struct tool {
	uv_loop_t loop;
	struct sds_pool *pool;
	const char *dir;
	bool done;
	int status;
};

static int tool_open(struct tool *t, const char *dir)
{
	char err[512] = "";
	memset(t, 0, sizeof(*t));
	t->dir = dir;
	uv_loop_init(&t->loop);
	int rc = sds_pool_open(&t->loop, dir, NULL, &t->pool, err, sizeof(err));
	if (rc < 0) {
		uv_run(&t->loop, UV_RUN_DEFAULT);
		uv_loop_close(&t->loop);
		return tool_fail("%s: %s", dir, err[0] ? err : strerror(-rc));
	}
	return 0;
}

static void tool_flushed(void *arg, int status)
{
	struct tool *t = arg;
	t->status = status;
	t->done = true;
}

static void tool_closed(void *arg)
{
	struct tool *t = arg;
	t->done = true;
}

/* Flushes, closes and tears the loop down; returns `rc`, or an error exit
 * if making the changes durable failed. */
static int tool_close(struct tool *t, int rc)
{
	t->done = false;
	sds_pool_flush(t->pool, tool_flushed, t);
	while (!t->done && uv_run(&t->loop, UV_RUN_ONCE))
		;
	if (!t->done)
		rc = tool_fail("%s: flush never completed", t->dir);
	else if (t->status < 0)
		rc = tool_fail("%s: flush: %s", t->dir, strerror(-t->status));
	t->done = false;
	sds_pool_close(t->pool, tool_closed, t);
	uv_run(&t->loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&t->loop) < 0 && rc == 0)
		rc = tool_fail("%s: handles left open at close", t->dir);
	return rc;
}

/* sds call result to exit status, with the pool's message. */
static int tool_check(struct tool *t, int rc, const char *what)
{
	if (rc >= 0)
		return 0;
	const char *m = sds_pool_errmsg(t->pool);
	return tool_fail("%s: %s", what, m && m[0] ? m : strerror(-rc));
}

/* ---- output ---- */

static void tool_json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < 0x20)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

static const char *tool_parent_name(const struct sds_vdisk_info *all, size_t n,
				    uint64_t id)
{
	for (size_t i = 0; id && i < n; i++)
		if (all[i].id == id)
			return all[i].name;
	return NULL;
}

static void tool_vdisk_json(const struct sds_vdisk_info *v, const char *parent,
			    const char *indent)
{
	printf("%s{\n", indent);
	printf("%s  \"id\": %" PRIu64 ",\n", indent, v->id);
	printf("%s  \"name\": ", indent);
	tool_json_str(v->name);
	printf(",\n%s  \"size\": %" PRIu64 ",\n", indent, v->size);
	printf("%s  \"sector_size\": %" PRIu32 ",\n", indent, v->sector_size);
	printf("%s  \"snapshot\": %s,\n", indent,
	       v->snapshot ? "true" : "false");
	printf("%s  \"parent_id\": %" PRIu64 ",\n", indent, v->parent_id);
	printf("%s  \"parent\": ", indent);
	if (parent)
		tool_json_str(parent);
	else
		fputs("null", stdout);
	printf(",\n%s  \"created\": %" PRId64 ",\n", indent, v->created);
	printf("%s  \"allocated_bytes\": %" PRIu64 ",\n", indent,
	       v->allocated_bytes);
	printf("%s  \"exclusive_bytes\": %" PRIu64 ",\n", indent,
	       v->exclusive_bytes);
	printf("%s  \"shared_bytes\": %" PRIu64 "\n", indent, v->shared_bytes);
	printf("%s}", indent);
}

static void tool_vdisk_text(const struct sds_vdisk_info *v, const char *parent)
{
	char when[32] = "-";
	time_t ct = (time_t)v->created;
	struct tm tm;
	if (gmtime_r(&ct, &tm))
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	printf("name:            %s\n", v->name);
	printf("id:              %" PRIu64 "\n", v->id);
	printf("type:            %s\n", v->snapshot ? "snapshot" : "vdisk");
	printf("size:            %" PRIu64 "\n", v->size);
	printf("sector_size:     %" PRIu32 "\n", v->sector_size);
	printf("parent:          %s\n", parent ? parent : "-");
	printf("created:         %s\n", when);
	printf("allocated_bytes: %" PRIu64 "\n", v->allocated_bytes);
	printf("exclusive_bytes: %" PRIu64 "\n", v->exclusive_bytes);
	printf("shared_bytes:    %" PRIu64 "\n", v->shared_bytes);
}

/* ---- commands ---- */

static int tool_format(int argc, char **argv)
{
	const char *dir = NULL;
	const char **paths = calloc((size_t)argc + 1, sizeof(*paths));
	char **owned = calloc((size_t)argc + 1, sizeof(*owned));
	uint64_t *sizes = calloc((size_t)argc + 1, sizeof(*sizes));
	unsigned n = 0;
	int rc = 0;
	if (!paths || !owned || !sizes) {
		rc = tool_fail("out of memory");
		goto out;
	}
	for (int i = 0; i < argc && rc == 0; i++) {
		if (!strcmp(argv[i], "--disk")) {
			if (++i >= argc) {
				rc = tool_usage("--disk needs PATH[:SIZE]");
				break;
			}
			/* PATH may itself hold colons (/dev/disk/by-path):
			 * only a parsable size after the last one is SIZE. */
			const char *arg = argv[i];
			const char *colon = strrchr(arg, ':');
			uint64_t sz = 0;
			size_t plen = strlen(arg);
			if (colon && size_parse(colon + 1, &sz) == 0)
				plen = (size_t)(colon - arg);
			if (plen == 0) {
				rc = tool_usage("--disk: empty path in '%s'",
						arg);
				break;
			}
			owned[n] = strndup(arg, plen);
			if (!owned[n]) {
				rc = tool_fail("--disk %s: %s", arg,
					       strerror(errno));
				break;
			}
			paths[n] = owned[n];
			sizes[n++] = sz;
			if (n > SDS_MAX_DISKS)
				rc = tool_fail("at most %u disks",
					       (unsigned)SDS_MAX_DISKS);
		} else if (argv[i][0] == '-' && argv[i][1] == '-') {
			rc = tool_usage("unknown option '%s'", argv[i]);
		} else if (!dir) {
			dir = argv[i];
		} else {
			rc = tool_usage("unexpected argument '%s'", argv[i]);
		}
	}
	if (rc == 0 && !dir)
		rc = tool_usage("format: missing DIR");
	if (rc == 0 && n == 0)
		rc = tool_usage("format: at least one --disk is required");
	if (rc == 0) {
		char err[512] = "";
		int r = sds_pool_format(dir, paths, sizes, n, err, sizeof(err));
		if (r < 0)
			rc = tool_fail("format %s: %s", dir,
				       err[0] ? err : strerror(-r));
	}
out:
	for (unsigned i = 0; owned && i < n; i++)
		free(owned[i]);
	free(owned);
	free(paths);
	free(sizes);
	return rc;
}

static int tool_vdisk_create(int argc, char **argv)
{
	struct tool_args a;
	int rc = tool_parse(argc, argv, 3, TOOL_F_SECTOR, &a);
	if (rc)
		return rc;
	uint64_t size;
	if (size_parse(a.pos[2], &size) < 0)
		return tool_usage("bad SIZE '%s'", a.pos[2]);
	uint32_t sector = 512;
	if (a.sector) {
		if (!strcmp(a.sector, "512"))
			sector = 512;
		else if (!strcmp(a.sector, "4096"))
			sector = 4096;
		else
			return tool_usage("--sector must be 512 or 4096");
	}
	struct tool t;
	if ((rc = tool_open(&t, a.pos[0])))
		return rc;
	rc = tool_check(&t, sds_vdisk_create(t.pool, a.pos[1], size, sector),
			"vdisk create");
	return tool_close(&t, rc);
}

static int tool_vdisk_delete(int argc, char **argv)
{
	struct tool_args a;
	int rc = tool_parse(argc, argv, 2, 0, &a);
	if (rc)
		return rc;
	struct tool t;
	if ((rc = tool_open(&t, a.pos[0])))
		return rc;
	rc = tool_check(&t, sds_vdisk_delete(t.pool, a.pos[1]), "vdisk delete");
	return tool_close(&t, rc);
}

static int tool_vdisk_resize(int argc, char **argv)
{
	struct tool_args a;
	int rc = tool_parse(argc, argv, 3, 0, &a);
	if (rc)
		return rc;
	uint64_t size;
	if (size_parse(a.pos[2], &size) < 0)
		return tool_usage("bad SIZE '%s'", a.pos[2]);
	struct tool t;
	if ((rc = tool_open(&t, a.pos[0])))
		return rc;
	rc = tool_check(&t, sds_vdisk_resize(t.pool, a.pos[1], size),
			"vdisk resize");
	return tool_close(&t, rc);
}

/* snapshot and clone: both make NAME from SRC, metadata only. */
static int tool_vdisk_derive(int argc, char **argv,
			     int (*fn)(struct sds_pool *, const char *,
				       const char *),
			     const char *what)
{
	struct tool_args a;
	int rc = tool_parse(argc, argv, 3, 0, &a);
	if (rc)
		return rc;
	struct tool t;
	if ((rc = tool_open(&t, a.pos[0])))
		return rc;
	rc = tool_check(&t, fn(t.pool, a.pos[1], a.pos[2]), what);
	return tool_close(&t, rc);
}

static int tool_vdisk_snapshot(int argc, char **argv)
{
	return tool_vdisk_derive(argc, argv, sds_vdisk_snapshot,
				 "vdisk snapshot");
}

static int tool_vdisk_clone(int argc, char **argv)
{
	return tool_vdisk_derive(argc, argv, sds_vdisk_clone, "vdisk clone");
}

static int tool_vdisk_list(int argc, char **argv)
{
	struct tool_args a;
	int rc = tool_parse(argc, argv, 1, TOOL_F_JSON, &a);
	if (rc)
		return rc;
	struct tool t;
	if ((rc = tool_open(&t, a.pos[0])))
		return rc;
	struct sds_vdisk_info *v = NULL;
	size_t n = 0;
	rc = tool_check(&t, sds_vdisk_list(t.pool, &v, &n), "vdisk list");
	if (rc == 0 && a.json) {
		printf("[");
		for (size_t i = 0; i < n; i++) {
			printf(i ? ",\n" : "\n");
			tool_vdisk_json(&v[i],
					tool_parent_name(v, n, v[i].parent_id),
					"  ");
		}
		printf(n ? "\n]\n" : "]\n");
	} else if (rc == 0) {
		printf("%-24s %14s %6s %-8s %14s %s\n", "NAME", "SIZE",
		       "SECTOR", "TYPE", "ALLOCATED", "PARENT");
		for (size_t i = 0; i < n; i++) {
			const char *p = tool_parent_name(v, n, v[i].parent_id);
			printf("%-24s %14" PRIu64 " %6" PRIu32
			       " %-8s %14" PRIu64 " %s\n",
			       v[i].name, v[i].size, v[i].sector_size,
			       v[i].snapshot ? "snapshot" : "vdisk",
			       v[i].allocated_bytes, p ? p : "-");
		}
	}
	free(v);
	return tool_close(&t, rc);
}

static int tool_vdisk_stat(int argc, char **argv)
{
	struct tool_args a;
	int rc = tool_parse(argc, argv, 2, TOOL_F_JSON, &a);
	if (rc)
		return rc;
	struct tool t;
	if ((rc = tool_open(&t, a.pos[0])))
		return rc;
	struct sds_vdisk_info info;
	rc = tool_check(&t, sds_vdisk_stat(t.pool, a.pos[1], &info),
			"vdisk stat");
	if (rc == 0) {
		/* The parent's name needs the list; without it, the id. */
		struct sds_vdisk_info *all = NULL;
		size_t n = 0;
		const char *parent = NULL;
		if (info.parent_id && sds_vdisk_list(t.pool, &all, &n) == 0)
			parent = tool_parent_name(all, n, info.parent_id);
		if (a.json) {
			tool_vdisk_json(&info, parent, "");
			putchar('\n');
		} else {
			tool_vdisk_text(&info, parent);
		}
		free(all);
	}
	return tool_close(&t, rc);
}

static int tool_pool_stat(int argc, char **argv)
{
	struct tool_args a;
	int rc = tool_parse(argc, argv, 1, TOOL_F_JSON, &a);
	if (rc)
		return rc;
	struct tool t;
	if ((rc = tool_open(&t, a.pos[0])))
		return rc;
	struct sds_pool_stats s;
	sds_pool_stats(t.pool, &s);
	static const char *const names[] = {
	    "total_bytes", "used_bytes", "free_bytes", "crc_errors",
	    "io_errors",   "commits",	 "reads",      "writes",
	};
	const uint64_t vals[] = {s.total_bytes, s.used_bytes, s.free_bytes,
				 s.crc_errors,	s.io_errors,  s.commits,
				 s.reads,	s.writes};
	if (a.json) {
		printf("{\n  \"ndisks\": %u", s.ndisks);
		for (size_t i = 0; i < ARRAY_SIZE(vals); i++)
			printf(",\n  \"%s\": %" PRIu64, names[i], vals[i]);
		printf("\n}\n");
	} else {
		printf("%-12s %u\n", "ndisks", s.ndisks);
		for (size_t i = 0; i < ARRAY_SIZE(vals); i++)
			printf("%-12s %" PRIu64 "\n", names[i], vals[i]);
	}
	return tool_close(&t, rc);
}

static int tool_pool_check(int argc, char **argv)
{
	struct tool_args a;
	int rc = tool_parse(argc, argv, 1, TOOL_F_JSON | TOOL_F_DEEP, &a);
	if (rc)
		return rc;
	struct tool t;
	if ((rc = tool_open(&t, a.pos[0])))
		return rc;
	struct sds_check_report r;
	memset(&r, 0, sizeof(r));
	rc = tool_check(&t, sds_pool_check(t.pool, a.deep, &r), "pool check");
	if (rc == 0) {
		static const char *const names[] = {
		    "vdisks",	   "extents",	    "blocks_referenced",
		    "blocks_used", "blocks_leaked", "blocks_verified",
		    "errors",
		};
		const uint64_t vals[] = {
		    r.vdisks,	   r.extents,	    r.blocks_referenced,
		    r.blocks_used, r.blocks_leaked, r.blocks_verified,
		    r.errors};
		r.first_error[sizeof(r.first_error) - 1] = '\0';
		if (a.json) {
			printf("{\n  \"deep\": %s", a.deep ? "true" : "false");
			for (size_t i = 0; i < ARRAY_SIZE(vals); i++)
				printf(",\n  \"%s\": %" PRIu64, names[i],
				       vals[i]);
			printf(",\n  \"first_error\": ");
			tool_json_str(r.first_error);
			printf("\n}\n");
		} else {
			for (size_t i = 0; i < ARRAY_SIZE(vals); i++)
				printf("%-18s %" PRIu64 "\n", names[i],
				       vals[i]);
		}
		if (r.errors)
			rc = tool_fail("%s: %" PRIu64 " error(s); first: %s",
				       a.pos[0], r.errors, r.first_error);
	}
	return tool_close(&t, rc);
}

/* Dispatch on "GROUP VERB", or a lone GROUP when verb is NULL. */
static const struct {
	const char *group, *verb;
	int (*run)(int argc, char **argv);
} tool_cmds[] = {
    {"format", NULL, tool_format},
    {"vdisk", "create", tool_vdisk_create},
    {"vdisk", "delete", tool_vdisk_delete},
    {"vdisk", "resize", tool_vdisk_resize},
    {"vdisk", "snapshot", tool_vdisk_snapshot},
    {"vdisk", "clone", tool_vdisk_clone},
    {"vdisk", "list", tool_vdisk_list},
    {"vdisk", "stat", tool_vdisk_stat},
    {"pool", "stat", tool_pool_stat},
    {"pool", "check", tool_pool_check},
    {"check", NULL, tool_pool_check}, /* the fsck's short name */
};

int main(int argc, char **argv)
{
	log_init();
	if (argc < 2)
		return tool_usage(NULL);
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
	    !strcmp(argv[1], "help")) {
		fputs(tool_usage_text, stdout);
		return 0;
	}
	for (size_t i = 0; i < ARRAY_SIZE(tool_cmds); i++) {
		if (strcmp(argv[1], tool_cmds[i].group))
			continue;
		if (!tool_cmds[i].verb)
			return tool_cmds[i].run(argc - 2, argv + 2);
		if (argc >= 3 && !strcmp(argv[2], tool_cmds[i].verb))
			return tool_cmds[i].run(argc - 3, argv + 3);
	}
	if (argc >= 3)
		return tool_usage("unknown command '%s %s'", argv[1], argv[2]);
	return tool_usage("unknown command '%s'", argv[1]);
}
