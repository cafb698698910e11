/* iscsi_bad_input: a raw-socket iSCSI initiator that sends what well-behaved
 * initiators never do and checks the target's answers (docs/iscsi.md, "Bad
 * input"). Run by tests/integration/iscsi_bad_input.sh.
 *
 *   iscsi_bad_input HOST PORT OPEN_IQN CHAP_IQN USER SECRET
 *   iscsi_bad_input --fuzz HOST PORT OPEN_IQN ROUNDS SEED
 *
 * OPEN_IQN has no CHAP; CHAP_IQN has CHAP USER/SECRET and mutual CHAP
 * configured. Prints one line per check; exits 0 only if all pass. Every
 * read has a timeout, so a target that stops answering fails the test
 * instead of hanging it. --fuzz sends seeded random PDUs after a login and
 * checks nothing itself: the caller checks the target survived. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "../../vaai/iscsi/iscsi_proto.h"
#include "lib_check.h"
#include "lib_rawsock.h"
#include "util.h"

#define TIMEOUT_S 10

static const char *g_host, *g_port;
static int g_failures;
#define check(ok, ...) tool_check(&g_failures, ok, __VA_ARGS__)
static bool g_hd, g_dd; /* digests in force on the current connection */
static uint32_t g_cmdsn, g_statsn;
static uint16_t g_tsih, g_cid; /* sent in the next login */
static uint16_t g_tsih_got;    /* from the last Login Response */

static int conn_open(void)
{
	g_hd = g_dd = false;
	return rawsock_open(g_host, g_port, TIMEOUT_S);
}

/* Sends a PDU: bhs (48 bytes; data length filled here), data, digests. */
static bool send_pdu(int fd, uint8_t *bhs, const void *data, uint32_t dlen,
		     bool corrupt_hd, bool corrupt_dd)
{
	uint8_t buf[ISCSI_BHS_SIZE + 4 + 65536 + 8];
	if (dlen > 65536)
		return false;
	bhs[5] = (uint8_t)(dlen >> 16);
	bhs[6] = (uint8_t)(dlen >> 8);
	bhs[7] = (uint8_t)dlen;
	size_t n = 0;
	memcpy(buf, bhs, ISCSI_BHS_SIZE);
	n += ISCSI_BHS_SIZE;
	if (g_hd) {
		iscsi_digest_put(buf + n, iscsi_digest(bhs, ISCSI_BHS_SIZE) ^
					      (corrupt_hd ? 1u : 0u));
		n += 4;
	}
	if (dlen) {
		memcpy(buf + n, data, dlen);
		uint32_t pad = iscsi_pad4(dlen);
		memset(buf + n + dlen, 0, pad);
		uint32_t crc = iscsi_digest(buf + n, dlen + pad);
		n += dlen + pad;
		if (g_dd) {
			iscsi_digest_put(buf + n, crc ^ (corrupt_dd ? 1u : 0u));
			n += 4;
		}
	}
	return rawsock_send_all(fd, buf, n);
}

/* Receives one PDU into bhs and data (up to cap); returns 1, 0 (EOF) or
 * -1. */
static int recv_pdu(int fd, uint8_t *bhs, uint8_t *data, size_t cap,
		    uint32_t *dlen)
{
	int r = rawsock_recv_all(fd, bhs, ISCSI_BHS_SIZE);
	if (r <= 0)
		return r;
	uint8_t tmp[4];
	if (g_hd && rawsock_recv_all(fd, tmp, 4) <= 0)
		return -1;
	uint32_t len =
	    ((uint32_t)bhs[5] << 16) | ((uint32_t)bhs[6] << 8) | bhs[7];
	uint32_t total = len + iscsi_pad4(len) + (g_dd && len ? 4 : 0);
	if (total > cap)
		return -1;
	if (total && rawsock_recv_all(fd, data, total) <= 0)
		return -1;
	*dlen = len;
	return 1;
}

struct login_opts {
	const char *iqn;
	const char *user, *secret; /* CHAP */
	bool mutual, reflect;	   /* send CHAP_I/C; reflect the target's */
	bool hd, dd;
};

static size_t kv(char *buf, size_t off, const char *k, const char *v)
{
	return off + (size_t)sprintf(buf + off, "%s=%s", k, v) + 1;
}

