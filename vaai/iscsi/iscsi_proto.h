/* The pure parts of the iSCSI target, with no socket, no loop and no
 * engine, so that tests/unit/test_iscsi.c and tests/fuzz/fuzz_iscsi.c can
 * drive them from byte buffers:
 *
 *   iscsi_pdu.c     PDU codec: the 48-byte BHS, AHS, padding, digests
 *   iscsi_keys.c    text key=value parsing and operational key negotiation
 *   iscsi_chap.c    CHAP (RFC 1994, RFC 7143 12.1.3) with its refusals
 *   iscsi_config.c  the JSON configuration
 *
 * Sections (§) are those of RFC 7143. Integers on the wire are big-endian;
 * digests are CRC32C stored little-endian (§ 13.1, as every initiator
 * does). */
#ifndef CAIRN_ISCSI_PROTO_H
#define CAIRN_ISCSI_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- PDU codec (§ 11) ------------------------------------------------ */

#define ISCSI_BHS_SIZE 48u
#define ISCSI_DIGEST_SIZE 4u
#define ISCSI_AHS_MAX (255u * 4u) /* TotalAHSLength is in words, 8 bits */
#define ISCSI_RSVD_TAG 0xffffffffu

/* § 11.2.1.2 opcodes: initiator */
#define ISCSI_OP_NOP_OUT 0x00
#define ISCSI_OP_SCSI_CMD 0x01
#define ISCSI_OP_TMF_REQ 0x02
#define ISCSI_OP_LOGIN_REQ 0x03
#define ISCSI_OP_TEXT_REQ 0x04
#define ISCSI_OP_DATA_OUT 0x05
#define ISCSI_OP_LOGOUT_REQ 0x06
#define ISCSI_OP_SNACK 0x10
/* target */
#define ISCSI_OP_NOP_IN 0x20
#define ISCSI_OP_SCSI_RSP 0x21
#define ISCSI_OP_TMF_RSP 0x22
#define ISCSI_OP_LOGIN_RSP 0x23
#define ISCSI_OP_TEXT_RSP 0x24
#define ISCSI_OP_DATA_IN 0x25
#define ISCSI_OP_LOGOUT_RSP 0x26
#define ISCSI_OP_R2T 0x31
#define ISCSI_OP_ASYNC 0x32
#define ISCSI_OP_REJECT 0x3f

#define ISCSI_FLAG_IMMEDIATE 0x40 /* byte 0 */
#define ISCSI_FLAG_FINAL 0x80	  /* byte 1 */
/* SCSI Command (§ 11.3.1) */
#define ISCSI_CMD_READ 0x40
#define ISCSI_CMD_WRITE 0x20
#define ISCSI_CMD_ATTR_MASK 0x07
/* Login (§ 11.12.1) */
#define ISCSI_LOGIN_TRANSIT 0x80
#define ISCSI_LOGIN_CONTINUE 0x40
#define ISCSI_TEXT_CONTINUE 0x40
/* Data-In (§ 11.7.1) and SCSI Response (§ 11.4) flags */
#define ISCSI_DATA_ACK 0x40
#define ISCSI_FLAG_OVERFLOW 0x04
#define ISCSI_FLAG_UNDERFLOW 0x02
#define ISCSI_DATA_STATUS 0x01

/* § 11.3.1.3 AHS types */
#define ISCSI_AHS_EXT_CDB 1
#define ISCSI_AHS_BIDI_LEN 2

/* § 11.17.1 Reject reasons */
#define ISCSI_REJECT_DATA_DIGEST 0x02
#define ISCSI_REJECT_SNACK 0x03
#define ISCSI_REJECT_PROTOCOL 0x04
#define ISCSI_REJECT_CMD_NOT_SUPPORTED 0x05
#define ISCSI_REJECT_IMMEDIATE 0x06
#define ISCSI_REJECT_TASK_IN_PROGRESS 0x07
#define ISCSI_REJECT_INVALID_DATA_ACK 0x08
#define ISCSI_REJECT_INVALID_FIELD 0x09
#define ISCSI_REJECT_LONG_OP 0x0a
#define ISCSI_REJECT_WAITING_LOGOUT 0x0c

