/* NBD wire codec and request validation (sds/nbd/nbd_proto.c): byte
 * buffers in, decisions out; no socket, no engine. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../../sds/nbd/nbd_proto.h"
#include "util.h"

#include "check.h"

int failures;

static void test_hello_and_flags(void)
{
	uint8_t b[NBD_HELLO_SIZE];
	nbd_proto_put_hello(b, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	CHECK(!memcmp(b, "NBDMAGICIHAVEOPT", 16));
	CHECK_EQ(get_be16(b + 16), 3);

	uint16_t hs = NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES;
	CHECK(nbd_proto_client_flags_ok(0, hs));
	CHECK(nbd_proto_client_flags_ok(NBD_FLAG_C_FIXED_NEWSTYLE, hs));
	CHECK(nbd_proto_client_flags_ok(3, hs));
	CHECK(!nbd_proto_client_flags_ok(4, hs));
	CHECK(!nbd_proto_client_flags_ok(0x80000000u, hs));
	/* NO_ZEROES only if the server offered it. */
	CHECK(!nbd_proto_client_flags_ok(NBD_FLAG_C_NO_ZEROES,
					 NBD_FLAG_FIXED_NEWSTYLE));
}

static void test_options(void)
{
	uint8_t h[NBD_OPT_HEADER_SIZE];
	struct nbd_option o;
	put_be64(h, NBD_OPTS_MAGIC);
	put_be32(h + 8, NBD_OPT_GO);
	put_be32(h + 12, 77);
	CHECK_EQ(nbd_proto_parse_option(h, &o), 0);
	CHECK_EQ(o.opt, NBD_OPT_GO);
	CHECK_EQ(o.len, 77);
	h[0] ^= 1;
	CHECK_EQ(nbd_proto_parse_option(h, &o), -EPROTO);

	uint8_t r[NBD_OPT_REPLY_HEADER_SIZE];
	nbd_proto_put_opt_reply(r, NBD_OPT_LIST, NBD_REP_ERR_UNSUP, 5);
	CHECK_EQ(get_be64(r), 0x3e889045565a9ull);
	CHECK_EQ(get_be32(r + 8), NBD_OPT_LIST);
	CHECK_EQ(get_be32(r + 12), 0x80000001u);
	CHECK_EQ(get_be32(r + 16), 5);

	CHECK(!strcmp(nbd_proto_opt_name(NBD_OPT_GO), "GO"));
	CHECK(!strcmp(nbd_proto_opt_name(4), "unknown"));
	CHECK(!strcmp(nbd_proto_opt_name(0xffffffffu), "unknown"));
}

/* Builds NBD_OPT_INFO/GO data; returns its length. */
static uint32_t info_data(uint8_t *d, const char *name, uint16_t n,
			  const uint16_t *reqs)
{
	uint32_t nl = (uint32_t)strlen(name);
	put_be32(d, nl);
	memcpy(d + 4, name, nl);
	put_be16(d + 4 + nl, n);
	for (uint16_t i = 0; i < n; i++)
		put_be16(d + 6 + nl + 2 * i, reqs[i]);
	return 6 + nl + 2u * n;
}

static void test_info_query(void)
{
	uint8_t d[128];
	struct nbd_info_query q;
	uint16_t reqs[] = {NBD_INFO_BLOCK_SIZE, NBD_INFO_NAME, 1000};
	uint32_t len = info_data(d, "vd0", 3, reqs);
	CHECK_EQ(nbd_proto_parse_info_query(d, len, &q), 0);
	CHECK_EQ(q.name_len, 3);
	CHECK(!memcmp(q.name, "vd0", 3));
	CHECK_EQ(q.nreqs, 3);
	CHECK_EQ(q.want, (1u << NBD_INFO_BLOCK_SIZE) | (1u << NBD_INFO_NAME));

	len = info_data(d, "", 0, NULL); /* default export, no requests */
	CHECK_EQ(nbd_proto_parse_info_query(d, len, &q), 0);
	CHECK_EQ(q.name_len, 0);
	CHECK_EQ(q.want, 0);

	len = info_data(d, "vd0", 1, reqs);
	CHECK_EQ(nbd_proto_parse_info_query(d, len - 1, &q), -EINVAL);
	CHECK_EQ(nbd_proto_parse_info_query(d, len + 1, &q), -EINVAL);
	CHECK_EQ(nbd_proto_parse_info_query(d, 5, &q), -EINVAL);
	CHECK_EQ(nbd_proto_parse_info_query(d, 0, &q), -EINVAL);
	put_be32(d, 0xffffffffu); /* name length past the data */
	CHECK_EQ(nbd_proto_parse_info_query(d, len, &q), -EINVAL);
	put_be32(d, len - 5); /* "MUST be no larger than ... length - 6" */
	CHECK_EQ(nbd_proto_parse_info_query(d, len, &q), -EINVAL);
}