static void login_bhs(uint8_t *b, uint8_t flags, uint32_t itt)
{
	iscsi_pdu_init(b, ISCSI_OP_LOGIN_REQ | ISCSI_FLAG_IMMEDIATE, flags, 0);
	b[8] = 0x80; /* ISID: random format */
	b[9] = 0x12;
	b[13] = 0x01;
	put_be16(b + 14, g_tsih);
	put_be32(b + 16, itt);
	put_be16(b + 20, g_cid);
	put_be32(b + 24, g_cmdsn);
	put_be32(b + 28, g_statsn);
}

/* One login exchange; returns the status (class << 8 | detail), or -1 if
 * the connection failed. resp: the response text. */
static int login_step(int fd, uint8_t flags, const char *text, size_t tlen,
		      char *resp, size_t rcap, uint8_t *rflags)
{
	uint8_t b[ISCSI_BHS_SIZE], rb[ISCSI_BHS_SIZE];
	login_bhs(b, flags, 1);
	if (!send_pdu(fd, b, text, (uint32_t)tlen, false, false))
		return -1;
	uint32_t dlen = 0;
	if (recv_pdu(fd, rb, (uint8_t *)resp, rcap - 1, &dlen) != 1)
		return -1;
	if ((rb[0] & 0x3f) != ISCSI_OP_LOGIN_RSP)
		return -1;
	resp[dlen] = '\0';
	for (uint32_t i = 0; i < dlen; i++)
		if (!resp[i])
			resp[i] = '\n';
	g_statsn = get_be32(rb + 24) + 1;
	g_tsih_got = get_be16(rb + 14);
	*rflags = rb[1];
	return (rb[36] << 8) | rb[37];
}

static const char *find_key(const char *resp, const char *key, char *out,
			    size_t cap)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "%s=", key);
	const char *p = resp;
	while ((p = strstr(p, pat)) != NULL) {
		if (p == resp || p[-1] == '\n') {
			p += strlen(pat);
			size_t n = strcspn(p, "\n");
			if (n >= cap)
				n = cap - 1;
			memcpy(out, p, n);
			out[n] = '\0';
			return out;
		}
		p++;
	}
	return NULL;
}

/* Full login; returns the final status, or -1. */
static int do_login(int fd, const struct login_opts *o)
{
	char t[4096], r[8192], v[512];
	size_t n = 0;
	uint8_t rf;
	int st;
	g_cmdsn = 1;
	g_statsn = 0;
	n = kv(t, n, "InitiatorName", "iqn.2026-11.org.cairn:bad-input");
	n = kv(t, n, "TargetName", o->iqn);
	n = kv(t, n, "SessionType", "Normal");
	if (o->user) {
		n = kv(t, n, "AuthMethod", "CHAP,None");
		st = login_step(fd, 0x00 | 0x80 | 1, t, n, r, sizeof(r), &rf);
		if (st != 0)
			return st;
		if (!find_key(r, "AuthMethod", v, sizeof(v)) ||
		    strcmp(v, "CHAP"))
			return -1;
		n = kv(t, 0, "CHAP_A", "5");
		st = login_step(fd, 0x80 | 1, t, n, r, sizeof(r), &rf);
		if (st != 0)
			return st;
		char id_s[16], chal_s[512];
		if (!find_key(r, "CHAP_I", id_s, sizeof(id_s)) ||
		    !find_key(r, "CHAP_C", chal_s, sizeof(chal_s)))
			return -1;
		uint8_t chal[256], md[16];
		int cl = iscsi_chap_decode(chal_s, chal, sizeof(chal));
		if (cl <= 0)
			return -1;
		iscsi_chap_response((uint8_t)atoi(id_s), o->secret, chal,
				    (size_t)cl, md);
		char hex[40];
		iscsi_chap_encode(md, 16, hex, sizeof(hex));
		n = kv(t, 0, "CHAP_N", o->user);
		n = kv(t, n, "CHAP_R", hex);
		if (o->mutual) {
			n = kv(t, n, "CHAP_I", "7");
			n = kv(t, n, "CHAP_C",
			       o->reflect
				   ? chal_s
				   : "0x0f1e2d3c4b5a69788796a5b4c3d2e1f0");
		}
		st = login_step(fd, 0x80 | 1, t, n, r, sizeof(r), &rf);
		if (st != 0)
			return st;
		n = 0;
	}
	n = kv(t, n, "HeaderDigest", o->hd ? "CRC32C" : "None");
	n = kv(t, n, "DataDigest", o->dd ? "CRC32C" : "None");
	n = kv(t, n, "MaxRecvDataSegmentLength", "65536");
	n = kv(t, n, "InitialR2T", "Yes");
	n = kv(t, n, "ImmediateData", "Yes");
	n = kv(t, n, "MaxConnections", "2");
	st = login_step(fd, 0x80 | (1 << 2) | 3, t, n, r, sizeof(r), &rf);
	if (st == 0 && !(rf & 0x80))
		return -1;
	if (st == 0) {
		g_hd = o->hd;
		g_dd = o->dd;
	}
	return st;
}

