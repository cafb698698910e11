/* Unit tests of the iSCSI target's pure parts (vaai/iscsi/iscsi_proto.h):
 * PDU codec and digests, text keys and negotiation, CHAP with its
 * refusals, configuration validation. No socket, no loop. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../vaai/iscsi/iscsi_proto.h"
#include "check.h"
#include "util.h"

int failures;

static void test_bhs(void)
{
	uint8_t b[ISCSI_BHS_SIZE] = {0};
	struct iscsi_bhs h;
	b[0] = ISCSI_OP_SCSI_CMD | ISCSI_FLAG_IMMEDIATE;
	b[1] = 0x80 | ISCSI_CMD_READ;
	b[4] = 2; /* 8 bytes of AHS */
	b[5] = 0x01, b[6] = 0x02, b[7] = 0x03;
	b[9] = 7; /* LUN 7 */
	put_be32(b + 16, 0xdeadbeef);
	CHECK_EQ(iscsi_pdu_decode_bhs(b, &h), 0);
	CHECK_EQ(h.opcode, ISCSI_OP_SCSI_CMD);
	CHECK(h.immediate);
	CHECK_EQ(h.ahs_len, 2);
	CHECK_EQ(h.dlen, 0x010203);
	CHECK_EQ(h.itt, 0xdeadbeef);
	CHECK_EQ(iscsi_pdu_lun_decode(h.lun_raw), 7);
	/* rest: 8 AHS + 4 hd + 0x010203 data + 1 pad + 4 dd */
	CHECK_EQ(iscsi_pdu_rest_len(&h, true, true), 8 + 4 + 0x010203 + 1 + 4);
	CHECK_EQ(iscsi_pdu_rest_len(&h, false, false), 8 + 0x010203 + 1);
	h.dlen = 0; /* no data digest without data */
	CHECK_EQ(iscsi_pdu_rest_len(&h, false, true), 8);

	b[0] = ISCSI_OP_SCSI_RSP; /* a target opcode */
	CHECK_EQ(iscsi_pdu_decode_bhs(b, &h), -EINVAL);
	b[0] = 0x3e;
	CHECK_EQ(iscsi_pdu_decode_bhs(b, &h), -EINVAL);
	b[0] = 0x80 | ISCSI_OP_NOP_OUT; /* reserved bit */
	CHECK_EQ(iscsi_pdu_decode_bhs(b, &h), -EINVAL);

	CHECK_EQ(iscsi_pad4(0), 0);
	CHECK_EQ(iscsi_pad4(1), 3);
	CHECK_EQ(iscsi_pad4(4), 0);
	CHECK_EQ(iscsi_pad4(7), 1);
}

static void test_lun(void)
{
	uint8_t raw[8];
	for (uint64_t l = 0; l < 16384; l += 37) {
		iscsi_pdu_lun_encode(l, raw);
		CHECK_EQ(iscsi_pdu_lun_decode(raw), l);
	}
	memset(raw, 0, 8);
	raw[0] = 0xc0; /* extended addressing: not ours */
	CHECK_EQ(iscsi_pdu_lun_decode(raw), UINT64_MAX);
	memset(raw, 0, 8);
	raw[3] = 1; /* second level */
	CHECK_EQ(iscsi_pdu_lun_decode(raw), UINT64_MAX);
}

