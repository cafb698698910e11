/* Login (RFC 7143 § 6, § 11.12, § 11.13): the security stage (CHAP or
 * none), the operational stage (iscsi_keys.c), and the move to the full
 * feature phase with a new session (TSIH 0), a connection joining a
 * session (TSIH given, MaxConnections > 1), or a discovery session.
 *
 * Every failure answers with a Login Response carrying the status class
 * and detail (§ 11.13.5), then closes the connection once it is sent. */
#include <errno.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iscsi_int.h"
#include "log.h"
#include "util.h"

void iscsi_login_free(struct iscsi_login *l)
{
	free(l->text);
	l->text = NULL;
	l->text_len = 0;
}

static void iscsi_login_respond(struct iscsi_conn *c, uint8_t flags,
				uint16_t status, struct iscsi_text *t)
{
	struct iscsi_login *l = &c->login;
	struct iscsi_out *o =
	    iscsi_out_new(c, ISCSI_OP_LOGIN_RSP, flags, t ? t->buf : NULL,
			  t ? (uint32_t)t->len : 0, true);
	if (!o)
		return;
	uint8_t *h = o->hdr;
	h[2] = 0; /* Version-max */
	h[3] = 0; /* Version-active */
	memcpy(h + 8, l->isid, 6);
	put_be16(h + 14, (flags & ISCSI_LOGIN_TRANSIT) &&
				 (flags & 3) == ISCSI_STAGE_FULL_FEATURE &&
				 c->sess
			     ? c->sess->tsih
			     : l->tsih);
	put_be32(h + 16, l->itt);
	struct iscsi_session *s = c->sess;
	put_be32(h + 28, s ? s->exp_cmdsn : l->cmdsn);
	put_be32(h + 32, s ? iscsi_session_max_cmdsn(s)
			   : l->cmdsn + ISCSI_QUEUE_DEPTH - 1);
	h[36] = (uint8_t)(status >> 8);
	h[37] = (uint8_t)status;
	iscsi_conn_queue(c, o, true);
}

static void iscsi_login_fail(struct iscsi_conn *c, uint16_t status,
			     const char *why)
{
	log_info(ISCSI_LOG, "conn %llu %s: login refused (0x%04x): %s",
		 (unsigned long long)c->base.id, c->peer, status, why);
	iscsi_login_respond(c, 0, status, NULL);
	c->close_after_send = true;
}

/* The names and session type come in the first Login Request (§ 6.3). */
static int iscsi_login_first(struct iscsi_conn *c, struct iscsi_kv *kv,
			     unsigned n)
{
	struct iscsi_login *l = &c->login;
	struct iscsi_server *srv = c->srv;
	const char *iname = iscsi_keys_get(kv, n, "InitiatorName");
	const char *type = iscsi_keys_get(kv, n, "SessionType");
	const char *tname = iscsi_keys_get(kv, n, "TargetName");
	if (!iname || !*iname) {
		iscsi_login_fail(c, ISCSI_LOGIN_MISSING_PARAM,
				 "no InitiatorName");
		return -1;
	}
	if (strlen(iname) > ISCSI_NAME_MAX) {
		iscsi_login_fail(c, ISCSI_LOGIN_INITIATOR_ERROR,
				 "InitiatorName too long");
		return -1;
	}
	str_copy(l->initiator, iname, sizeof(l->initiator));
	if (type && strcmp(type, "Normal") && strcmp(type, "Discovery")) {
		iscsi_login_fail(c, ISCSI_LOGIN_INITIATOR_ERROR,
				 "bad SessionType");
		return -1;
	}
	l->discovery = type && !strcmp(type, "Discovery");
	if (l->discovery) {
		l->auth_required = srv->cfg->discovery_user != NULL;
	} else {
		if (!tname) {
			iscsi_login_fail(c, ISCSI_LOGIN_MISSING_PARAM,
					 "no TargetName");
			return -1;
		}
		l->tgt = iscsi_server_find_target(srv, tname);
		if (!l->tgt) {
			iscsi_login_fail(c, ISCSI_LOGIN_NOT_FOUND,
					 "unknown TargetName");
			return -1;
		}
		if (!iscsi_config_allows(l->tgt->cfg, l->initiator)) {
			iscsi_login_fail(c, ISCSI_LOGIN_FORBIDDEN,
					 "initiator not in the target's ACL");
			return -1;
		}
		l->auth_required = l->tgt->cfg->chap_user != NULL;
	}
	iscsi_params_default(&l->params, &srv->lim);
	l->params.discovery = l->discovery;
	return 0;
}