/* NOP-Out ping; true if the NOP-In echoes it. */
static bool nop(int fd, uint32_t itt, const void *data, uint32_t dlen,
		bool corrupt_dd, uint8_t *reply_op, uint8_t *reason)
{
	uint8_t b[ISCSI_BHS_SIZE], rb[ISCSI_BHS_SIZE], rd[70000];
	iscsi_pdu_init(b, ISCSI_OP_NOP_OUT | ISCSI_FLAG_IMMEDIATE, 0x80, 0);
	put_be32(b + 16, itt);
	put_be32(b + 20, ISCSI_RSVD_TAG);
	put_be32(b + 24, g_cmdsn);
	put_be32(b + 28, g_statsn);
	if (!send_pdu(fd, b, data, dlen, false, corrupt_dd))
		return false;
	uint32_t rl = 0;
	if (recv_pdu(fd, rb, rd, sizeof(rd), &rl) != 1)
		return false;
	*reply_op = rb[0] & 0x3f;
	*reason = rb[2];
	if (*reply_op == ISCSI_OP_NOP_IN)
		return get_be32(rb + 16) == itt && rl == dlen &&
		       (!dlen || !memcmp(rd, data, dlen));
	return false;
}

static bool alive(const char *iqn)
{
	int fd = conn_open();
	if (fd < 0)
		return false;
	struct login_opts o = {.iqn = iqn};
	uint8_t op, reason;
	bool ok = do_login(fd, &o) == 0 &&
		  nop(fd, 99, "ping", 4, false, &op, &reason);
	close(fd);
	return ok;
}

static void scsi_cmd_bhs(uint8_t *b, uint32_t itt)
{
	/* Immediate: a dropped command does not leave a CmdSN hole. */
	iscsi_pdu_init(b, ISCSI_OP_SCSI_CMD | ISCSI_FLAG_IMMEDIATE, 0x80, 0);
	put_be32(b + 16, itt);
	put_be32(b + 20, 0);
	put_be32(b + 24, g_cmdsn);
	put_be32(b + 28, g_statsn);
	/* CDB: TEST UNIT READY (all zero). */
}