static void test_replies(void)
{
	uint8_t b[NBD_EXPORT_NAME_REPLY_SIZE];
	memset(b, 0xee, sizeof(b));
	CHECK_EQ(nbd_proto_put_export_name_reply(b, 1ull << 40, 0x16d, false),
		 134);
	CHECK_EQ(get_be64(b), 1ull << 40);
	CHECK_EQ(get_be16(b + 8), 0x16d);
	CHECK_EQ(b[10], 0);
	CHECK_EQ(b[133], 0);
	CHECK_EQ(nbd_proto_put_export_name_reply(b, 4096, 1, true), 10);

	uint8_t e[NBD_INFO_EXPORT_SIZE];
	nbd_proto_put_info_export(e, 123456789012ull, 0x103);
	CHECK_EQ(get_be16(e), NBD_INFO_EXPORT);
	CHECK_EQ(get_be64(e + 2), 123456789012ull);
	CHECK_EQ(get_be16(e + 10), 0x103);

	uint8_t s[NBD_INFO_BLOCK_SIZE_SIZE];
	nbd_proto_put_info_block_size(s, 512, 4096, 32u << 20);
	CHECK_EQ(get_be16(s), NBD_INFO_BLOCK_SIZE);
	CHECK_EQ(get_be32(s + 2), 512);
	CHECK_EQ(get_be32(s + 6), 4096);
	CHECK_EQ(get_be32(s + 10), 32u << 20);

	uint8_t r[NBD_SIMPLE_REPLY_SIZE];
	nbd_proto_put_simple_reply(r, NBD_ENOSPC, 0x0102030405060708ull);
	CHECK_EQ(get_be32(r), 0x67446698u);
	CHECK_EQ(get_be32(r + 4), 28);
	CHECK_EQ(get_be64(r + 8), 0x0102030405060708ull);

	uint16_t rw = nbd_proto_tx_flags(false), ro = nbd_proto_tx_flags(true);
	CHECK(rw & NBD_FLAG_HAS_FLAGS && ro & NBD_FLAG_HAS_FLAGS);
	CHECK(!(rw & NBD_FLAG_READ_ONLY) && (ro & NBD_FLAG_READ_ONLY));
	CHECK(rw & NBD_FLAG_SEND_TRIM && rw & NBD_FLAG_SEND_WRITE_ZEROES);
	CHECK(!(ro & NBD_FLAG_SEND_TRIM) && !(ro & NBD_FLAG_SEND_WRITE_ZEROES));
	CHECK(rw & NBD_FLAG_SEND_FLUSH && rw & NBD_FLAG_SEND_FUA);
	CHECK(rw & NBD_FLAG_CAN_MULTI_CONN);
	CHECK(!(rw & (NBD_FLAG_SEND_DF | NBD_FLAG_SEND_CACHE |
		      NBD_FLAG_SEND_FAST_ZERO)));
}

static void test_parse_request(void)
{
	uint8_t b[NBD_REQUEST_SIZE];
	struct nbd_request rq;
	put_be32(b, NBD_REQUEST_MAGIC);
	put_be16(b + 4, NBD_CMD_FLAG_FUA);
	put_be16(b + 6, NBD_CMD_WRITE);
	put_be64(b + 8, 0xdeadbeefcafef00dull);
	put_be64(b + 16, 1ull << 33);
	put_be32(b + 24, 65536);
	CHECK_EQ(nbd_proto_parse_request(b, &rq), 0);
	CHECK_EQ(rq.flags, NBD_CMD_FLAG_FUA);
	CHECK_EQ(rq.type, NBD_CMD_WRITE);
	CHECK(rq.cookie == 0xdeadbeefcafef00dull);
	CHECK_EQ(rq.offset, 1ull << 33);
	CHECK_EQ(rq.len, 65536);
	put_be32(b, 0x12560953u); /* the historic magic is not accepted */
	CHECK_EQ(nbd_proto_parse_request(b, &rq), -EPROTO);
}

