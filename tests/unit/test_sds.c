/* Storage engine tests on real files, real io_uring and real RocksDB.
 * Each IO is checked against an in-memory model of the vdisk. */
#include <cairn/sds.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#include "check.h"
#include "pool_fixture.h"

int failures;
static const char *current_test = "";

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

struct waiter {
	bool done;
	int status;
};

static void io_cb(struct sds_io *io, int status)
{
	struct waiter *w = io->priv;
	w->done = true;
	w->status = status;
}

static int run_io(struct pool_fixture *e, struct sds_vdisk *v,
		  struct sds_io *io)
{
	struct waiter w = {0};
	io->priv = &w;
	io->cb = io_cb;
	sds_vdisk_submit(v, io);
	CHECK(!w.done); /* completions never run inside submit */
	while (!w.done)
		uv_run(&e->loop, UV_RUN_ONCE);
	return w.status;
}

static int rw(struct pool_fixture *e, struct sds_vdisk *v, enum sds_op op,
	      uint64_t off, uint64_t len, void *buf)
{
	struct sds_io io = {.op = op, .offset = off, .len = len, .buf = buf};
	return run_io(e, v, &io);
}

static void flush_cb(void *arg, int status)
{
	struct waiter *w = arg;
	w->done = true;
	w->status = status;
}

static int pool_flush(struct pool_fixture *e)
{
	struct waiter w = {0};
	sds_pool_flush(e->pool, flush_cb, &w);
	while (!w.done)
		uv_run(&e->loop, UV_RUN_ONCE);
	return w.status;
}

static void env_open(struct pool_fixture *e, bool no_checksum)
{
	struct sds_pool_opts o = {.no_checksum = no_checksum,
				  .cache_extents = 64};
	pool_fixture_open(e, &o);
}

static void env_init(struct pool_fixture *e, uint64_t disk_size)
{
	struct sds_pool_opts o = {.cache_extents = 64};
	pool_fixture_init(e, "sds", disk_size, &o);
}

/* fsck: the metadata must be consistent and leak-free at every quiet point. */
static void check_pool(struct pool_fixture *e)
{
	struct sds_check_report rep;
	CHECK_EQ(sds_pool_check(e->pool, true, &rep), 0);
	if (rep.errors)
		fprintf(stderr, "check: %llu error(s), first: %s\n",
			(unsigned long long)rep.errors, rep.first_error);
	CHECK_EQ(rep.errors, 0);
	if (rep.errors)
		fprintf(stderr, "  (in %s)\n", current_test);
}

static void env_fini(struct pool_fixture *e)
{
	if (e->pool) {
		check_pool(e);
		pool_fixture_close(e);
		env_open(e, false);
		check_pool(e);
		pool_fixture_close(e);
	}
	pool_fixture_fini(e);
}

static uint64_t used_bytes(struct pool_fixture *e)
{
	struct sds_pool_stats st;
	sds_pool_stats(e->pool, &st);
	return st.used_bytes;
}

/* ---- tests -------------------------------------------------------------- */

static void test_basic_rw(void)
{
	current_test = "test_basic_rw";
	struct pool_fixture e;
	env_init(&e, 64 << 20);
	CHECK_EQ(sds_vdisk_create(e.pool, "a", 16 << 20, 4096), 0);
	struct sds_vdisk *v;
	CHECK_EQ(sds_vdisk_open(e.pool, "a", &v), 0);
	uint8_t *w = pool_fixture_abuf(1 << 20),
		*r = pool_fixture_abuf(1 << 20);
	/* never written: zeroes, and no space */
	memset(r, 0xaa, 8192);
	CHECK_EQ(rw(&e, v, SDS_OP_READ, 4096, 8192, r), 0);
	for (int i = 0; i < 8192; i++)
		if (r[i]) {
			CHECK(!"hole not zero");
			break;
		}
	CHECK_EQ(used_bytes(&e), 0);
	pool_fixture_fill(w, 1 << 20, 1);
	CHECK_EQ(rw(&e, v, SDS_OP_WRITE, 3 << 20, 1 << 20, w), 0);
	CHECK_EQ(rw(&e, v, SDS_OP_READ, 3 << 20, 1 << 20, r), 0);
	CHECK(memcmp(w, r, 1 << 20) == 0);
	CHECK_EQ(used_bytes(&e), 1 << 20);
	/* overwrite: redirect on write keeps usage flat once durable */
	pool_fixture_fill(w, 1 << 20, 2);
	CHECK_EQ(rw(&e, v, SDS_OP_WRITE, 3 << 20, 1 << 20, w), 0);
	CHECK_EQ(pool_flush(&e), 0);
	CHECK_EQ(used_bytes(&e), 1 << 20);
	CHECK_EQ(rw(&e, v, SDS_OP_READ, 3 << 20, 1 << 20, r), 0);
	CHECK(memcmp(w, r, 1 << 20) == 0);
	/* allocation status: [0, 3 MiB) unmapped, [3, 4) mapped */
	bool mapped;
	uint64_t run;
	CHECK_EQ(sds_vdisk_lba_status(v, 0, 16 << 20, &mapped, &run), 0);
	CHECK(!mapped);
	CHECK_EQ(run, 3 << 20);
	CHECK_EQ(sds_vdisk_lba_status(v, 3 << 20, 16 << 20, &mapped, &run), 0);
	CHECK(mapped);
	CHECK_EQ(run, 1 << 20);
	CHECK_EQ(sds_vdisk_lba_status(v, (4 << 20) + 4096, 8192, &mapped,
				      &run), 0);
	CHECK(!mapped);
	CHECK_EQ(run, 8192);
	CHECK_EQ(sds_vdisk_lba_status(v, 16 << 20, 4096, &mapped, &run),
		 -EINVAL);
	/* unaligned caller buffer */
	CHECK_EQ(rw(&e, v, SDS_OP_READ, 3 << 20, 4096, r + 1), 0);
	CHECK(memcmp(w, r + 1, 4096) == 0);
	sds_vdisk_close(v);
	CHECK_EQ(pool_flush(&e), 0);
	/* durable across reopen */
	pool_fixture_close(&e);
	env_open(&e, false);
	CHECK_EQ(sds_vdisk_open(e.pool, "a", &v), 0);
	memset(r, 0, 1 << 20);
	CHECK_EQ(rw(&e, v, SDS_OP_READ, 3 << 20, 1 << 20, r), 0);
	CHECK(memcmp(w, r, 1 << 20) == 0);
	CHECK_EQ(used_bytes(&e), 1 << 20);
	sds_vdisk_close(v);
	free(w);
	free(r);
	env_fini(&e);
}

