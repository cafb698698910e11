/* The full feature phase (RFC 7143 § 11.3-11.11, § 11.14-11.19): SCSI
 * Command PDUs to the SCSI core (scsi_cmd_submit), immediate and
 * unsolicited data and R2T for the rest (§ 4.2.5.2), Data-In with the
 * status in the last PDU when it is GOOD (§ 11.7.4), SCSI Response with
 * sense and residuals (§ 11.4), Task Management (§ 11.5), NOP (§ 11.18,
 * § 11.19), Text / SendTargets (§ 11.10, Appendix C) and Logout (§ 11.14).
 * Opcodes are dispatched from one table. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iscsi_int.h"
#include "log.h"
#include "util.h"

typedef void iscsi_handler(struct iscsi_conn *c, const struct iscsi_bhs *h,
			   const uint8_t *ahs, size_t ahs_len, uint8_t *data,
			   uint32_t dlen);

static iscsi_handler iscsi_scsi_cmd, iscsi_scsi_data_out, iscsi_scsi_nop,
    iscsi_scsi_tmf, iscsi_scsi_text, iscsi_scsi_logout, iscsi_scsi_snack;

static const struct {
	iscsi_handler *fn;
	bool normal_only; /* not in discovery sessions (§ 4.3) */
} iscsi_scsi_table[64] = {
    [ISCSI_OP_NOP_OUT] = {iscsi_scsi_nop, false},
    [ISCSI_OP_SCSI_CMD] = {iscsi_scsi_cmd, true},
    [ISCSI_OP_TMF_REQ] = {iscsi_scsi_tmf, true},
    [ISCSI_OP_TEXT_REQ] = {iscsi_scsi_text, false},
    [ISCSI_OP_DATA_OUT] = {iscsi_scsi_data_out, true},
    [ISCSI_OP_LOGOUT_REQ] = {iscsi_scsi_logout, false},
    [ISCSI_OP_SNACK] = {iscsi_scsi_snack, true},
};

void iscsi_scsi_pdu(struct iscsi_conn *c, const struct iscsi_bhs *h,
		    const uint8_t *ahs, size_t ahs_len, uint8_t *data,
		    uint32_t dlen)
{
	iscsi_handler *fn = iscsi_scsi_table[h->opcode].fn;
	if (!fn || (iscsi_scsi_table[h->opcode].normal_only && !c->sess->tgt)) {
		iscsi_conn_reject(c, h->raw,
				  fn ? ISCSI_REJECT_PROTOCOL
				     : ISCSI_REJECT_CMD_NOT_SUPPORTED);
		return;
	}
	fn(c, h, ahs, ahs_len, data, dlen);
}

/* ---- tasks ---------------------------------------------------------- */

static struct iscsi_task *iscsi_task_find(struct iscsi_conn *c, uint32_t itt)
{
	struct iscsi_task *t;
	TAILQ_FOREACH(t, &c->tasks, link)
	if (t->itt == itt)
		return t;
	return NULL;
}

static void iscsi_task_unlist(struct iscsi_task *t)
{
	struct iscsi_conn *c = t->conn;
	if (!t->listed)
		return;
	t->listed = false;
	TAILQ_REMOVE(&c->tasks, t, link);
	if (c->sess) {
		c->sess->ntasks--;
		c->sess->nbytes -= t->bytes;
	}
	iscsi_conn_task_put(t);
}

void iscsi_conn_task_put(struct iscsi_task *t)
{
	if (--t->refs)
		return;
	struct iscsi_server *srv = t->srv;
	if (t->buf)
		bufpool_put(&srv->bufs, t->buf, t->edtl);
	if (t->in)
		bufpool_put(&srv->bufs, t->in, t->edtl);
	freelist_put(&srv->task_fl, t);
}

void iscsi_scsi_drop_tasks(struct iscsi_conn *c)
{
	struct iscsi_task *t, *next;
	for (t = TAILQ_FIRST(&c->tasks); t; t = next) {
		next = TAILQ_NEXT(t, link);
		if (!t->submitted)
			iscsi_task_unlist(t);
	}
}

/* ---- responses ------------------------------------------------------ */

static void iscsi_scsi_put_residual(uint8_t *h, const struct iscsi_task *t,
				    uint32_t sent)
{
	uint32_t x = MAX(t->cmd.xfer_len, t->cdb_xfer);
	if (x > t->edtl) {
		h[1] |= ISCSI_FLAG_OVERFLOW;
		put_be32(h + 44, x - t->edtl);
	} else if (sent < t->edtl) {
		h[1] |= ISCSI_FLAG_UNDERFLOW;
		put_be32(h + 44, t->edtl - sent);
	}
}