static int run_checks(const char *open_iqn, const char *chap_iqn,
		      const char *user, const char *secret)
{
	uint8_t b[ISCSI_BHS_SIZE], op = 0, reason = 0;
	int fd;

	/* Commands before login: the connection is dropped. */
	fd = conn_open();
	scsi_cmd_bhs(b, 1);
	send_pdu(fd, b, NULL, 0, false, false);
	check(rawsock_closed_by_peer(fd), "SCSI command before login: dropped");
	close(fd);

	fd = conn_open();
	iscsi_pdu_init(b, ISCSI_OP_TEXT_REQ, 0x80, 0);
	send_pdu(fd, b, "SendTargets=All", 16, false, false);
	check(rawsock_closed_by_peer(fd), "Text request before login: dropped");
	close(fd);

	/* Bad opcode before login: dropped; after: Reject, still usable. */
	fd = conn_open();
	iscsi_pdu_init(b, 0x3e, 0x80, 0);
	send_pdu(fd, b, NULL, 0, false, false);
	check(rawsock_closed_by_peer(fd), "bad opcode before login: dropped");
	close(fd);

	fd = conn_open();
	struct login_opts o = {.iqn = open_iqn};
	check(do_login(fd, &o) == 0, "login without CHAP");
	iscsi_pdu_init(b, 0x1c, 0x80, 0);
	put_be32(b + 16, 5);
	send_pdu(fd, b, NULL, 0, false, false);
	uint8_t rb[ISCSI_BHS_SIZE], rd[4096];
	uint32_t rl = 0;
	int r = recv_pdu(fd, rb, rd, sizeof(rd), &rl);
	check(r == 1 && (rb[0] & 0x3f) == ISCSI_OP_REJECT &&
		  rb[2] == ISCSI_REJECT_CMD_NOT_SUPPORTED && rl == 48 &&
		  rd[0] == 0x1c,
	      "bad opcode in full feature phase: Reject (reason 0x%02x)",
	      r == 1 ? rb[2] : 0);
	check(nop(fd, 6, "abc", 3, false, &op, &reason),
	      "connection still usable after the Reject");
	/* A SCSI command with the reserved ITT: Reject. */
	scsi_cmd_bhs(b, ISCSI_RSVD_TAG);
	send_pdu(fd, b, NULL, 0, false, false);
	r = recv_pdu(fd, rb, rd, sizeof(rd), &rl);
	check(r == 1 && (rb[0] & 0x3f) == ISCSI_OP_REJECT,
	      "SCSI command with the reserved ITT: Reject");
	/* Malformed AHS (length past the end): Reject. */
	scsi_cmd_bhs(b, 7);
	b[4] = 1; /* one word of AHS */
	uint8_t pdu[ISCSI_BHS_SIZE + 4];
	memcpy(pdu, b, ISCSI_BHS_SIZE);
	pdu[48] = 0, pdu[49] = 200, pdu[50] = 1, pdu[51] = 0;
	rawsock_send_all(fd, pdu, sizeof(pdu));
	r = recv_pdu(fd, rb, rd, sizeof(rd), &rl);
	check(r == 1 && (rb[0] & 0x3f) == ISCSI_OP_REJECT,
	      "SCSI command with a malformed AHS: Reject");
	/* Data-Out for a task that does not exist, with a TTT: Reject. */
	iscsi_pdu_init(b, ISCSI_OP_DATA_OUT, 0x80, 0);
	put_be32(b + 16, 4242);
	put_be32(b + 20, 77);
	send_pdu(fd, b, "xxxx", 4, false, false);
	r = recv_pdu(fd, rb, rd, sizeof(rd), &rl);
	check(r == 1 && (rb[0] & 0x3f) == ISCSI_OP_REJECT,
	      "Data-Out for an unknown task: Reject");
	/* Oversize data segment length: dropped. */
	iscsi_pdu_init(b, ISCSI_OP_NOP_OUT | ISCSI_FLAG_IMMEDIATE, 0x80, 0);
	put_be32(b + 16, 8);
	b[5] = 0xff, b[6] = 0xff, b[7] = 0xff;
	rawsock_send_all(fd, b, ISCSI_BHS_SIZE);
	check(rawsock_closed_by_peer(fd), "16 MiB data segment: dropped");
	close(fd);

	/* Truncated BHS, then the initiator goes away. */
	fd = conn_open();
	o = (struct login_opts){.iqn = open_iqn};
	do_login(fd, &o);
	rawsock_send_all(fd, b, 20);
	close(fd);
	check(alive(open_iqn), "truncated BHS then close: target alive");

	/* Truncated login request (BHS only, data promised). */
	fd = conn_open();
	login_bhs(b, 0x87, 1);
	b[7] = 100;
	rawsock_send_all(fd, b, ISCSI_BHS_SIZE);
	close(fd);
	check(alive(open_iqn), "truncated login data then close: alive");

	/* Header digest error: dropped (§ 7.8). */
	fd = conn_open();
	o = (struct login_opts){.iqn = open_iqn, .hd = true, .dd = true};
	check(do_login(fd, &o) == 0, "login with CRC32C digests");
	check(nop(fd, 9, "digest", 6, false, &op, &reason),
	      "NOP with good digests answered");
	iscsi_pdu_init(b, ISCSI_OP_NOP_OUT | ISCSI_FLAG_IMMEDIATE, 0x80, 0);
	put_be32(b + 16, 10);
	put_be32(b + 20, ISCSI_RSVD_TAG);
	/* Data digest error: Reject with Data-Digest-Error. */
	nop(fd, 10, "baddd", 5, true, &op, &reason);
	check(op == ISCSI_OP_REJECT && reason == ISCSI_REJECT_DATA_DIGEST,
	      "bad data digest: Reject reason 0x%02x", reason);
	check(nop(fd, 11, "again", 5, false, &op, &reason),
	      "still usable after a data digest error");
	send_pdu(fd, b, NULL, 0, true, false);
	check(rawsock_closed_by_peer(fd), "bad header digest: dropped");
	close(fd);

	/* CHAP refusals. */
	fd = conn_open();
	o = (struct login_opts){
	    .iqn = chap_iqn, .user = user, .secret = "wrong-secret-123456"};
	r = do_login(fd, &o);
	check(r == ISCSI_LOGIN_AUTH_FAILED, "wrong CHAP secret: status 0x%04x",
	      r);
	close(fd);
	fd = conn_open();
	o = (struct login_opts){
	    .iqn = chap_iqn, .user = user, .secret = "short"};
	r = do_login(fd, &o);
	check(r == ISCSI_LOGIN_AUTH_FAILED, "short CHAP secret: status 0x%04x",
	      r);
	close(fd);
	fd = conn_open();
	o = (struct login_opts){.iqn = chap_iqn,
				.user = user,
				.secret = secret,
				.mutual = true,
				.reflect = true};
	r = do_login(fd, &o);
	check(r == ISCSI_LOGIN_AUTH_FAILED,
	      "reflected CHAP challenge: status 0x%04x", r);
	close(fd);
	fd = conn_open();
	o = (struct login_opts){.iqn = chap_iqn};
	r = do_login(fd, &o);
	check(r == ISCSI_LOGIN_AUTH_FAILED,
	      "no CHAP on a CHAP target: status 0x%04x", r);
	close(fd);
	fd = conn_open();
	o = (struct login_opts){
	    .iqn = chap_iqn, .user = user, .secret = secret, .mutual = true};
	r = do_login(fd, &o);
	check(r == 0, "right CHAP secret, mutual: status 0x%04x", r);
	check(r == 0 && nop(fd, 12, "chap", 4, false, &op, &reason),
	      "CHAP session usable");
	close(fd);
	fd = conn_open();
	o = (struct login_opts){.iqn = "iqn.2026-11.org.cairn:nosuch"};
	r = do_login(fd, &o);
	check(r == ISCSI_LOGIN_NOT_FOUND, "unknown target: status 0x%04x", r);
	close(fd);

	/* Several connections in one session (MaxConnections=2). */
	int a = conn_open();
	o = (struct login_opts){.iqn = open_iqn};
	r = do_login(a, &o);
	uint16_t tsih = g_tsih_got;
	check(r == 0 && tsih != 0, "leading connection: TSIH %u", tsih);
	int b2 = conn_open();
	g_tsih = tsih, g_cid = 1;
	r = do_login(b2, &o);
	check(r == 0 && g_tsih_got == tsih,
	      "second connection joins the session: status 0x%04x", r);
	check(nop(b2, 21, "b", 1, false, &op, &reason),
	      "second connection answers");
	check(nop(a, 22, "a", 1, false, &op, &reason),
	      "first connection still answers");
	int c3 = conn_open();
	g_cid = 2;
	r = do_login(c3, &o);
	check(r == ISCSI_LOGIN_TOO_MANY_CONNS,
	      "third connection over MaxConnections: status 0x%04x", r);
	close(c3);
	int d = conn_open();
	g_tsih = (uint16_t)(tsih + 1000), g_cid = 0;
	r = do_login(d, &o);
	check(r == ISCSI_LOGIN_NO_SESSION, "unknown TSIH: status 0x%04x", r);
	close(d);
	g_tsih = 0, g_cid = 0;
	close(b2);
	close(a);

	check(alive(open_iqn), "target alive after all of the above");
	return g_failures ? 1 : 0;
}