static bool iscsi_list_has(const char *list, const char *what)
{
	char tmp[256];
	if (strlen(list) >= sizeof(tmp))
		return false;
	strcpy(tmp, list);
	for (char *save, *tok = strtok_r(tmp, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save))
		if (!strcmp(tok, what))
			return true;
	return false;
}

/* Security keys (§ 12). Returns 0, or -1 after failing the login. */
static int iscsi_login_security(struct iscsi_conn *c, struct iscsi_kv *kv,
				unsigned n, struct iscsi_text *resp)
{
	struct iscsi_login *l = &c->login;
	const struct iscsi_config *cfg = c->srv->cfg;
	const char *user, *secret, *muser = NULL, *msecret = NULL;
	if (l->discovery) {
		user = cfg->discovery_user;
		secret = cfg->discovery_secret;
	} else {
		user = l->tgt->cfg->chap_user;
		secret = l->tgt->cfg->chap_secret;
		muser = l->tgt->cfg->mutual_user;
		msecret = l->tgt->cfg->mutual_secret;
	}
	const char *am = iscsi_keys_get(kv, n, "AuthMethod");
	if (am) {
		if (l->auth_required && iscsi_list_has(am, "CHAP")) {
			iscsi_text_add(resp, "AuthMethod", "CHAP");
			l->chap = true;
		} else if (!l->auth_required && iscsi_list_has(am, "None")) {
			iscsi_text_add(resp, "AuthMethod", "None");
			l->auth_done = true;
		} else {
			iscsi_login_fail(c, ISCSI_LOGIN_AUTH_FAILED,
					 l->auth_required
					     ? "CHAP required, not offered"
					     : "AuthMethod without None");
			return -1;
		}
		l->auth_method_chosen = true;
	}
	const char *ca = iscsi_keys_get(kv, n, "CHAP_A");
	const char *cn = iscsi_keys_get(kv, n, "CHAP_N");
	const char *cr = iscsi_keys_get(kv, n, "CHAP_R");
	const char *ci = iscsi_keys_get(kv, n, "CHAP_I");
	const char *cc = iscsi_keys_get(kv, n, "CHAP_C");
	char why[128];
	if ((ca || cn || cr || ci || cc) && !l->chap) {
		iscsi_login_fail(c, ISCSI_LOGIN_AUTH_FAILED,
				 "CHAP keys without AuthMethod=CHAP");
		return -1;
	}
	if (ca) {
		uint8_t rnd[1 + ISCSI_CHAP_CHALLENGE_LEN];
		if (l->chap_state.sent || l->auth_done ||
		    RAND_bytes(rnd, sizeof(rnd)) != 1 ||
		    iscsi_chap_start(&l->chap_state, ca, rnd, resp, why,
				     sizeof(why)) < 0) {
			iscsi_login_fail(c, ISCSI_LOGIN_AUTH_FAILED,
					 "CHAP_A refused");
			return -1;
		}
	} else if (cn || cr) {
		if (iscsi_chap_finish(&l->chap_state, user, secret, muser,
				      msecret, cn, cr, ci, cc, resp, why,
				      sizeof(why)) < 0) {
			iscsi_login_fail(c, ISCSI_LOGIN_AUTH_FAILED, why);
			return -1;
		}
		l->auth_done = true;
		log_debug(ISCSI_LOG, "conn %llu %s: CHAP ok%s",
			  (unsigned long long)c->base.id, c->peer,
			  ci ? " (mutual)" : "");
	} else if (ci || cc) {
		iscsi_login_fail(c, ISCSI_LOGIN_AUTH_FAILED,
				 "CHAP_I/CHAP_C without CHAP_N/CHAP_R");
		return -1;
	}
	return 0;
}

static bool iscsi_login_is_security_key(const char *k)
{
	return !strcmp(k, "AuthMethod") || !strncmp(k, "CHAP_", 5);
}