static void test_check_request(void)
{
	const uint64_t size = 64u << 20;
	const uint32_t max = 32u << 20;
	static const struct {
		const char *what;
		uint16_t type, flags;
		uint64_t off;
		uint32_t len;
		uint32_t min_block;
		bool ro;
		enum nbd_verdict v;
		uint32_t err;
	} cases[] = {
	    {"read", NBD_CMD_READ, 0, 0, 4096, 512, false, NBD_VERDICT_OK, 0},
	    {"read last block", NBD_CMD_READ, 0, (64u << 20) - 512, 512, 512,
	     false, NBD_VERDICT_OK, 0},
	    {"read max payload", NBD_CMD_READ, 0, 0, 32u << 20, 512, false,
	     NBD_VERDICT_OK, 0},
	    {"read fua", NBD_CMD_READ, NBD_CMD_FLAG_FUA, 0, 512, 512, false,
	     NBD_VERDICT_OK, 0},
	    {"read at end", NBD_CMD_READ, 0, 64u << 20, 512, 512, false,
	     NBD_VERDICT_ERROR, NBD_EINVAL},
	    {"read across end", NBD_CMD_READ, 0, (64u << 20) - 512, 1024, 512,
	     false, NBD_VERDICT_ERROR, NBD_EINVAL},
	    {"read wrapping", NBD_CMD_READ, 0, UINT64_MAX - 511, 1024, 512,
	     false, NBD_VERDICT_ERROR, NBD_EINVAL},
	    {"read misaligned off", NBD_CMD_READ, 0, 512, 4096, 4096, false,
	     NBD_VERDICT_ERROR, NBD_EINVAL},
	    {"read misaligned len", NBD_CMD_READ, 0, 0, 513, 512, false,
	     NBD_VERDICT_ERROR, NBD_EINVAL},
	    {"read len 0", NBD_CMD_READ, 0, 0, 0, 512, false, NBD_VERDICT_ERROR,
	     NBD_EINVAL},
	    {"read too long", NBD_CMD_READ, 0, 0, (32u << 20) + 512, 512, false,
	     NBD_VERDICT_ERROR, NBD_EINVAL},
	    {"read DF", NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 512, 512, false,
	     NBD_VERDICT_ERROR, NBD_EINVAL},
	    {"read NO_HOLE", NBD_CMD_READ, NBD_CMD_FLAG_NO_HOLE, 0, 512, 512,
	     false, NBD_VERDICT_ERROR, NBD_EINVAL},
	    {"read of ro", NBD_CMD_READ, 0, 0, 512, 512, true, NBD_VERDICT_OK,
	     0},
	    {"write", NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 4096, 4096, 4096, false,
	     NBD_VERDICT_OK, 0},
	    {"write too long: drop", NBD_CMD_WRITE, 0, 0, (32u << 20) + 512,
	     512, false, NBD_VERDICT_DROP, 0},
	    {"write too long, bad flags: drop", NBD_CMD_WRITE, 0x8000, 0,
	     0xffffffffu, 512, true, NBD_VERDICT_DROP, 0},
	    {"write at end", NBD_CMD_WRITE, 0, 64u << 20, 512, 512, false,
	     NBD_VERDICT_ERROR, NBD_ENOSPC},
	    {"write ro", NBD_CMD_WRITE, 0, 0, 512, 512, true, NBD_VERDICT_ERROR,
	     NBD_EPERM},
	    {"write misaligned", NBD_CMD_WRITE, 0, 100, 512, 512, false,
	     NBD_VERDICT_ERROR, NBD_EINVAL},
	    {"write len 0", NBD_CMD_WRITE, 0, 0, 0, 512, false,
	     NBD_VERDICT_ERROR, NBD_EINVAL},
	    {"trim", NBD_CMD_TRIM, 0, 0, 1024, 512, false, NBD_VERDICT_OK, 0},
	    {"trim whole, > max payload", NBD_CMD_TRIM, NBD_CMD_FLAG_FUA, 0,
	     64u << 20, 512, false, NBD_VERDICT_OK, 0},
	    {"trim past end", NBD_CMD_TRIM, 0, 0, (64u << 20) + 512, 512, false,
	     NBD_VERDICT_ERROR, NBD_EINVAL},
	    {"trim ro", NBD_CMD_TRIM, 0, 0, 512, 512, true, NBD_VERDICT_ERROR,
	     NBD_EPERM},
	    {"trim NO_HOLE", NBD_CMD_TRIM, NBD_CMD_FLAG_NO_HOLE, 0, 512, 512,
	     false, NBD_VERDICT_ERROR, NBD_EINVAL},
	    {"zeroes", NBD_CMD_WRITE_ZEROES,
	     NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FUA, 0, 48u << 20, 4096, false,
	     NBD_VERDICT_OK, 0},
	    {"zeroes past end", NBD_CMD_WRITE_ZEROES, 0, 4096, 64u << 20, 4096,
	     false, NBD_VERDICT_ERROR, NBD_ENOSPC},
	    {"zeroes FAST_ZERO", NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FAST_ZERO,
	     0, 4096, 4096, false, NBD_VERDICT_ERROR, NBD_EINVAL},
	    {"zeroes ro", NBD_CMD_WRITE_ZEROES, 0, 0, 4096, 4096, true,
	     NBD_VERDICT_ERROR, NBD_EPERM},
	    {"flush", NBD_CMD_FLUSH, 0, 0, 0, 512, true, NBD_VERDICT_OK, 0},
	    {"flush fua", NBD_CMD_FLUSH, NBD_CMD_FLAG_FUA, 0, 0, 512, false,
	     NBD_VERDICT_OK, 0},
	    {"flush with offset", NBD_CMD_FLUSH, 0, 512, 0, 512, false,
	     NBD_VERDICT_ERROR, NBD_EINVAL},
	    {"flush with length", NBD_CMD_FLUSH, 0, 0, 512, 512, false,
	     NBD_VERDICT_ERROR, NBD_EINVAL},
	    {"disc", NBD_CMD_DISC, 0, 0, 0, 512, false, NBD_VERDICT_OK, 0},
	    {"disc with junk", NBD_CMD_DISC, 0, 7, 9, 512, true, NBD_VERDICT_OK,
	     0},
	    {"cache", NBD_CMD_CACHE, 0, 0, 512, 512, false, NBD_VERDICT_ERROR,
	     NBD_EINVAL},
	    /* range-checked here; refused later without a meta context */
	    {"block status", NBD_CMD_BLOCK_STATUS, 0, 0, 512, 512, false,
	     NBD_VERDICT_OK, 0},
	    {"block status req_one", NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_REQ_ONE,
	     0, 512, 512, false, NBD_VERDICT_OK, 0},
	    {"block status past end", NBD_CMD_BLOCK_STATUS, 0, 1 << 30, 512,
	     512, false, NBD_VERDICT_ERROR, NBD_EINVAL},
	    {"type 8", 8, 0, 0, 512, 512, false, NBD_VERDICT_ERROR, NBD_EINVAL},
	    {"type 65535", 0xffff, 0, 0, 0xffffffffu, 512, false,
	     NBD_VERDICT_ERROR, NBD_EINVAL},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct nbd_request rq = {.type = cases[i].type,
					 .flags = cases[i].flags,
					 .offset = cases[i].off,
					 .len = cases[i].len};
		struct nbd_export_limits ex = {.size = size,
					       .min_block = cases[i].min_block,
					       .max_payload = max,
					       .readonly = cases[i].ro};
		uint32_t err = 12345;
		enum nbd_verdict v = nbd_proto_check_request(&rq, &ex, &err);
		if (v != cases[i].v ||
		    (v == NBD_VERDICT_ERROR && err != cases[i].err) ||
		    (v == NBD_VERDICT_OK && err != NBD_OK)) {
			fprintf(stderr,
				"check_request '%s': verdict %d err %u, "
				"expected %d err %u\n",
				cases[i].what, v, err, cases[i].v,
				cases[i].err);
			failures++;
		}
	}
}

