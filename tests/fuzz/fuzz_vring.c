/* libFuzzer over the virtqueue walker and ring accessors
 * (hypervisor/vhost/vring.c). The input is a guest: a few control bytes,
 * then the contents of guest memory (descriptor table, indirect tables,
 * avail ring), all hostile. The walker must terminate, never touch memory
 * outside the two guest regions (ASan catches it: each region is its own
 * allocation), and every segment it returns must lie inside guest memory.
 *
 *   make MODE=fuzz fuzzers && build/fuzz/fuzz_vring -runs=200000 -seed=1
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../hypervisor/vhost/vring.h"

#define R0_GPA 0x0ull
#define R0_SIZE 0x10000u /* descriptor tables, rings, data */
#define R1_GPA 0x10000ull /* adjacent: buffers may straddle */
#define R1_SIZE 0x1000u
#define UVA_OFF 0x7f0000000000ull

static uint8_t *r0, *r1;
static struct vring_chain chain;

static int inside(const uint8_t *p, uint32_t len, const uint8_t *base,
		  uint32_t size)
{
	return p >= base && p <= base + size && len <= (base + size) - p;
}

static void check_chain(void)
{
	uint64_t out = 0, in = 0;
	if (chain.nout + chain.nin > VRING_MAX_IOV)
		abort();
	for (unsigned i = 0; i < chain.nout + chain.nin; i++) {
		const struct vring_iov *v = &chain.iov[i];
		if (!inside(v->base, v->len, r0, R0_SIZE) &&
		    !inside(v->base, v->len, r1, R1_SIZE))
			abort();
		if (i < chain.nout)
			out += v->len;
		else
			in += v->len;
		/* Touch every byte: ASan reports anything outside. */
		if (v->len) {
			volatile uint8_t x = v->base[0];
			x = v->base[v->len - 1];
			(void)x;
		}
	}
	if (out != chain.out_bytes || in != chain.in_bytes ||
	    out + in > VRING_MAX_CHAIN_BYTES)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!r0) {
		r0 = malloc(R0_SIZE);
		r1 = malloc(R1_SIZE);
	}
	if (size < 8)
		return 0;
	/* Control bytes. */
	uint16_t num = (uint16_t)(1u << (data[0] % 9)); /* 1..256 */
	uint16_t head = (uint16_t)(data[1] | (data[2] << 8));
	int indirect_ok = data[3] & 1;
	int event_idx = data[3] & 2;
	uint16_t pops = data[4];
	uint64_t avail_off = (uint64_t)(data[5] | (data[6] << 8)) * 2;
	uint64_t used_off = (uint64_t)data[7] * 64;
	data += 8;
	size -= 8;
	memset(r0, 0, R0_SIZE);
	memset(r1, 0, R1_SIZE);
	size_t n0 = size < R0_SIZE ? size : R0_SIZE;
	memcpy(r0, data, n0);
	if (size > n0)
		memcpy(r1, data + n0,
		       size - n0 < R1_SIZE ? size - n0 : R1_SIZE);

	struct vhost_mem mem = {.nregions = 2};
	mem.r[0] = (struct vhost_mem_region){R0_GPA, R0_GPA + UVA_OFF,
					     R0_SIZE, r0};
	mem.r[1] = (struct vhost_mem_region){R1_GPA, R1_GPA + UVA_OFF,
					     R1_SIZE, r1};

	/* The walker on its own, from the table at guest address 0. */
	if (vring_walk(&mem, (const struct vring_desc *)r0, num, head,
		       indirect_ok, &chain) == 0)
		check_chain();

	/* The ring path: avail ring somewhere in guest memory, used ring
	 * somewhere else (it may overlap: a guest may do that too). */
	struct vring vr = {.event_idx = event_idx != 0};
	if (vring_setup(&vr, &mem, num, UVA_OFF, UVA_OFF + avail_off,
			UVA_OFF + used_off) < 0)
		return 0;
	for (unsigned i = 0; i < pops; i++) {
		uint16_t h;
		int rc = vring_pop(&vr, &h);
		if (rc <= 0)
			break;
		if (vring_walk(&mem, vr.desc, vr.num, h, indirect_ok,
			       &chain) == 0)
			check_chain();
		vring_push(&vr, h, (uint32_t)chain.in_bytes);
		vring_need_call(&vr);
		vring_set_avail_event(&vr);
	}
	return 0;
}
