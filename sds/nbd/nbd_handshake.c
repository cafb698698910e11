/* Fixed newstyle handshake and option haggling (§ Newstyle negotiation,
 * § Fixed newstyle negotiation, § Option types). Options are dispatched
 * through one table indexed by option number; anything not in it gets
 * NBD_REP_ERR_UNSUP, which clients treat as "fall back". We do not offer
 * TLS, structured replies or metadata contexts. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "nbd_int.h"
#include "util.h"

#define NBD_HANDSHAKE_FLAGS (NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES)

/* Option replies are assembled in c->obuf and sent once per option. */
static int nbd_handshake_put(struct nbd_conn *c, const void *data, size_t len)
{
	if (c->olen + len > c->ocap) {
		size_t cap = MAX(c->ocap * 2, c->olen + len + 256);
		uint8_t *b = realloc(c->obuf, cap);
		if (!b)
			return -ENOMEM;
		c->obuf = b;
		c->ocap = cap;
	}
	memcpy(c->obuf + c->olen, data, len);
	c->olen += len;
	return 0;
}

static int nbd_handshake_reply(struct nbd_conn *c, uint32_t type,
			       const void *data, uint32_t len)
{
	uint8_t h[NBD_OPT_REPLY_HEADER_SIZE];
	nbd_proto_put_opt_reply(h, c->opt.opt, type, len);
	int rc = nbd_handshake_put(c, h, sizeof(h));
	if (rc == 0 && len)
		rc = nbd_handshake_put(c, data, len);
	return rc;
}

static void nbd_handshake_flush(struct nbd_conn *c)
{
	if (c->olen)
		nbd_conn_send(c, c->obuf, c->olen);
	c->olen = 0;
}

/* An error reply carries a message for the user (§ Option reply types:
 * "that data is an error message string suitable for display"). It ends
 * the option, so anything assembled before it is sent first. */
static void nbd_handshake_error(struct nbd_conn *c, uint32_t type,
				const char *msg)
{
	log_debug(NBD_LOG, "conn %llu %s: option %s: %s",
		  (unsigned long long)c->base.id, c->peer,
		  nbd_proto_opt_name(c->opt.opt), msg);
	nbd_handshake_reply(c, type, msg, (uint32_t)strlen(msg));
	nbd_handshake_flush(c);
}

static void nbd_handshake_limits(struct sds_vdisk *vd,
				 struct nbd_export_limits *lim)
{
	lim->size = sds_vdisk_size(vd);
	lim->min_block = sds_vdisk_sector_size(vd);
	lim->max_payload = SDS_MAX_IO;
	lim->readonly = sds_vdisk_readonly(vd);
}

static void nbd_handshake_enter_transmission(struct nbd_conn *c,
					     struct sds_vdisk *vd)
{
	c->vd = vd;
	nbd_handshake_limits(vd, &c->lim);
	c->state = NBD_CONN_REQ_HEADER;
	free(c->obuf);
	c->obuf = NULL;
	c->olen = c->ocap = 0;
	log_info(NBD_LOG, "conn %llu %s: export %s (%llu bytes%s)",
		 (unsigned long long)c->base.id, c->peer, sds_vdisk_name(vd),
		 (unsigned long long)c->lim.size,
		 c->lim.readonly ? ", read-only" : "");
}

/* § Option types, NBD_OPT_EXPORT_NAME: no error reply exists, so an
 * unknown export "MUST terminate the session". */
static void nbd_handshake_export_name(struct nbd_conn *c, const uint8_t *data,
				      uint32_t len)
{
	struct sds_vdisk *vd;
	char msg[128];
	if (nbd_server_open_export(c->srv, (const char *)data, len, &vd, msg,
				   sizeof(msg)) < 0) {
		log_info(NBD_LOG, "conn %llu %s: %s", (unsigned long long)c->base.id,
			 c->peer, msg);
		nbd_conn_close(c, true);
		return;
	}
	uint8_t b[NBD_EXPORT_NAME_REPLY_SIZE];
	size_t n = nbd_proto_put_export_name_reply(
	    b, sds_vdisk_size(vd), nbd_proto_tx_flags(sds_vdisk_readonly(vd)),
	    c->no_zeroes);
	if (nbd_conn_send(c, b, n) < 0) {
		sds_vdisk_close(vd);
		return;
	}
	nbd_handshake_enter_transmission(c, vd);
}

