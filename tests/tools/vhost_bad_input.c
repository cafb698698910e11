/* A hand-made vhost-user front end against cairnd --vhost-blk: real
 * requests through shared memory first (write, read back, flush, GET_ID,
 * discard, write zeroes), then the bad input a guest or a front end can
 * produce. The back end must answer with the right status, break only the
 * offending queue, and keep serving new connections.
 *
 *   vhost_bad_input SOCKET VDISK_NAME VDISK_BYTES
 *
 * Exit 0 when every check passed. Run by tests/integration/vhost_bad_input.sh.
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../../hypervisor/vhost/vhost_int.h"
#include "../unit/check.h"

int failures; /* check.h's count */

#define MEM_SIZE (4u << 20)
#define QSZ 16
/* Guest physical layout inside the one region. */
#define DESC_GPA 0x0
#define AVAIL_GPA 0x1000
#define USED_GPA 0x2000
#define HDR_GPA 0x3000	 /* request headers, 64 bytes apart */
#define STATUS_GPA 0x4000 /* status bytes, 64 apart */
#define DATA_GPA 0x10000
#define INDIRECT_GPA 0x8000

static const char *sock_path;
static int sock = -1;
static uint8_t *mem;
static int memfd = -1;
static int kickfd = -1, callfd = -1;
static struct vring_desc *desc;
static struct vring_avail *avail;
static struct vring_used *used;
static uint16_t avail_idx, used_seen;

