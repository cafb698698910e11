/* Crash test: kill -9 a real cairnd at random moments under a verifying
 * NBD workload (libnbd), many times, and prove after every restart that
 *  - every write acknowledged before a completed FLUSH is there,
 *  - every block reads as some write we issued to it (never torn, never
 *    another block's data, never a checksum error),
 *  - the pool's metadata passes the offline consistency check (fsck).
 *
 * usage: crash_kill9 BUILD_DIR WORKDIR [--kills N] [--seed S]
 *
 * Every block written carries a header (magic, block number, sequence
 * number) and a pattern derived from both, so a read can tell exactly
 * which write it returns. No two writes to one block are ever in flight
 * together, so a block's completions come in issue order. */
#include <cairn/sds.h>
#include <errno.h>
#include <fcntl.h>
#include <libnbd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NBLOCKS 2048u /* 8 MiB vdisk */
#define BLK 4096u
#define QD 16u
#define MAGIC 0x4b4c42485341524bULL /* "KRASHBLK" */

struct hist {
	uint64_t seq;
	bool trim;
};

struct block {
	uint64_t durable_at;  /* sequence number of the durable state */
	bool durable_data;    /* false: the durable state is zeroes */
	struct hist *h;       /* issued since durable_seq */
	size_t nh, caph;
	bool inflight;
};

struct op {
	struct crash *c;
	uint32_t blk;
	uint64_t seq;
	bool trim, flush;
	void *buf;
	/* FLUSH: the acknowledged writes it makes durable */
	struct hist *acked;
	uint32_t *acked_blk;
	size_t nacked;
};

struct crash {
	const char *build, *work;
	char pool[512], ready[600], log[600];
	uint64_t rng;
	struct block b[NBLOCKS];
	uint64_t seq;
	/* acknowledged since the last FLUSH was issued */
	struct hist *acked;
	uint32_t *acked_blk;
	size_t nacked, capacked;
	unsigned inflight;
	pid_t pid;
	int port;
	/* totals */
	unsigned kills;
	uint64_t writes_acked, trims_acked, flushes_acked, ops_failed;
	uint64_t verified, lost, mismatches, fsck_errors, restarts;
};

