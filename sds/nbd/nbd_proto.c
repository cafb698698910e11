/* NBD wire codec and request validation: pure functions over byte buffers.
 * See nbd_proto.h; section names (§) refer to doc/proto.md of
 * github.com/NetworkBlockDevice/nbd. */
#include "nbd_proto.h"

#include <errno.h>
#include <string.h>

#include "util.h"

/* § Request types. FUA is listed for every type because § Command flags
 * says the server "MUST accept all commands with this bit set (even by
 * ignoring the bit)" once NBD_FLAG_SEND_FUA is advertised. Types we do not
 * advertise (CACHE) or do not know get NBD_EINVAL: "The server SHOULD
 * return NBD_EINVAL if it receives an unknown command." BLOCK_STATUS is
 * valid only once a metadata context was negotiated (nbd_cmd.c checks). */
static const struct nbd_cmd_desc nbd_proto_cmds[NBD_CMD_COUNT] = {
    [NBD_CMD_READ] = {.name = "READ",
		      .flags_ok = NBD_CMD_FLAG_FUA,
		      .supported = true,
		      .has_range = true,
		      .payload_limited = true},
    [NBD_CMD_WRITE] = {.name = "WRITE",
		       .flags_ok = NBD_CMD_FLAG_FUA,
		       .supported = true,
		       .has_range = true,
		       .has_payload = true,
		       .writes = true,
		       .payload_limited = true},
    [NBD_CMD_DISC] = {.name = "DISC",
		      .flags_ok = NBD_CMD_FLAG_FUA,
		      .supported = true},
    [NBD_CMD_FLUSH] = {.name = "FLUSH",
		       .flags_ok = NBD_CMD_FLAG_FUA,
		       .supported = true},
    [NBD_CMD_TRIM] = {.name = "TRIM",
		      .flags_ok = NBD_CMD_FLAG_FUA,
		      .supported = true,
		      .has_range = true,
		      .writes = true},
    [NBD_CMD_CACHE] = {.name = "CACHE"},
    [NBD_CMD_WRITE_ZEROES] = {.name = "WRITE_ZEROES",
			      .flags_ok =
				  NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE,
			      .supported = true,
			      .has_range = true,
			      .writes = true},
    [NBD_CMD_BLOCK_STATUS] = {.name = "BLOCK_STATUS",
			      .flags_ok =
				  NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_REQ_ONE,
			      .supported = true,
			      .has_range = true},
};

const struct nbd_cmd_desc *nbd_proto_cmd(uint16_t type)
{
	return type < NBD_CMD_COUNT ? &nbd_proto_cmds[type] : NULL;
}

void nbd_proto_put_hello(uint8_t out[NBD_HELLO_SIZE], uint16_t hs_flags)
{
	put_be64(out, NBD_INIT_MAGIC);
	put_be64(out + 8, NBD_OPTS_MAGIC);
	put_be16(out + 16, hs_flags);
}

bool nbd_proto_client_flags_ok(uint32_t cflags, uint16_t hs_flags)
{
	uint32_t known = NBD_FLAG_C_FIXED_NEWSTYLE;
	if (hs_flags & NBD_FLAG_NO_ZEROES)
		known |= NBD_FLAG_C_NO_ZEROES;
	return (cflags & ~known) == 0;
}

int nbd_proto_parse_option(const uint8_t in[NBD_OPT_HEADER_SIZE],
			   struct nbd_option *out)
{
	if (get_be64(in) != NBD_OPTS_MAGIC)
		return -EPROTO;
	out->opt = get_be32(in + 8);
	out->len = get_be32(in + 12);
	return 0;
}

void nbd_proto_put_opt_reply(uint8_t out[NBD_OPT_REPLY_HEADER_SIZE],
			     uint32_t opt, uint32_t type, uint32_t len)
{
	put_be64(out, NBD_REP_MAGIC);
	put_be32(out + 8, opt);
	put_be32(out + 12, type);
	put_be32(out + 16, len);
}

/* § Option types, NBD_OPT_INFO and NBD_OPT_GO: 32-bit name length ("MUST
 * be no larger than the option data length - 6"), the name, a 16-bit count
 * of information requests, then that many 16-bit requests. */
int nbd_proto_parse_info_query(const uint8_t *data, uint32_t len,
			       struct nbd_info_query *out)
{
	memset(out, 0, sizeof(*out));
	if (len < 6)
		return -EINVAL;
	uint32_t nlen = get_be32(data);
	if (nlen > len - 6 || nlen > NBD_NAME_MAX)
		return -EINVAL;
	uint16_t n = get_be16(data + 4 + nlen);
	if ((uint64_t)len != 6ull + nlen + 2ull * n)
		return -EINVAL;
	out->name = (const char *)data + 4;
	out->name_len = nlen;
	out->nreqs = n;
	const uint8_t *r = data + 6 + nlen;
	for (uint16_t i = 0; i < n; i++) {
		uint16_t t = get_be16(r + 2 * i);
		/* "The server MUST ignore any information requests it does
		 * not understand." */
		if (t < 32)
			out->want |= 1u << t;
	}
	return 0;
}

