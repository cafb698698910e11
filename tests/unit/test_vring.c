/* The virtqueue walker (hypervisor/vhost/vring.c) over a fake guest: two
 * adjacent memory regions in one host buffer, descriptors written by hand.
 * Good chains, and every kind of bad one a hostile guest can post. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../../hypervisor/vhost/vring.h"

#include "check.h"

int failures;

#define GPA0 0x100000ull	 /* region 0: 1 MiB of guest RAM */
#define GPA1 0x200000ull	 /* region 1: the next 1 MiB */
#define UVA0 0x7f0000000000ull /* the front end's mapping of region 0 */
#define UVA1 0x7f0000200000ull
#define REG (1u << 20)

static uint8_t *guest; /* 2 MiB, 4096-aligned */
static struct vhost_mem mem;
static struct vring_chain chain;

static void setup_mem(void)
{
	if (posix_memalign((void **)&guest, 4096, 2 * REG))
		abort();
	memset(guest, 0, 2 * REG);
	mem.nregions = 2;
	mem.r[0] = (struct vhost_mem_region){GPA0, UVA0, REG, guest};
	mem.r[1] = (struct vhost_mem_region){GPA1, UVA1, REG, guest + REG};
}

/* Host pointer of a guest physical address inside the fake memory. */
static void *g(uint64_t gpa)
{
	return guest + (gpa - GPA0);
}

static void set_desc(struct vring_desc *t, unsigned i, uint64_t addr,
		     uint32_t len, uint16_t flags, uint16_t next)
{
	t[i] = (struct vring_desc){addr, len, flags, next};
}

static void test_mem(void)
{
	CHECK(vhost_mem_gpa(&mem, GPA0, 1) == guest);
	CHECK(vhost_mem_gpa(&mem, GPA1 + REG - 8, 8) == guest + 2 * REG - 8);
	CHECK(vhost_mem_gpa(&mem, GPA1 + REG - 8, 9) == NULL);
	CHECK(vhost_mem_gpa(&mem, GPA0 - 1, 1) == NULL);
	CHECK(vhost_mem_gpa(&mem, GPA0, 0) == NULL);
	/* A range straddling two regions is not one mapping. */
	CHECK(vhost_mem_gpa(&mem, GPA1 - 4, 8) == NULL);
	CHECK(vhost_mem_gpa(&mem, UINT64_MAX, 1) == NULL);
	CHECK(vhost_mem_gpa(&mem, GPA0 + 16, UINT64_MAX) == NULL);
	CHECK(vhost_mem_uva(&mem, UVA1 + 4, 4) == guest + REG + 4);
	CHECK(vhost_mem_uva(&mem, GPA0, 4) == NULL);
}

#define NUM 16
#define DESC_GPA (GPA0)	       /* descriptor table */
#define DATA_GPA (GPA0 + 0x10000)

static struct vring_desc *table(void)
{
	return g(DESC_GPA);
}

static void test_normal_chain(void)
{
	struct vring_desc *t = table();
	memset(t, 0, NUM * sizeof(*t));
	set_desc(t, 3, DATA_GPA, 16, VRING_DESC_F_NEXT, 7);
	set_desc(t, 7, DATA_GPA + 4096, 8192,
		 VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 1);
	set_desc(t, 1, DATA_GPA + 64, 1, VRING_DESC_F_WRITE, 0);
	CHECK_EQ(vring_walk(&mem, t, NUM, 3, true, &chain), 0);
	CHECK_EQ(chain.head, 3);
	CHECK_EQ(chain.nout, 1);
	CHECK_EQ(chain.nin, 2);
	CHECK_EQ(chain.out_bytes, 16);
	CHECK_EQ(chain.in_bytes, 8193);
	CHECK(chain.iov[0].base == g(DATA_GPA));
	CHECK(chain.iov[1].base == g(DATA_GPA + 4096));
	CHECK_EQ(chain.iov[1].len, 8192);
	CHECK(chain.iov[2].base == g(DATA_GPA + 64));

	/* A buffer across the region boundary becomes two segments. */
	set_desc(t, 0, GPA1 - 100, 300, 0, 0);
	CHECK_EQ(vring_walk(&mem, t, NUM, 0, true, &chain), 0);
	CHECK_EQ(chain.nout, 2);
	CHECK_EQ(chain.iov[0].len, 100);
	CHECK_EQ(chain.iov[1].len, 200);
	CHECK(chain.iov[1].base == guest + REG);

	/* Zero-length descriptors are harmless. */
	set_desc(t, 0, DATA_GPA, 0, VRING_DESC_F_NEXT, 1);
	set_desc(t, 1, DATA_GPA, 0, 0, 0);
	CHECK_EQ(vring_walk(&mem, t, NUM, 0, true, &chain), 0);
	CHECK_EQ(chain.nout, 0);
}