/* § 11.13.5 Login status: class << 8 | detail */
#define ISCSI_LOGIN_OK 0x0000
#define ISCSI_LOGIN_INITIATOR_ERROR 0x0200
#define ISCSI_LOGIN_AUTH_FAILED 0x0201
#define ISCSI_LOGIN_FORBIDDEN 0x0202
#define ISCSI_LOGIN_NOT_FOUND 0x0203
#define ISCSI_LOGIN_UNSUPPORTED_VERSION 0x0205
#define ISCSI_LOGIN_TOO_MANY_CONNS 0x0206
#define ISCSI_LOGIN_MISSING_PARAM 0x0207
#define ISCSI_LOGIN_NO_SESSION 0x020a
#define ISCSI_LOGIN_INVALID_REQUEST 0x020b
#define ISCSI_LOGIN_TARGET_ERROR 0x0300
#define ISCSI_LOGIN_OUT_OF_RESOURCES 0x0302

/* Login stages (§ 11.12.3, CSG / NSG) */
#define ISCSI_STAGE_SECURITY 0
#define ISCSI_STAGE_OPERATIONAL 1
#define ISCSI_STAGE_FULL_FEATURE 3

/* A decoded Basic Header Segment (§ 11.2.1). Fields past byte 20 differ
 * by opcode; handlers read them from raw with get_be32. */
struct iscsi_bhs {
	uint8_t opcode;
	bool immediate;
	uint8_t flags;	 /* byte 1 */
	uint8_t ahs_len; /* TotalAHSLength, 4-byte words */
	uint32_t dlen;	 /* DataSegmentLength, bytes (24 bits) */
	uint8_t lun_raw[8];
	uint32_t itt;
	const uint8_t *raw; /* the 48 bytes */
};

/* Decodes a BHS. Returns 0, or -EINVAL for an opcode an initiator may not
 * send (target opcodes, reserved ones). */
int iscsi_pdu_decode_bhs(const uint8_t bhs[ISCSI_BHS_SIZE],
			 struct iscsi_bhs *h);

static inline uint32_t iscsi_pad4(uint32_t len)
{
	return (4 - (len & 3)) & 3;
}

/* Bytes that follow the BHS on the wire: AHS, header digest, data segment
 * with its padding, data digest (only when the segment is non-empty). */
uint64_t iscsi_pdu_rest_len(const struct iscsi_bhs *h, bool hdigest,
			    bool ddigest);

/* § 11.2.1.3 and § 11.3.1.3: walks the AHS. Returns 0, or -EINVAL for a
 * malformed AHS. *cdb_ext / *cdb_ext_len: the extended CDB bytes (past
 * the 16 in the BHS), if any; *bidi_len: the bidirectional read length,
 * or 0. */
int iscsi_pdu_parse_ahs(const uint8_t *ahs, size_t len, const uint8_t **cdb_ext,
			size_t *cdb_ext_len, uint32_t *bidi_len);

/* The CDB of a SCSI Command PDU: 16 bytes from the BHS plus the extended
 * CDB AHS. Returns its length, or -EINVAL. */
int iscsi_pdu_cdb(const uint8_t *bhs, const uint8_t *ahs, size_t ahs_len,
		  uint8_t *cdb, size_t cap);

/* § 11.2.1.6 / § 11.3.1 LUN field: SAM-5 single-level peripheral (0..255)
 * and flat (0..16383) addressing. Returns the LUN number, or UINT64_MAX
 * for another format. */
uint64_t iscsi_pdu_lun_decode(const uint8_t raw[8]);
void iscsi_pdu_lun_encode(uint64_t lun, uint8_t raw[8]);

/* Starts a target BHS: zeroes it, sets opcode, flags, data length. */
void iscsi_pdu_init(uint8_t bhs[ISCSI_BHS_SIZE], uint8_t opcode, uint8_t flags,
		    uint32_t dlen);

/* § 13.1 digests: CRC32C, stored little-endian. */
uint32_t iscsi_digest(const void *buf, size_t len);
uint32_t iscsi_digest2(const void *a, size_t alen, const void *b, size_t blen);
void iscsi_digest_put(uint8_t out[4], uint32_t crc);
uint32_t iscsi_digest_get(const uint8_t in[4]);