void nbd_proto_put_info_export(uint8_t out[NBD_INFO_EXPORT_SIZE], uint64_t size,
			       uint16_t tx_flags)
{
	put_be16(out, NBD_INFO_EXPORT);
	put_be64(out + 2, size);
	put_be16(out + 10, tx_flags);
}

void nbd_proto_put_info_block_size(uint8_t out[NBD_INFO_BLOCK_SIZE_SIZE],
				   uint32_t min, uint32_t pref, uint32_t max)
{
	put_be16(out, NBD_INFO_BLOCK_SIZE);
	put_be32(out + 2, min);
	put_be32(out + 6, pref);
	put_be32(out + 10, max);
}

size_t nbd_proto_put_export_name_reply(uint8_t out[NBD_EXPORT_NAME_REPLY_SIZE],
				       uint64_t size, uint16_t tx_flags,
				       bool no_zeroes)
{
	put_be64(out, size);
	put_be16(out + 8, tx_flags);
	if (no_zeroes)
		return 10;
	memset(out + 10, 0, NBD_EXPORT_NAME_REPLY_SIZE - 10);
	return NBD_EXPORT_NAME_REPLY_SIZE;
}

/* § Transmission flags. The pool behaves like a disk with a volatile write
 * cache shared by every handle of a vdisk, so FLUSH and FUA are honoured
 * and their effect is visible on every connection: CAN_MULTI_CONN. */
uint16_t nbd_proto_tx_flags(bool readonly)
{
	uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH |
		     NBD_FLAG_SEND_FUA | NBD_FLAG_CAN_MULTI_CONN;
	if (readonly)
		f |= NBD_FLAG_READ_ONLY;
	else
		f |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES;
	return f;
}

int nbd_proto_parse_request(const uint8_t in[NBD_REQUEST_SIZE],
			    struct nbd_request *out)
{
	if (get_be32(in) != NBD_REQUEST_MAGIC)
		return -EPROTO;
	out->flags = get_be16(in + 4);
	out->type = get_be16(in + 6);
	out->cookie = get_be64(in + 8);
	out->offset = get_be64(in + 16);
	out->len = get_be32(in + 24);
	return 0;
}

/* The checks, in order:
 * 1. A WRITE longer than the maximum payload: its data cannot be received
 *    into a buffer we are willing to allocate, so the stream is lost
 *    (§ Size constraints: "either the server or the client MAY initiate a
 *    hard disconnect if a payload length ... would be large enough to be
 *    deemed a denial of service attack").
 * 2. Unknown or unadvertised type, or a flag not valid for it: NBD_EINVAL
 *    (§ Error values).
 * 3. Write to a read-only export: NBD_EPERM (§ Error values).
 * 4. Length 0 (unspecified by § Request types; we refuse it), READ longer
 *    than the maximum payload, misaligned offset or length (§ Size
 *    constraints: "SHOULD report an NBD_EINVAL error if the client's
 *    request is not aligned"): NBD_EINVAL.
 * 5. Beyond the end: NBD_ENOSPC for WRITE and WRITE_ZEROES, NBD_EINVAL for
 *    READ and TRIM (§ Error values).
 * TRIM and WRITE_ZEROES carry no payload, so their length may exceed the
 * maximum payload (§ Size constraints); the engine takes them whole. */
enum nbd_verdict nbd_proto_check_request(const struct nbd_request *rq,
					 const struct nbd_export_limits *ex,
					 uint32_t *err)
{
	const struct nbd_cmd_desc *d = nbd_proto_cmd(rq->type);
	*err = NBD_EINVAL;
	if (d && d->has_payload && rq->len > ex->max_payload)
		return NBD_VERDICT_DROP;
	if (!d || !d->supported || (rq->flags & ~d->flags_ok))
		return NBD_VERDICT_ERROR;
	if (rq->type == NBD_CMD_DISC) {
		*err = NBD_OK;
		return NBD_VERDICT_OK;
	}
	if (d->writes && ex->readonly) {
		*err = NBD_EPERM;
		return NBD_VERDICT_ERROR;
	}
	if (!d->has_range) {
		/* FLUSH: "length and offset are reserved, and MUST be set to
		 * all-zero". */
		if (rq->offset || rq->len)
			return NBD_VERDICT_ERROR;
		*err = NBD_OK;
		return NBD_VERDICT_OK;
	}
	if (rq->len == 0)
		return NBD_VERDICT_ERROR;
	if (d->payload_limited && rq->len > ex->max_payload)
		return NBD_VERDICT_ERROR;
	uint64_t mask = (uint64_t)ex->min_block - 1;
	if ((rq->offset & mask) || (rq->len & mask))
		return NBD_VERDICT_ERROR;
	if (rq->offset > ex->size || rq->len > ex->size - rq->offset) {
		if (rq->type == NBD_CMD_WRITE ||
		    rq->type == NBD_CMD_WRITE_ZEROES)
			*err = NBD_ENOSPC;
		return NBD_VERDICT_ERROR;
	}
	*err = NBD_OK;
	return NBD_VERDICT_OK;
}

