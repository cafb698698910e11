/* NBD wire format and the pure parts of the protocol: decoding, encoding,
 * request validation and error mapping, with no socket and no engine, so
 * that tests/unit/test_nbd_proto.c can drive them from byte buffers.
 *
 * Every constant and message layout comes from the NBD protocol document,
 * doc/proto.md in github.com/NetworkBlockDevice/nbd; comments name the
 * section ("§ Heading") that defines it. Integers on the wire are
 * big-endian ("§ Conventions"). */
#ifndef CAIRN_NBD_PROTO_H
#define CAIRN_NBD_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* § Newstyle negotiation, § Fixed newstyle negotiation */
#define NBD_INIT_MAGIC 0x4e42444d41474943ull /* "NBDMAGIC" */
#define NBD_OPTS_MAGIC 0x49484156454f5054ull /* "IHAVEOPT" */
#define NBD_REP_MAGIC 0x0003e889045565a9ull  /* option reply */

/* § Request message, § Simple reply message */
#define NBD_REQUEST_MAGIC 0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC 0x67446698u

/* Message sizes, bytes. */
#define NBD_HELLO_SIZE 18u /* INIT_MAGIC, OPTS_MAGIC, hs flags */
#define NBD_CLIENT_FLAGS_SIZE 4u
#define NBD_OPT_HEADER_SIZE 16u		/* magic, option, length */
#define NBD_OPT_REPLY_HEADER_SIZE 20u	/* magic, option, type, length */
#define NBD_EXPORT_NAME_REPLY_SIZE 134u /* size, tx flags, 124 zeroes */
#define NBD_REQUEST_SIZE 28u
#define NBD_SIMPLE_REPLY_SIZE 16u
/* § Structured reply chunk message: magic, flags, type, cookie, length */
#define NBD_STRUCTURED_REPLY_MAGIC 0x668e33efu
#define NBD_STRUCTURED_REPLY_SIZE 20u
#define NBD_REPLY_FLAG_DONE (1u << 0)
#define NBD_REPLY_TYPE_NONE 0u
#define NBD_REPLY_TYPE_OFFSET_DATA 1u
#define NBD_REPLY_TYPE_BLOCK_STATUS 5u
#define NBD_REPLY_TYPE_ERROR ((1u << 15) | 1u)
/* § Metadata querying: the one context served, and its state bits */
#define NBD_META_BASE_ALLOCATION "base:allocation"
#define NBD_META_ALLOC_ID 1u
#define NBD_STATE_HOLE (1u << 0)
#define NBD_STATE_ZERO (1u << 1)

/* § Handshake flags (16 bits, server) */
#define NBD_FLAG_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_NO_ZEROES (1u << 1)

/* § Client flags (32 bits, client) */
#define NBD_FLAG_C_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_C_NO_ZEROES (1u << 1)

/* § Transmission flags (16 bits) */
#define NBD_FLAG_HAS_FLAGS (1u << 0)
#define NBD_FLAG_READ_ONLY (1u << 1)
#define NBD_FLAG_SEND_FLUSH (1u << 2)
#define NBD_FLAG_SEND_FUA (1u << 3)
#define NBD_FLAG_ROTATIONAL (1u << 4)
#define NBD_FLAG_SEND_TRIM (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)
#define NBD_FLAG_SEND_DF (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN (1u << 8)
#define NBD_FLAG_SEND_CACHE (1u << 10)
#define NBD_FLAG_SEND_FAST_ZERO (1u << 11)

/* § Option types */
#define NBD_OPT_EXPORT_NAME 1u
#define NBD_OPT_ABORT 2u
#define NBD_OPT_LIST 3u
#define NBD_OPT_STARTTLS 5u
#define NBD_OPT_INFO 6u
#define NBD_OPT_GO 7u
#define NBD_OPT_STRUCTURED_REPLY 8u
#define NBD_OPT_LIST_META_CONTEXT 9u
#define NBD_OPT_SET_META_CONTEXT 10u
#define NBD_OPT_EXTENDED_HEADERS 11u