static void iscsi_scsi_respond(struct iscsi_task *t)
{
	struct iscsi_conn *c = t->conn;
	struct scsi_cmd *cmd = &t->cmd;
	uint32_t sent = 0, datasn = 0;
	bool good = cmd->status == SCSI_STATUS_GOOD && !cmd->sense_len;
	if (t->read && t->in) {
		uint32_t len = MIN(cmd->data_in_len, t->edtl);
		uint32_t seg = c->max_send_dsl;
		while (sent < len) {
			uint32_t n = MIN(seg, len - sent);
			bool last = sent + n == len;
			struct iscsi_out *o = iscsi_out_new(
			    c, ISCSI_OP_DATA_IN, 0, t->in + sent, n, false);
			if (!o)
				return;
			uint8_t *hd = o->hdr;
			iscsi_pdu_lun_encode(cmd->lun, hd + 8);
			put_be32(hd + 16, t->itt);
			put_be32(hd + 20, ISCSI_RSVD_TAG);
			put_be32(hd + 36, datasn++);
			put_be32(hd + 40, sent);
			o->task = t;
			t->refs++;
			sent += n;
			if (last && good) {
				/* § 11.7.4: status in the final Data-In. */
				hd[1] = ISCSI_FLAG_FINAL | ISCSI_DATA_STATUS;
				hd[3] = cmd->status;
				iscsi_scsi_put_residual(hd, t, sent);
				iscsi_conn_queue(c, o, true);
				return;
			}
			if (last)
				hd[1] = ISCSI_FLAG_FINAL;
			iscsi_conn_queue(c, o, false);
		}
	}
	uint8_t sense[2 + SCSI_SENSE_MAX];
	uint32_t slen = 0;
	if (cmd->sense_len) {
		slen = 2u + MIN(cmd->sense_len, SCSI_SENSE_MAX);
		put_be16(sense, (uint16_t)(slen - 2));
		memcpy(sense + 2, cmd->sense, slen - 2);
	}
	struct iscsi_out *o = iscsi_out_new(
	    c, ISCSI_OP_SCSI_RSP, ISCSI_FLAG_FINAL, sense, slen, true);
	if (!o)
		return;
	uint8_t *hd = o->hdr;
	hd[2] = 0; /* command completed at target */
	hd[3] = cmd->status;
	put_be32(hd + 16, t->itt);
	put_be32(hd + 36, datasn); /* ExpDataSN */
	if (t->read)
		iscsi_scsi_put_residual(hd, t, sent);
	else if (t->write)
		iscsi_scsi_put_residual(
		    hd, t, MIN(MAX(cmd->xfer_len, t->cdb_xfer), t->edtl));
	else
		iscsi_scsi_put_residual(hd, t, 0);
	iscsi_conn_queue(c, o, true);
}

static void iscsi_scsi_done(struct scsi_cmd *cmd)
{
	struct iscsi_task *t = cmd->priv;
	struct iscsi_conn *c = t->conn;
	t->submitted = false;
	c->nio--;
	if (!c->closing && !t->aborted)
		iscsi_scsi_respond(t);
	iscsi_task_unlist(t);
	iscsi_conn_io_done(c);
}

static void iscsi_scsi_submit(struct iscsi_task *t)
{
	struct iscsi_conn *c = t->conn;
	struct scsi_cmd *cmd = &t->cmd;
	cmd->nexus = &c->sess->nexus;
	cmd->data_out = t->buf;
	cmd->data_out_len = t->write ? t->got : 0;
	cmd->data_in = t->in;
	cmd->data_in_cap = t->in ? t->edtl : 0;
	cmd->done = iscsi_scsi_done;
	cmd->priv = t;
	t->submitted = true;
	c->nio++;
	scsi_cmd_submit(c->srv->scsi, cmd);
}

/* Status without running the command (transport-level refusals). */
static void iscsi_scsi_fail(struct iscsi_conn *c, const struct iscsi_bhs *h,
			    uint8_t status, const uint8_t *sense, uint8_t slen)
{
	uint8_t buf[2 + 18];
	if (slen) {
		put_be16(buf, slen);
		memcpy(buf + 2, sense, slen);
	}
	struct iscsi_out *o =
	    iscsi_out_new(c, ISCSI_OP_SCSI_RSP, ISCSI_FLAG_FINAL, buf,
			  slen ? 2u + slen : 0, true);
	if (!o)
		return;
	o->hdr[3] = status;
	put_be32(o->hdr + 16, h->itt);
	iscsi_conn_queue(c, o, true);
}

