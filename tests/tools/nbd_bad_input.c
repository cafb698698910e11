/* nbd_bad_input: a raw-socket NBD client that sends what well-behaved
 * clients never do and checks the server's answers (docs/nbd.md, "Bad
 * input"). Run by tests/integration/nbd_bad_input.sh.
 *
 *   nbd_bad_input HOST PORT EXPORT [READONLY_EXPORT]
 *   nbd_bad_input --stall HOST PORT EXPORT
 *   nbd_bad_input --fuzz HOST PORT EXPORT ROUNDS SEED
 *
 * --stall connects, sends 64 reads of 32 MiB, never reads a reply and
 * sleeps until killed (at most 120 s): the server's replies back up, and
 * its shutdown must not wait for this client forever.
 *
 * --fuzz runs ROUNDS connections of random traffic (seeded, so a failure
 * replays): mostly well-framed options and requests with random fields,
 * sometimes garbage. It checks nothing itself: the caller checks that the
 * server survived, still serves and stops cleanly.
 *
 * EXPORT must be writable and at least 4 MiB; its first 2 MiB are
 * overwritten. Prints one line per check; exits 0 only if all pass. Every
 * socket read has a timeout, so a server that stops answering fails the
 * test instead of hanging it. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "../../sds/nbd/nbd_proto.h"
#include "lib_check.h"
#include "lib_rawsock.h"
#include "util.h"

#define TIMEOUT_S 20
#define MIB (1u << 20)

static const char *g_host, *g_port;
static int g_failures;
#define check(ok, ...) tool_check(&g_failures, ok, __VA_ARGS__)

static int conn_open(void)
{
	return rawsock_open(g_host, g_port, TIMEOUT_S);
}

/* Hello and client flags; returns the fd or -1. */
static int handshake_start(void)
{
	int fd = conn_open();
	if (fd < 0)
		return -1;
	uint8_t h[NBD_HELLO_SIZE];
	if (rawsock_recv_all(fd, h, sizeof(h)) != 1 || get_be64(h) != NBD_INIT_MAGIC ||
	    get_be64(h + 8) != NBD_OPTS_MAGIC ||
	    !(get_be16(h + 16) & NBD_FLAG_FIXED_NEWSTYLE)) {
		close(fd);
		return -1;
	}
	uint8_t cf[4];
	put_be32(cf, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
	if (!rawsock_send_all(fd, cf, 4)) {
		close(fd);
		return -1;
	}
	return fd;
}

static bool send_opt(int fd, uint32_t opt, const void *data, uint32_t len)
{
	uint8_t h[NBD_OPT_HEADER_SIZE];
	put_be64(h, NBD_OPTS_MAGIC);
	put_be32(h + 8, opt);
	put_be32(h + 12, len);
	return rawsock_send_all(fd, h, sizeof(h)) && (!len || rawsock_send_all(fd, data, len));
}

/* One option reply; data (up to cap bytes kept) in buf. Returns the reply
 * type, or 0 on a transport or framing error. */
static uint32_t recv_opt_reply(int fd, uint32_t opt, uint8_t *buf, size_t cap,
			       uint32_t *len)
{
	uint8_t h[NBD_OPT_REPLY_HEADER_SIZE];
	if (rawsock_recv_all(fd, h, sizeof(h)) != 1 || get_be64(h) != NBD_REP_MAGIC ||
	    get_be32(h + 8) != opt)
		return 0;
	uint32_t l = get_be32(h + 16);
	uint8_t junk[256];
	for (uint32_t got = 0; got < l;) {
		size_t n = MIN((size_t)(l - got), sizeof(junk));
		uint8_t *dst = got + n <= cap ? buf + got : junk;
		if (rawsock_recv_all(fd, dst, n) != 1)
			return 0;
		got += (uint32_t)n;
	}
	if (len)
		*len = l;
	return get_be32(h + 12);
}

struct export
{
	uint64_t size;
	uint16_t flags;
	uint32_t min_block, pref_block, max_payload;
};

/* NBD_OPT_GO asking for NBD_INFO_BLOCK_SIZE; returns the final reply type
 * (NBD_REP_ACK on success), 0 on a transport error. */
static uint32_t opt_go(int fd, const char *name, uint32_t opt,
		       struct export *ex)
{
	uint32_t nl = (uint32_t)strlen(name);
	uint8_t d[4 + 256 + 4];
	put_be32(d, nl);
	memcpy(d + 4, name, nl);
	put_be16(d + 4 + nl, 1);
	put_be16(d + 6 + nl, NBD_INFO_BLOCK_SIZE);
	if (!send_opt(fd, opt, d, 8 + nl))
		return 0;
	for (;;) {
		uint8_t b[64];
		uint32_t len;
		uint32_t t = recv_opt_reply(fd, opt, b, sizeof(b), &len);
		if (t != NBD_REP_INFO)
			return t;
		if (len == NBD_INFO_EXPORT_SIZE &&
		    get_be16(b) == NBD_INFO_EXPORT) {
			ex->size = get_be64(b + 2);
			ex->flags = get_be16(b + 10);
		} else if (len == NBD_INFO_BLOCK_SIZE_SIZE &&
			   get_be16(b) == NBD_INFO_BLOCK_SIZE) {
			ex->min_block = get_be32(b + 2);
			ex->pref_block = get_be32(b + 6);
			ex->max_payload = get_be32(b + 10);
		}
	}
}

static int connect_export(const char *name, struct export *ex)
{
	int fd = handshake_start();
	if (fd < 0)
		return -1;
	memset(ex, 0, sizeof(*ex));
	if (opt_go(fd, name, NBD_OPT_GO, ex) != NBD_REP_ACK) {
		close(fd);
		return -1;
	}
	return fd;
}

static bool send_req(int fd, uint16_t flags, uint16_t type, uint64_t cookie,
		     uint64_t off, uint32_t len)
{
	uint8_t r[NBD_REQUEST_SIZE];
	put_be32(r, NBD_REQUEST_MAGIC);
	put_be16(r + 4, flags);
	put_be16(r + 6, type);
	put_be64(r + 8, cookie);
	put_be64(r + 16, off);
	put_be32(r + 24, len);
	return rawsock_send_all(fd, r, sizeof(r));
}

/* A simple reply: returns the error (>= 0), or -1 on a transport or
 * framing error. */
static int64_t recv_reply(int fd, uint64_t *cookie)
{
	uint8_t r[NBD_SIMPLE_REPLY_SIZE];
	if (rawsock_recv_all(fd, r, sizeof(r)) != 1 ||
	    get_be32(r) != NBD_SIMPLE_REPLY_MAGIC)
		return -1;
	*cookie = get_be64(r + 8);
	return get_be32(r + 4);
}

/* Sends one request without payload and expects `want` for it. */
static void expect_error(int fd, uint16_t flags, uint16_t type, uint64_t off,
			 uint32_t len, uint32_t want, const char *what)
{
	static uint64_t cookie = 1000;
	uint64_t c = ++cookie, got_c = 0;
	int64_t e = -1;
	if (send_req(fd, flags, type, c, off, len))
		e = recv_reply(fd, &got_c);
	check(e == (int64_t)want && got_c == c,
	      "%s: error %lld (want %u), cookie %s", what, (long long)e, want,
	      got_c == c ? "matches" : "WRONG");
}

/* A good write then a read of the same range returns the same bytes. */
static bool write_read_ok(int fd, uint64_t off, uint32_t len, uint8_t seed)
{
	uint8_t *w = malloc(len), *r = malloc(len);
	bool ok = w && r;
	for (uint32_t i = 0; ok && i < len; i++)
		w[i] = (uint8_t)(seed + i * 7);
	uint64_t c = 0;
	ok = ok && send_req(fd, 0, NBD_CMD_WRITE, 1, off, len) &&
	     rawsock_send_all(fd, w, len) && recv_reply(fd, &c) == 0 && c == 1;
	ok = ok && send_req(fd, 0, NBD_CMD_READ, 2, off, len) &&
	     recv_reply(fd, &c) == 0 && c == 2 && rawsock_recv_all(fd, r, len) == 1 &&
	     memcmp(w, r, len) == 0;
	free(w);
	free(r);
	return ok;
}

static void test_handshake(const char *name)
{
	/* Unknown client flags: the server MUST drop the connection. */
	int fd = conn_open();
	uint8_t h[NBD_HELLO_SIZE], cf[4];
	put_be32(cf, 0x80000000u);
	bool ok =
	    fd >= 0 && rawsock_recv_all(fd, h, sizeof(h)) == 1 && rawsock_send_all(fd, cf, 4);
	check(ok && rawsock_closed_by_peer(fd), "unknown client flags: disconnected");
	if (fd >= 0)
		close(fd);

	/* Bad option magic. */
	fd = handshake_start();
	uint8_t bad[NBD_OPT_HEADER_SIZE] = "NOTMAGIC";
	ok = fd >= 0 && rawsock_send_all(fd, bad, sizeof(bad));
	check(ok && rawsock_closed_by_peer(fd), "bad option magic: disconnected");
	if (fd >= 0)
		close(fd);

	/* One connection, many refused options, then a good INFO. */
	fd = handshake_start();
	check(fd >= 0, "handshake");
	if (fd < 0)
		return;
	uint32_t t = send_opt(fd, 99, "xyz", 3)
			 ? recv_opt_reply(fd, 99, NULL, 0, NULL)
			 : 0;
	check(t == NBD_REP_ERR_UNSUP, "unknown option 99: reply 0x%x", t);
	/* Structured replies are served; these malformed requests for them
	 * are refused without turning them on (the rest of this connection
	 * expects simple replies). */
	t = send_opt(fd, NBD_OPT_STRUCTURED_REPLY, "x", 1)
		? recv_opt_reply(fd, NBD_OPT_STRUCTURED_REPLY, NULL, 0, NULL)
		: 0;
	check(t == NBD_REP_ERR_INVALID, "STRUCTURED_REPLY with data: reply 0x%x",
	      t);
	uint8_t meta[12] = {0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 200};
	t = send_opt(fd, NBD_OPT_SET_META_CONTEXT, meta, sizeof(meta))
		? recv_opt_reply(fd, NBD_OPT_SET_META_CONTEXT, NULL, 0, NULL)
		: 0;
	check(t == NBD_REP_ERR_INVALID,
	      "SET_META_CONTEXT without structured replies: reply 0x%x", t);
	t = send_opt(fd, NBD_OPT_LIST_META_CONTEXT, meta, sizeof(meta))
		? recv_opt_reply(fd, NBD_OPT_LIST_META_CONTEXT, NULL, 0, NULL)
		: 0;
	check(t == NBD_REP_ERR_INVALID, "LIST_META_CONTEXT malformed: reply 0x%x",
	      t);
	t = send_opt(fd, NBD_OPT_STARTTLS, NULL, 0)
		? recv_opt_reply(fd, NBD_OPT_STARTTLS, NULL, 0, NULL)
		: 0;
	check(t == NBD_REP_ERR_UNSUP, "STARTTLS: reply 0x%x", t);
	t = send_opt(fd, NBD_OPT_LIST, "x", 1)
		? recv_opt_reply(fd, NBD_OPT_LIST, NULL, 0, NULL)
		: 0;
	check(t == NBD_REP_ERR_INVALID, "LIST with data: reply 0x%x", t);
	uint8_t mal[8] = {0, 0, 0, 200, 'a', 'b', 0, 0};
	t = send_opt(fd, NBD_OPT_INFO, mal, sizeof(mal))
		? recv_opt_reply(fd, NBD_OPT_INFO, NULL, 0, NULL)
		: 0;
	check(t == NBD_REP_ERR_INVALID, "INFO with bad name length: 0x%x", t);
	struct export ex;
	t = opt_go(fd, "no-such-vdisk", NBD_OPT_INFO, &ex);
	check(t == NBD_REP_ERR_UNKNOWN, "INFO unknown export: reply 0x%x", t);
	t = opt_go(fd, "bad\001name/../x", NBD_OPT_INFO, &ex);
	check(t == NBD_REP_ERR_UNKNOWN, "INFO bad name: reply 0x%x", t);
	/* Option data far beyond any name: skipped, then refused. */
	size_t big = 100000;
	uint8_t *junk = calloc(1, big);
	t = junk && send_opt(fd, NBD_OPT_GO, junk, (uint32_t)big)
		? recv_opt_reply(fd, NBD_OPT_GO, NULL, 0, NULL)
		: 0;
	free(junk);
	check(t == NBD_REP_ERR_TOO_BIG, "GO with 100 kB of data: reply 0x%x",
	      t);
	memset(&ex, 0, sizeof(ex));
	t = opt_go(fd, name, NBD_OPT_INFO, &ex);
	check(t == NBD_REP_ACK && ex.size && ex.min_block &&
		  ex.max_payload == 32 * MIB,
	      "INFO %s after refusals: size %llu, block %u/%u/%u", name,
	      (unsigned long long)ex.size, ex.min_block, ex.pref_block,
	      ex.max_payload);
	t = send_opt(fd, NBD_OPT_ABORT, NULL, 0)
		? recv_opt_reply(fd, NBD_OPT_ABORT, NULL, 0, NULL)
		: 0;
	check(t == NBD_REP_ACK && rawsock_closed_by_peer(fd), "ABORT: ACK, closed");
	close(fd);

	/* EXPORT_NAME of an unknown export: no error reply exists. */
	fd = handshake_start();
	ok = fd >= 0 && send_opt(fd, NBD_OPT_EXPORT_NAME, "nope", 4);
	check(ok && rawsock_closed_by_peer(fd), "EXPORT_NAME unknown: disconnected");
	if (fd >= 0)
		close(fd);

	/* EXPORT_NAME of a known one, with NO_ZEROES: 10-byte reply. */
	fd = handshake_start();
	uint8_t r[10];
	ok = fd >= 0 &&
	     send_opt(fd, NBD_OPT_EXPORT_NAME, name, (uint32_t)strlen(name)) &&
	     rawsock_recv_all(fd, r, sizeof(r)) == 1;
	check(ok && get_be64(r) == ex.size &&
		  (get_be16(r + 8) & NBD_FLAG_HAS_FLAGS),
	      "EXPORT_NAME %s: size %llu", name,
	      ok ? (unsigned long long)get_be64(r) : 0ull);
	check(ok && write_read_ok(fd, 0, 4096, 3),
	      "EXPORT_NAME session: write+read");
	if (fd >= 0)
		close(fd);
}

static void test_requests(const char *name)
{
	struct export ex;
	int fd = connect_export(name, &ex);
	check(fd >= 0, "GO %s", name);
	if (fd < 0)
		return;
	uint32_t mb = ex.min_block;
	check(mb == 512 || mb == 4096, "minimum block %u", mb);
	check(ex.pref_block == 4096 && ex.max_payload == 32 * MIB,
	      "preferred %u, maximum %u", ex.pref_block, ex.max_payload);
	uint16_t want = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH |
			NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM |
			NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_CAN_MULTI_CONN;
	check((ex.flags & want) == want && !(ex.flags & NBD_FLAG_READ_ONLY),
	      "transmission flags 0x%x", ex.flags);

	expect_error(fd, 0, NBD_CMD_READ, ex.size, mb, NBD_EINVAL,
		     "READ at the end");
	expect_error(fd, 0, NBD_CMD_READ, ex.size - mb, 2 * mb, NBD_EINVAL,
		     "READ across the end");
	expect_error(fd, 0, NBD_CMD_READ, UINT64_MAX - mb + 1, mb, NBD_EINVAL,
		     "READ at offset 2^64 - block (wraps)");
	expect_error(fd, 0, NBD_CMD_READ, 1, mb, NBD_EINVAL,
		     "READ at misaligned offset");
	expect_error(fd, 0, NBD_CMD_READ, 0, mb + 1, NBD_EINVAL,
		     "READ of misaligned length");
	expect_error(fd, 0, NBD_CMD_READ, 0, 0, NBD_EINVAL, "READ of length 0");
	expect_error(fd, 0, NBD_CMD_READ, 0, 32 * MIB + mb, NBD_EINVAL,
		     "READ longer than 32 MiB");
	expect_error(fd, 1u << 7, NBD_CMD_READ, 0, mb, NBD_EINVAL,
		     "READ with an unknown flag");
	expect_error(fd, NBD_CMD_FLAG_DF, NBD_CMD_READ, 0, mb, NBD_EINVAL,
		     "READ with DF (no structured replies)");
	expect_error(fd, 0, 99, 0, mb, NBD_EINVAL, "unknown command 99");
	expect_error(fd, 0, 0xffff, 0, 0, NBD_EINVAL, "unknown command 65535");
	expect_error(fd, 0, NBD_CMD_CACHE, 0, mb, NBD_EINVAL,
		     "CACHE (not advertised)");
	expect_error(fd, 0, NBD_CMD_BLOCK_STATUS, 0, mb, NBD_EINVAL,
		     "BLOCK_STATUS (no metadata context)");
	expect_error(fd, 0, NBD_CMD_FLUSH, 4096, 0, NBD_EINVAL,
		     "FLUSH with an offset");
	expect_error(fd, 0, NBD_CMD_TRIM, ex.size, mb, NBD_EINVAL,
		     "TRIM beyond the end");
	expect_error(fd, 0, NBD_CMD_WRITE_ZEROES, ex.size - mb, 2 * mb,
		     NBD_ENOSPC, "WRITE_ZEROES across the end");
	expect_error(fd, NBD_CMD_FLAG_FAST_ZERO, NBD_CMD_WRITE_ZEROES, 0, mb,
		     NBD_EINVAL,
		     "WRITE_ZEROES with FAST_ZERO (not advertised)");
	expect_error(fd, 0, NBD_CMD_FLUSH, 0, 0, 0, "FLUSH");

	/* Refused WRITEs still carry their payload: the server must skip
	 * it and stay in step. */
	uint8_t *pay = calloc(1, 2 * mb);
	uint64_t c = 0;
	int64_t e = -1;
	if (pay && send_req(fd, 0, NBD_CMD_WRITE, 7, ex.size, mb) &&
	    rawsock_send_all(fd, pay, mb))
		e = recv_reply(fd, &c);
	check(e == NBD_ENOSPC && c == 7, "WRITE beyond the end: error %lld",
	      (long long)e);
	e = -1;
	if (pay && send_req(fd, 0, NBD_CMD_WRITE, 8, 1, mb) &&
	    rawsock_send_all(fd, pay, mb))
		e = recv_reply(fd, &c);
	check(e == NBD_EINVAL && c == 8, "WRITE at misaligned offset: %lld",
	      (long long)e);
	e = -1;
	if (pay &&
	    send_req(fd, NBD_CMD_FLAG_NO_HOLE, NBD_CMD_WRITE, 9, 0, mb) &&
	    rawsock_send_all(fd, pay, mb))
		e = recv_reply(fd, &c);
	check(e == NBD_EINVAL && c == 9, "WRITE with NO_HOLE: error %lld",
	      (long long)e);
	free(pay);
	check(write_read_ok(fd, 0, 64 * 1024, 1),
	      "stream in step after refused writes: write+read");
	check(write_read_ok(fd, 4096, 4096, 2), "FUA-less 4 KiB write+read");

	/* Pipelining past the in-flight cap: 512 writes of 4 KiB to distinct
	 * blocks (overlapping writes in flight have no defined order) sent
	 * before reading a reply, then 512 reads checked by cookie. */
	enum { N = 512, BS = 4096 };
	uint8_t *blk = malloc(BS);
	bool ok = blk != NULL;
	for (unsigned i = 0; ok && i < N; i++) {
		memset(blk, (int)(i & 0xff), BS);
		put_be32(blk, i);
		ok = send_req(fd, i % 3 ? 0 : NBD_CMD_FLAG_FUA, NBD_CMD_WRITE,
			      10000 + i, (uint64_t)i * BS, BS) &&
		     rawsock_send_all(fd, blk, BS);
	}
	static uint8_t seen[N];
	memset(seen, 0, sizeof(seen));
	unsigned good = 0;
	for (unsigned i = 0; ok && i < N; i++) {
		e = recv_reply(fd, &c);
		if (e == 0 && c >= 10000 && c < 10000 + N && !seen[c - 10000]) {
			seen[c - 10000] = 1;
			good++;
		}
	}
	check(ok && good == N, "%u pipelined writes: %u good replies", N, good);
	ok = blk != NULL;
	for (unsigned i = 0; ok && i < N; i++)
		ok = send_req(fd, 0, NBD_CMD_READ, 20000 + i, (uint64_t)i * BS,
			      BS);
	good = 0;
	for (unsigned i = 0; ok && i < N; i++) {
		e = recv_reply(fd, &c);
		if (e != 0 || rawsock_recv_all(fd, blk, BS) != 1)
			break;
		unsigned k = (unsigned)(c - 20000);
		if (c >= 20000 && c < 20000 + N && get_be32(blk) == k &&
		    blk[BS - 1] == (uint8_t)(k & 0xff))
			good++;
	}
	check(good == N, "%u pipelined reads: %u correct", N, good);
	free(blk);

	/* Oversized WRITE: its payload cannot be trusted; disconnect. */
	ok = send_req(fd, 0, NBD_CMD_WRITE, 42, 0, 32 * MIB + mb);
	check(ok && rawsock_closed_by_peer(fd), "WRITE longer than 32 MiB: "
					  "disconnected");
	close(fd);

	/* Bad request magic. */
	fd = connect_export(name, &ex);
	uint8_t bad[NBD_REQUEST_SIZE] = {0x12, 0x34, 0x56, 0x78};
	ok = fd >= 0 && rawsock_send_all(fd, bad, sizeof(bad));
	check(ok && rawsock_closed_by_peer(fd), "bad request magic: disconnected");
	if (fd >= 0)
		close(fd);

	/* Client vanishing with requests in flight. */
	fd = connect_export(name, &ex);
	ok = fd >= 0;
	for (unsigned i = 0; ok && i < 64; i++)
		ok = send_req(fd, 0, NBD_CMD_READ, i, 0, 1 * MIB);
	check(ok, "64 reads of 1 MiB sent, then hung up");
	if (fd >= 0)
		close(fd);

	/* DISC: in-flight requests are answered, then the server closes. */
	fd = connect_export(name, &ex);
	ok = fd >= 0 && send_req(fd, 0, NBD_CMD_FLUSH, 77, 0, 0) &&
	     send_req(fd, 0, NBD_CMD_DISC, 78, 0, 0);
	e = ok ? recv_reply(fd, &c) : -1;
	check(e == 0 && c == 77 && rawsock_closed_by_peer(fd),
	      "FLUSH then DISC: FLUSH answered, then closed");
	if (fd >= 0)
		close(fd);
}

static void test_readonly(const char *name)
{
	struct export ex;
	int fd = connect_export(name, &ex);
	check(fd >= 0, "GO %s", name);
	if (fd < 0)
		return;
	check(ex.flags & NBD_FLAG_READ_ONLY, "%s: READ_ONLY flag (0x%x)", name,
	      ex.flags);
	uint8_t *pay = calloc(1, ex.min_block);
	uint64_t c = 0;
	int64_t e = -1;
	if (pay && send_req(fd, 0, NBD_CMD_WRITE, 5, 0, ex.min_block) &&
	    rawsock_send_all(fd, pay, ex.min_block))
		e = recv_reply(fd, &c);
	free(pay);
	check(e == NBD_EPERM && c == 5, "WRITE to read-only: error %lld",
	      (long long)e);
	expect_error(fd, 0, NBD_CMD_TRIM, 0, ex.min_block, NBD_EPERM,
		     "TRIM of read-only");
	expect_error(fd, 0, NBD_CMD_WRITE_ZEROES, 0, ex.min_block, NBD_EPERM,
		     "WRITE_ZEROES of read-only");
	e = -1;
	uint8_t b[4096];
	if (send_req(fd, 0, NBD_CMD_READ, 6, 0, ex.min_block) &&
	    recv_reply(fd, &c) == 0 && c == 6)
		e = rawsock_recv_all(fd, b, ex.min_block) == 1 ? 0 : -1;
	check(e == 0, "READ of read-only");
	close(fd);
}

static int stall(const char *name)
{
	struct export ex;
	int fd = connect_export(name, &ex);
	if (fd < 0) {
		fprintf(stderr, "nbd_bad_input: cannot connect to %s\n", name);
		return 1;
	}
	uint32_t len = MIN(32 * MIB, (uint32_t)ex.size);
	for (unsigned i = 0; i < 64; i++)
		if (!send_req(fd, 0, NBD_CMD_READ, i, 0, len))
			break;
	printf("stalled\n");
	fflush(stdout);
	sleep(120);
	close(fd);
	return 0;
}

/* xorshift64*: deterministic, so a seed replays a run. */
static uint64_t fuzz_state;
static uint64_t fuzz_rnd(void)
{
	fuzz_state ^= fuzz_state >> 12;
	fuzz_state ^= fuzz_state << 25;
	fuzz_state ^= fuzz_state >> 27;
	return fuzz_state * 0x2545f4914f6cdd1dull;
}
static uint64_t fuzz_pick(uint64_t n)
{
	return fuzz_rnd() % n;
}

/* A length that is often valid, sometimes an edge, sometimes anything. */
static uint32_t fuzz_len(uint32_t mb)
{
	switch (fuzz_pick(6)) {
	case 0:
		return 0;
	case 1:
		return mb * (uint32_t)(1 + fuzz_pick(16));
	case 2:
		return (uint32_t)fuzz_pick(3 * mb);
	case 3:
		return 32 * MIB + (uint32_t)fuzz_pick(2) * mb;
	case 4:
		return (uint32_t)fuzz_rnd();
	default:
		return 4096 * (uint32_t)(1 + fuzz_pick(64));
	}
}

static uint64_t fuzz_off(const struct export *ex)
{
	switch (fuzz_pick(5)) {
	case 0:
		return ex->size;
	case 1:
		return ex->size - ex->min_block;
	case 2:
		return fuzz_rnd();
	case 3:
		return fuzz_pick(ex->size);
	default:
		return fuzz_pick(ex->size / ex->min_block) * ex->min_block;
	}
}

static void fuzz_round(const char *name)
{
	struct export ex;
	int fd;
	if (fuzz_pick(4) == 0) {
		/* Option haggling with random options and data. */
		fd = handshake_start();
		if (fd < 0)
			return;
		for (unsigned i = 0, n = 1 + (unsigned)fuzz_pick(8); i < n;
		     i++) {
			uint8_t d[64];
			uint32_t len = (uint32_t)fuzz_pick(sizeof(d));
			for (uint32_t k = 0; k < len; k++)
				d[k] = (uint8_t)fuzz_rnd();
			if (len >= 4 && fuzz_pick(2))
				put_be32(d, (uint32_t)fuzz_pick(len));
			uint32_t opt = (uint32_t)fuzz_pick(14);
			if (opt == NBD_OPT_EXPORT_NAME ||
			    opt == NBD_OPT_ABORT || !send_opt(fd, opt, d, len))
				break;
		}
		rawsock_drain(fd, 20);
		close(fd);
		return;
	}
	fd = connect_export(name, &ex);
	if (fd < 0)
		return;
	uint8_t *pay = calloc(1, 2 * MIB);
	for (unsigned i = 0, n = 1 + (unsigned)fuzz_pick(32); pay && i < n;
	     i++) {
		uint8_t r[NBD_REQUEST_SIZE];
		uint16_t type = (uint16_t)fuzz_pick(10);
		uint16_t flags = fuzz_pick(3) ? 0 : (uint16_t)fuzz_rnd();
		uint32_t len = fuzz_len(ex.min_block);
		put_be32(r, fuzz_pick(40) ? NBD_REQUEST_MAGIC
					  : (uint32_t)fuzz_rnd());
		put_be16(r + 4, flags);
		put_be16(r + 6, type);
		put_be64(r + 8, fuzz_rnd());
		put_be64(r + 16, fuzz_off(&ex));
		put_be32(r + 24, len);
		if (!rawsock_send_all(fd, r, sizeof(r)))
			break;
		if (type == NBD_CMD_WRITE && len <= 2 * MIB &&
		    !rawsock_send_all(fd, pay, len))
			break;
		if (type == NBD_CMD_DISC || fuzz_pick(50) == 0)
			break;
	}
	free(pay);
	if (fuzz_pick(3))
		rawsock_drain(fd, 20);
	close(fd); /* often with replies still coming */
}

static int fuzz(const char *name, unsigned rounds, uint64_t seed)
{
	fuzz_state = seed ? seed : 1;
	for (unsigned i = 0; i < rounds; i++)
		fuzz_round(name);
	printf("fuzz: %u rounds, seed %llu\n", rounds,
	       (unsigned long long)seed);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 7 && !strcmp(argv[1], "--fuzz")) {
		g_host = argv[2];
		g_port = argv[3];
		return fuzz(argv[4], (unsigned)strtoul(argv[5], NULL, 10),
			    strtoull(argv[6], NULL, 10));
	}
	if (argc == 5 && !strcmp(argv[1], "--stall")) {
		g_host = argv[2];
		g_port = argv[3];
		return stall(argv[4]);
	}
	if (argc < 4 || argc > 5) {
		fprintf(stderr, "usage: nbd_bad_input HOST PORT EXPORT "
				"[READONLY_EXPORT]\n");
		return 2;
	}
	g_host = argv[1];
	g_port = argv[2];
	test_handshake(argv[3]);
	test_requests(argv[3]);
	if (argc == 5)
		test_readonly(argv[4]);
	printf("%d failure(s)\n", g_failures);
	return g_failures ? 1 : 0;
}