static void test_indirect(void)
{
	struct vring_desc *t = table();
	struct vring_desc *it = g(DATA_GPA + 0x8000);
	memset(t, 0, NUM * sizeof(*t));
	set_desc(it, 0, DATA_GPA, 16, VRING_DESC_F_NEXT, 1);
	set_desc(it, 1, DATA_GPA + 4096, 4096, VRING_DESC_F_NEXT, 2);
	set_desc(it, 2, DATA_GPA + 64, 1, VRING_DESC_F_WRITE, 0);
	set_desc(t, 5, DATA_GPA + 0x8000, 3 * 16, VRING_DESC_F_INDIRECT, 0);
	CHECK_EQ(vring_walk(&mem, t, NUM, 5, true, &chain), 0);
	CHECK_EQ(chain.nout, 2);
	CHECK_EQ(chain.nin, 1);
	CHECK_EQ(chain.out_bytes, 4112);
	/* Not negotiated. */
	CHECK_EQ(vring_walk(&mem, t, NUM, 5, false, &chain), -EINVAL);
	/* INDIRECT with NEXT. */
	t[5].flags = VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT;
	CHECK_EQ(vring_walk(&mem, t, NUM, 5, true, &chain), -EINVAL);
	t[5].flags = VRING_DESC_F_INDIRECT;
	/* Bad table lengths. */
	t[5].len = 40;
	CHECK_EQ(vring_walk(&mem, t, NUM, 5, true, &chain), -EINVAL);
	t[5].len = 0;
	CHECK_EQ(vring_walk(&mem, t, NUM, 5, true, &chain), -EINVAL);
	t[5].len = (VRING_MAX_INDIRECT + 1) * 16;
	CHECK_EQ(vring_walk(&mem, t, NUM, 5, true, &chain), -EINVAL);
	/* The table itself outside guest memory, or hanging off its end. */
	t[5].len = 48;
	t[5].addr = 0x10;
	CHECK_EQ(vring_walk(&mem, t, NUM, 5, true, &chain), -EFAULT);
	t[5].addr = GPA1 + REG - 32;
	CHECK_EQ(vring_walk(&mem, t, NUM, 5, true, &chain), -EFAULT);
	t[5].addr = DATA_GPA + 0x8000;
	/* An indirect table inside an indirect table. */
	set_desc(it, 2, DATA_GPA + 0x9000, 16, VRING_DESC_F_INDIRECT, 0);
	CHECK_EQ(vring_walk(&mem, t, NUM, 5, true, &chain), -EINVAL);
	/* A loop inside the table; a next beyond the table. */
	set_desc(it, 2, DATA_GPA + 64, 1, VRING_DESC_F_NEXT, 0);
	CHECK_EQ(vring_walk(&mem, t, NUM, 5, true, &chain), -ELOOP);
	set_desc(it, 2, DATA_GPA + 64, 1, VRING_DESC_F_NEXT, 3);
	CHECK_EQ(vring_walk(&mem, t, NUM, 5, true, &chain), -EINVAL);
}