/* Solicit data with R2Ts (§ 11.8) up to MaxOutstandingR2T, each at most
 * MaxBurstLength. */
static void iscsi_scsi_r2t(struct iscsi_task *t)
{
	struct iscsi_conn *c = t->conn;
	const struct iscsi_params *p = &c->sess->params;
	unsigned max = MIN(p->max_outstanding_r2t, ISCSI_MAX_R2T);
	while (t->r2t_next < t->edtl && t->r2t_out < max) {
		uint32_t n = MIN(p->max_burst, t->edtl - t->r2t_next);
		struct iscsi_r2t *r = NULL;
		for (unsigned i = 0; i < ISCSI_MAX_R2T && !r; i++)
			if (!t->r2t[i].used)
				r = &t->r2t[i];
		if (!r)
			return;
		struct iscsi_out *o = iscsi_out_new(
		    c, ISCSI_OP_R2T, ISCSI_FLAG_FINAL, NULL, 0, false);
		if (!o)
			return;
		uint8_t *hd = o->hdr;
		iscsi_pdu_lun_encode(t->cmd.lun, hd + 8);
		put_be32(hd + 16, t->itt);
		*r = (struct iscsi_r2t){.used = true,
					.ttt = iscsi_conn_new_ttt(c),
					.off = t->r2t_next,
					.len = n};
		put_be32(hd + 20, r->ttt);
		put_be32(hd + 36, t->r2tsn++);
		put_be32(hd + 40, t->r2t_next);
		put_be32(hd + 44, n);
		t->r2t_next += n;
		t->r2t_out++;
		iscsi_conn_queue(c, o, false);
	}
}

static struct scsi_lu *iscsi_scsi_lu(struct iscsi_conn *c, uint64_t lun)
{
	const struct scsi_lun_map *m = &c->sess->tgt->map;
	for (unsigned i = 0; i < m->n; i++)
		if (m->e[i].lun == lun)
			return m->e[i].lu;
	return NULL;
}

/* RFC 7143 § 11.4.5.1: when the Expected Data Transfer Length is shorter
 * than what a WRITE's CDB asks for, the target transfers (and writes) only
 * EDTL bytes and reports the rest as residual overflow. The SCSI core
 * (scsi.h) has no "transfer capped by the transport" input and refuses a
 * short data-out buffer, so for the block WRITE family the transport
 * lowers the CDB's TRANSFER LENGTH to the whole blocks EDTL covers and
 * keeps the CDB's own length for the residual. */
static void iscsi_scsi_clamp(struct iscsi_conn *c, struct iscsi_task *t)
{
	struct scsi_cmd *cmd = &t->cmd;
	struct scsi_lu *lu = iscsi_scsi_lu(c, cmd->lun);
	if (!lu)
		return;
	uint32_t bs = scsi_lu_block_size(lu), len = 0;
	enum scsi_dir dir;
	if (scsi_cdb_xfer(cmd->cdb, cmd->cdb_len, bs, &dir, &len) < 0)
		return;
	t->cdb_xfer = len;
	if (dir != SCSI_DIR_WRITE || len <= t->edtl || !bs)
		return;
	uint32_t nblk = t->edtl / bs;
	uint8_t *p = cmd->cdb;
	switch (p[0]) {
	case 0x2a: /* WRITE (10) */
	case 0x2e: /* WRITE AND VERIFY (10) */
		put_be16(p + 7, (uint16_t)nblk);
		break;
	case 0xaa: /* WRITE (12) */
	case 0xae: /* WRITE AND VERIFY (12) */
		put_be32(p + 6, nblk);
		break;
	case 0x8a: /* WRITE (16) */
	case 0x8e: /* WRITE AND VERIFY (16) */
		put_be32(p + 10, nblk);
		break;
	default:
		break;
	}
}

static const uint8_t iscsi_sense_invalid_cdb[18] = {
    0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0x00};