/* Random IO on a 512-byte-sector vdisk against a model. */
static void test_model(void)
{
	current_test = "test_model";
	struct pool_fixture e;
	env_init(&e, 64 << 20);
	const uint64_t size = 8 << 20;
	CHECK_EQ(sds_vdisk_create(e.pool, "m", size, 512), 0);
	struct sds_vdisk *v;
	CHECK_EQ(sds_vdisk_open(e.pool, "m", &v), 0);
	uint8_t *model = calloc(1, size);
	uint8_t *buf = pool_fixture_abuf(512 << 10),
		*cmp = pool_fixture_abuf(512 << 10);
	for (int iter = 0; iter < 600; iter++) {
		uint64_t len = (1 + rnd() % 256) * 512;
		uint64_t off = (rnd() % ((size - len) / 512 + 1)) * 512;
		int op = (int)(rnd() % 10);
		if (op < 4) {
			pool_fixture_fill(buf, len, rnd());
			CHECK_EQ(rw(&e, v, SDS_OP_WRITE, off, len, buf), 0);
			memcpy(model + off, buf, len);
		} else if (op < 5) {
			CHECK_EQ(rw(&e, v, SDS_OP_WRITE_ZEROES, off, len, NULL),
				 0);
			memset(model + off, 0, len);
		} else if (op < 6) {
			struct sds_io io = {.op = SDS_OP_WRITE_ZEROES,
					    .flags = SDS_IO_NO_UNMAP,
					    .offset = off, .len = len};
			CHECK_EQ(run_io(&e, v, &io), 0);
			memset(model + off, 0, len);
		} else if (op < 7) {
			/* Unmap is advisory for partial blocks: the model
			 * zeroes only whole blocks. */
			CHECK_EQ(rw(&e, v, SDS_OP_UNMAP, off, len, NULL), 0);
			uint64_t a = (off + 4095) / 4096 * 4096;
			uint64_t b = (off + len) / 4096 * 4096;
			if (b > a)
				memset(model + a, 0, b - a);
		} else {
			CHECK_EQ(rw(&e, v, SDS_OP_READ, off, len, buf), 0);
			CHECK(memcmp(buf, model + off, len) == 0);
		}
		if (iter % 100 == 99)
			CHECK_EQ(pool_flush(&e), 0);
	}
	sds_vdisk_close(v);
	pool_fixture_close(&e);
	env_open(&e, false);
	CHECK_EQ(sds_vdisk_open(e.pool, "m", &v), 0);
	for (uint64_t off = 0; off < size; off += 512 << 10) {
		CHECK_EQ(rw(&e, v, SDS_OP_READ, off, 512 << 10, buf), 0);
		CHECK(memcmp(buf, model + off, 512 << 10) == 0);
	}
	sds_vdisk_close(v);
	free(model);
	free(buf);
	free(cmp);
	env_fini(&e);
}