/* Serial number arithmetic (§ 4.2.2.1 / RFC 1982). */
static inline bool iscsi_sn_lt(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) < 0;
}
static inline bool iscsi_sn_le(uint32_t a, uint32_t b)
{
	return a == b || iscsi_sn_lt(a, b);
}

/* ---- text keys (§ 6, § 13) -------------------------------------------- */

#define ISCSI_KEY_NAME_MAX 63	 /* § 6.1 */
#define ISCSI_KEY_VALUE_MAX 8192 /* § 6.1: 255 for most keys */
#define ISCSI_KEYS_MAX 64	 /* keys in one text or login request */

struct iscsi_kv {
	const char *key;
	const char *val;
};

/* Splits a text data segment ("k=v\0k=v\0", § 6.1) in place: every key
 * and value becomes a C string. Returns the number of pairs, or -EINVAL
 * for malformed text (no '=', empty or long key, bad characters, too many
 * keys, a key given twice). A missing final NUL is tolerated. */
int iscsi_keys_parse(char *buf, size_t len, struct iscsi_kv *kv, unsigned max);
const char *iscsi_keys_get(const struct iscsi_kv *kv, unsigned n,
			   const char *key);

/* A growing text segment for responses. */
struct iscsi_text {
	char *buf;
	size_t len, cap;
	bool oom;
};
void iscsi_text_add(struct iscsi_text *t, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void iscsi_text_free(struct iscsi_text *t);

/* What this target offers (its side of every negotiation). */
struct iscsi_limits {
	uint32_t max_recv_dsl; /* our MaxRecvDataSegmentLength */
	uint32_t max_burst;
	uint32_t first_burst;
	uint32_t max_connections;
	uint32_t max_outstanding_r2t;
	bool immediate_data;
	bool initial_r2t;
};

/* The session and connection parameters in force (§ 13 defaults until
 * negotiated). */
struct iscsi_params {
	bool header_digest, data_digest;
	uint32_t max_connections;
	bool initial_r2t, immediate_data;
	uint32_t max_recv_dsl; /* what we accept (declared by us) */
	uint32_t max_send_dsl; /* what the initiator accepts */
	uint32_t max_burst, first_burst;
	uint32_t time2wait, time2retain;
	uint32_t max_outstanding_r2t;
	bool data_pdu_in_order, data_seq_in_order;
	uint32_t erl;
	bool discovery;
};
void iscsi_params_default(struct iscsi_params *p, const struct iscsi_limits *l);

/* One operational key offered by the initiator (§ 13): updates p and adds
 * our answer to resp ("Reject" for a bad value, "NotUnderstood" for an
 * unknown key, "Irrelevant" where it does not apply). Returns 1 if the key
 * was an operational key, 0 if it is not one (the caller handles it:
 * security, names), -EINVAL on a value so malformed that the login must
 * fail. */
int iscsi_keys_negotiate(struct iscsi_params *p, const struct iscsi_limits *l,
			 const char *key, const char *val,
			 struct iscsi_text *resp);
/* After a login's keys: FirstBurstLength <= MaxBurstLength (§ 13.14). */
void iscsi_keys_finish(struct iscsi_params *p);

/* ---- CHAP (RFC 1994; § 12.1.3) ---------------------------------------- */

#define ISCSI_CHAP_SECRET_MIN 12 /* § 12.1.3: 96 bits for one-way CHAP */
#define ISCSI_CHAP_SECRET_MAX 256
#define ISCSI_CHAP_CHALLENGE_LEN 16
#define ISCSI_CHAP_MAX_BIN 1024 /* longest binary value we decode */
#define ISCSI_CHAP_MD5 5	/* CHAP_A: the only algorithm we offer */

/* Returns 0, or -EINVAL with a reason in err: empty user, secret shorter
 * than 12 bytes or longer than 256, inbound equal to outbound. */
int iscsi_chap_check_secrets(const char *user, const char *secret,
			     const char *mutual_user, const char *mutual_secret,
			     char *err, size_t errlen);

/* § 6.1 binary values: 0x<hex> or 0b<base64>. Returns the byte count, or
 * -EINVAL. */
int iscsi_chap_decode(const char *s, uint8_t *out, size_t cap);
/* "0x" + lowercase hex into out (cap >= 2*len+3). */
void iscsi_chap_encode(const uint8_t *in, size_t len, char *out, size_t cap);

/* RFC 1994 4.1: MD5(id || secret || challenge). Returns 0 or -EIO. */
int iscsi_chap_response(uint8_t id, const char *secret, const uint8_t *chal,
			size_t chal_len, uint8_t out[16]);

/* One CHAP exchange as seen by the target. Randomness comes from the
 * caller (RAND_bytes in the daemon, a fixed buffer in tests). */
struct iscsi_chap {
	uint8_t id;
	uint8_t chal[ISCSI_CHAP_CHALLENGE_LEN];
	bool sent; /* challenge sent; waiting for CHAP_N / CHAP_R */
};
/* CHAP_A from the initiator: a list of algorithms; MD5 must be in it.
 * Fills resp with CHAP_A, CHAP_I, CHAP_C. rnd: 17 random bytes. */
int iscsi_chap_start(struct iscsi_chap *c, const char *algs,
		     const uint8_t rnd[1 + ISCSI_CHAP_CHALLENGE_LEN],
		     struct iscsi_text *resp, char *err, size_t errlen);
/* CHAP_N / CHAP_R (and for mutual CHAP, CHAP_I / CHAP_C) from the
 * initiator. Verifies the response against (user, secret); if the
 * initiator asks for mutual authentication, refuses a reflected challenge
 * (equal to ours) and answers with (mutual_user, mutual_secret) in resp.
 * Returns 0, or -EACCES with a reason in err. */
int iscsi_chap_finish(struct iscsi_chap *c, const char *user,
		      const char *secret, const char *mutual_user,
		      const char *mutual_secret, const char *n, const char *r,
		      const char *i, const char *chal, struct iscsi_text *resp,
		      char *err, size_t errlen);

/* ---- configuration (iscsi_config.c) ----------------------------------- */

#define ISCSI_NAME_MAX 223 /* § 4.2.7.1 */

struct iscsi_cfg_lun {
	uint64_t lun;
	char *vdisk;
};

struct iscsi_cfg_target {
	char *name;  /* IQN */
	char *alias; /* or NULL */
	unsigned nluns;
	struct iscsi_cfg_lun *luns;
	unsigned ninit;
	char **initiators;		   /* IQNs, or "*" */
	char *chap_user, *chap_secret;	   /* NULL: no CHAP */
	char *mutual_user, *mutual_secret; /* NULL: one-way */
};

struct iscsi_config {
	char *host;
	uint16_t port;
	unsigned ntargets;
	struct iscsi_cfg_target *targets;
	/* Discovery sessions: CHAP for SendTargets (optional). */
	char *discovery_user, *discovery_secret;
	/* Target-initiated NOP-In (§ 11.19): ping a connection that has been
	 * silent this long (0: never), close it when the ping is not
	 * answered within the timeout. Milliseconds. */
	unsigned nop_interval_ms, nop_timeout_ms;
};
#define ISCSI_NOP_INTERVAL_MS 5000u
#define ISCSI_NOP_TIMEOUT_MS 15000u
#define ISCSI_NOP_MS_MIN 100u
#define ISCSI_NOP_MS_MAX 3600000u

/* Parses and validates. Returns 0, or -EINVAL / -ENOENT / -ENOMEM with a
 * message in err naming the field. */
int iscsi_config_parse(const char *json, size_t len, struct iscsi_config **out,
		       char *err, size_t errlen);
int iscsi_config_load(const char *path, struct iscsi_config **out, char *err,
		      size_t errlen);
void iscsi_config_free(struct iscsi_config *c);
/* Is `initiator` in the target's ACL? */
bool iscsi_config_allows(const struct iscsi_cfg_target *t,
			 const char *initiator);
/* § 4.2.7: iqn., eui. or naa. names of printable characters. */
bool iscsi_name_valid(const char *name);

#endif