static void test_bad_chains(void)
{
	struct vring_desc *t = table();
	memset(t, 0, NUM * sizeof(*t));
	/* Head beyond the queue. */
	CHECK_EQ(vring_walk(&mem, t, NUM, NUM, true, &chain), -EINVAL);
	CHECK_EQ(vring_walk(&mem, t, 0, 0, true, &chain), -EINVAL);
	/* Loops: to itself, and a longer cycle. */
	set_desc(t, 2, DATA_GPA, 16, VRING_DESC_F_NEXT, 2);
	CHECK_EQ(vring_walk(&mem, t, NUM, 2, true, &chain), -ELOOP);
	for (unsigned i = 0; i < NUM; i++)
		set_desc(t, i, DATA_GPA, 16, VRING_DESC_F_NEXT,
			 (uint16_t)((i + 1) % NUM));
	CHECK_EQ(vring_walk(&mem, t, NUM, 9, true, &chain), -ELOOP);
	/* next beyond the queue. */
	set_desc(t, 0, DATA_GPA, 16, VRING_DESC_F_NEXT, NUM);
	CHECK_EQ(vring_walk(&mem, t, NUM, 0, true, &chain), -EINVAL);
	/* Outside guest memory: below, above, and running off the end. */
	set_desc(t, 0, 0x1000, 16, 0, 0);
	CHECK_EQ(vring_walk(&mem, t, NUM, 0, true, &chain), -EFAULT);
	set_desc(t, 0, GPA1 + REG, 1, 0, 0);
	CHECK_EQ(vring_walk(&mem, t, NUM, 0, true, &chain), -EFAULT);
	set_desc(t, 0, GPA1 + REG - 16, 32, 0, 0);
	CHECK_EQ(vring_walk(&mem, t, NUM, 0, true, &chain), -EFAULT);
	set_desc(t, 0, UINT64_MAX - 8, 16, 0, 0);
	CHECK_EQ(vring_walk(&mem, t, NUM, 0, true, &chain), -EFAULT);
	/* Oversized: one huge length, and many lengths adding up. */
	set_desc(t, 0, DATA_GPA, UINT32_MAX, 0, 0);
	CHECK_EQ(vring_walk(&mem, t, NUM, 0, true, &chain), -E2BIG);
	for (unsigned i = 0; i < NUM; i++)
		set_desc(t, i, GPA0, REG, VRING_DESC_F_NEXT,
			 (uint16_t)(i + 1));
	t[NUM - 1].flags = 0;
	CHECK_EQ(vring_walk(&mem, t, NUM, 0, true, &chain), 0);
	CHECK_EQ(chain.out_bytes, (uint64_t)NUM * REG);
	for (unsigned i = 0; i < NUM; i++)
		t[i].len = 8u << 20; /* 128 MiB in all: over the cap */
	CHECK(vring_walk(&mem, t, NUM, 0, true, &chain) < 0);
	/* Readable after writable. */
	set_desc(t, 0, DATA_GPA, 16, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 1);
	set_desc(t, 1, DATA_GPA, 16, 0, 0);
	CHECK_EQ(vring_walk(&mem, t, NUM, 0, true, &chain), -EINVAL);
}

static void test_too_many_segments(void)
{
	/* A chain of VRING_MAX_IOV + 1 descriptors in a big queue. */
	enum { BIG = 2048 };
	struct vring_desc *t = g(GPA0 + 0x40000);
	for (unsigned i = 0; i < BIG; i++)
		set_desc(t, i, DATA_GPA, 8, VRING_DESC_F_NEXT,
			 (uint16_t)(i + 1));
	t[VRING_MAX_IOV - 1].flags = 0;
	CHECK_EQ(vring_walk(&mem, t, BIG, 0, true, &chain), 0);
	CHECK_EQ(chain.nout, VRING_MAX_IOV);
	t[VRING_MAX_IOV - 1].flags = VRING_DESC_F_NEXT;
	t[VRING_MAX_IOV].flags = 0;
	CHECK_EQ(vring_walk(&mem, t, BIG, 0, true, &chain), -E2BIG);
}

#define AVAIL_UVA (UVA0 + 0x1000)
#define USED_UVA (UVA0 + 0x2000)