static void test_snapshot_clone(void)
{
	current_test = "test_snapshot_clone";
	struct pool_fixture e;
	env_init(&e, 64 << 20);
	CHECK_EQ(sds_vdisk_create(e.pool, "base", 8 << 20, 4096), 0);
	struct sds_vdisk *v, *s, *c;
	CHECK_EQ(sds_vdisk_open(e.pool, "base", &v), 0);
	uint8_t *a = pool_fixture_abuf(4 << 20),
		*b = pool_fixture_abuf(4 << 20),
		*r = pool_fixture_abuf(4 << 20);
	pool_fixture_fill(a, 4 << 20, 10);
	pool_fixture_fill(b, 4 << 20, 11);
	CHECK_EQ(rw(&e, v, SDS_OP_WRITE, 0, 4 << 20, a), 0);
	CHECK_EQ(sds_vdisk_snapshot(e.pool, "base", "snap1"), 0);
	CHECK_EQ(sds_vdisk_snapshot(e.pool, "base", "snap1"), -EEXIST);
	struct sds_vdisk_info info;
	CHECK_EQ(sds_vdisk_stat(e.pool, "base", &info), 0);
	CHECK_EQ(info.shared_bytes, 4 << 20);
	CHECK_EQ(info.exclusive_bytes, 0);
	/* overwrite 4 KiB in the middle of a shared extent */
	CHECK_EQ(rw(&e, v, SDS_OP_WRITE, 8192, 4096, b), 0);
	CHECK_EQ(used_bytes(&e), (4 << 20) + 4096);
	CHECK_EQ(sds_vdisk_stat(e.pool, "base", &info), 0);
	CHECK_EQ(info.exclusive_bytes, 4096);
	CHECK_EQ(info.shared_bytes, (4 << 20) - 4096);
	CHECK_EQ(sds_vdisk_open(e.pool, "snap1", &s), 0);
	CHECK(sds_vdisk_readonly(s));
	CHECK_EQ(rw(&e, s, SDS_OP_READ, 0, 4 << 20, r), 0);
	CHECK(memcmp(r, a, 4 << 20) == 0);
	CHECK_EQ(rw(&e, s, SDS_OP_WRITE, 0, 4096, b), -EROFS);
	CHECK_EQ(rw(&e, v, SDS_OP_READ, 8192, 4096, r), 0);
	CHECK(memcmp(r, b, 4096) == 0);
	/* clone of the snapshot: writable, independent */
	CHECK_EQ(sds_vdisk_clone(e.pool, "snap1", "clone1"), 0);
	CHECK_EQ(sds_vdisk_open(e.pool, "clone1", &c), 0);
	CHECK_EQ(rw(&e, c, SDS_OP_WRITE, 0, 1 << 20, b), 0);
	CHECK_EQ(rw(&e, s, SDS_OP_READ, 0, 1 << 20, r), 0);
	CHECK(memcmp(r, a, 1 << 20) == 0);
	CHECK_EQ(rw(&e, c, SDS_OP_READ, 0, 4 << 20, r), 0);
	CHECK(memcmp(r, b, 1 << 20) == 0);
	CHECK(memcmp(r + (1 << 20), a + (1 << 20), 3 << 20) == 0);
	sds_vdisk_close(s);
	sds_vdisk_close(c);
	sds_vdisk_close(v);
	CHECK_EQ(pool_flush(&e), 0);
	/* all of it survives a reopen, sharing included */
	pool_fixture_close(&e);
	env_open(&e, false);
	CHECK_EQ(sds_vdisk_open(e.pool, "snap1", &s), 0);
	CHECK_EQ(rw(&e, s, SDS_OP_READ, 0, 4 << 20, r), 0);
	CHECK(memcmp(r, a, 4 << 20) == 0);
	sds_vdisk_close(s);
	/* deleting releases only what nothing else references */
	uint64_t before = used_bytes(&e);
	CHECK_EQ(sds_vdisk_delete(e.pool, "snap1"), 0);
	CHECK_EQ(sds_vdisk_delete(e.pool, "clone1"), 0);
	for (int i = 0; i < 50; i++)
		uv_run(&e.loop, UV_RUN_NOWAIT);
	CHECK_EQ(pool_flush(&e), 0);
	CHECK(used_bytes(&e) < before);
	CHECK_EQ(sds_vdisk_stat(e.pool, "base", &info), 0);
	CHECK_EQ(info.shared_bytes, 0);
	CHECK_EQ(used_bytes(&e), info.allocated_bytes);
	CHECK_EQ(sds_vdisk_open(e.pool, "base", &v), 0);
	CHECK_EQ(rw(&e, v, SDS_OP_READ, 0, 4 << 20, r), 0);
	CHECK(memcmp(r, a, 8192) == 0);
	CHECK(memcmp(r + 8192, b, 4096) == 0);
	CHECK(memcmp(r + 12288, a + 12288, (4 << 20) - 12288) == 0);
	sds_vdisk_close(v);
	free(a);
	free(b);
	free(r);
	env_fini(&e);
}