static void test_ahs(void)
{
	uint8_t bhs[ISCSI_BHS_SIZE] = {0}, cdb[32];
	for (int i = 0; i < 16; i++)
		bhs[32 + i] = (uint8_t)i;
	/* Extended CDB of 16 more bytes: AHSLength 17, type 1, reserved,
	 * 16 bytes, padded to 20. */
	uint8_t ahs[20] = {0, 17, ISCSI_AHS_EXT_CDB, 0};
	for (int i = 0; i < 16; i++)
		ahs[4 + i] = (uint8_t)(16 + i);
	int n = iscsi_pdu_cdb(bhs, ahs, sizeof(ahs), cdb, sizeof(cdb));
	CHECK_EQ(n, 32);
	for (int i = 0; i < 32; i++)
		CHECK_EQ(cdb[i], i);
	CHECK_EQ(iscsi_pdu_cdb(bhs, NULL, 0, cdb, sizeof(cdb)), 16);
	/* Truncated: AHSLength past the end. */
	uint8_t bad[8] = {0, 40, ISCSI_AHS_EXT_CDB, 0};
	CHECK_EQ(iscsi_pdu_cdb(bhs, bad, sizeof(bad), cdb, sizeof(cdb)),
		 -EINVAL);
	/* Extended CDB too long for SCSI_CDB_MAX. */
	uint8_t big[40] = {0, 33, ISCSI_AHS_EXT_CDB, 0};
	CHECK_EQ(iscsi_pdu_cdb(bhs, big, sizeof(big), cdb, sizeof(cdb)),
		 -EINVAL);
	/* Unknown type, zero length, short tail. */
	uint8_t unk[8] = {0, 4, 9, 0};
	CHECK_EQ(iscsi_pdu_cdb(bhs, unk, sizeof(unk), cdb, sizeof(cdb)),
		 -EINVAL);
	uint8_t zero[4] = {0, 0, 1, 0};
	CHECK_EQ(iscsi_pdu_cdb(bhs, zero, sizeof(zero), cdb, sizeof(cdb)),
		 -EINVAL);
	/* Bidirectional read length. */
	uint8_t bidi[8] = {0, 5, ISCSI_AHS_BIDI_LEN, 0, 0, 0, 0x10, 0};
	const uint8_t *ext;
	size_t el;
	uint32_t bl;
	CHECK_EQ(iscsi_pdu_parse_ahs(bidi, sizeof(bidi), &ext, &el, &bl), 0);
	CHECK_EQ(bl, 0x1000);
}

static void test_digest(void)
{
	/* RFC 3720 B.4 / the standard check value. */
	CHECK_EQ(iscsi_digest("123456789", 9), 0xe3069283u);
	/* 32 bytes of zeroes: RFC 3720 B.4 gives aa 36 91 8a on the wire. */
	uint8_t z[32] = {0}, out[4];
	iscsi_digest_put(out, iscsi_digest(z, sizeof(z)));
	CHECK_EQ(out[0], 0xaa);
	CHECK_EQ(out[1], 0x36);
	CHECK_EQ(out[2], 0x91);
	CHECK_EQ(out[3], 0x8a);
	CHECK_EQ(iscsi_digest_get(out), iscsi_digest(z, sizeof(z)));
	/* Chained = whole. */
	char buf[10000];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (char)(i * 7);
	CHECK_EQ(iscsi_digest2(buf, 4321, buf + 4321, sizeof(buf) - 4321),
		 iscsi_digest(buf, sizeof(buf)));
	CHECK_EQ(iscsi_digest2(buf, 10, NULL, 0), iscsi_digest(buf, 10));
}

static void test_keys_parse(void)
{
	struct iscsi_kv kv[8];
	char a[] = "A=1\0Bb=two\0C=\0";
	CHECK_EQ(iscsi_keys_parse(a, sizeof(a) - 1, kv, 8), 3);
	CHECK(!strcmp(iscsi_keys_get(kv, 3, "Bb"), "two"));
	CHECK(!strcmp(iscsi_keys_get(kv, 3, "C"), ""));
	CHECK(iscsi_keys_get(kv, 3, "D") == NULL);
	char nonul[] = "X=1\0Y=2"; /* no final NUL: tolerated */
	CHECK_EQ(iscsi_keys_parse(nonul, sizeof(nonul) - 1, kv, 8), 2);
	char noeq[] = "A=1\0B\0";
	CHECK_EQ(iscsi_keys_parse(noeq, sizeof(noeq) - 1, kv, 8), -EINVAL);
	char empty_key[] = "=1\0";
	CHECK_EQ(iscsi_keys_parse(empty_key, sizeof(empty_key) - 1, kv, 8),
		 -EINVAL);
	char dup[] = "A=1\0A=2\0";
	CHECK_EQ(iscsi_keys_parse(dup, sizeof(dup) - 1, kv, 8), -EINVAL);
	char badch[] = "A B=1\0";
	CHECK_EQ(iscsi_keys_parse(badch, sizeof(badch) - 1, kv, 8), -EINVAL);
	char many[] = "A=1\0B=1\0C=1\0";
	CHECK_EQ(iscsi_keys_parse(many, sizeof(many) - 1, kv, 2), -EINVAL);
	char blank[] = "\0\0\0";
	CHECK_EQ(iscsi_keys_parse(blank, sizeof(blank) - 1, kv, 8), 0);
	char mid[] = "A=1\0\0B=2\0";
	CHECK_EQ(iscsi_keys_parse(mid, sizeof(mid) - 1, kv, 8), -EINVAL);
}