/* § Option types, NBD_OPT_ABORT: "The server MUST reply with
 * NBD_REP_ACK"; then the client drops the connection. */
static void nbd_handshake_abort(struct nbd_conn *c, const uint8_t *data,
				uint32_t len)
{
	(void)data;
	(void)len; /* "a server SHOULD ignore any data sent" */
	nbd_handshake_reply(c, NBD_REP_ACK, NULL, 0);
	nbd_handshake_flush(c);
	nbd_conn_close(c, false);
}

/* § Option types, NBD_OPT_LIST: one NBD_REP_SERVER per export (32-bit name
 * length, name), then NBD_REP_ACK. */
static void nbd_handshake_list(struct nbd_conn *c, const uint8_t *data,
			       uint32_t len)
{
	(void)data;
	if (len) {
		nbd_handshake_error(c, NBD_REP_ERR_INVALID,
				    "NBD_OPT_LIST takes no data");
		return;
	}
	struct sds_vdisk_info *v = NULL;
	size_t n = 0;
	int rc = sds_vdisk_list(c->srv->pool, &v, &n);
	if (rc < 0) {
		nbd_handshake_error(c, NBD_REP_ERR_INVALID,
				    sds_pool_errmsg(c->srv->pool));
		return;
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		uint8_t b[4 + SDS_NAME_MAX];
		uint32_t nl = (uint32_t)strnlen(v[i].name, SDS_NAME_MAX);
		put_be32(b, nl);
		memcpy(b + 4, v[i].name, nl);
		rc = nbd_handshake_reply(c, NBD_REP_SERVER, b, 4 + nl);
	}
	free(v);
	if (rc < 0) {
		c->olen = 0;
		nbd_handshake_error(c, NBD_REP_ERR_TOO_BIG, "out of memory");
		return;
	}
	nbd_handshake_reply(c, NBD_REP_ACK, NULL, 0);
	nbd_handshake_flush(c);
}

/* § Option types, NBD_OPT_INFO and NBD_OPT_GO: NBD_REP_INFO replies, then
 * NBD_REP_ACK. NBD_INFO_EXPORT is mandatory. NBD_INFO_BLOCK_SIZE is sent
 * whether asked or not: we enforce a minimum block size (the sector size,
 * because the engine only takes whole sectors) and § Size constraints says
 * a server "MUST do so unless it has agreed on size constraints via out of
 * band means". Clients that never ask still get NBD_EINVAL, not
 * corruption, for misaligned requests. */