static void iscsi_scsi_cmd(struct iscsi_conn *c, const struct iscsi_bhs *h,
			   const uint8_t *ahs, size_t ahs_len, uint8_t *data,
			   uint32_t dlen)
{
	struct iscsi_session *s = c->sess;
	const uint8_t *b = h->raw;
	uint32_t cmdsn = get_be32(b + 24);
	if (!iscsi_session_cmdsn(s, cmdsn, h->immediate)) {
		log_debug(ISCSI_LOG, "conn %llu: CmdSN %u outside [%u, %u]",
			  (unsigned long long)c->base.id, cmdsn, s->exp_cmdsn,
			  s->max_cmdsn);
		return;
	}
	bool rd = h->flags & ISCSI_CMD_READ, wr = h->flags & ISCSI_CMD_WRITE;
	uint32_t edtl = get_be32(b + 20);
	if (h->itt == ISCSI_RSVD_TAG || (dlen && !wr) || dlen > edtl ||
	    (!rd && !wr && edtl) || !(h->flags & ISCSI_FLAG_FINAL)) {
		iscsi_conn_reject(c, b, ISCSI_REJECT_INVALID_FIELD);
		return;
	}
	if (iscsi_task_find(c, h->itt)) {
		iscsi_conn_reject(c, b, ISCSI_REJECT_TASK_IN_PROGRESS);
		return;
	}
	uint8_t cdb[SCSI_CDB_MAX];
	int cdb_len = iscsi_pdu_cdb(b, ahs, ahs_len, cdb, sizeof(cdb));
	if (cdb_len < 0) {
		iscsi_conn_reject(c, b, ISCSI_REJECT_INVALID_FIELD);
		return;
	}
	const struct iscsi_params *p = &s->params;
	if (dlen && (!p->immediate_data || dlen > p->first_burst)) {
		iscsi_conn_reject(c, b, ISCSI_REJECT_PROTOCOL);
		return;
	}
	size_t bytes = (wr ? edtl : 0) + (rd ? edtl : 0);
	if (edtl > ISCSI_MAX_XFER) {
		iscsi_scsi_fail(c, h, SCSI_STATUS_CHECK_CONDITION,
				iscsi_sense_invalid_cdb,
				sizeof(iscsi_sense_invalid_cdb));
		return;
	}
	if (s->nbytes + bytes > ISCSI_SESSION_BYTES) {
		iscsi_scsi_fail(c, h, SCSI_STATUS_TASK_SET_FULL, NULL, 0);
		return;
	}
	struct iscsi_task *t = freelist_zget(&c->srv->task_fl);
	if (t) {
		t->srv = c->srv;
		t->edtl = edtl;
		t->refs = 1;
		if (wr && edtl)
			t->buf = bufpool_get(&c->srv->bufs, edtl);
		if (rd && edtl)
			t->in = bufpool_get(&c->srv->bufs, edtl);
	}
	if (!t || (wr && edtl && !t->buf) || (rd && edtl && !t->in)) {
		if (t)
			iscsi_conn_task_put(t);
		iscsi_scsi_fail(c, h, SCSI_STATUS_BUSY, NULL, 0);
		return;
	}
	t->conn = c;
	t->itt = h->itt;
	t->cmdsn = cmdsn;
	t->read = rd;
	t->write = wr;
	t->bytes = bytes;
	t->listed = true;
	TAILQ_INSERT_TAIL(&c->tasks, t, link);
	s->ntasks++;
	s->nbytes += bytes;
	struct scsi_cmd *cmd = &t->cmd;
	memcpy(cmd->cdb, cdb, (size_t)cdb_len);
	cmd->cdb_len = (uint8_t)cdb_len;
	cmd->lun = iscsi_pdu_lun_decode(h->lun_raw);
	cmd->tag = h->itt;
	cmd->task_attr = h->flags & ISCSI_CMD_ATTR_MASK;
	iscsi_scsi_clamp(c, t);
	if (!wr || edtl == 0) {
		iscsi_scsi_submit(t);
		return;
	}
	memcpy(t->buf, data, dlen);
	t->got = dlen;
	/* § 4.2.5.2 / § 13.10: with InitialR2T=No the initiator may send
	 * FirstBurstLength bytes unsolicited (immediate data included). */
	t->unsol_end = p->initial_r2t ? dlen : MIN(p->first_burst, edtl);
	t->r2t_next = t->unsol_end;
	t->unsol_next = dlen; /* immediate data came first */
	if (t->got == edtl) {
		iscsi_scsi_submit(t);
		return;
	}
	iscsi_scsi_r2t(t);
}