static void test_copy_range(void)
{
	current_test = "test_copy_range";
	struct pool_fixture e;
	env_init(&e, 64 << 20);
	CHECK_EQ(sds_vdisk_create(e.pool, "src", 8 << 20, 512), 0);
	CHECK_EQ(sds_vdisk_create(e.pool, "dst", 8 << 20, 512), 0);
	struct sds_vdisk *s, *d;
	CHECK_EQ(sds_vdisk_open(e.pool, "src", &s), 0);
	CHECK_EQ(sds_vdisk_open(e.pool, "dst", &d), 0);
	uint8_t *a = pool_fixture_abuf(4 << 20),
		*r = pool_fixture_abuf(4 << 20);
	pool_fixture_fill(a, 4 << 20, 21);
	CHECK_EQ(rw(&e, s, SDS_OP_WRITE, 0, 4 << 20, a), 0);
	uint64_t used = used_bytes(&e);
	/* extent-aligned: shares whole extents */
	struct sds_io io = {.op = SDS_OP_COPY_RANGE, .offset = 0,
			    .len = 2 << 20, .src = s, .src_offset = 0};
	CHECK_EQ(run_io(&e, d, &io), 0);
	/* block-aligned: shares blocks */
	io = (struct sds_io){.op = SDS_OP_COPY_RANGE, .offset = 4 << 20,
			     .len = 12288, .src = s, .src_offset = 8192};
	CHECK_EQ(run_io(&e, d, &io), 0);
	CHECK_EQ(used_bytes(&e), used); /* no data copied */
	CHECK_EQ(rw(&e, d, SDS_OP_READ, 0, 2 << 20, r), 0);
	CHECK(memcmp(r, a, 2 << 20) == 0);
	CHECK_EQ(rw(&e, d, SDS_OP_READ, 4 << 20, 12288, r), 0);
	CHECK(memcmp(r, a + 8192, 12288) == 0);
	/* sector-aligned only: data moves */
	io = (struct sds_io){.op = SDS_OP_COPY_RANGE, .offset = (6 << 20) + 512,
			     .len = 5 * 512 + 8192, .src = s,
			     .src_offset = 1536};
	CHECK_EQ(run_io(&e, d, &io), 0);
	CHECK_EQ(rw(&e, d, SDS_OP_READ, (6 << 20) + 512, 5 * 512 + 8192, r),
		 0);
	CHECK(memcmp(r, a + 1536, 5 * 512 + 8192) == 0);
	/* overwriting the source leaves the copy alone */
	uint8_t *z = pool_fixture_abuf(4 << 20);
	CHECK_EQ(rw(&e, s, SDS_OP_WRITE, 0, 4 << 20, z), 0);
	CHECK_EQ(rw(&e, d, SDS_OP_READ, 0, 2 << 20, r), 0);
	CHECK(memcmp(r, a, 2 << 20) == 0);
	CHECK_EQ(rw(&e, d, SDS_OP_READ, 4 << 20, 12288, r), 0);
	CHECK(memcmp(r, a + 8192, 12288) == 0);
	/* within one vdisk, non-overlapping */
	io = (struct sds_io){.op = SDS_OP_COPY_RANGE, .offset = 3 << 20,
			     .len = 4096, .src = d, .src_offset = 4096};
	CHECK_EQ(run_io(&e, d, &io), 0);
	CHECK_EQ(rw(&e, d, SDS_OP_READ, 3 << 20, 4096, r), 0);
	CHECK(memcmp(r, a + 4096, 4096) == 0);
	io = (struct sds_io){.op = SDS_OP_COPY_RANGE, .offset = 4096,
			     .len = 8192, .src = d, .src_offset = 0};
	CHECK_EQ(run_io(&e, d, &io), -EINVAL); /* overlap */
	sds_vdisk_close(s);
	sds_vdisk_close(d);
	CHECK_EQ(pool_flush(&e), 0);
	pool_fixture_close(&e);
	env_open(&e, false);
	CHECK_EQ(sds_vdisk_open(e.pool, "dst", &d), 0);
	CHECK_EQ(rw(&e, d, SDS_OP_READ, 4 << 20, 12288, r), 0);
	CHECK(memcmp(r, a + 8192, 12288) == 0);
	sds_vdisk_close(d);
	free(a);
	free(r);
	free(z);
	env_fini(&e);
}

static void test_compare_and_write(void)
{
	current_test = "test_compare_and_write";
	struct pool_fixture e;
	env_init(&e, 16 << 20);
	CHECK_EQ(sds_vdisk_create(e.pool, "c", 1 << 20, 512), 0);
	struct sds_vdisk *v;
	CHECK_EQ(sds_vdisk_open(e.pool, "c", &v), 0);
	uint8_t *buf = pool_fixture_abuf(1024), *r = pool_fixture_abuf(512);
	memset(buf, 0, 512);        /* compare: zeroes (never written) */
	memset(buf + 512, 'x', 512); /* then write x */
	struct sds_io io = {.op = SDS_OP_COMPARE_AND_WRITE, .offset = 1024,
			    .len = 512, .buf = buf};
	CHECK_EQ(run_io(&e, v, &io), 0);
	CHECK_EQ(rw(&e, v, SDS_OP_READ, 1024, 512, r), 0);
	CHECK(memcmp(r, buf + 512, 512) == 0);
	/* second time the compare fails at byte 0 */
	CHECK_EQ(run_io(&e, v, &io), -EILSEQ);
	CHECK_EQ(io.miscompare_offset, 0);
	memset(buf, 'x', 512);
	buf[100] = 'y';
	CHECK_EQ(run_io(&e, v, &io), -EILSEQ);
	CHECK_EQ(io.miscompare_offset, 100);
	/* concurrent CAWs on the same block: exactly one wins */
	memset(buf, 'x', 512);
	memset(buf + 512, 'z', 512);
	struct sds_io ios[8];
	struct waiter w[8] = {0};
	for (int i = 0; i < 8; i++) {
		ios[i] = io;
		ios[i].priv = &w[i];
		ios[i].cb = io_cb;
		sds_vdisk_submit(v, &ios[i]);
	}
	int ok = 0, miss = 0;
	for (int i = 0; i < 8; i++) {
		while (!w[i].done)
			uv_run(&e.loop, UV_RUN_ONCE);
		ok += w[i].status == 0;
		miss += w[i].status == -EILSEQ;
	}
	CHECK_EQ(ok, 1);
	CHECK_EQ(miss, 7);
	sds_vdisk_close(v);
	free(buf);
	free(r);
	env_fini(&e);
}