static void test_cmd_table(void)
{
	for (unsigned t = 0; t < NBD_CMD_COUNT; t++) {
		const struct nbd_cmd_desc *d = nbd_proto_cmd((uint16_t)t);
		CHECK(d && d->name);
		/* Only WRITE carries a payload (§ Request message). */
		CHECK_EQ(d->has_payload, t == NBD_CMD_WRITE);
		CHECK(!d->supported || (d->flags_ok & NBD_CMD_FLAG_FUA));
	}
	CHECK(nbd_proto_cmd(NBD_CMD_COUNT) == NULL);
	CHECK(nbd_proto_cmd(0xffff) == NULL);
}

static void test_errno(void)
{
	CHECK_EQ(nbd_proto_errno(0), NBD_OK);
	CHECK_EQ(nbd_proto_errno(-EIO), NBD_EIO);
	CHECK_EQ(nbd_proto_errno(-ENOSPC), NBD_ENOSPC);
	CHECK_EQ(nbd_proto_errno(-EDQUOT), NBD_ENOSPC);
	CHECK_EQ(nbd_proto_errno(-EFBIG), NBD_ENOSPC);
	CHECK_EQ(nbd_proto_errno(-EROFS), NBD_EPERM);
	CHECK_EQ(nbd_proto_errno(-EPERM), NBD_EPERM);
	CHECK_EQ(nbd_proto_errno(-ENOMEM), NBD_ENOMEM);
	CHECK_EQ(nbd_proto_errno(-EINVAL), NBD_EINVAL);
	CHECK_EQ(nbd_proto_errno(-EILSEQ), NBD_EINVAL);
	CHECK_EQ(nbd_proto_errno(-EBADF), NBD_EINVAL);
	CHECK_EQ(nbd_proto_errno(-ENOTSUP), NBD_EINVAL);
	CHECK_EQ(nbd_proto_errno(-9999), NBD_EINVAL);
}

int main(void)
{
	test_hello_and_flags();
	test_options();
	test_info_query();
	test_replies();
	test_parse_request();
	test_check_request();
	test_cmd_table();
	test_errno();
	if (failures) {
		fprintf(stderr, "test_nbd_proto: %d failure(s)\n", failures);
		return 1;
	}
	printf("test_nbd_proto: ok\n");
	return 0;
}