static void iscsi_scsi_data_out(struct iscsi_conn *c, const struct iscsi_bhs *h,
				const uint8_t *ahs, size_t ahs_len,
				uint8_t *data, uint32_t dlen)
{
	(void)ahs;
	(void)ahs_len;
	const uint8_t *b = h->raw;
	uint32_t ttt = get_be32(b + 20), off = get_be32(b + 40);
	struct iscsi_task *t = iscsi_task_find(c, h->itt);
	if (!t) {
		/* Data for a command we refused or dropped: ignore. */
		if (ttt != ISCSI_RSVD_TAG)
			iscsi_conn_reject(c, b, ISCSI_REJECT_INVALID_FIELD);
		return;
	}
	uint32_t datasn = get_be32(b + 36);
	struct iscsi_r2t *r = NULL;
	if (ttt != ISCSI_RSVD_TAG) {
		for (unsigned i = 0; i < ISCSI_MAX_R2T && !r; i++)
			if (t->r2t[i].used && t->r2t[i].ttt == ttt)
				r = &t->r2t[i];
	}
	bool ok = t->write && !t->submitted && off <= t->edtl &&
		  dlen <= t->edtl - off;
	if (ok && ttt == ISCSI_RSVD_TAG)
		ok = off == t->unsol_next && datasn == t->unsol_datasn &&
		     off + dlen <= t->unsol_end;
	else if (ok)
		ok =
		    r && datasn == r->datasn && off == r->off + r->got &&
		    dlen <= r->len - r->got &&
		    (!(h->flags & ISCSI_FLAG_FINAL) || r->got + dlen == r->len);
	if (!ok) {
		/* At ErrorRecoveryLevel 0 a sequence error ends the task: the
		 * initiator sees the Reject and fails the command. */
		log_debug(ISCSI_LOG,
			  "conn %llu: bad Data-Out itt 0x%x ttt 0x%x datasn %u "
			  "off %u len %u",
			  (unsigned long long)c->base.id, h->itt, ttt, datasn, off,
			  dlen);
		iscsi_conn_reject(c, b,
				  t->write && !t->submitted
				      ? ISCSI_REJECT_PROTOCOL
				      : ISCSI_REJECT_INVALID_FIELD);
		if (!t->submitted)
			iscsi_task_unlist(t);
		return;
	}
	memcpy(t->buf + off, data, dlen);
	t->got += dlen;
	if (r) {
		r->got += dlen;
		r->datasn++;
		if (h->flags & ISCSI_FLAG_FINAL) {
			r->used = false;
			t->r2t_out--;
		}
	} else {
		t->unsol_next += dlen;
		t->unsol_datasn++;
	}
	if (t->got >= t->edtl) {
		t->got = t->edtl;
		iscsi_scsi_submit(t);
		return;
	}
	iscsi_scsi_r2t(t);
}

void iscsi_scsi_digest_error(struct iscsi_conn *c, const struct iscsi_bhs *h)
{
	/* At ErrorRecoveryLevel 0 the initiator cannot resend the data: the
	 * command's status would never come. Drop the task so its ITT does
	 * not linger; the initiator's recovery is to reconnect. */
	if (h->opcode != ISCSI_OP_DATA_OUT)
		return;
	struct iscsi_task *t = iscsi_task_find(c, h->itt);
	if (t && !t->submitted)
		iscsi_task_unlist(t);
}

/* ---- task management ------------------------------------------------ */

struct iscsi_tmf_req {
	struct iscsi_conn *conn;
	uint32_t itt;
	uint8_t lun_raw[8];
};

static void iscsi_tmf_respond(struct iscsi_conn *c, uint32_t itt,
			      uint8_t response)
{
	struct iscsi_out *o = iscsi_out_new(c, ISCSI_OP_TMF_RSP,
					    ISCSI_FLAG_FINAL, NULL, 0, false);
	if (!o)
		return;
	o->hdr[2] = response;
	put_be32(o->hdr + 16, itt);
	iscsi_conn_queue(c, o, true);
}

static void iscsi_tmf_done(void *arg, int response)
{
	struct iscsi_tmf_req *r = arg;
	struct iscsi_conn *c = r->conn;
	c->nio--;
	if (!c->closing)
		iscsi_tmf_respond(c, r->itt, (uint8_t)response);
	free(r);
	iscsi_conn_io_done(c);
}

/* Marks the tasks a TMF aborts: those not yet in the core end here; those
 * in it end when the core returns them, with no response (§ 4.2.3.4: the
 * TMF response stands for them). */
static void iscsi_tmf_mark(struct iscsi_session *s, bool all_luns, uint64_t lun,
			   bool one, uint32_t ref)
{
	struct iscsi_conn *c;
	TAILQ_FOREACH(c, &s->conns, sess_link)
	{
		struct iscsi_task *t, *next;
		for (t = TAILQ_FIRST(&c->tasks); t; t = next) {
			next = TAILQ_NEXT(t, link);
			if (one ? t->itt != ref
				: (!all_luns && t->cmd.lun != lun))
				continue;
			t->aborted = true;
			if (!t->submitted)
				iscsi_task_unlist(t);
		}
	}
}