static const struct iscsi_limits lim = {
    .max_recv_dsl = 262144,
    .max_burst = 1 << 20,
    .first_burst = 256 << 10,
    .max_connections = 8,
    .max_outstanding_r2t = 16,
    .immediate_data = true,
    .initial_r2t = false,
};

static const char *neg(struct iscsi_params *p, const char *k, const char *v)
{
	static char out[256];
	struct iscsi_text t = {0};
	int r = iscsi_keys_negotiate(p, &lim, k, v, &t);
	if (r != 1 || !t.len) {
		iscsi_text_free(&t);
		return r == 1 ? "" : "(not operational)";
	}
	const char *eq = strchr(t.buf, '=');
	snprintf(out, sizeof(out), "%s", eq ? eq + 1 : t.buf);
	iscsi_text_free(&t);
	return out;
}

static void test_negotiate(void)
{
	struct iscsi_params p;
	iscsi_params_default(&p, &lim);
	CHECK(!strcmp(neg(&p, "HeaderDigest", "CRC32C,None"), "CRC32C"));
	CHECK(p.header_digest);
	CHECK(!strcmp(neg(&p, "DataDigest", "None,CRC32C"), "None"));
	CHECK(!p.data_digest);
	CHECK(!strcmp(neg(&p, "DataDigest", "MD5"), "Reject"));
	CHECK(!strcmp(neg(&p, "MaxConnections", "100"), "8"));
	CHECK_EQ(p.max_connections, 8);
	CHECK(!strcmp(neg(&p, "MaxConnections", "0"), "Reject"));
	CHECK(!strcmp(neg(&p, "InitialR2T", "No"), "No"));
	CHECK(!p.initial_r2t);
	CHECK(!strcmp(neg(&p, "InitialR2T", "Yes"), "Yes"));  /* OR */
	CHECK(!strcmp(neg(&p, "ImmediateData", "No"), "No")); /* AND */
	CHECK(!p.immediate_data);
	CHECK(!strcmp(neg(&p, "ImmediateData", "maybe"), "Reject"));
	CHECK(!strcmp(neg(&p, "MaxBurstLength", "16776192"), "1048576"));
	CHECK(!strcmp(neg(&p, "FirstBurstLength", "65536"), "65536"));
	CHECK(!strcmp(neg(&p, "FirstBurstLength", "16777216"), "Reject"));
	CHECK(!strcmp(neg(&p, "DefaultTime2Wait", "2"), "2"));	  /* max */
	CHECK(!strcmp(neg(&p, "DefaultTime2Retain", "20"), "0")); /* min */
	CHECK(!strcmp(neg(&p, "MaxOutstandingR2T", "1"), "1"));
	CHECK(!strcmp(neg(&p, "ErrorRecoveryLevel", "2"), "0"));
	CHECK(!strcmp(neg(&p, "DataPDUInOrder", "No"), "Yes"));
	CHECK(!strcmp(neg(&p, "DataSequenceInOrder", "No"), "Yes"));
	CHECK(!strcmp(neg(&p, "MaxRecvDataSegmentLength", "65536"), ""));
	CHECK_EQ(p.max_send_dsl, 65536);
	CHECK(!strcmp(neg(&p, "MaxRecvDataSegmentLength", "1"), "Reject"));
	CHECK(!strcmp(neg(&p, "MaxRecvDataSegmentLength", "-5"), "Reject"));
	CHECK(!strcmp(neg(&p, "MaxRecvDataSegmentLength", "0x10000"), ""));
	CHECK(!strcmp(neg(&p, "OFMarker", "Yes"), "No"));
	CHECK(!strcmp(neg(&p, "X-com.example", "1"), "(not operational)"));
	/* FirstBurstLength <= MaxBurstLength */
	p.first_burst = 1 << 20;
	p.max_burst = 65536;
	iscsi_keys_finish(&p);
	CHECK_EQ(p.first_burst, 65536);
	/* Discovery sessions: session keys are irrelevant. */
	iscsi_params_default(&p, &lim);
	p.discovery = true;
	CHECK(!strcmp(neg(&p, "MaxBurstLength", "512"), "Irrelevant"));
	CHECK(!strcmp(neg(&p, "HeaderDigest", "None"), "None"));
}