static int connect_sock(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("connect");
		exit(1);
	}
	struct timeval tv = {.tv_sec = 5};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static int send_msg(uint32_t req, uint32_t flags, const void *p,
		    uint32_t len, const int *fds, unsigned nfds)
{
	struct vhost_user_hdr h = {req, VHOST_USER_VERSION | flags, len};
	struct iovec iov[2] = {{&h, sizeof(h)}, {(void *)p, len}};
	union {
		char buf[CMSG_SPACE(sizeof(int) * 8)];
		struct cmsghdr align;
	} cm;
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};
	if (nfds) {
		memset(&cm, 0, sizeof(cm));
		mh.msg_control = cm.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	return sendmsg(sock, &mh, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

/* Reads one reply; returns its payload size or -1. */
static int recv_reply(uint32_t req, void *p, uint32_t cap)
{
	struct vhost_user_hdr h;
	ssize_t n = recv(sock, &h, sizeof(h), MSG_WAITALL);
	if (n != sizeof(h)) {
		fprintf(stderr, "reply to %u: recv %zd: %s\n", req, n,
			n < 0 ? strerror(errno) : "short");
		return -1;
	}
	if (h.request != req || !(h.flags & VHOST_USER_REPLY_MASK) ||
	    h.size > cap) {
		fprintf(stderr, "reply to %u: got request %u flags 0x%x size %u\n",
			req, h.request, h.flags, h.size);
		return -1;
	}
	if (h.size && recv(sock, p, h.size, MSG_WAITALL) != (ssize_t)h.size)
		return -1;
	return (int)h.size;
}

static uint64_t get_u64(uint32_t req)
{
	uint64_t v = 0;
	send_msg(req, 0, NULL, 0, NULL, 0);
	CHECK(recv_reply(req, &v, sizeof(v)) == 8);
	return v;
}

/* A request with NEED_REPLY: returns the ack (0 ok, non-zero failure). */
static int64_t acked(uint32_t req, const void *p, uint32_t len,
		     const int *fds, unsigned nfds)
{
	uint64_t v = 99;
	if (send_msg(req, VHOST_USER_NEED_REPLY, p, len, fds, nfds) < 0)
		return -1;
	if (recv_reply(req, &v, sizeof(v)) != 8)
		return -1;
	return (int64_t)v;
}

static void setup_device(void)
{
	sock = connect_sock();
	uint64_t f = get_u64(VHOST_USER_GET_FEATURES);
	CHECK(f & (1ull << VIRTIO_F_VERSION_1));
	CHECK(f & (1ull << VHOST_USER_F_PROTOCOL_FEATURES));
	uint64_t pf = get_u64(VHOST_USER_GET_PROTOCOL_FEATURES);
	CHECK(pf & (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK));
	uint64_t want = pf & ((1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK) |
			      (1ull << VHOST_USER_PROTOCOL_F_CONFIG) |
			      (1ull << VHOST_USER_PROTOCOL_F_MQ));
	send_msg(VHOST_USER_SET_PROTOCOL_FEATURES, 0, &want, 8, NULL, 0);
	CHECK(acked(VHOST_USER_SET_OWNER, NULL, 0, NULL, 0) == 0);
	/* No EVENT_IDX: every completion calls. */
	uint64_t ack = f & ~(1ull << VIRTIO_RING_F_EVENT_IDX);
	CHECK(acked(VHOST_USER_SET_FEATURES, &ack, 8, NULL, 0) == 0);

	memfd = memfd_create("guest", MFD_CLOEXEC);
	if (memfd < 0 || ftruncate(memfd, MEM_SIZE) < 0)
		exit(1);
	mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, memfd,
		   0);
	if (mem == MAP_FAILED)
		exit(1);
	memset(mem, 0, MEM_SIZE);
	struct vhost_user_mem m = {.nregions = 1};
	m.r[0] = (struct vhost_user_region){
	    .gpa = 0, .size = MEM_SIZE, .uva = (uintptr_t)mem,
	    .mmap_offset = 0};
	CHECK(acked(VHOST_USER_SET_MEM_TABLE, &m,
		    8 + sizeof(struct vhost_user_region), &memfd, 1) == 0);

	desc = (void *)(mem + DESC_GPA);
	avail = (void *)(mem + AVAIL_GPA);
	used = (void *)(mem + USED_GPA);
	avail_idx = used_seen = 0;
	struct vhost_user_state st = {0, QSZ};
	CHECK(acked(VHOST_USER_SET_VRING_NUM, &st, sizeof(st), NULL, 0) == 0);
	struct vhost_user_addr a = {.index = 0,
				    .desc_uva = (uintptr_t)desc,
				    .used_uva = (uintptr_t)used,
				    .avail_uva = (uintptr_t)avail};
	CHECK(acked(VHOST_USER_SET_VRING_ADDR, &a, sizeof(a), NULL, 0) == 0);
	st.num = 0;
	CHECK(acked(VHOST_USER_SET_VRING_BASE, &st, sizeof(st), NULL, 0) ==
	      0);
	callfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	kickfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	uint64_t idx = 0;
	CHECK(acked(VHOST_USER_SET_VRING_CALL, &idx, 8, &callfd, 1) == 0);
	CHECK(acked(VHOST_USER_SET_VRING_KICK, &idx, 8, &kickfd, 1) == 0);
	st.num = 1;
	CHECK(acked(VHOST_USER_SET_VRING_ENABLE, &st, sizeof(st), NULL, 0) ==
	      0);
}

static void teardown_device(void)
{
	close(sock);
	munmap(mem, MEM_SIZE);
	close(memfd);
	close(kickfd);
	close(callfd);
}

/* Posts the chain at `head` and kicks. */
static void post(uint16_t head)
{
	avail->ring[avail_idx % QSZ] = head;
	__atomic_store_n(&avail->idx, ++avail_idx, __ATOMIC_RELEASE);
	eventfd_write(kickfd, 1);
}

/* Waits up to ms for the next used entry; returns its id or -1. */
static int wait_used(int ms, uint32_t *len)
{
	for (int i = 0; i < ms; i++) {
		if (__atomic_load_n(&used->idx, __ATOMIC_ACQUIRE) !=
		    used_seen) {
			struct vring_used_elem e = used->ring[used_seen % QSZ];
			used_seen++;
			if (len)
				*len = e.len;
			return (int)e.id;
		}
		usleep(1000);
	}
	return -1;
}

struct req {
	uint32_t type, ioprio;
	uint64_t sector;
};

/* A three-descriptor request at descriptors 3r..3r+2: header, data
 * (data_len bytes at DATA_GPA + r*64K, write = device-writable), status.
 * Returns the status byte, or -1 on no completion. */
static int request(unsigned r, uint32_t type, uint64_t sector,
		   uint32_t data_len, bool dev_writes)
{
	uint16_t h = (uint16_t)(3 * r);
	struct req *hdr = (void *)(mem + HDR_GPA + 64 * r);
	*hdr = (struct req){type, 0, sector};
	mem[STATUS_GPA + 64 * r] = 0xee;
	desc[h] = (struct vring_desc){HDR_GPA + 64 * r, 16, VRING_DESC_F_NEXT,
				      (uint16_t)(h + 1)};
	if (data_len) {
		desc[h + 1] = (struct vring_desc){
		    DATA_GPA + 65536ull * r, data_len,
		    VRING_DESC_F_NEXT | (dev_writes ? VRING_DESC_F_WRITE : 0),
		    (uint16_t)(h + 2)};
		desc[h + 2] = (struct vring_desc){STATUS_GPA + 64 * r, 1,
						  VRING_DESC_F_WRITE, 0};
	} else {
		desc[h].next = (uint16_t)(h + 2);
		desc[h + 2] = (struct vring_desc){STATUS_GPA + 64 * r, 1,
						  VRING_DESC_F_WRITE, 0};
	}
	post(h);
	int id = wait_used(5000, NULL);
	if (id != h)
		return -1;
	return mem[STATUS_GPA + 64 * r];
}

static void test_good_requests(const char *name, uint64_t size)
{
	uint8_t *data = mem + DATA_GPA;
	for (unsigned i = 0; i < 8192; i++)
		data[i] = (uint8_t)(i * 7 + 1);
	CHECK(request(0, 1 /* OUT */, 8, 8192, false) == 0);
	memset(mem + DATA_GPA + 65536, 0, 8192);
	CHECK(request(1, 0 /* IN */, 8, 8192, true) == 0);
	CHECK(memcmp(mem + DATA_GPA, mem + DATA_GPA + 65536, 8192) == 0);
	CHECK(request(2, 4 /* FLUSH */, 0, 0, false) == 0);
	memset(mem + DATA_GPA + 2 * 65536, 0, 32);
	CHECK(request(2, 8 /* GET_ID */, 0, 20, true) == 0);
	CHECK(strncmp((char *)mem + DATA_GPA + 2 * 65536, name, 20) == 0);
	/* Discard the 8 KiB, read zeroes back. */
	struct virtio_dwz {
		uint64_t sector;
		uint32_t num, flags;
	} *seg = (void *)(mem + DATA_GPA + 3 * 65536);
	*seg = (struct virtio_dwz){8, 16, 0};
	CHECK(request(3, 11 /* DISCARD */, 0, 16, false) == 0);
	memset(mem + DATA_GPA + 65536, 0xaa, 8192);
	CHECK(request(1, 0, 8, 8192, true) == 0);
	bool zero = true;
	for (unsigned i = 0; i < 8192; i++)
		zero &= mem[DATA_GPA + 65536 + i] == 0;
	CHECK(zero);
	/* WRITE_ZEROES with and without UNMAP. */
	*seg = (struct virtio_dwz){0, 8, 1};
	CHECK(request(3, 13, 0, 16, false) == 0);
	*seg = (struct virtio_dwz){0, 8, 0};
	CHECK(request(3, 13, 0, 16, false) == 0);

	/* Bad requests that still have a status byte. */
	uint64_t last = size / 512;
	CHECK(request(0, 1, last, 512, false) == 1);	   /* beyond the end */
	CHECK(request(0, 1, last - 1, 1024, false) == 1); /* across the end */
	CHECK(request(0, 1, UINT64_MAX / 256, 512, false) == 1); /* overflow */
	CHECK(request(0, 0, 0, 100, true) == 1);	   /* not 512-multiple */
	CHECK(request(0, 77, 0, 0, false) == 2);	   /* unknown type */
	*seg = (struct virtio_dwz){0, 8, 1};
	CHECK(request(3, 11, 0, 16, false) == 2); /* DISCARD with UNMAP */
	*seg = (struct virtio_dwz){0, 8, 4};
	CHECK(request(3, 13, 0, 16, false) == 2); /* unknown flag */
	*seg = (struct virtio_dwz){last, 8, 0};
	CHECK(request(3, 11, 0, 16, false) == 1); /* discard beyond the end */
	CHECK(request(3, 11, 0, 10, false) == 1); /* bad segment list */
}

static void test_bad_messages(void)
{
	/* Queue indexes beyond the offered count. */
	uint64_t nq = get_u64(VHOST_USER_GET_QUEUE_NUM);
	CHECK(nq >= 1 && nq <= VHOST_BLK_MAX_QUEUES);
	struct vhost_user_state st = {(uint32_t)nq, QSZ};
	CHECK(acked(VHOST_USER_SET_VRING_NUM, &st, sizeof(st), NULL, 0) == 1);
	st.index = 200;
	CHECK(acked(VHOST_USER_SET_VRING_ENABLE, &st, sizeof(st), NULL, 0) ==
	      1);
	/* Ring sizes that are not powers of 2, or too big. */
	st = (struct vhost_user_state){1, 12};
	CHECK(acked(VHOST_USER_SET_VRING_NUM, &st, sizeof(st), NULL, 0) == 1);
	st.num = 65536;
	CHECK(acked(VHOST_USER_SET_VRING_NUM, &st, sizeof(st), NULL, 0) == 1);
	/* A kick without an fd (polling mode) is refused. */
	uint64_t k = 1 | VHOST_USER_VRING_NOFD;
	CHECK(acked(VHOST_USER_SET_VRING_KICK, &k, 8, NULL, 0) == 1);
	/* A memory table whose fd count does not match, or with a region
	 * that wraps around. */
	struct vhost_user_mem m = {.nregions = 2};
	CHECK(acked(VHOST_USER_SET_MEM_TABLE, &m,
		    8 + 2 * sizeof(struct vhost_user_region), &memfd, 1) == 1);
	m.nregions = 1;
	m.r[0] = (struct vhost_user_region){UINT64_MAX - 10, 4096, 0, 0};
	CHECK(acked(VHOST_USER_SET_MEM_TABLE, &m,
		    8 + sizeof(struct vhost_user_region), &memfd, 1) == 1);
	/* Ring 1 placed outside guest memory: its kick is refused. */
	st = (struct vhost_user_state){1, QSZ};
	CHECK(acked(VHOST_USER_SET_VRING_NUM, &st, sizeof(st), NULL, 0) == 0);
	struct vhost_user_addr a = {.index = 1,
				    .desc_uva = 0x1000,
				    .used_uva = 0x2000,
				    .avail_uva = 0x3000};
	CHECK(acked(VHOST_USER_SET_VRING_ADDR, &a, sizeof(a), NULL, 0) == 0);
	int efd = eventfd(0, EFD_CLOEXEC);
	k = 1;
	CHECK(acked(VHOST_USER_SET_VRING_KICK, &k, 8, &efd, 1) == 1);
	close(efd);
	/* An unknown request: nack, connection lives. */
	CHECK(acked(200, NULL, 0, NULL, 0) == 1);
	CHECK(get_u64(VHOST_USER_GET_QUEUE_NUM) == nq);
}

/* Chains a hostile guest can post. Each must break queue 0 (no
 * completion, nothing touched outside guest memory), and the back end must
 * still serve the next connection. */
static void chain_loop(void)
{
	desc[0] = (struct vring_desc){HDR_GPA, 16, VRING_DESC_F_NEXT, 1};
	desc[1] = (struct vring_desc){STATUS_GPA, 1,
				      VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 0};
	post(0);
}

static void chain_outside(void)
{
	desc[0] = (struct vring_desc){HDR_GPA, 16, VRING_DESC_F_NEXT, 1};
	desc[1] = (struct vring_desc){MEM_SIZE + 4096, 512,
				      VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 2};
	desc[2] = (struct vring_desc){STATUS_GPA, 1, VRING_DESC_F_WRITE, 0};
	post(0);
}

static void chain_oversized(void)
{
	desc[0] = (struct vring_desc){HDR_GPA, 16, VRING_DESC_F_NEXT, 1};
	desc[1] = (struct vring_desc){DATA_GPA, UINT32_MAX,
				      VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 2};
	desc[2] = (struct vring_desc){STATUS_GPA, 1, VRING_DESC_F_WRITE, 0};
	post(0);
}

static void chain_nested_indirect(void)
{
	struct vring_desc *it = (void *)(mem + INDIRECT_GPA);
	it[0] = (struct vring_desc){HDR_GPA, 16, VRING_DESC_F_NEXT, 1};
	it[1] = (struct vring_desc){INDIRECT_GPA, 32, VRING_DESC_F_INDIRECT, 0};
	desc[0] = (struct vring_desc){INDIRECT_GPA, 32, VRING_DESC_F_INDIRECT, 0};
	post(0);
}

static void chain_indirect_loop(void)
{
	struct vring_desc *it = (void *)(mem + INDIRECT_GPA);
	for (unsigned i = 0; i < 4; i++)
		it[i] = (struct vring_desc){HDR_GPA, 16, VRING_DESC_F_NEXT,
					    (uint16_t)((i + 1) % 4)};
	desc[0] = (struct vring_desc){INDIRECT_GPA, 64, VRING_DESC_F_INDIRECT, 0};
	post(0);
}

static void chain_no_status(void)
{
	desc[0] = (struct vring_desc){HDR_GPA, 16, 0, 0};
	post(0);
}

static void chain_bad_head(void)
{
	post(QSZ + 3);
}

static void chain_avail_jump(void)
{
	avail_idx += 1000;
	post(0);
}

static void test_bad_chains(const char *name, uint64_t size)
{
	static const struct {
		const char *what;
		void (*make)(void);
	} cases[] = {
	    {"loop", chain_loop},
	    {"outside guest memory", chain_outside},
	    {"oversized length", chain_oversized},
	    {"nested indirect", chain_nested_indirect},
	    {"loop in an indirect table", chain_indirect_loop},
	    {"no status byte", chain_no_status},
	    {"head beyond the queue", chain_bad_head},
	    {"avail idx far ahead", chain_avail_jump},
	};
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		setup_device();
		cases[i].make();
		int id = wait_used(300, NULL);
		if (id != -1)
			fprintf(stderr, "bad chain '%s' completed (id %d)\n",
				cases[i].what, id);
		CHECK(id == -1);
		/* The connection itself is still served. */
		CHECK(get_u64(VHOST_USER_GET_QUEUE_NUM) >= 1);
		teardown_device();
	}
	/* And the device works for the next front end. */
	setup_device();
	test_good_requests(name, size);
	teardown_device();
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s SOCKET VDISK BYTES\n", argv[0]);
		return 2;
	}
	sock_path = argv[1];
	uint64_t size = strtoull(argv[3], NULL, 0);
	setup_device();
	test_good_requests(argv[2], size);
	test_bad_messages();
	teardown_device();
	test_bad_chains(argv[2], size);
	if (failures) {
		fprintf(stderr, "vhost_bad_input: %d failures\n", failures);
		return 1;
	}
	printf("vhost_bad_input: ok\n");
	return 0;
}