static uint64_t rng_state;
static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)rng_state;
}

static int run_fuzz(const char *iqn, unsigned rounds, unsigned seed)
{
	rng_state = 0x9e3779b97f4a7c15ull ^ seed;
	static const uint8_t ops[] = {
	    ISCSI_OP_NOP_OUT,	 ISCSI_OP_SCSI_CMD, ISCSI_OP_TMF_REQ,
	    ISCSI_OP_LOGIN_REQ,	 ISCSI_OP_TEXT_REQ, ISCSI_OP_DATA_OUT,
	    ISCSI_OP_LOGOUT_REQ, ISCSI_OP_SNACK,    0x3d};
	for (unsigned i = 0; i < rounds; i++) {
		int fd = conn_open();
		if (fd < 0)
			return 1;
		struct login_opts o = {
		    .iqn = iqn, .hd = rnd() & 1, .dd = rnd() & 1};
		if (rnd() % 8 && do_login(fd, &o) != 0) {
			close(fd);
			continue;
		}
		unsigned npdu = 1 + rnd() % 20;
		for (unsigned k = 0; k < npdu; k++) {
			uint8_t b[ISCSI_BHS_SIZE], data[512];
			for (unsigned j = 0; j < sizeof(b); j++)
				b[j] = (uint8_t)rnd();
			b[0] = ops[rnd() % sizeof(ops)] |
			       (rnd() & 1 ? ISCSI_FLAG_IMMEDIATE : 0);
			b[4] = rnd() % 4 ? 0 : (uint8_t)(rnd() % 4);
			if (rnd() % 2) { /* plausible fields */
				put_be32(b + 24, g_cmdsn + k);
				b[8] = 0, b[9] = (uint8_t)(rnd() % 2);
				for (int j = 10; j < 16; j++)
					b[j] = 0;
				put_be32(b + 20, rnd() % 3 ? 4096 : rnd());
				b[32] = (uint8_t)(0x28 + (rnd() % 3) * 2);
			}
			uint32_t dlen = rnd() % 3 ? 0 : rnd() % sizeof(data);
			for (unsigned j = 0; j < dlen; j++)
				data[j] = (uint8_t)rnd();
			size_t ahs = (size_t)b[4] * 4;
			uint8_t pdu[ISCSI_BHS_SIZE + 16];
			if (ahs) {
				memcpy(pdu, b, ISCSI_BHS_SIZE);
				for (size_t j = 0; j < ahs; j++)
					pdu[ISCSI_BHS_SIZE + j] =
					    (uint8_t)rnd();
				b[5] = 0, b[6] = 0, b[7] = 0;
				pdu[5] = pdu[6] = pdu[7] = 0;
				rawsock_send_all(fd, pdu, ISCSI_BHS_SIZE + ahs);
				continue;
			}
			if (!send_pdu(fd, b, data, dlen, rnd() % 50 == 0,
				      rnd() % 50 == 0))
				break;
		}
		/* Read a little, then go away. */
		rawsock_drain(fd, 20);
		close(fd);
	}
	return 0;
}