static void test_rings(void)
{
	struct vring vr = {0};
	CHECK_EQ(vring_setup(&vr, &mem, 0, UVA0, AVAIL_UVA, USED_UVA), -EINVAL);
	CHECK_EQ(vring_setup(&vr, &mem, 12, UVA0, AVAIL_UVA, USED_UVA),
		 -EINVAL);
	CHECK_EQ(vring_setup(&vr, &mem, NUM, UVA0 + 8, AVAIL_UVA, USED_UVA),
		 -EINVAL);
	CHECK_EQ(vring_setup(&vr, &mem, NUM, UVA0, AVAIL_UVA + 1, USED_UVA),
		 -EINVAL);
	CHECK_EQ(vring_setup(&vr, &mem, NUM, UVA0, AVAIL_UVA, USED_UVA + 2),
		 -EINVAL);
	CHECK_EQ(vring_setup(&vr, &mem, NUM, GPA0, AVAIL_UVA, USED_UVA),
		 -EFAULT);
	/* The used ring running off the end of guest memory. */
	CHECK_EQ(vring_setup(&vr, &mem, NUM, UVA0, AVAIL_UVA,
			     UVA1 + REG - 64),
		 -EFAULT);
	CHECK_EQ(vring_setup(&vr, &mem, NUM, UVA0, AVAIL_UVA, USED_UVA), 0);
	memset(g(GPA0 + 0x1000), 0, 0x2000);

	uint16_t head;
	CHECK_EQ(vring_pop(&vr, &head), 0);
	vr.avail->ring[0] = 3;
	vr.avail->ring[1] = 9;
	vr.avail->idx = 2;
	CHECK_EQ(vring_pop(&vr, &head), 1);
	CHECK_EQ(head, 3);
	CHECK_EQ(vring_pop(&vr, &head), 1);
	CHECK_EQ(head, 9);
	CHECK_EQ(vring_pop(&vr, &head), 0);
	vring_push(&vr, 9, 513);
	CHECK_EQ(vr.used->idx, 1);
	CHECK_EQ(vr.used->ring[0].id, 9);
	CHECK_EQ(vr.used->ring[0].len, 513);
	CHECK(vring_need_call(&vr));
	CHECK(!vring_need_call(&vr)); /* nothing new */
	vr.avail->flags = VRING_AVAIL_F_NO_INTERRUPT;
	vring_push(&vr, 3, 1);
	CHECK(!vring_need_call(&vr));
	vr.avail->flags = 0;

	/* EVENT_IDX: call only when used crosses used_event. */
	vr.event_idx = true;
	vr.avail->ring[NUM] = 5; /* used_event */
	vring_push(&vr, 3, 1);	 /* used idx 3 */
	CHECK(!vring_need_call(&vr));
	vring_push(&vr, 3, 1);
	vring_push(&vr, 3, 1);
	vring_push(&vr, 3, 1); /* used idx 6: crossed 5 */
	CHECK(vring_need_call(&vr));
	vring_set_avail_event(&vr);
	uint16_t avail_event;
	memcpy(&avail_event, &vr.used->ring[NUM], sizeof(avail_event));
	CHECK_EQ(avail_event, 2);

	/* A head beyond the queue, then an avail idx far ahead: broken. */
	vr.avail->ring[2] = NUM;
	vr.avail->idx = 3;
	CHECK_EQ(vring_pop(&vr, &head), -EIO);
	vr.avail->idx = (uint16_t)(vr.last_avail + NUM + 1);
	CHECK_EQ(vring_pop(&vr, &head), -EIO);
	CHECK_EQ(vring_avail_pending(&vr), -EIO);
	vr.avail->idx = (uint16_t)(vr.last_avail + NUM);
	CHECK_EQ(vring_avail_pending(&vr), NUM);
}

int main(void)
{
	setup_mem();
	test_mem();
	test_normal_chain();
	test_indirect();
	test_bad_chains();
	test_too_many_segments();
	test_rings();
	free(guest);
	if (failures) {
		fprintf(stderr, "test_vring: %d failures\n", failures);
		return 1;
	}
	printf("test_vring: ok\n");
	return 0;
}
