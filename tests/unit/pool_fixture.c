/* A real sds pool for unit tests: see pool_fixture.h. */
#include "pool_fixture.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

void pool_fixture_open(struct pool_fixture *f, const struct sds_pool_opts *opts)
{
	char err[256];
	if (sds_pool_open(&f->loop, f->dir, opts, &f->pool, err, sizeof(err))) {
		fprintf(stderr, "open: %s\n", err);
		exit(1);
	}
}

void pool_fixture_init(struct pool_fixture *f, const char *name,
		       uint64_t disk_size, const struct sds_pool_opts *opts)
{
	memset(f, 0, sizeof(*f));
	uv_loop_init(&f->loop);
	snprintf(f->base, sizeof(f->base), "/tmp/cairn-test-%s-XXXXXX", name);
	if (!mkdtemp(f->base))
		abort();
	snprintf(f->disk0, sizeof(f->disk0), "%s/d0.img", f->base);
	snprintf(f->disk1, sizeof(f->disk1), "%s/d1.img", f->base);
	snprintf(f->dir, sizeof(f->dir), "%s/pool", f->base);
	char err[256];
	const char *disks[] = {f->disk0, f->disk1};
	uint64_t sizes[] = {disk_size, disk_size};
	if (sds_pool_format(f->dir, disks, sizes, 2, err, sizeof(err))) {
		fprintf(stderr, "format: %s\n", err);
		exit(1);
	}
	pool_fixture_open(f, opts);
}

static void pool_fixture_closed(void *arg)
{
	*(bool *)arg = true;
}

void pool_fixture_close(struct pool_fixture *f)
{
	bool done = false;
	sds_pool_close(f->pool, pool_fixture_closed, &done);
	while (!done)
		uv_run(&f->loop, UV_RUN_ONCE);
	f->pool = NULL;
}

void pool_fixture_fini(struct pool_fixture *f)
{
	if (f->pool)
		pool_fixture_close(f);
	/* handles closed by the last callbacks finish closing */
	uv_run(&f->loop, UV_RUN_NOWAIT);
	CHECK_EQ(uv_loop_close(&f->loop), 0);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->base);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup failed\n");
}

void *pool_fixture_abuf(size_t len)
{
	void *p = NULL;
	if (posix_memalign(&p, 4096, len ? len : 4096))
		abort();
	memset(p, 0, len);
	return p;
}

void pool_fixture_fill(uint8_t *b, size_t len, uint64_t seed)
{
	for (size_t i = 0; i < len; i++)
		b[i] = (uint8_t)((seed * 131 + i * 7 + (i >> 9)) ^ (seed >> 3));
}