static void nbd_handshake_info_go(struct nbd_conn *c, const uint8_t *data,
				  uint32_t len, bool go)
{
	struct nbd_info_query q;
	if (nbd_proto_parse_info_query(data, len, &q) < 0) {
		nbd_handshake_error(c, NBD_REP_ERR_INVALID,
				    "malformed NBD_OPT_INFO/GO data");
		return;
	}
	struct sds_vdisk *vd;
	char msg[128];
	if (nbd_server_open_export(c->srv, q.name, q.name_len, &vd, msg,
				   sizeof(msg)) < 0) {
		nbd_handshake_error(c, NBD_REP_ERR_UNKNOWN, msg);
		return;
	}
	struct nbd_export_limits lim;
	nbd_handshake_limits(vd, &lim);
	uint8_t ex[NBD_INFO_EXPORT_SIZE], bs[NBD_INFO_BLOCK_SIZE_SIZE];
	nbd_proto_put_info_export(ex, lim.size,
				  nbd_proto_tx_flags(lim.readonly));
	nbd_proto_put_info_block_size(bs, lim.min_block,
				      MAX(NBD_PREF_BLOCK, lim.min_block),
				      lim.max_payload);
	int rc = nbd_handshake_reply(c, NBD_REP_INFO, ex, sizeof(ex));
	if (rc == 0)
		rc = nbd_handshake_reply(c, NBD_REP_INFO, bs, sizeof(bs));
	if (rc == 0 && (q.want & (1u << NBD_INFO_NAME))) {
		/* The canonical name: differs for the default export. */
		const char *name = sds_vdisk_name(vd);
		uint8_t b[2 + SDS_NAME_MAX];
		uint32_t nl = (uint32_t)strnlen(name, SDS_NAME_MAX);
		put_be16(b, NBD_INFO_NAME);
		memcpy(b + 2, name, nl);
		rc = nbd_handshake_reply(c, NBD_REP_INFO, b, 2 + nl);
	}
	if (rc == 0)
		rc = nbd_handshake_reply(c, NBD_REP_ACK, NULL, 0);
	if (rc < 0) {
		sds_vdisk_close(vd);
		c->olen = 0;
		nbd_handshake_error(c, NBD_REP_ERR_TOO_BIG, "out of memory");
		return;
	}
	nbd_handshake_flush(c);
	if (go && !c->closing)
		nbd_handshake_enter_transmission(c, vd);
	else
		sds_vdisk_close(vd);
}

static void nbd_handshake_info(struct nbd_conn *c, const uint8_t *data,
			       uint32_t len)
{
	nbd_handshake_info_go(c, data, len, false);
}

static void nbd_handshake_go(struct nbd_conn *c, const uint8_t *data,
			     uint32_t len)
{
	nbd_handshake_info_go(c, data, len, true);
}

/* § Option types, NBD_OPT_STRUCTURED_REPLY: no data; "the server replies
 * with NBD_REP_ACK" and uses structured replies from then on. */
static void nbd_handshake_structured(struct nbd_conn *c, const uint8_t *data,
				     uint32_t len)
{
	(void)data;
	if (len) {
		nbd_handshake_error(c, NBD_REP_ERR_INVALID,
				    "NBD_OPT_STRUCTURED_REPLY takes no data");
		return;
	}
	c->structured = true;
	nbd_handshake_reply(c, NBD_REP_ACK, NULL, 0);
	nbd_handshake_flush(c);
}

/* § Option types, NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT:
 * one NBD_REP_META_CONTEXT per matching context, then NBD_REP_ACK. The one
 * context served is base:allocation; a LIST with no queries, or the query
 * "base:", lists it. SET replaces the previous selection. */
static void nbd_handshake_meta(struct nbd_conn *c, const uint8_t *data,
			       uint32_t len)
{
	bool set = c->opt.opt == NBD_OPT_SET_META_CONTEXT;
	uint32_t n;
	const uint8_t *p;
	if (set && !c->structured) {
		nbd_handshake_error(c, NBD_REP_ERR_INVALID,
				    "structured replies not negotiated");
		return;
	}
	if (nbd_proto_parse_meta(data, len, &n, &p) < 0) {
		nbd_handshake_error(c, NBD_REP_ERR_INVALID,
				    "malformed metadata context query");
		return;
	}
	static const char ctx[] = NBD_META_BASE_ALLOCATION;
	bool match = !set && n == 0;
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *q;
		uint32_t ql;
		nbd_proto_meta_next(&p, &q, &ql);
		if ((ql == sizeof(ctx) - 1 && !memcmp(q, ctx, ql)) ||
		    (!set && ql == 5 && !memcmp(q, "base:", 5)))
			match = true;
	}
	if (set)
		c->meta_alloc = match;
	if (match) {
		uint8_t b[4 + sizeof(ctx) - 1];
		put_be32(b, NBD_META_ALLOC_ID);
		memcpy(b + 4, ctx, sizeof(ctx) - 1);
		nbd_handshake_reply(c, NBD_REP_META_CONTEXT, b, sizeof(b));
	}
	nbd_handshake_reply(c, NBD_REP_ACK, NULL, 0);
	nbd_handshake_flush(c);
}