static uint64_t rnd(struct crash *c)
{
	c->rng ^= c->rng << 13;
	c->rng ^= c->rng >> 7;
	c->rng ^= c->rng << 17;
	return c->rng;
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void die(const char *fmt, const char *arg)
{
	fprintf(stderr, "crash_kill9: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n");
	exit(1);
}

static void pattern(void *buf, uint32_t blk, uint64_t seq)
{
	uint64_t *w = buf;
	w[0] = MAGIC;
	w[1] = blk;
	w[2] = seq;
	uint64_t x = (seq * 0x9e3779b97f4a7c15ULL) ^ (blk + 1);
	for (unsigned i = 3; i < BLK / 8; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		w[i] = x;
	}
}

static void hist_add(struct block *b, uint64_t seq, bool trim)
{
	if (b->nh == b->caph) {
		b->caph = b->caph ? b->caph * 2 : 8;
		b->h = realloc(b->h, b->caph * sizeof(*b->h));
		if (!b->h)
			abort();
	}
	b->h[b->nh++] = (struct hist){seq, trim};
}

static void acked_add(struct crash *c, uint32_t blk, uint64_t seq, bool trim)
{
	if (c->nacked == c->capacked) {
		c->capacked = c->capacked ? c->capacked * 2 : 256;
		c->acked = realloc(c->acked, c->capacked * sizeof(*c->acked));
		c->acked_blk = realloc(c->acked_blk,
				       c->capacked * sizeof(*c->acked_blk));
		if (!c->acked || !c->acked_blk)
			abort();
	}
	c->acked[c->nacked] = (struct hist){seq, trim};
	c->acked_blk[c->nacked++] = blk;
}

static void make_durable(struct crash *c, uint32_t blk, uint64_t seq,
			 bool trim)
{
	struct block *b = &c->b[blk];
	if (seq <= b->durable_at)
		return; /* a later flush already covered a newer state */
	b->durable_at = seq;
	b->durable_data = !trim;
	/* Forget what was issued before: it can no longer be the content. */
	size_t k = 0;
	for (size_t i = 0; i < b->nh; i++)
		if (b->h[i].seq > seq)
			b->h[k++] = b->h[i];
	b->nh = k;
}

static int op_done(void *arg, int *error)
{
	struct op *o = arg;
	struct crash *c = o->c;
	c->inflight--;
	if (*error) {
		c->ops_failed++;
	} else if (o->flush) {
		c->flushes_acked++;
		for (size_t i = 0; i < o->nacked; i++)
			make_durable(c, o->acked_blk[i], o->acked[i].seq,
				     o->acked[i].trim);
	} else {
		acked_add(c, o->blk, o->seq, o->trim);
		if (o->trim)
			c->trims_acked++;
		else
			c->writes_acked++;
	}
	if (!o->flush)
		c->b[o->blk].inflight = false;
	free(o->buf);
	free(o->acked);
	free(o->acked_blk);
	free(o);
	return 1;
}

static void issue(struct crash *c, struct nbd_handle *h)
{
	struct op *o = calloc(1, sizeof(*o));
	if (!o)
		abort();
	o->c = c;
	nbd_completion_callback cb = {.callback = op_done, .user_data = o};
	unsigned kind = (unsigned)(rnd(c) % 100);
	int64_t rc;
	if (kind < 5) {
		/* FLUSH: takes over everything acknowledged so far. */
		o->flush = true;
		o->acked = c->acked;
		o->acked_blk = c->acked_blk;
		o->nacked = c->nacked;
		c->acked = NULL;
		c->acked_blk = NULL;
		c->nacked = c->capacked = 0;
		rc = nbd_aio_flush(h, cb, 0);
	} else {
		uint32_t blk;
		do
			blk = (uint32_t)(rnd(c) % NBLOCKS);
		while (c->b[blk].inflight);
		o->blk = blk;
		o->seq = ++c->seq;
		o->trim = kind < 15;
		hist_add(&c->b[blk], o->seq, o->trim);
		c->b[blk].inflight = true;
		if (o->trim) {
			rc = nbd_aio_trim(h, BLK, (uint64_t)blk * BLK, cb, 0);
		} else {
			if (posix_memalign(&o->buf, 4096, BLK))
				abort();
			pattern(o->buf, blk, o->seq);
			rc = nbd_aio_pwrite(h, o->buf, BLK, (uint64_t)blk * BLK,
					    cb, 0);
		}
	}
	c->inflight++;
	if (rc == -1) {
		/* Not queued: libnbd has not taken the callback. */
		int err = EIO;
		op_done(o, &err);
	}
}

static void start_cairnd(struct crash *c)
{
	unlink(c->ready);
	c->pid = fork();
	if (c->pid == 0) {
		int fd = open(c->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		char bin[600];
		snprintf(bin, sizeof(bin), "%s/bin/cairnd", c->build);
		/* Kills must not leave sanitizer noise as failures. */
		execl(bin, bin, "--data", c->pool, "--nbd", "127.0.0.1:0",
		      "--ready-file", c->ready, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 1200; i++) {
		FILE *f = fopen(c->ready, "r");
		if (f) {
			char line[128];
			while (fgets(line, sizeof(line), f)) {
				char *p = strrchr(line, ':');
				if (!strncmp(line, "nbd=", 4) && p)
					c->port = atoi(p + 1);
			}
			fclose(f);
			if (c->port > 0)
				return;
		}
		int st;
		if (waitpid(c->pid, &st, WNOHANG) == c->pid)
			die("cairnd exited at start; see %s", c->log);
		usleep(50000);
	}
	die("cairnd not ready; see %s", c->log);
}

static struct nbd_handle *connect_nbd(struct crash *c)
{
	struct nbd_handle *h = nbd_create();
	char uri[128];
	snprintf(uri, sizeof(uri), "nbd://127.0.0.1:%d/crash", c->port);
	if (!h || nbd_connect_uri(h, uri) == -1)
		die("connect: %s", nbd_get_error());
	return h;
}

/* Reads every block and checks it against what may be there. */
static void verify(struct crash *c, struct nbd_handle *h)
{
	void *buf;
	if (posix_memalign(&buf, 4096, BLK))
		abort();
	static const uint8_t zero[BLK];
	for (uint32_t blk = 0; blk < NBLOCKS; blk++) {
		struct block *b = &c->b[blk];
		c->verified++;
		if (nbd_pread(h, buf, BLK, (uint64_t)blk * BLK, 0) == -1) {
			fprintf(stderr, "block %u: read error: %s\n", blk,
				nbd_get_error());
			c->mismatches++;
			continue;
		}
		uint64_t *w = buf;
		bool ok = false;
		uint64_t found = 0;
		if (!memcmp(buf, zero, BLK)) {
			ok = !b->durable_data;
			for (size_t i = 0; i < b->nh && !ok; i++)
				ok = b->h[i].trim;
		} else if (w[0] == MAGIC && w[1] == blk) {
			found = w[2];
			void *exp;
			if (posix_memalign(&exp, 4096, BLK))
				abort();
			pattern(exp, blk, found);
			bool intact = !memcmp(exp, buf, BLK);
			free(exp);
			ok = intact && b->durable_data && found == b->durable_at;
			for (size_t i = 0; i < b->nh && !ok && intact; i++)
				ok = !b->h[i].trim && b->h[i].seq == found;
			if (intact && !ok && found < b->durable_at)
				c->lost++;
		}
		if (!ok) {
			fprintf(stderr,
				"block %u: unexpected content (seq %llu, "
				"durable %llu, %zu issued since)\n",
				blk, (unsigned long long)found,
				(unsigned long long)b->durable_at, b->nh);
			c->mismatches++;
		}
		/* What is on disk now is the durable state. */
		b->durable_at = found;
		b->durable_data = found != 0;
		b->nh = 0;
	}
	free(buf);
	c->nacked = 0;
}

static void closed_cb(void *arg)
{
	*(bool *)arg = true;
}

static void fsck(struct crash *c)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct sds_pool *p;
	char err[256];
	if (sds_pool_open(&loop, c->pool, NULL, &p, err, sizeof(err)))
		die("reopen after kill: %s", err);
	struct sds_check_report r;
	if (sds_pool_check(p, true, &r))
		die("check: %s", sds_pool_errmsg(p));
	if (r.errors) {
		fprintf(stderr, "fsck: %llu error(s), first: %s\n",
			(unsigned long long)r.errors, r.first_error);
		c->fsck_errors += r.errors;
	}
	bool done = false;
	sds_pool_close(p, closed_cb, &done);
	while (!done)
		uv_run(&loop, UV_RUN_ONCE);
	uv_loop_close(&loop);
}

static void setup_pool(struct crash *c)
{
	char d0[600], d1[600], err[256];
	snprintf(d0, sizeof(d0), "%s/d0.img", c->work);
	snprintf(d1, sizeof(d1), "%s/d1.img", c->work);
	const char *disks[] = {d0, d1};
	uint64_t sizes[] = {32u << 20, 32u << 20};
	if (sds_pool_format(c->pool, disks, sizes, 2, err, sizeof(err)))
		die("format: %s", err);
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct sds_pool *p;
	if (sds_pool_open(&loop, c->pool, NULL, &p, err, sizeof(err)))
		die("open: %s", err);
	if (sds_vdisk_create(p, "crash", (uint64_t)NBLOCKS * BLK, 4096))
		die("create: %s", sds_pool_errmsg(p));
	bool done = false;
	sds_pool_close(p, closed_cb, &done);
	while (!done)
		uv_run(&loop, UV_RUN_ONCE);
	uv_loop_close(&loop);
}

int main(int argc, char **argv)
{
	static struct crash c;
	unsigned kills = 25;
	c.rng = (uint64_t)time(NULL) | 1;
	if (argc < 3) {
		fprintf(stderr, "usage: crash_kill9 BUILD_DIR WORKDIR "
				"[--kills N] [--seed S]\n");
		return 2;
	}
	c.build = argv[1];
	c.work = argv[2];
	for (int i = 3; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--kills"))
			kills = (unsigned)atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--seed"))
			c.rng = strtoull(argv[i + 1], NULL, 0) | 1;
	}
	printf("seed %llu\n", (unsigned long long)c.rng);
	snprintf(c.pool, sizeof(c.pool), "%s/pool", c.work);
	snprintf(c.ready, sizeof(c.ready), "%s/ready", c.work);
	snprintf(c.log, sizeof(c.log), "%s/cairnd.log", c.work);
	setup_pool(&c);
	for (unsigned k = 0; k <= kills; k++) {
		start_cairnd(&c);
		c.restarts++;
		struct nbd_handle *h = connect_nbd(&c);
		if (k)
			verify(&c, h);
		if (k == kills) {
			/* Last round: a clean stop must work too. */
			nbd_shutdown(h, 0);
			nbd_close(h);
			kill(c.pid, SIGTERM);
			int st;
			waitpid(c.pid, &st, 0);
			if (!WIFEXITED(st) || WEXITSTATUS(st))
				die("cairnd did not stop cleanly; see %s",
				    c.log);
			fsck(&c);
			break;
		}
		double deadline = now_ms() + 100 + (double)(rnd(&c) % 700);
		while (now_ms() < deadline) {
			while (c.inflight < QD)
				issue(&c, h);
			if (nbd_poll(h, 5) == -1)
				die("nbd_poll: %s", nbd_get_error());
		}
		kill(c.pid, SIGKILL);
		c.kills++;
		int st;
		waitpid(c.pid, &st, 0);
		/* Let libnbd notice the dead socket and fail what is left. */
		for (int i = 0; i < 1000 && c.inflight; i++)
			if (nbd_poll(h, 10) == -1)
				break;
		nbd_close(h); /* fails whatever is still in flight */
		c.inflight = 0;
		for (uint32_t b = 0; b < NBLOCKS; b++)
			c.b[b].inflight = false;
		fsck(&c);
	}
	printf("kills %u, restarts %llu, writes acked %llu, trims acked %llu, "
	       "flushes acked %llu, ops failed by kills %llu\n",
	       c.kills, (unsigned long long)c.restarts,
	       (unsigned long long)c.writes_acked,
	       (unsigned long long)c.trims_acked,
	       (unsigned long long)c.flushes_acked,
	       (unsigned long long)c.ops_failed);
	printf("blocks verified %llu, lost acknowledged+flushed writes %llu, "
	       "mismatches %llu, fsck errors %llu\n",
	       (unsigned long long)c.verified, (unsigned long long)c.lost,
	       (unsigned long long)c.mismatches,
	       (unsigned long long)c.fsck_errors);
	for (uint32_t b = 0; b < NBLOCKS; b++)
		free(c.b[b].h);
	free(c.acked);
	free(c.acked_blk);
	return (c.lost || c.mismatches || c.fsck_errors || c.kills < kills)
		? 1 : 0;
}