void nbd_proto_put_simple_reply(uint8_t out[NBD_SIMPLE_REPLY_SIZE],
				uint32_t err, uint64_t cookie)
{
	put_be32(out, NBD_SIMPLE_REPLY_MAGIC);
	put_be32(out + 4, err);
	put_be64(out + 8, cookie);
}

/* The one place engine errors become wire errors. § Error values: EDQUOT
 * and EFBIG map to NBD_ENOSPC; a write to a snapshot (-EROFS) is
 * NBD_EPERM; anything not listed is NBD_EINVAL, which the spec asks
 * clients to assume for unexpected values anyway. */
static const struct {
	int err;
	uint32_t nbd;
} nbd_proto_errors[] = {
    {0, NBD_OK},	  {EPERM, NBD_EPERM},	{EROFS, NBD_EPERM},
    {EIO, NBD_EIO},	  {ENOMEM, NBD_ENOMEM}, {ENOSPC, NBD_ENOSPC},
    {EDQUOT, NBD_ENOSPC}, {EFBIG, NBD_ENOSPC},	{ESHUTDOWN, NBD_ESHUTDOWN},
};

uint32_t nbd_proto_errno(int status)
{
	int e = status < 0 ? -status : status;
	for (size_t i = 0; i < ARRAY_SIZE(nbd_proto_errors); i++)
		if (nbd_proto_errors[i].err == e)
			return nbd_proto_errors[i].nbd;
	return NBD_EINVAL;
}

const char *nbd_proto_opt_name(uint32_t opt)
{
	static const char *const names[] = {
	    [NBD_OPT_EXPORT_NAME] = "EXPORT_NAME",
	    [NBD_OPT_ABORT] = "ABORT",
	    [NBD_OPT_LIST] = "LIST",
	    [NBD_OPT_STARTTLS] = "STARTTLS",
	    [NBD_OPT_INFO] = "INFO",
	    [NBD_OPT_GO] = "GO",
	    [NBD_OPT_STRUCTURED_REPLY] = "STRUCTURED_REPLY",
	    [NBD_OPT_LIST_META_CONTEXT] = "LIST_META_CONTEXT",
	    [NBD_OPT_SET_META_CONTEXT] = "SET_META_CONTEXT",
	    [NBD_OPT_EXTENDED_HEADERS] = "EXTENDED_HEADERS",
	};
	if (opt < ARRAY_SIZE(names) && names[opt])
		return names[opt];
	return "unknown";
}

void nbd_proto_put_structured_reply(uint8_t out[NBD_STRUCTURED_REPLY_SIZE],
				    uint16_t flags, uint16_t type,
				    uint64_t cookie, uint32_t len)
{
	put_be32(out, NBD_STRUCTURED_REPLY_MAGIC);
	put_be16(out + 4, flags);
	put_be16(out + 6, type);
	put_be64(out + 8, cookie);
	put_be32(out + 16, len);
}

int nbd_proto_parse_meta(const uint8_t *data, uint32_t len,
			 uint32_t *nqueries, const uint8_t **queries)
{
	if (len < 8)
		return -EINVAL;
	uint32_t nl = get_be32(data);
	if (nl > len - 8)
		return -EINVAL;
	const uint8_t *p = data + 4 + nl, *end = data + len;
	uint32_t n = get_be32(p);
	p += 4;
	*queries = p;
	for (uint32_t i = 0; i < n; i++) {
		if ((size_t)(end - p) < 4)
			return -EINVAL;
		uint32_t ql = get_be32(p);
		if (ql > (size_t)(end - p) - 4)
			return -EINVAL;
		p += 4 + ql;
	}
	if (p != end)
		return -EINVAL;
	*nqueries = n;
	return 0;
}

void nbd_proto_meta_next(const uint8_t **p, const uint8_t **q, uint32_t *qlen)
{
	*qlen = get_be32(*p);
	*q = *p + 4;
	*p += 4 + *qlen;
}
