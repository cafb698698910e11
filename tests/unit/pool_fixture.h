/* A real sds pool for unit tests (test_sds, test_scsi): two disk files of
 * one size in a fresh temporary directory, formatted and opened on the
 * fixture's own loop, and the teardown that closes it and removes the
 * directory. Failing to make the pool ends the test binary (nothing can be
 * tested without it); the checks use check.h's `failures`. */
#ifndef CAIRN_TEST_POOL_FIXTURE_H
#define CAIRN_TEST_POOL_FIXTURE_H

#include <cairn/sds.h>
#include <stddef.h>
#include <stdint.h>

struct pool_fixture {
	uv_loop_t loop;
	char base[64]; /* temp dir */
	char dir[128]; /* pool dir */
	char disk0[128], disk1[128];
	struct sds_pool *pool;
};

/* Makes /tmp/cairn-test-NAME-XXXXXX, formats a pool there on two files of
 * disk_size bytes and opens it with opts (NULL: the defaults). */
void pool_fixture_init(struct pool_fixture *f, const char *name,
		       uint64_t disk_size, const struct sds_pool_opts *opts);
/* (Re)opens the formatted pool into f->pool. */
void pool_fixture_open(struct pool_fixture *f,
		       const struct sds_pool_opts *opts);
/* Closes f->pool, running the loop until it is closed; f->pool = NULL. */
void pool_fixture_close(struct pool_fixture *f);
/* Closes the pool if it is open, then the loop (it must have no handle
 * left), and removes the directory. */
void pool_fixture_fini(struct pool_fixture *f);

/* A zeroed, 4 KiB-aligned buffer (the engine does O_DIRECT IO); free(). */
void *pool_fixture_abuf(size_t len);
/* A pattern that differs per seed and per 512-byte sector. */
void pool_fixture_fill(uint8_t *b, size_t len, uint64_t seed);

#endif