static void test_chap_codec(void)
{
	uint8_t out[64];
	CHECK_EQ(iscsi_chap_decode("0x0102ff", out, sizeof(out)), 3);
	CHECK_EQ(out[2], 0xff);
	CHECK_EQ(iscsi_chap_decode("0x102", out, sizeof(out)), 2); /* odd */
	CHECK_EQ(out[0], 0x01);
	CHECK_EQ(iscsi_chap_decode("0bAQID", out, sizeof(out)), 3);
	CHECK_EQ(out[0], 1);
	CHECK_EQ(out[2], 3);
	CHECK_EQ(iscsi_chap_decode("0bAQI=", out, sizeof(out)), 2);
	CHECK_EQ(iscsi_chap_decode("0xzz", out, sizeof(out)), -EINVAL);
	CHECK_EQ(iscsi_chap_decode("12", out, sizeof(out)), -EINVAL);
	CHECK_EQ(iscsi_chap_decode("0x", out, sizeof(out)), -EINVAL);
	CHECK_EQ(iscsi_chap_decode("0x010203", out, 2), -EINVAL);
	char hex[16];
	uint8_t in[3] = {0xab, 0x01, 0x00};
	iscsi_chap_encode(in, 3, hex, sizeof(hex));
	CHECK(!strcmp(hex, "0xab0100"));
	/* RFC 1994 MD5 of id || secret || challenge, cross-checked with
	 * `printf '\x01secretsecret\x02\x03' | md5sum`. */
	uint8_t md[16], ch[2] = {2, 3};
	CHECK_EQ(iscsi_chap_response(1, "secretsecret", ch, 2, md), 0);
	char mh[40];
	iscsi_chap_encode(md, 16, mh, sizeof(mh));
	CHECK(!strcmp(mh, "0x4e0fa60928ffa35cd05aed34a0fa6226"));
}

static void test_chap_secrets(void)
{
	char err[128];
	CHECK_EQ(iscsi_chap_check_secrets("u", "0123456789ab", NULL, NULL, err,
					  sizeof(err)),
		 0);
	CHECK_EQ(iscsi_chap_check_secrets("u", "short", NULL, NULL, err,
					  sizeof(err)),
		 -EINVAL);
	CHECK(strstr(err, "12") != NULL);
	CHECK_EQ(iscsi_chap_check_secrets("", "0123456789ab", NULL, NULL, err,
					  sizeof(err)),
		 -EINVAL);
	CHECK_EQ(iscsi_chap_check_secrets("u", "0123456789ab", "m",
					  "0123456789ab", err, sizeof(err)),
		 -EINVAL); /* identical inbound/outbound */
	CHECK(strstr(err, "differ") != NULL);
	CHECK_EQ(iscsi_chap_check_secrets("u", "0123456789ab", "m", "tooshort",
					  err, sizeof(err)),
		 -EINVAL);
	CHECK_EQ(iscsi_chap_check_secrets("u", "0123456789ab", "m",
					  "ba9876543210", err, sizeof(err)),
		 0);
}

/* Plays the initiator: answers the target's challenge with `secret`. */
static void answer(const struct iscsi_chap *c, const char *secret, char *r,
		   size_t rl)
{
	uint8_t md[16];
	iscsi_chap_response(c->id, secret, c->chal, sizeof(c->chal), md);
	iscsi_chap_encode(md, 16, r, rl);
}