static void test_bad_input(void)
{
	current_test = "test_bad_input";
	struct pool_fixture e;
	env_init(&e, 8 << 20);
	CHECK_EQ(sds_vdisk_create(e.pool, "bad/name", 1 << 20, 512), -EINVAL);
	CHECK_EQ(sds_vdisk_create(e.pool, "", 1 << 20, 512), -EINVAL);
	CHECK_EQ(sds_vdisk_create(e.pool, "x", 1000, 512), -EINVAL);
	CHECK_EQ(sds_vdisk_create(e.pool, "x", 1 << 20, 1024), -EINVAL);
	CHECK_EQ(sds_vdisk_create(e.pool, "x", 0, 512), -EINVAL);
	struct sds_vdisk *v;
	CHECK_EQ(sds_vdisk_open(e.pool, "nope", &v), -ENOENT);
	CHECK(strstr(sds_pool_errmsg(e.pool), "nope") != NULL);
	CHECK_EQ(sds_vdisk_create(e.pool, "x", 20 << 20, 512), 0);
	CHECK_EQ(sds_vdisk_open(e.pool, "x", &v), 0);
	uint8_t *buf = pool_fixture_abuf(1 << 20);
	CHECK_EQ(rw(&e, v, SDS_OP_READ, 20 << 20, 512, buf), -EINVAL);
	CHECK_EQ(rw(&e, v, SDS_OP_READ, (20 << 20) - 512, 1024, buf), -EINVAL);
	CHECK_EQ(rw(&e, v, SDS_OP_READ, 100, 512, buf), -EINVAL);
	CHECK_EQ(rw(&e, v, SDS_OP_WRITE, 0, 0, buf), -EINVAL);
	CHECK_EQ(rw(&e, v, SDS_OP_READ, UINT64_MAX - 511, 512, buf), -EINVAL);
	CHECK_EQ(rw(&e, v, 99, 0, 512, buf), -EINVAL);
	CHECK_EQ(sds_vdisk_delete(e.pool, "x"), -EBUSY);
	/* fill the pool (2 x 8 MiB disks) past its end */
	int rc = 0;
	uint64_t off;
	for (off = 0; off < (20 << 20) && !rc; off += 1 << 20) {
		pool_fixture_fill(buf, 1 << 20, off);
		rc = rw(&e, v, SDS_OP_WRITE, off, 1 << 20, buf);
	}
	CHECK_EQ(rc, -ENOSPC);
	/* what was written before is intact */
	CHECK_EQ(rw(&e, v, SDS_OP_READ, 0, 1 << 20, buf), 0);
	uint8_t *exp = pool_fixture_abuf(1 << 20);
	pool_fixture_fill(exp, 1 << 20, 0);
	CHECK(memcmp(buf, exp, 1 << 20) == 0);
	/* unmap makes room again */
	CHECK_EQ(rw(&e, v, SDS_OP_UNMAP, 4 << 20, 8 << 20, NULL), 0);
	CHECK_EQ(pool_flush(&e), 0);
	CHECK_EQ(rw(&e, v, SDS_OP_WRITE, 8 << 20, 1 << 20, buf), 0);
	sds_vdisk_close(v);
	free(buf);
	free(exp);
	env_fini(&e);
}