/* Target-initiated NOP-In (§ 11.19), against a target configured to ping
 * after a short silence: one connection answers the pings and stays; one
 * leaves a WRITE waiting for its data (an R2T) and never answers: the
 * target must close it. */
static bool wait_pdu(int fd, uint8_t *rb, unsigned seconds)
{
	struct timeval tv = {.tv_sec = seconds};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	uint8_t rd[70000];
	uint32_t rl = 0;
	return recv_pdu(fd, rb, rd, sizeof(rd), &rl) == 1;
}

static bool is_ping(const uint8_t *rb)
{
	return (rb[0] & 0x3f) == ISCSI_OP_NOP_IN &&
	       get_be32(rb + 16) == ISCSI_RSVD_TAG &&
	       get_be32(rb + 20) != ISCSI_RSVD_TAG;
}

static int run_nop(const char *iqn)
{
	struct login_opts o = {.iqn = iqn};
	uint8_t b[ISCSI_BHS_SIZE], rb[ISCSI_BHS_SIZE], op = 0, reason = 0;
	int fd = conn_open();
	check(fd >= 0 && do_login(fd, &o) == 0, "nop: login");
	for (int i = 0; i < 2 && fd >= 0; i++) {
		/* The ping comes after the silence; answer it (§ 11.18:
		 * ITT reserved, its TTT, immediate). */
		bool got = wait_pdu(fd, rb, 30);
		check(got && is_ping(rb), "nop: ping %d from the target", i);
		if (!got)
			break;
		iscsi_pdu_init(b, ISCSI_OP_NOP_OUT | ISCSI_FLAG_IMMEDIATE,
			       0x80, 0);
		put_be32(b + 16, ISCSI_RSVD_TAG);
		put_be32(b + 20, get_be32(rb + 20));
		put_be32(b + 24, g_cmdsn);
		put_be32(b + 28, get_be32(rb + 24));
		check(send_pdu(fd, b, NULL, 0, false, false), "nop: answer");
	}
	check(fd >= 0 && nop(fd, 5, "alive", 5, false, &op, &reason),
	      "nop: an answering connection stays");
	if (fd >= 0)
		close(fd);

	/* A WRITE whose data never comes (InitialR2T=Yes: an R2T asks for
	 * it), then silence. */
	int fd2 = conn_open();
	g_hd = g_dd = false;
	check(fd2 >= 0 && do_login(fd2, &o) == 0, "nop: second login");
	scsi_cmd_bhs(b, 0x77);
	b[1] = 0x80 | 0x20; /* F, W */
	put_be32(b + 20, 65536);
	b[32] = 0x8a; /* WRITE (16), LBA 0, 16 blocks of 4096 / 128 of 512 */
	put_be32(b + 32 + 10, 128);
	check(fd2 >= 0 && send_pdu(fd2, b, NULL, 0, false, false),
	      "nop: WRITE sent");
	bool r2t = false, ping = false;
	while (fd2 >= 0 && wait_pdu(fd2, rb, 30)) {
		r2t |= (rb[0] & 0x3f) == ISCSI_OP_R2T;
		ping |= is_ping(rb);
	}
	check(r2t, "nop: R2T for the WRITE");
	check(ping, "nop: ping on the silent connection");
	check(fd2 >= 0 && rawsock_closed_by_peer(fd2),
	      "nop: the silent connection closed by the target");
	if (fd2 >= 0)
		close(fd2);
	g_hd = g_dd = false;
	check(alive(iqn), "nop: still serving");
	printf("%d check(s) failed\n", g_failures);
	return g_failures ? 1 : 0;
}