static void test_chap_exchange(void)
{
	const char *user = "alice", *secret = "alice-secret-0123";
	const char *muser = "target", *msecret = "target-secret-456";
	uint8_t rnd[17];
	for (int i = 0; i < 17; i++)
		rnd[i] = (uint8_t)(i * 13 + 1);
	char err[128], r[40];
	struct iscsi_text t = {0};
	struct iscsi_chap c = {0};

	/* CHAP_A without MD5 */
	CHECK_EQ(iscsi_chap_start(&c, "7,6", rnd, &t, err, sizeof(err)),
		 -EACCES);
	/* one-way, right secret */
	CHECK_EQ(iscsi_chap_start(&c, "7,5", rnd, &t, err, sizeof(err)), 0);
	CHECK(t.len && strstr(t.buf, "CHAP_A") &&
	      memmem(t.buf, t.len, "CHAP_C=0x", 9));
	answer(&c, secret, r, sizeof(r));
	CHECK_EQ(iscsi_chap_finish(&c, user, secret, NULL, NULL, user, r, NULL,
				   NULL, &t, err, sizeof(err)),
		 0);
	/* a second answer to the same challenge is refused */
	CHECK_EQ(iscsi_chap_finish(&c, user, secret, NULL, NULL, user, r, NULL,
				   NULL, &t, err, sizeof(err)),
		 -EACCES);
	/* wrong secret */
	iscsi_chap_start(&c, "5", rnd, &t, err, sizeof(err));
	answer(&c, "wrong-secret-000", r, sizeof(r));
	CHECK_EQ(iscsi_chap_finish(&c, user, secret, NULL, NULL, user, r, NULL,
				   NULL, &t, err, sizeof(err)),
		 -EACCES);
	/* wrong user */
	iscsi_chap_start(&c, "5", rnd, &t, err, sizeof(err));
	answer(&c, secret, r, sizeof(r));
	CHECK_EQ(iscsi_chap_finish(&c, user, secret, NULL, NULL, "mallory", r,
				   NULL, NULL, &t, err, sizeof(err)),
		 -EACCES);
	/* mutual: the target answers the initiator's challenge */
	iscsi_chap_start(&c, "5", rnd, &t, err, sizeof(err));
	answer(&c, secret, r, sizeof(r));
	iscsi_text_free(&t);
	CHECK_EQ(iscsi_chap_finish(&c, user, secret, muser, msecret, user, r,
				   "77", "0x00112233445566778899aabbccddeeff",
				   &t, err, sizeof(err)),
		 0);
	uint8_t ich[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
			   0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
	uint8_t md[16];
	char want[40];
	iscsi_chap_response(77, msecret, ich, 16, md);
	iscsi_chap_encode(md, 16, want, sizeof(want));
	CHECK(t.len && memmem(t.buf, t.len, want, strlen(want)));
	CHECK(memmem(t.buf, t.len, "CHAP_N=target", 13) != NULL);
	/* mutual, reflected challenge: refused */
	iscsi_chap_start(&c, "5", rnd, &t, err, sizeof(err));
	answer(&c, secret, r, sizeof(r));
	char refl[40];
	iscsi_chap_encode(c.chal, 16, refl, sizeof(refl));
	CHECK_EQ(iscsi_chap_finish(&c, user, secret, muser, msecret, user, r,
				   "1", refl, &t, err, sizeof(err)),
		 -EACCES);
	CHECK(strstr(err, "reflect") != NULL);
	/* mutual asked but not configured */
	iscsi_chap_start(&c, "5", rnd, &t, err, sizeof(err));
	answer(&c, secret, r, sizeof(r));
	CHECK_EQ(iscsi_chap_finish(&c, user, secret, NULL, NULL, user, r, "1",
				   "0x0102030405060708090a0b0c0d0e0f10", &t,
				   err, sizeof(err)),
		 -EACCES);
	/* response before any challenge */
	struct iscsi_chap fresh = {0};
	CHECK_EQ(iscsi_chap_finish(&fresh, user, secret, NULL, NULL, user, r,
				   NULL, NULL, &t, err, sizeof(err)),
		 -EACCES);
	iscsi_text_free(&t);
}

static void test_config(void)
{
	char err[256];
	struct iscsi_config *c;
	const char *good =
	    "{\"portal\": \"127.0.0.1:0\", \"targets\": [{\"name\": "
	    "\"iqn.2026-11.org.cairn:a\", \"luns\": {\"0\": \"vd0\", \"3\": "
	    "\"vd1\"}, \"initiators\": [\"iqn.1994-05.com.redhat:x\"], "
	    "\"chap\": {\"user\": \"u\", \"secret\": \"0123456789abcdef\"}}]}";
	CHECK_EQ(iscsi_config_parse(good, strlen(good), &c, err, sizeof(err)),
		 0);
	if (c) {
		CHECK_EQ(c->port, 0);
		CHECK(!strcmp(c->host, "127.0.0.1"));
		CHECK_EQ(c->ntargets, 1);
		CHECK_EQ(c->targets[0].nluns, 2);
		CHECK(iscsi_config_allows(&c->targets[0],
					  "IQN.1994-05.com.redhat:x"));
		CHECK(!iscsi_config_allows(&c->targets[0], "iqn.2000-01.x:y"));
		CHECK_EQ(c->nop_interval_ms, ISCSI_NOP_INTERVAL_MS);
		CHECK_EQ(c->nop_timeout_ms, ISCSI_NOP_TIMEOUT_MS);
		iscsi_config_free(c);
	}
	const char *nop = "{\"nop_interval_ms\": 0, \"nop_timeout_ms\": 100, "
			  "\"targets\": [{\"name\": \"iqn.2026-11.x:a\", "
			  "\"luns\": {\"0\": \"v\"}, \"initiators\": [\"*\"]}]}";
	CHECK_EQ(iscsi_config_parse(nop, strlen(nop), &c, err, sizeof(err)), 0);
	if (c) {
		CHECK_EQ(c->nop_interval_ms, 0);
		CHECK_EQ(c->nop_timeout_ms, 100);
		iscsi_config_free(c);
	}
	static const struct {
		const char *json, *msg;
	} bad[] = {
	    {"{", "line"},
	    {"{\"nop_interval_ms\": 99, \"targets\": []}", "nop_interval_ms"},
	    {"{\"nop_timeout_ms\": 0, \"targets\": []}", "nop_timeout_ms"},
	    {"{\"nop_timeout_ms\": 3600001, \"targets\": []}",
	     "nop_timeout_ms"},
	    {"{\"nop_interval_ms\": 1.5, \"targets\": []}", "nop_interval_ms"},
	    {"{\"targets\": []}", "targets"},
	    {"{\"portal\": \"nohost\", \"targets\": []}", "portal"},
	    {"{\"targets\": [{\"name\": \"bad name\", \"luns\": {\"0\": "
	     "\"v\"}, \"initiators\": [\"*\"]}]}",
	     "iSCSI name"},
	    {"{\"targets\": [{\"name\": \"iqn.2026-11.x:a\", \"luns\": {\"x\": "
	     "\"v\"}, \"initiators\": [\"*\"]}]}",
	     "LUN"},
	    {"{\"targets\": [{\"name\": \"iqn.2026-11.x:a\", \"luns\": {\"0\": "
	     "\"v\"}, \"initiators\": []}]}",
	     "initiators"},
	    {"{\"targets\": [{\"name\": \"iqn.2026-11.x:a\", \"luns\": {\"0\": "
	     "\"v\"}, \"initiators\": [\"*\"], \"chap\": {\"user\": \"u\", "
	     "\"secret\": \"short\"}}]}",
	     "12"},
	    {"{\"targets\": [{\"name\": \"iqn.2026-11.x:a\", \"luns\": {\"0\": "
	     "\"v\"}, \"initiators\": [\"*\"], \"chap\": {\"user\": \"u\", "
	     "\"secret\": \"0123456789abc\", \"mutual_user\": \"t\", "
	     "\"mutual_secret\": \"0123456789abc\"}}]}",
	     "differ"},
	    {"{\"targets\": [{\"name\": \"iqn.2026-11.x:a\", \"luns\": {\"0\": "
	     "\"v\"}, \"initiators\": [\"*\"], \"bogus\": 1}]}",
	     "bogus"},
	    {"{\"targets\": [{\"name\": \"iqn.2026-11.x:a\", \"luns\": {\"0\": "
	     "\"v\"}, \"initiators\": [\"*\"]}, {\"name\": "
	     "\"IQN.2026-11.x:A\", "
	     "\"luns\": {\"0\": \"v\"}, \"initiators\": [\"*\"]}]}",
	     "twice"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		err[0] = '\0';
		c = NULL;
		int rc = iscsi_config_parse(bad[i].json, strlen(bad[i].json),
					    &c, err, sizeof(err));
		CHECK(rc < 0);
		if (!strstr(err, bad[i].msg)) {
			fprintf(stderr, "config case %zu: '%s' lacks '%s'\n", i,
				err, bad[i].msg);
			failures++;
		}
	}
	CHECK(iscsi_name_valid("iqn.2026-11.org.cairn:x"));
	CHECK(iscsi_name_valid("eui.0123456789abcdef"));
	CHECK(!iscsi_name_valid("foo.bar"));
	CHECK(!iscsi_name_valid("iqn.a b"));
}

int main(void)
{
	test_bhs();
	test_lun();
	test_ahs();
	test_digest();
	test_keys_parse();
	test_negotiate();
	test_chap_codec();
	test_chap_secrets();
	test_chap_exchange();
	test_config();
	if (failures) {
		fprintf(stderr, "%d check(s) failed\n", failures);
		return 1;
	}
	printf("test_iscsi: all passed\n");
	return 0;
}