/* Flip a byte of a data block on disk: the read fails, never lies. */
static void test_corruption(void)
{
	current_test = "test_corruption";
	struct pool_fixture e;
	env_init(&e, 8 << 20);
	CHECK_EQ(sds_vdisk_create(e.pool, "c", 1 << 20, 4096), 0);
	struct sds_vdisk *v;
	CHECK_EQ(sds_vdisk_open(e.pool, "c", &v), 0);
	uint8_t *buf = pool_fixture_abuf(8192);
	pool_fixture_fill(buf, 8192, 5);
	CHECK_EQ(rw(&e, v, SDS_OP_WRITE, 0, 8192, buf), 0);
	CHECK_EQ(pool_flush(&e), 0);
	/* Both disks: the blocks landed on one of them. Corrupt every
	 * non-label block that holds our pattern's first byte. */
	int hits = 0;
	const char *paths[] = {e.disk0, e.disk1};
	for (int d = 0; d < 2; d++) {
		int fd = open(paths[d], O_RDWR);
		CHECK(fd >= 0);
		uint8_t blk[4096];
		for (off_t o = 4096; o < (8 << 20); o += 4096) {
			if (pread(fd, blk, 4096, o) != 4096)
				break;
			if (!memcmp(blk, buf, 64)) {
				blk[1000] ^= 0x40;
				CHECK(pwrite(fd, blk, 4096, o) == 4096);
				hits++;
			}
		}
		close(fd);
	}
	CHECK_EQ(hits, 1);
	memset(buf, 0, 8192);
	CHECK_EQ(rw(&e, v, SDS_OP_READ, 0, 8192, buf), -EIO);
	CHECK_EQ(rw(&e, v, SDS_OP_READ, 4096, 4096, buf), 0);
	struct sds_pool_stats st;
	sds_pool_stats(e.pool, &st);
	CHECK_EQ(st.crc_errors, 1);
	/* the scrubber finds it too, without anyone reading it */
	sds_pool_scrub(e.pool, 100000);
	for (int i = 0; i < 2000 && st.scrub_passes < 2; i++) {
		uv_run(&e.loop, UV_RUN_ONCE);
		sds_pool_stats(e.pool, &st);
	}
	CHECK(st.scrub_passes >= 2);
	CHECK_EQ(st.scrub_errors, 1);
	CHECK(st.scrub_blocks >= 2);
	sds_pool_scrub(e.pool, 0);
	/* rewriting the block heals it */
	pool_fixture_fill(buf, 4096, 6);
	CHECK_EQ(rw(&e, v, SDS_OP_WRITE, 0, 4096, buf), 0);
	CHECK_EQ(rw(&e, v, SDS_OP_READ, 0, 4096, buf), 0);
	sds_vdisk_close(v);
	free(buf);
	env_fini(&e);
}