/* Text Request (SendTargets=All, or an empty continuation with ttt). */
static bool text_req(int fd, uint32_t itt, uint32_t ttt, const char *text)
{
	uint8_t b[ISCSI_BHS_SIZE];
	uint32_t dlen = text ? (uint32_t)strlen(text) + 1 : 0;
	iscsi_pdu_init(b, ISCSI_OP_TEXT_REQ | ISCSI_FLAG_IMMEDIATE, 0x80, dlen);
	put_be32(b + 16, itt);
	put_be32(b + 20, ttt);
	put_be32(b + 24, g_cmdsn);
	put_be32(b + 28, g_statsn);
	return send_pdu(fd, b, text, dlen, false, false);
}

/* A SendTargets answer longer than the MaxRecvDataSegmentLength we
 * declare (512) comes in pieces (RFC 7143 11.11: C=1 and a TTT until the
 * last, F=1); each piece is asked for with that TTT. A wrong TTT is
 * rejected; a new request drops the old answer. Expects ntargets names. */
static int run_text(unsigned ntargets)
{
	int fd = conn_open();
	char t[1024], r[8192];
	size_t n = 0;
	uint8_t rf = 0;
	g_cmdsn = 1;
	g_statsn = 0;
	n = kv(t, n, "InitiatorName", "iqn.2026-11.org.cairn:bad-input");
	n = kv(t, n, "SessionType", "Discovery");
	n = kv(t, n, "AuthMethod", "None");
	check(fd >= 0 && login_step(fd, 0x80 | 1, t, n, r, sizeof(r), &rf) == 0,
	      "text: security stage");
	n = kv(t, 0, "HeaderDigest", "None");
	n = kv(t, n, "DataDigest", "None");
	n = kv(t, n, "MaxRecvDataSegmentLength", "512");
	check(fd >= 0 &&
		  login_step(fd, 0x80 | (1 << 2) | 3, t, n, r, sizeof(r),
			     &rf) == 0 &&
		  (rf & 0x80),
	      "text: discovery login");
	if (g_failures) {
		if (fd >= 0)
			close(fd);
		return 1;
	}
	static char all[1 << 20];
	size_t got = 0;
	unsigned pieces = 0;
	uint8_t rb[ISCSI_BHS_SIZE];
	uint32_t ttt = ISCSI_RSVD_TAG;
	for (;;) {
		uint32_t dlen = 0;
		bool ok = text_req(fd, 0x51, ttt, pieces ? NULL : "SendTargets=All") &&
			  recv_pdu(fd, rb, (uint8_t *)all + got,
				   sizeof(all) - got, &dlen) == 1 &&
			  (rb[0] & 0x3f) == ISCSI_OP_TEXT_RSP &&
			  get_be32(rb + 16) == 0x51 && dlen <= 512;
		check(ok, "text: piece %u", pieces);
		if (!ok)
			break;
		g_statsn = get_be32(rb + 24) + 1;
		got += dlen;
		pieces++;
		bool final = rb[1] & 0x80, cont = rb[1] & 0x40;
		ttt = get_be32(rb + 20);
		if (final) {
			check(!cont && ttt == ISCSI_RSVD_TAG,
			      "text: last piece has C=0 and no TTT");
			break;
		}
		check(cont && ttt != ISCSI_RSVD_TAG,
		      "text: a non-final piece has C=1 and a TTT");
		if (!cont || ttt == ISCSI_RSVD_TAG || pieces > 10000)
			break;
		if (pieces == 2) {
			/* A continuation naming another TTT: Reject, and the
			 * real one still works. */
			uint32_t rl = 0;
			uint8_t rd[512];
			check(text_req(fd, 0x51, ttt ^ 0x5a5a, NULL) &&
				  recv_pdu(fd, rb, rd, sizeof(rd), &rl) == 1 &&
				  (rb[0] & 0x3f) == ISCSI_OP_REJECT &&
				  rb[2] == ISCSI_REJECT_INVALID_FIELD,
			      "text: a wrong TTT is rejected");
		}
	}
	unsigned names = 0;
	for (size_t i = 0; i + 11 <= got; i++)
		if ((i == 0 || all[i - 1] == '\0') &&
		    !memcmp(all + i, "TargetName=", 11))
			names++;
	check(pieces > 1, "text: the answer came in %u pieces", pieces);
	check(names == ntargets, "text: %u target names, want %u", names,
	      ntargets);
	/* Start over, then a new request before the end: the old answer is
	 * dropped and the new one is whole. */
	uint32_t dlen = 0;
	check(text_req(fd, 0x52, ISCSI_RSVD_TAG, "SendTargets=All") &&
		  recv_pdu(fd, rb, (uint8_t *)all, sizeof(all), &dlen) == 1 &&
		  (rb[1] & 0x40),
	      "text: a second request, first piece");
	g_statsn = get_be32(rb + 24) + 1;
	uint32_t old_ttt = get_be32(rb + 20);
	check(text_req(fd, 0x53, ISCSI_RSVD_TAG, "SendTargets=All") &&
		  recv_pdu(fd, rb, (uint8_t *)all, sizeof(all), &dlen) == 1 &&
		  (rb[0] & 0x3f) == ISCSI_OP_TEXT_RSP && get_be32(rb + 16) == 0x53,
	      "text: a new request while one is pending");
	g_statsn = get_be32(rb + 24) + 1;
	uint8_t rd[512];
	check(text_req(fd, 0x52, old_ttt, NULL) &&
		  recv_pdu(fd, rb, rd, sizeof(rd), &dlen) == 1 &&
		  (rb[0] & 0x3f) == ISCSI_OP_REJECT,
	      "text: the dropped answer's TTT is rejected");
	close(fd);
	printf("text: %u targets in %u pieces of at most 512 bytes\n", names,
	       pieces);
	printf("%d check(s) failed\n", g_failures);
	return g_failures ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "--nop") == 0) {
		g_host = argv[2];
		g_port = argv[3];
		return run_nop(argv[4]);
	}
	if (argc == 5 && strcmp(argv[1], "--text") == 0) {
		g_host = argv[2];
		g_port = argv[3];
		return run_text((unsigned)atoi(argv[4]));
	}
	if (argc == 7 && strcmp(argv[1], "--fuzz") == 0) {
		g_host = argv[2];
		g_port = argv[3];
		return run_fuzz(argv[4], (unsigned)atoi(argv[5]),
				(unsigned)atoi(argv[6]));
	}
	if (argc != 7) {
		fprintf(stderr,
			"usage: %s HOST PORT OPEN_IQN CHAP_IQN USER SECRET\n"
			"       %s --fuzz HOST PORT OPEN_IQN ROUNDS SEED\n"
			"       %s --nop HOST PORT IQN\n"
			"       %s --text HOST PORT NTARGETS\n",
			argv[0], argv[0], argv[0], argv[0]);
		return 2;
	}
	g_host = argv[1];
	g_port = argv[2];
	int rc = run_checks(argv[3], argv[4], argv[5], argv[6]);
	printf("%d check(s) failed\n", g_failures);
	return rc;
}