/* The move to full feature phase: make or join the session. */
static int iscsi_login_complete(struct iscsi_conn *c)
{
	struct iscsi_login *l = &c->login;
	struct iscsi_server *srv = c->srv;
	iscsi_keys_finish(&l->params);
	struct iscsi_session *s;
	if (l->tsih == 0) {
		if (!l->discovery)
			iscsi_session_reinstate(srv, l->initiator, l->isid,
						l->tgt);
		s = iscsi_session_new(srv, l);
		if (!s) {
			iscsi_login_fail(c, ISCSI_LOGIN_OUT_OF_RESOURCES,
					 "out of memory");
			return -1;
		}
	} else {
		s = iscsi_session_find(srv, l->tsih);
		if (!s || memcmp(s->isid, l->isid, 6) ||
		    strcasecmp(s->initiator, l->initiator) ||
		    s->tgt != l->tgt) {
			iscsi_login_fail(c, ISCSI_LOGIN_NO_SESSION,
					 "no such session (TSIH)");
			return -1;
		}
		/* § 6.3.4 connection reinstatement: same CID replaces. */
		struct iscsi_conn *o, *next;
		for (o = TAILQ_FIRST(&s->conns); o; o = next) {
			next = TAILQ_NEXT(o, sess_link);
			if (o->cid == l->cid && o != c)
				iscsi_conn_close(o, true);
		}
		unsigned live = 0;
		TAILQ_FOREACH(o, &s->conns, sess_link)
		if (!o->closing)
			live++;
		if (live >= s->params.max_connections) {
			iscsi_login_fail(c, ISCSI_LOGIN_TOO_MANY_CONNS,
					 "MaxConnections reached");
			return -1;
		}
	}
	c->cid = l->cid;
	iscsi_session_add_conn(s, c);
	return 0;
}