typedef void (*nbd_handshake_opt_fn)(struct nbd_conn *c, const uint8_t *data,
				     uint32_t len);

static const nbd_handshake_opt_fn nbd_handshake_opts[] = {
    [NBD_OPT_EXPORT_NAME] = nbd_handshake_export_name,
    [NBD_OPT_ABORT] = nbd_handshake_abort,
    [NBD_OPT_LIST] = nbd_handshake_list,
    [NBD_OPT_INFO] = nbd_handshake_info,
    [NBD_OPT_GO] = nbd_handshake_go,
    [NBD_OPT_STRUCTURED_REPLY] = nbd_handshake_structured,
    [NBD_OPT_LIST_META_CONTEXT] = nbd_handshake_meta,
    [NBD_OPT_SET_META_CONTEXT] = nbd_handshake_meta,
};

void nbd_handshake_start(struct nbd_conn *c)
{
	uint8_t b[NBD_HELLO_SIZE];
	nbd_proto_put_hello(b, NBD_HANDSHAKE_FLAGS);
	c->state = NBD_CONN_CLIENT_FLAGS;
	nbd_conn_send(c, b, sizeof(b));
}

void nbd_handshake_client_flags(struct nbd_conn *c, const uint8_t *p)
{
	uint32_t f = get_be32(p);
	if (!nbd_proto_client_flags_ok(f, NBD_HANDSHAKE_FLAGS)) {
		log_info(NBD_LOG, "conn %llu %s: bad client flags 0x%x",
			 (unsigned long long)c->base.id, c->peer, f);
		nbd_conn_close(c, true);
		return;
	}
	/* Fixed newstyle is honoured even when the client did not set
	 * NBD_FLAG_C_FIXED_NEWSTYLE (§ Client flags: servers MAY). */
	c->no_zeroes = f & NBD_FLAG_C_NO_ZEROES;
	c->state = NBD_CONN_OPT_HEADER;
}

void nbd_handshake_opt_header(struct nbd_conn *c, const uint8_t *p)
{
	if (nbd_proto_parse_option(p, &c->opt) < 0) {
		log_info(NBD_LOG, "conn %llu %s: bad option magic",
			 (unsigned long long)c->base.id, c->peer);
		nbd_conn_close(c, true);
		return;
	}
	if (c->opt.len > NBD_OPT_DATA_MAX) {
		c->skip = c->opt.len;
		c->state = NBD_CONN_OPT_SKIP;
		return;
	}
	c->state = NBD_CONN_OPT_DATA;
}

void nbd_handshake_opt_skipped(struct nbd_conn *c)
{
	c->state = NBD_CONN_OPT_HEADER;
	if (c->opt.opt == NBD_OPT_EXPORT_NAME) {
		nbd_conn_close(c, true); /* no error reply exists */
		return;
	}
	nbd_handshake_error(c, NBD_REP_ERR_TOO_BIG, "option data too long");
}

void nbd_handshake_opt_data(struct nbd_conn *c, const uint8_t *p)
{
	uint32_t o = c->opt.opt;
	c->state = NBD_CONN_OPT_HEADER;
	log_debug(NBD_LOG, "conn %llu %s: option %s (%u), %u bytes",
		  (unsigned long long)c->base.id, c->peer, nbd_proto_opt_name(o), o,
		  c->opt.len);
	if (o < ARRAY_SIZE(nbd_handshake_opts) && nbd_handshake_opts[o]) {
		nbd_handshake_opts[o](c, p, c->opt.len);
		return;
	}
	char msg[64];
	snprintf(msg, sizeof(msg), "option %u not supported", o);
	nbd_handshake_error(c, NBD_REP_ERR_UNSUP, msg);
}