static void test_resize_and_big_snapshot(void)
{
	current_test = "test_resize_and_big_snapshot";
	struct pool_fixture e;
	env_init(&e, 16 << 20);
	CHECK_EQ(sds_vdisk_create(e.pool, "big", 10ULL << 30, 4096), 0);
	struct sds_vdisk *v;
	CHECK_EQ(sds_vdisk_open(e.pool, "big", &v), 0);
	uint8_t *buf = pool_fixture_abuf(4096);
	/* touch one block in every 4th GiB... and 1000 extents spread out */
	for (uint64_t i = 0; i < 1000; i++) {
		pool_fixture_fill(buf, 4096, i);
		CHECK_EQ(rw(&e, v, SDS_OP_WRITE, i * (10ULL << 20), 4096, buf),
			 0);
	}
	sds_vdisk_close(v);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CHECK_EQ(sds_vdisk_snapshot(e.pool, "big", "big-snap"), 0);
	CHECK_EQ(pool_flush(&e), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("snapshot of a 10 GiB vdisk (1000 extents) + commit: %.2f ms\n",
	       (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
		       (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
	check_pool(&e);
	/* shrink the origin: the snapshot keeps its data */
	CHECK_EQ(sds_vdisk_resize(e.pool, "big", 1ULL << 30), 0);
	check_pool(&e);
	CHECK_EQ(sds_vdisk_resize(e.pool, "big-snap", 1ULL << 30), -EROFS);
	CHECK_EQ(sds_vdisk_resize(e.pool, "big", (2ULL << 30) + 4096), 0);
	CHECK_EQ(sds_vdisk_open(e.pool, "big", &v), 0);
	CHECK_EQ(sds_vdisk_size(v), (2ULL << 30) + 4096);
	CHECK_EQ(rw(&e, v, SDS_OP_READ, 1500ULL << 20, 4096, buf), 0);
	CHECK(buf[0] == 0 && buf[4095] == 0);
	sds_vdisk_close(v);
	CHECK_EQ(sds_vdisk_open(e.pool, "big-snap", &v), 0);
	CHECK_EQ(rw(&e, v, SDS_OP_READ, 999 * (10ULL << 20), 4096, buf), 0);
	uint8_t exp[4096];
	pool_fixture_fill(exp, 4096, 999);
	CHECK(memcmp(buf, exp, 4096) == 0);
	sds_vdisk_close(v);
	struct sds_vdisk_info *list;
	size_t n;
	CHECK_EQ(sds_vdisk_list(e.pool, &list, &n), 0);
	CHECK_EQ(n, 2);
	free(list);
	free(buf);
	env_fini(&e);
}

/* Closes and reopens the pool; the 4 KiB at `off` of vdisk `name` must
 * read as `want`. */
static void reopen_expect(struct pool_fixture *e, const char *name,
			  uint64_t off, const uint8_t *want)
{
	pool_fixture_close(e);
	env_open(e, false);
	struct sds_vdisk *v;
	uint8_t *r = pool_fixture_abuf(4096);
	CHECK_EQ(sds_vdisk_open(e->pool, name, &v), 0);
	CHECK_EQ(rw(e, v, SDS_OP_READ, off, 4096, r), 0);
	CHECK(memcmp(r, want, 4096) == 0);
	sds_vdisk_close(v);
	free(r);
}

/* The commit worker runs on libuv's thread pool: the flag is atomic. */
static int fail_commits;
static int inject(void *arg, const char *point)
{
	(void)arg;
	return (!strcmp(point, "commit") &&
		__atomic_load_n(&fail_commits, __ATOMIC_SEQ_CST))
		? EIO
		: 0;
}

/* A failed commit fails FLUSH and every later write; after a reopen the
 * pool holds what was flushed before, and fsck is clean. */
static void test_commit_failure(void)
{
	current_test = "test_commit_failure";
	struct pool_fixture e;
	env_init(&e, 16 << 20);
	CHECK_EQ(sds_vdisk_create(e.pool, "f", 4 << 20, 4096), 0);
	CHECK_EQ(pool_flush(&e), 0);
	pool_fixture_close(&e);
	char err[256];
	struct sds_pool_opts o = {.fault = inject, .cache_extents = 64};
	CHECK_EQ(sds_pool_open(&e.loop, e.dir, &o, &e.pool, err, sizeof(err)),
		 0);
	struct sds_vdisk *v;
	CHECK_EQ(sds_vdisk_open(e.pool, "f", &v), 0);
	uint8_t *a = pool_fixture_abuf(8192), *r = pool_fixture_abuf(8192);
	pool_fixture_fill(a, 8192, 77);
	CHECK_EQ(rw(&e, v, SDS_OP_WRITE, 0, 4096, a), 0);
	CHECK_EQ(pool_flush(&e), 0); /* durable */
	__atomic_store_n(&fail_commits, 1, __ATOMIC_SEQ_CST);
	CHECK_EQ(rw(&e, v, SDS_OP_WRITE, 4096, 4096, a + 4096), 0);
	CHECK_EQ(pool_flush(&e), -EIO);
	CHECK_EQ(rw(&e, v, SDS_OP_WRITE, 8192, 4096, a), -EIO);
	CHECK_EQ(pool_flush(&e), -EIO);
	__atomic_store_n(&fail_commits, 0, __ATOMIC_SEQ_CST);
	sds_vdisk_close(v);
	reopen_expect(&e, "f", 0, a);
	free(a);
	free(r);
	env_fini(&e);
}

/* ---- SDS_IO_LOGGED: survives the death of the process ------------------ */

#define LOGGED_HOUR_MS 3600000u /* no group commit during the child's life */

static void logged_open(uv_loop_t *loop, const char *dir, struct sds_pool **p)
{
	char err[256];
	struct sds_pool_opts o = {.commit_interval_ms = LOGGED_HOUR_MS,
				  .cache_extents = 64, .log = true};
	if (sds_pool_open(loop, dir, &o, p, err, sizeof(err))) {
		fprintf(stderr, "open: %s\n", err);
		exit(1);
	}
}

static int logged_io(uv_loop_t *loop, struct sds_vdisk *v, uint32_t flags,
		     uint64_t off, void *buf)
{
	struct waiter w = {0};
	struct sds_io io = {.op = SDS_OP_WRITE, .flags = flags, .offset = off,
			    .len = 4096, .buf = buf, .priv = &w, .cb = io_cb};
	sds_vdisk_submit(v, &io);
	while (!w.done)
		uv_run(loop, UV_RUN_ONCE);
	return w.status;
}

/* The child (a fresh exec of this binary): overwrites block 0 and writes
 * block 1 with SDS_IO_LOGGED, FLUSHes (a group commit in log mode: the WAL
 * synced after the data), writes block 3 logged and block 2 without, and
 * dies by SIGKILL: no close, no later commit. Prints "logged" once the
 * writes are acked. */
static int logged_child(const char *dir)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct sds_pool *p;
	logged_open(&loop, dir, &p);
	struct sds_vdisk *v;
	if (sds_vdisk_open(p, "l", &v))
		return 2;
	uint8_t *b = pool_fixture_abuf(4096);
	static const unsigned order[] = {0, 1, 3, 2};
	int rc = 0;
	for (unsigned k = 0; k < 4 && !rc; k++) {
		unsigned i = order[k];
		pool_fixture_fill(b, 4096, 100 + i);
		rc = logged_io(&loop, v, i != 2 ? SDS_IO_LOGGED : 0, i * 4096, b);
		if (k == 1 && !rc) {
			struct waiter w = {0};
			sds_pool_flush(p, flush_cb, &w);
			while (!w.done)
				uv_run(&loop, UV_RUN_ONCE);
			rc = w.status;
		}
	}
	struct sds_pool_stats st;
	sds_pool_stats(p, &st);
	if (rc || st.commits != 1 || st.log_writes < 3) {
		fprintf(stderr, "child: rc %d commits %llu log_writes %llu\n",
			rc, (unsigned long long)st.commits,
			(unsigned long long)st.log_writes);
		return 3;
	}
	printf("logged\n");
	fflush(stdout);
	raise(SIGKILL);
	return 4;
}

static void test_logged_survives_kill(void)
{
	current_test = "test_logged_survives_kill";
	struct pool_fixture e;
	env_init(&e, 16 << 20);
	CHECK_EQ(sds_vdisk_create(e.pool, "l", 4 << 20, 4096), 0);
	struct sds_vdisk *v;
	CHECK_EQ(sds_vdisk_open(e.pool, "l", &v), 0);
	uint8_t *b = pool_fixture_abuf(4096), *r = pool_fixture_abuf(4096);
	pool_fixture_fill(b, 4096, 99);
	CHECK_EQ(rw(&e, v, SDS_OP_WRITE, 0, 4096, b), 0);
	sds_vdisk_close(v);
	CHECK_EQ(pool_flush(&e), 0);
	pool_fixture_close(&e);

	char cmd[512];
	snprintf(cmd, sizeof(cmd), "exec /proc/%d/exe --logged-child '%s'",
		 (int)getpid(), e.dir);
	FILE *f = popen(cmd, "r");
	CHECK(f != NULL);
	char line[64] = "";
	if (f && !fgets(line, sizeof(line), f))
		line[0] = 0;
	int ws = f ? pclose(f) : -1;
	CHECK(strcmp(line, "logged\n") == 0);
	CHECK(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);

	/* What a restarted daemon finds: the logged writes, not the other. */
	env_open(&e, false);
	check_pool(&e);
	CHECK_EQ(sds_vdisk_open(e.pool, "l", &v), 0);
	for (unsigned i = 0; i < 4; i++) {
		CHECK_EQ(rw(&e, v, SDS_OP_READ, i * 4096, 4096, r), 0);
		if (i != 2)
			pool_fixture_fill(b, 4096, 100 + i);
		else
			memset(b, 0, 4096);
		CHECK(memcmp(r, b, 4096) == 0);
	}
	/* Logged but never flushed: a clean close must still commit it. */
	pool_fixture_fill(b, 4096, 7);
	struct sds_io io = {.op = SDS_OP_WRITE, .flags = SDS_IO_LOGGED,
			    .offset = 16384, .len = 4096, .buf = b};
	CHECK_EQ(run_io(&e, v, &io), 0);
	sds_vdisk_close(v);
	reopen_expect(&e, "l", 16384, b);
	free(b);
	free(r);
	env_fini(&e);
}

/* A log-mode pool updates RocksDB's memtable in place (meta.c): many
 * logged overwrites of the same shards, a vdisk deleted (range deletes)
 * and one created under the same name, then the state after a clean close
 * and reopen, in log mode and not, is exactly the last written. */
static void test_logged_inplace(void)
{
	current_test = "test_logged_inplace";
	struct pool_fixture e;
	env_init(&e, 16 << 20);
	pool_fixture_close(&e);
	logged_open(&e.loop, e.dir, &e.pool);
	const uint64_t size = 4 << 20, nblk = size / 4096;
	uint8_t *model = pool_fixture_abuf(size), *b = pool_fixture_abuf(4096),
		*r = pool_fixture_abuf(size);
	struct sds_vdisk *v;
	for (int round = 0; round < 2; round++) {
		CHECK_EQ(sds_vdisk_create(e.pool, "l", size, 4096), 0);
		CHECK_EQ(sds_vdisk_open(e.pool, "l", &v), 0);
		memset(model, 0, size);
		for (unsigned i = 0; i < 600; i++) {
			/* few blocks, many versions: mostly in-place puts */
			uint64_t blk = rnd() % 24 + (i % 2) * (nblk - 24);
			pool_fixture_fill(b, 4096, 1000 * round + i);
			CHECK_EQ(logged_io(&e.loop, v, SDS_IO_LOGGED, blk * 4096,
					   b), 0);
			memcpy(model + blk * 4096, b, 4096);
		}
		CHECK_EQ(rw(&e, v, SDS_OP_READ, 0, size, r), 0);
		CHECK(memcmp(r, model, size) == 0);
		sds_vdisk_close(v);
		if (round == 0) {
			CHECK_EQ(sds_vdisk_delete(e.pool, "l"), 0);
			for (int i = 0; i < 50; i++)
				uv_run(&e.loop, UV_RUN_NOWAIT);
			CHECK_EQ(pool_flush(&e), 0);
		}
	}
	for (int mode = 0; mode < 2; mode++) {
		pool_fixture_close(&e);
		if (mode == 0)
			logged_open(&e.loop, e.dir, &e.pool);
		else
			env_open(&e, false);
		CHECK_EQ(sds_vdisk_open(e.pool, "l", &v), 0);
		CHECK_EQ(rw(&e, v, SDS_OP_READ, 0, size, r), 0);
		CHECK(memcmp(r, model, size) == 0);
		sds_vdisk_close(v);
	}
	free(model);
	free(b);
	free(r);
	env_fini(&e);
}

int main(int argc, char **argv)
{
	log_init();
	if (argc == 3 && !strcmp(argv[1], "--logged-child"))
		return logged_child(argv[2]);
	test_basic_rw();
	test_model();
	test_snapshot_clone();
	test_copy_range();
	test_compare_and_write();
	test_bad_input();
	test_corruption();
	test_resize_and_big_snapshot();
	test_commit_failure();
	test_logged_survives_kill();
	test_logged_inplace();
	if (failures) {
		fprintf(stderr, "test_sds: %d check(s) failed\n", failures);
		return 1;
	}
	printf("test_sds: ok\n");
	return 0;
}