void iscsi_login_pdu(struct iscsi_conn *c, const struct iscsi_bhs *h,
		     uint8_t *data, uint32_t dlen)
{
	struct iscsi_login *l = &c->login;
	const uint8_t *b = h->raw;
	if (c->state != ISCSI_CONN_LOGIN) {
		/* § 11.12: Login Requests only before full feature phase. */
		iscsi_conn_reject(c, b, ISCSI_REJECT_PROTOCOL);
		c->close_after_send = true;
		return;
	}
	bool transit = h->flags & ISCSI_LOGIN_TRANSIT;
	bool cont = h->flags & ISCSI_LOGIN_CONTINUE;
	uint8_t csg = (h->flags >> 2) & 3, nsg = h->flags & 3;
	if (!l->started) {
		l->started = true;
		memcpy(l->isid, b + 8, 6);
		l->tsih = get_be16(b + 14);
		l->cid = get_be16(b + 20);
		l->cmdsn = get_be32(b + 24);
		c->stat_sn = get_be32(b + 28);
		l->csg = csg;
	}
	l->itt = h->itt;
	/* § 11.12.4: Version-min must be 0 (the only version). */
	if (b[3] != 0) {
		iscsi_login_fail(c, ISCSI_LOGIN_UNSUPPORTED_VERSION,
				 "unsupported version");
		return;
	}
	if ((transit && cont) || csg == 2 || csg == 3 ||
	    (transit && (nsg == 2 || nsg <= csg)) || csg != l->csg ||
	    memcmp(l->isid, b + 8, 6)) {
		iscsi_login_fail(c, ISCSI_LOGIN_INVALID_REQUEST,
				 "invalid stage transition or fields");
		return;
	}
	/* Accumulate text split over C-bit PDUs (§ 11.12.2). */
	if (l->text_len + dlen > ISCSI_LOGIN_TEXT_MAX) {
		iscsi_login_fail(c, ISCSI_LOGIN_INITIATOR_ERROR,
				 "login text too long");
		return;
	}
	char *t = realloc(l->text, l->text_len + dlen + 1);
	if (!t) {
		iscsi_login_fail(c, ISCSI_LOGIN_OUT_OF_RESOURCES, "no memory");
		return;
	}
	l->text = t;
	memcpy(l->text + l->text_len, data, dlen);
	l->text_len += dlen;
	if (cont) {
		/* § 11.13.1: answer with an empty response, same stage. */
		iscsi_login_respond(c, (uint8_t)(csg << 2), 0, NULL);
		return;
	}

	struct iscsi_kv kv[ISCSI_KEYS_MAX];
	int n = iscsi_keys_parse(l->text, l->text_len, kv, ISCSI_KEYS_MAX);
	if (n < 0) {
		iscsi_login_fail(c, ISCSI_LOGIN_INITIATOR_ERROR,
				 "malformed login text");
		return;
	}
	struct iscsi_text resp = {0};
	bool first = !l->params.max_recv_dsl; /* params not yet set */
	if (first && iscsi_login_first(c, kv, (unsigned)n) < 0)
		goto out;

	if (csg == ISCSI_STAGE_SECURITY) {
		if (iscsi_login_security(c, kv, (unsigned)n, &resp) < 0)
			goto out;
	} else if (l->auth_required && !l->auth_done) {
		/* § 6.3.1: skipping security when it is required. */
		iscsi_login_fail(c, ISCSI_LOGIN_AUTH_FAILED,
				 "authentication required");
		goto out;
	} else {
		l->auth_done = true;
	}
	for (int i = 0; i < n; i++) {
		const char *k = kv[i].key;
		if (iscsi_login_is_security_key(k)) {
			if (csg != ISCSI_STAGE_SECURITY)
				iscsi_text_add(&resp, k, "Irrelevant");
			continue;
		}
		if (!strcmp(k, "InitiatorName") || !strcmp(k, "TargetName") ||
		    !strcmp(k, "SessionType") || !strcmp(k, "InitiatorAlias"))
			continue;
		int r = iscsi_keys_negotiate(&l->params, &c->srv->lim, k,
					     kv[i].val, &resp);
		if (r == 0)
			iscsi_text_add(&resp, k, "NotUnderstood");
	}
	if (first && !l->discovery && l->tgt) {
		/* § 13.9: returned in the first Login Response of a normal
		 * session. */
		iscsi_text_add(&resp, "TargetPortalGroupTag", "%d", ISCSI_TPGT);
		if (l->tgt->cfg->alias)
			iscsi_text_add(&resp, "TargetAlias", "%s",
				       l->tgt->cfg->alias);
	}
	if (csg == ISCSI_STAGE_OPERATIONAL && !l->sent_mrdsl) {
		/* § 13.12: declare what we accept. */
		iscsi_text_add(&resp, "MaxRecvDataSegmentLength", "%u",
			       c->srv->lim.max_recv_dsl);
		l->params.max_recv_dsl = c->srv->lim.max_recv_dsl;
		l->sent_mrdsl = true;
	}
	if (resp.oom) {
		iscsi_login_fail(c, ISCSI_LOGIN_OUT_OF_RESOURCES, "no memory");
		goto out;
	}
	free(l->text);
	l->text = NULL;
	l->text_len = 0;

	uint8_t flags = (uint8_t)(csg << 2);
	if (transit) {
		bool ok = csg != ISCSI_STAGE_SECURITY || l->auth_done;
		if (ok) {
			flags |= ISCSI_LOGIN_TRANSIT | nsg;
			l->csg = nsg;
		}
	}
	if ((flags & ISCSI_LOGIN_TRANSIT) && nsg == ISCSI_STAGE_FULL_FEATURE) {
		if (iscsi_login_complete(c) < 0)
			goto out;
		iscsi_login_respond(c, flags, ISCSI_LOGIN_OK, &resp);
		/* Digests and the new segment lengths start with the next
		 * PDU (§ 13.1, § 13.12). */
		c->state = ISCSI_CONN_FFP;
		iscsi_nop_start(c);
		c->hdigest = l->params.header_digest;
		c->ddigest = l->params.data_digest;
		c->max_recv_dsl =
		    l->sent_mrdsl ? c->srv->lim.max_recv_dsl : ISCSI_LOGIN_DSL;
		c->max_send_dsl = l->params.max_send_dsl;
		log_debug(ISCSI_LOG,
			  "conn %llu %s: full feature phase (hd %d dd %d "
			  "mrdsl %u/%u burst %u/%u r2t %d imm %d)",
			  (unsigned long long)c->base.id, c->peer, c->hdigest,
			  c->ddigest, c->max_recv_dsl, c->max_send_dsl,
			  l->params.first_burst, l->params.max_burst,
			  l->params.initial_r2t, l->params.immediate_data);
	} else {
		iscsi_login_respond(c, flags, ISCSI_LOGIN_OK, &resp);
	}
out:
	iscsi_text_free(&resp);
}