static void iscsi_scsi_tmf(struct iscsi_conn *c, const struct iscsi_bhs *h,
			   const uint8_t *ahs, size_t ahs_len, uint8_t *data,
			   uint32_t dlen)
{
	(void)ahs;
	(void)ahs_len;
	(void)data;
	(void)dlen;
	struct iscsi_session *s = c->sess;
	const uint8_t *b = h->raw;
	uint8_t fn = b[1] & 0x7f;
	uint32_t ref = get_be32(b + 20), cmdsn = get_be32(b + 24);
	uint32_t refcmdsn = get_be32(b + 32);
	uint32_t exp_before = s->exp_cmdsn;
	if (!iscsi_session_cmdsn(s, cmdsn, h->immediate))
		return;
	uint64_t lun = iscsi_pdu_lun_decode(h->lun_raw);
	enum scsi_tmf f;
	switch (fn) {
	case 1: { /* ABORT TASK */
		f = SCSI_TMF_ABORT_TASK;
		struct iscsi_task *t = NULL;
		struct iscsi_conn *o;
		TAILQ_FOREACH(o, &s->conns, sess_link)
		if ((t = iscsi_task_find(o, ref)) != NULL)
			break;
		if (!t) {
			/* § 11.5.1 b), c): a task whose CmdSN is in the
			 * window but not yet received counts as aborted;
			 * any other unknown task (done already, or never
			 * sent) does not exist. */
			bool pending = !iscsi_sn_lt(refcmdsn, exp_before) &&
				       iscsi_sn_lt(refcmdsn, cmdsn) &&
				       !h->immediate;
			iscsi_tmf_respond(c, h->itt,
					  pending ? SCSI_TMF_COMPLETE
						  : SCSI_TMF_NO_TASK);
			return;
		}
		lun = t->cmd.lun;
		bool in_core = t->submitted;
		iscsi_tmf_mark(s, false, lun, true, ref);
		if (!in_core) {
			iscsi_tmf_respond(c, h->itt, SCSI_TMF_COMPLETE);
			return;
		}
		break;
	}
	case 2: /* ABORT TASK SET */
		f = SCSI_TMF_ABORT_TASK_SET;
		iscsi_tmf_mark(s, false, lun, false, 0);
		break;
	case 3:
		f = SCSI_TMF_CLEAR_ACA;
		break;
	case 4: /* CLEAR TASK SET */
		f = SCSI_TMF_CLEAR_TASK_SET;
		iscsi_tmf_mark(s, false, lun, false, 0);
		break;
	case 5: /* LOGICAL UNIT RESET */
		f = SCSI_TMF_LUN_RESET;
		iscsi_tmf_mark(s, false, lun, false, 0);
		break;
	case 6: /* TARGET WARM RESET */
	case 7: /* TARGET COLD RESET */
		f = SCSI_TMF_TARGET_RESET;
		iscsi_tmf_mark(s, true, 0, false, 0);
		break;
	case 8: /* TASK REASSIGN: needs ErrorRecoveryLevel 2 */
		iscsi_tmf_respond(c, h->itt, 4);
		return;
	default:
		iscsi_tmf_respond(c, h->itt, SCSI_TMF_REJECTED);
		return;
	}
	struct iscsi_tmf_req *r = calloc(1, sizeof(*r));
	if (!r) {
		iscsi_tmf_respond(c, h->itt, SCSI_TMF_REJECTED);
		return;
	}
	r->conn = c;
	r->itt = h->itt;
	c->nio++;
	scsi_tmf(c->srv->scsi, &s->nexus, f, lun, ref, iscsi_tmf_done, r);
}

/* ---- NOP, Text, Logout, SNACK ---------------------------------------- */

static void iscsi_scsi_nop(struct iscsi_conn *c, const struct iscsi_bhs *h,
			   const uint8_t *ahs, size_t ahs_len, uint8_t *data,
			   uint32_t dlen)
{
	(void)ahs;
	(void)ahs_len;
	const uint8_t *b = h->raw;
	if (h->itt == ISCSI_RSVD_TAG) {
		/* A reply to our ping, or a ping wanting none (§ 11.18). */
		if (!h->immediate)
			iscsi_conn_reject(c, b, ISCSI_REJECT_PROTOCOL);
		else if (get_be32(b + 20) != ISCSI_RSVD_TAG)
			iscsi_nop_answer(c, get_be32(b + 20));
		return;
	}
	if (!iscsi_session_cmdsn(c->sess, get_be32(b + 24), h->immediate))
		return;
	struct iscsi_out *o = iscsi_out_new(c, ISCSI_OP_NOP_IN,
					    ISCSI_FLAG_FINAL, data, dlen, true);
	if (!o)
		return;
	memcpy(o->hdr + 8, h->lun_raw, 8);
	put_be32(o->hdr + 16, h->itt);
	put_be32(o->hdr + 20, ISCSI_RSVD_TAG);
	iscsi_conn_queue(c, o, true);
}