/* § Option reply types; errors have bit 31 set. */
#define NBD_REP_ACK 1u
#define NBD_REP_SERVER 2u
#define NBD_REP_INFO 3u
#define NBD_REP_META_CONTEXT 4u
#define NBD_REP_FLAG_ERROR (1u << 31)
#define NBD_REP_ERR_UNSUP (NBD_REP_FLAG_ERROR | 1u)
#define NBD_REP_ERR_POLICY (NBD_REP_FLAG_ERROR | 2u)
#define NBD_REP_ERR_INVALID (NBD_REP_FLAG_ERROR | 3u)
#define NBD_REP_ERR_PLATFORM (NBD_REP_FLAG_ERROR | 4u)
#define NBD_REP_ERR_TLS_REQD (NBD_REP_FLAG_ERROR | 5u)
#define NBD_REP_ERR_UNKNOWN (NBD_REP_FLAG_ERROR | 6u)
#define NBD_REP_ERR_SHUTDOWN (NBD_REP_FLAG_ERROR | 7u)
#define NBD_REP_ERR_BLOCK_SIZE_REQD (NBD_REP_FLAG_ERROR | 8u)
#define NBD_REP_ERR_TOO_BIG (NBD_REP_FLAG_ERROR | 9u)

/* § Option reply types, NBD_REP_INFO: information types. */
#define NBD_INFO_EXPORT 0u
#define NBD_INFO_NAME 1u
#define NBD_INFO_DESCRIPTION 2u
#define NBD_INFO_BLOCK_SIZE 3u
#define NBD_INFO_EXPORT_SIZE 12u /* payload incl. the type */
#define NBD_INFO_BLOCK_SIZE_SIZE 14u

/* § Command flags (16 bits) */
#define NBD_CMD_FLAG_FUA (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE (1u << 1)
#define NBD_CMD_FLAG_DF (1u << 2)
#define NBD_CMD_FLAG_REQ_ONE (1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO (1u << 4)

/* § Request types */
#define NBD_CMD_READ 0u
#define NBD_CMD_WRITE 1u
#define NBD_CMD_DISC 2u
#define NBD_CMD_FLUSH 3u
#define NBD_CMD_TRIM 4u
#define NBD_CMD_CACHE 5u
#define NBD_CMD_WRITE_ZEROES 6u
#define NBD_CMD_BLOCK_STATUS 7u
#define NBD_CMD_COUNT 8u /* size of the opcode-indexed tables */

/* § Error values */
#define NBD_OK 0u
#define NBD_EPERM 1u
#define NBD_EIO 5u
#define NBD_ENOMEM 12u
#define NBD_EINVAL 22u
#define NBD_ENOSPC 28u
#define NBD_EOVERFLOW 75u
#define NBD_ENOTSUP 95u
#define NBD_ESHUTDOWN 108u

/* § Conventions: a string "MUST be no longer than 4096 bytes". Option data we
 * accept are a name plus a short info list; anything longer is skipped
 * and answered with NBD_REP_ERR_TOO_BIG. */
#define NBD_NAME_MAX 4096u
#define NBD_OPT_DATA_MAX (NBD_NAME_MAX + 4 + 2 + 2 * 64)

/* ---- decoded messages (host byte order) --------------------------------- */

struct nbd_option {
	uint32_t opt;
	uint32_t len; /* bytes of option data that follow */
};

struct nbd_request {
	uint16_t flags;
	uint16_t type;
	uint64_t cookie;
	uint64_t offset;
	uint32_t len;
};

/* NBD_OPT_INFO / NBD_OPT_GO data (§ Option types). `name` points into the
 * option buffer, not terminated. */
struct nbd_info_query {
	const char *name;
	uint32_t name_len;
	uint16_t nreqs;
	uint32_t want; /* bit i set: NBD_INFO type i requested (i < 32) */
};

/* What the validation needs to know about the export. */
struct nbd_export_limits {
	uint64_t size;
	uint32_t min_block;   /* power of two: the vdisk's sector size */
	uint32_t max_payload; /* largest READ/WRITE */
	bool readonly;
};

/* One row per request type: what it may carry and what it touches. The
 * same table drives validation here and dispatch in nbd_cmd.c. */
