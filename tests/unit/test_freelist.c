/* lib/freelist: objects come back in LIFO order up to the cap, buffers by
 * size class and aligned, the large ones straight from the allocator;
 * everything is freed by drain (LeakSanitizer checks at exit). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "freelist.h"

int failures;

static void test_freelist(void)
{
	struct freelist f;
	freelist_init(&f, 100, 2);
	void *a = freelist_zget(&f), *b = freelist_get(&f),
	     *c = freelist_get(&f);
	CHECK(a && b && c);
	for (int i = 0; a && i < 100; i++)
		CHECK_EQ(((uint8_t *)a)[i], 0);
	memset(b, 0x5a, 100);
	freelist_put(&f, a);
	freelist_put(&f, b);
	freelist_put(&f, c); /* over the cap: freed */
	CHECK_EQ(f.n, 2);
	CHECK(freelist_get(&f) == b); /* LIFO */
	void *z = freelist_zget(&f);
	CHECK(z == a);
	for (int i = 0; z && i < 100; i++)
		CHECK_EQ(((uint8_t *)z)[i], 0); /* zeroed again */
	CHECK_EQ(f.n, 0);
	freelist_put(&f, b);
	freelist_put(&f, z);
	freelist_put(&f, NULL);
	CHECK_EQ(f.n, 2);
	freelist_drain(&f);
	CHECK_EQ(f.n, 0);
	CHECK(f.head == NULL);
}

static void test_bufpool(void)
{
	struct bufpool b;
	bufpool_init(&b, 4096, 8);
	CHECK_EQ(b.cls[0].max, 8);
	CHECK_EQ(b.cls[3].max, 1);
	CHECK_EQ(b.cls[FREELIST_BUF_CLASSES - 1].max, 1);
	size_t lens[] = {1, 512, 4096, 4097, 65536, 100000, FREELIST_BUF_MAX,
			 FREELIST_BUF_MAX + 1, 1 << 20};
	void *p[9];
	for (int i = 0; i < 9; i++) {
		p[i] = bufpool_get(&b, lens[i]);
		CHECK(p[i] != NULL);
		CHECK_EQ((uintptr_t)p[i] % 4096, 0);
		if (p[i])
			memset(p[i], 0xa5, lens[i]); /* the whole length */
	}
	for (int i = 0; i < 9; i++)
		bufpool_put(&b, p[i], lens[i]);
	/* same class, same buffer: 4097 and 8192 share the 8 KiB class */
	void *q = bufpool_get(&b, 8192);
	CHECK(q == p[3]);
	bufpool_put(&b, q, 8192);
	CHECK_EQ(b.cls[0].n, 3); /* 1, 512, 4096 */
	bufpool_drain(&b);
	for (int i = 0; i < FREELIST_BUF_CLASSES; i++)
		CHECK_EQ(b.cls[i].n, 0);
}

int main(void)
{
	test_freelist();
	test_bufpool();
	if (failures) {
		fprintf(stderr, "test_freelist: %d check(s) failed\n",
			failures);
		return 1;
	}
	printf("test_freelist: ok\n");
	return 0;
}