/* Appendix C: SendTargets lists the targets this initiator may log in to,
 * each at the address it reached us on. */
static void iscsi_scsi_sendtargets(struct iscsi_conn *c, const char *what,
				   struct iscsi_text *resp)
{
	struct iscsi_server *srv = c->srv;
	struct iscsi_session *s = c->sess;
	for (unsigned i = 0; i < srv->ntgts; i++) {
		const struct iscsi_cfg_target *t = srv->tgts[i].cfg;
		if (!iscsi_config_allows(t, s->initiator))
			continue;
		if (s->tgt && s->tgt != &srv->tgts[i])
			continue; /* normal session: its own target only */
		if (strcmp(what, "All") && *what && strcasecmp(what, t->name))
			continue;
		if (!s->tgt && strcmp(what, "All"))
			continue;
		iscsi_text_add(resp, "TargetName", "%s", t->name);
		iscsi_text_add(resp, "TargetAddress", "%s:%u,%d", c->local,
			       (unsigned)srv->net.port, ISCSI_TPGT);
	}
}

/* Sends the next piece of the pending long Text Response: at most what
 * the initiator accepts per PDU, C=1 and our TTT while more follows, F=1
 * and TTT reserved on the last (§ 11.11.1, 11.11.4). Key=value pairs may
 * span pieces: the initiator joins them (§ 6.2). */
static void iscsi_scsi_text_piece(struct iscsi_conn *c, const struct iscsi_bhs *h)
{
	size_t n = c->text_len - c->text_off;
	bool last = n <= c->max_send_dsl;
	if (!last)
		n = c->max_send_dsl;
	struct iscsi_out *o = iscsi_out_new(
	    c, ISCSI_OP_TEXT_RSP, last ? ISCSI_FLAG_FINAL : ISCSI_TEXT_CONTINUE,
	    c->text_rsp + c->text_off, (uint32_t)n, true);
	if (!o)
		return;
	c->text_off += n;
	memcpy(o->hdr + 8, h->lun_raw, 8);
	put_be32(o->hdr + 16, c->text_itt);
	put_be32(o->hdr + 20, last ? ISCSI_RSVD_TAG : c->text_ttt);
	if (last)
		iscsi_scsi_text_drop(c);
	iscsi_conn_queue(c, o, true);
}

void iscsi_scsi_text_drop(struct iscsi_conn *c)
{
	free(c->text_rsp);
	c->text_rsp = NULL;
	c->text_len = c->text_off = 0;
}

static void iscsi_scsi_text(struct iscsi_conn *c, const struct iscsi_bhs *h,
			    const uint8_t *ahs, size_t ahs_len, uint8_t *data,
			    uint32_t dlen)
{
	(void)ahs;
	(void)ahs_len;
	const uint8_t *b = h->raw;
	if (!iscsi_session_cmdsn(c->sess, get_be32(b + 24), h->immediate))
		return;
	if (h->flags & ISCSI_TEXT_CONTINUE || h->itt == ISCSI_RSVD_TAG) {
		/* Long text requests are not needed by anything we answer. */
		iscsi_conn_reject(c, b, ISCSI_REJECT_INVALID_FIELD);
		return;
	}
	uint32_t ttt = get_be32(b + 20);
	if (ttt != ISCSI_RSVD_TAG) {
		/* § 11.10.4: the initiator asks for the rest of the response
		 * it was given this TTT for, under the same ITT. */
		if (!c->text_rsp || ttt != c->text_ttt || h->itt != c->text_itt)
			iscsi_conn_reject(c, b, ISCSI_REJECT_INVALID_FIELD);
		else
			iscsi_scsi_text_piece(c, h);
		return;
	}
	/* A request with the TTT reserved starts anew, dropping what was
	 * left of an earlier response (§ 11.10.4). */
	iscsi_scsi_text_drop(c);
	char *text = malloc(dlen + 1);
	if (!text) {
		iscsi_conn_close(c, true);
		return;
	}
	memcpy(text, data, dlen);
	struct iscsi_kv kv[ISCSI_KEYS_MAX];
	int n = iscsi_keys_parse(text, dlen, kv, ISCSI_KEYS_MAX);
	if (n < 0) {
		free(text);
		iscsi_conn_reject(c, b, ISCSI_REJECT_INVALID_FIELD);
		return;
	}
	struct iscsi_text resp = {0};
	for (int i = 0; i < n; i++) {
		if (!strcmp(kv[i].key, "SendTargets"))
			iscsi_scsi_sendtargets(c, kv[i].val, &resp);
		else
			iscsi_text_add(&resp, kv[i].key, "NotUnderstood");
	}
	free(text);
	if (resp.oom) {
		iscsi_text_free(&resp);
		iscsi_conn_close(c, true);
		return;
	}
	/* The response is ours until its last piece is sent. */
	c->text_rsp = resp.buf;
	c->text_len = resp.len;
	c->text_off = 0;
	c->text_itt = h->itt;
	c->text_ttt = iscsi_conn_new_ttt(c);
	iscsi_scsi_text_piece(c, h);
}