struct nbd_cmd_desc {
	const char *name;
	uint16_t flags_ok;    /* command flags valid for this type */
	bool supported;	      /* served (else NBD_EINVAL, § Error values) */
	bool has_range;	      /* offset/length address the export */
	bool has_payload;     /* request carries `len` bytes of data */
	bool writes;	      /* modifies the export: refused if read-only */
	bool payload_limited; /* len bounded by max_payload */
};

/* NULL for a type outside the table. */
const struct nbd_cmd_desc *nbd_proto_cmd(uint16_t type);

/* What the server does with a request that failed validation. */
enum nbd_verdict {
	NBD_VERDICT_OK,
	NBD_VERDICT_ERROR, /* reply `err` (after draining any payload) */
	NBD_VERDICT_DROP,  /* hard disconnect: the stream cannot be trusted */
};

/* ---- functions ---------------------------------------------------------- */

void nbd_proto_put_hello(uint8_t out[NBD_HELLO_SIZE], uint16_t hs_flags);
/* § Client flags: "the server MUST drop the TCP connection if the client
 * sets an unknown flag, or a flag that does not match something advertised
 * by the server." */
bool nbd_proto_client_flags_ok(uint32_t cflags, uint16_t hs_flags);

/* -EPROTO when the magic is wrong (the caller must disconnect). */
int nbd_proto_parse_option(const uint8_t in[NBD_OPT_HEADER_SIZE],
			   struct nbd_option *out);
void nbd_proto_put_opt_reply(uint8_t out[NBD_OPT_REPLY_HEADER_SIZE],
			     uint32_t opt, uint32_t type, uint32_t len);
/* Parses NBD_OPT_INFO / NBD_OPT_GO data; -EINVAL when malformed (reply
 * NBD_REP_ERR_INVALID). */
int nbd_proto_parse_info_query(const uint8_t *data, uint32_t len,
			       struct nbd_info_query *out);
void nbd_proto_put_info_export(uint8_t out[NBD_INFO_EXPORT_SIZE], uint64_t size,
			       uint16_t tx_flags);
void nbd_proto_put_info_block_size(uint8_t out[NBD_INFO_BLOCK_SIZE_SIZE],
				   uint32_t min, uint32_t pref, uint32_t max);
/* Reply to NBD_OPT_EXPORT_NAME; returns bytes used (10, or 134 with the
 * zero padding unless the client negotiated NBD_FLAG_C_NO_ZEROES). */
size_t nbd_proto_put_export_name_reply(uint8_t out[NBD_EXPORT_NAME_REPLY_SIZE],
				       uint64_t size, uint16_t tx_flags,
				       bool no_zeroes);
uint16_t nbd_proto_tx_flags(bool readonly);

/* -EPROTO when the magic is wrong (the caller must disconnect). */
int nbd_proto_parse_request(const uint8_t in[NBD_REQUEST_SIZE],
			    struct nbd_request *out);
/* Decides whether a request may go to the engine. On NBD_VERDICT_ERROR,
 * *err is the NBD error to reply with. */
enum nbd_verdict nbd_proto_check_request(const struct nbd_request *rq,
					 const struct nbd_export_limits *ex,
					 uint32_t *err);
void nbd_proto_put_simple_reply(uint8_t out[NBD_SIMPLE_REPLY_SIZE],
				uint32_t err, uint64_t cookie);
void nbd_proto_put_structured_reply(uint8_t out[NBD_STRUCTURED_REPLY_SIZE],
				    uint16_t flags, uint16_t type,
				    uint64_t cookie, uint32_t len);
/* NBD_OPT_LIST/SET_META_CONTEXT data (§ Option types): a 32-bit export
 * name length, the name, a 32-bit query count, then (32-bit length,
 * query) each. Checks that the lengths add up exactly; -EINVAL if not. */
int nbd_proto_parse_meta(const uint8_t *data, uint32_t len,
			 uint32_t *nqueries, const uint8_t **queries);
/* Walks the queries parse_meta validated. */
void nbd_proto_meta_next(const uint8_t **p, const uint8_t **q,
			 uint32_t *qlen);

/* Maps an engine status (0 or -errno) to an NBD error value. */
uint32_t nbd_proto_errno(int status);
const char *nbd_proto_opt_name(uint32_t opt);

#endif