/* § 11.14: the response goes once this connection's commands are done;
 * then the connection (or every connection of the session) closes. */
void iscsi_scsi_logout_check(struct iscsi_conn *c)
{
	if (c->state != ISCSI_CONN_LOGOUT || c->nio)
		return;
	struct iscsi_out *o = iscsi_out_new(c, ISCSI_OP_LOGOUT_RSP,
					    ISCSI_FLAG_FINAL, NULL, 0, false);
	if (!o)
		return;
	o->hdr[2] = c->logout_reason;
	put_be32(o->hdr + 16, c->logout_itt);
	put_be16(o->hdr + 40, 0); /* Time2Wait */
	put_be16(o->hdr + 42, 0); /* Time2Retain */
	iscsi_conn_queue(c, o, true);
	c->state = ISCSI_CONN_FFP;
	c->close_after_send = true;
	struct iscsi_session *s = c->sess;
	if (c->logout_session && s) {
		struct iscsi_conn *o2, *next;
		for (o2 = TAILQ_FIRST(&s->conns); o2; o2 = next) {
			next = TAILQ_NEXT(o2, sess_link);
			if (o2 != c)
				iscsi_conn_close(o2, true);
		}
	}
	/* § 11.14.1: the response closes the session; the initiator may
	 * act on that at once (log in elsewhere, expect its RESERVE(6)
	 * released), before our socket is closed. */
	if (s && (c->logout_session || s->nconns == 1) && !s->ntasks)
		iscsi_session_release_nexus(s);
}

static void iscsi_scsi_logout(struct iscsi_conn *c, const struct iscsi_bhs *h,
			      const uint8_t *ahs, size_t ahs_len, uint8_t *data,
			      uint32_t dlen)
{
	(void)ahs;
	(void)ahs_len;
	(void)data;
	(void)dlen;
	const uint8_t *b = h->raw;
	if (!iscsi_session_cmdsn(c->sess, get_be32(b + 24), h->immediate))
		return;
	uint8_t reason = b[1] & 0x7f;
	c->logout_itt = h->itt;
	c->logout_reason = 0;
	c->logout_session = reason == 0;
	if (reason == 1 && get_be16(b + 20) != c->cid) {
		/* Closing another connection of the session. */
		struct iscsi_conn *o;
		bool found = false;
		TAILQ_FOREACH(o, &c->sess->conns, sess_link)
		if (o->cid == get_be16(b + 20) && o != c) {
			iscsi_conn_close(o, true);
			found = true;
			break;
		}
		struct iscsi_out *r = iscsi_out_new(
		    c, ISCSI_OP_LOGOUT_RSP, ISCSI_FLAG_FINAL, NULL, 0, false);
		if (!r)
			return;
		r->hdr[2] = found ? 0 : 1; /* 1: CID not found */
		put_be32(r->hdr + 16, h->itt);
		iscsi_conn_queue(c, r, true);
		return;
	}
	if (reason > 2) {
		iscsi_conn_reject(c, b, ISCSI_REJECT_INVALID_FIELD);
		return;
	}
	/* 2 (remove the connection for recovery): "connection recovery is
	 * not supported" at ErrorRecoveryLevel 0; it closes anyway. */
	c->logout_reason = reason == 2 ? 2 : 0;
	c->state = ISCSI_CONN_LOGOUT;
	iscsi_scsi_logout_check(c);
}

static void iscsi_scsi_snack(struct iscsi_conn *c, const struct iscsi_bhs *h,
			     const uint8_t *ahs, size_t ahs_len, uint8_t *data,
			     uint32_t dlen)
{
	(void)ahs;
	(void)ahs_len;
	(void)data;
	(void)dlen;
	/* ErrorRecoveryLevel 0: nothing to retransmit from. */
	iscsi_conn_reject(c, h->raw, ISCSI_REJECT_SNACK);
}
