/* Persistent reservations (SPC-5 5.14), PERSISTENT RESERVE IN (6.15) and
 * OUT (6.16). State is per LU, in memory, and with APTPL=1 also in the
 * vdisk (pr_store.c: PTPL_C=1), so that it survives a restart.
 * A registration belongs to an I_T nexus named by its initiator and
 * target port names, so it outlives a logout and a new login of the same
 * port; ALL_TG_PT and SPEC_I_PT are refused (ATP_C=0, SIP_C=0), and
 * REGISTER AND MOVE is not offered. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "scsi_internal.h"


static struct scsi_pr_reg *pr_find(struct scsi_lu *lu,
				   const struct scsi_nexus *n)
{
	struct scsi_pr_reg *r;
	if (!n)
		return NULL;
	LIST_FOREACH(r, &lu->pr.regs, link)
		if (!strcmp(r->initiator_port, n->initiator_port) &&
		    !strcmp(r->target_port, n->target_port))
			return r;
	return NULL;
}

static bool pr_is_holder(const struct scsi_pr *pr, const struct scsi_pr_reg *r)
{
	if (!pr->reserved || !r)
		return false;
	return pr_all_registrants(pr->type) || pr->holder == r;
}

/* SPC-5 5.14.1 table 63 / SBC-4 4.17.1 table 13. */
bool pr_conflict(struct scsi_lu *lu, const struct scsi_nexus *n,
		 uint16_t op_flags)
{
	struct scsi_pr *pr = &lu->pr;
	if (!pr->reserved)
		return false;
	struct scsi_pr_reg *r = pr_find(lu, n);
	if (pr_is_holder(pr, r))
		return false;
	bool we = op_flags & OPF_CONFLICT_WE;
	bool ea = op_flags & (OPF_CONFLICT_EA | OPF_CONFLICT_WE);
	switch (pr->type) {
	case PR_TYPE_WE:
		return we;
	case PR_TYPE_EA:
		return ea;
	case PR_TYPE_WE_RO:
	case PR_TYPE_WE_AR:
		return !r && we;
	case PR_TYPE_EA_RO:
	case PR_TYPE_EA_AR:
		return !r && ea;
	}
	return false;
}

/* A unit attention to the nexus of a registration, if it is logged in. */
static void pr_ua(struct scsi_lu *lu, const struct scsi_pr_reg *r,
		  enum scsi_ua ua)
{
	struct scsi_nexus *n =
		scsi_target_nexus_by_port(lu->t, r->initiator_port,
					  r->target_port);
	if (n)
		scsi_ua_raise(lu, n->id, ua);
}

static void pr_release(struct scsi_lu *lu, const struct scsi_pr_reg *except,
		       bool notify)
{
	struct scsi_pr *pr = &lu->pr;
	/* SPC-5 5.14.11.2.2: releasing a registrants-only or all
	 * registrants reservation tells the other registrants. */
	if (notify && (pr->type == PR_TYPE_WE_RO || pr->type == PR_TYPE_EA_RO ||
		       pr_all_registrants(pr->type))) {
		struct scsi_pr_reg *r;
		LIST_FOREACH(r, &pr->regs, link)
			if (r != except)
				pr_ua(lu, r, SCSI_UA_RES_RELEASED);
	}
	pr->reserved = false;
	pr->holder = NULL;
	pr->type = 0;
}

static void pr_unregister(struct scsi_lu *lu, struct scsi_pr_reg *r)
{
	struct scsi_pr *pr = &lu->pr;
	if (pr->reserved) {
		if (pr_all_registrants(pr->type)) {
			if (pr->nregs == 1) /* the last registrant leaves */
				pr_release(lu, r, false);
		} else if (pr->holder == r) {
			pr_release(lu, r, true);
		}
	}
	if (pr->holder == r)
		pr->holder = NULL;
	LIST_REMOVE(r, link);
	pr->nregs--;
	free(r);
}

void pr_lu_free(struct scsi_lu *lu)
{
	struct scsi_pr_reg *r;
	while ((r = LIST_FIRST(&lu->pr.regs))) {
		LIST_REMOVE(r, link);
		free(r);
	}
	lu->pr.nregs = 0;
	lu->pr.holder = NULL;
	lu->pr.reserved = false;
}

/* ---- PERSISTENT RESERVE IN (SPC-5 6.15) --------------------------------- */

/* SPC-5 7.6.4.6: iSCSI TransportID, format 01b: "<name>,i,0x<ISID>". */
static size_t pr_transport_id(const struct scsi_pr_reg *r, uint8_t *p)
{
	size_t l = strnlen(r->initiator_port, sizeof(r->initiator_port) - 1);
	size_t padded = (l + 1 + 3) & ~(size_t)3;
	if (padded < 20)
		padded = 20;
	memset(p, 0, 4 + padded);
	p[0] = 0x40 | 0x05;
	put_be16(p + 2, (uint16_t)padded);
	memcpy(p + 4, r->initiator_port, l);
	return 4 + padded;
}

void pr_in(struct scsi_task *tk)
{
	struct scsi_cmd *c = tk->c;
	struct scsi_lu *lu = tk->lu;
	struct scsi_pr *pr = &lu->pr;
	uint8_t sa = c->cdb[1] & 0x1f;
	uint16_t alloc = get_be16(c->cdb + 7);
	/* READ FULL STATUS: 24 bytes + a TransportID (4 + the port name
	 * padded) per registration */
	size_t cap = 8 + (size_t)pr->nregs *
				 (24 + 4 + sizeof(((struct scsi_pr_reg *)0)
							  ->initiator_port) +
				  4);
	uint8_t *d = calloc(1, cap < 64 ? 64 : cap);
	if (!d) {
		scsi_task_errno(tk, -ENOMEM, false);
		return;
	}
	size_t n = 8;
	struct scsi_pr_reg *r;
	switch (sa) {
	case 0x00: /* READ KEYS */
		put_be32(d, pr->generation);
		LIST_FOREACH(r, &pr->regs, link) {
			put_be64(d + n, r->key);
			n += 8;
		}
		put_be32(d + 4, (uint32_t)(n - 8));
		break;
	case 0x01: /* READ RESERVATION */
		put_be32(d, pr->generation);
		if (pr->reserved) {
			put_be32(d + 4, 16);
			/* all registrants: the key is zero (5.14.10) */
			if (!pr_all_registrants(pr->type) && pr->holder)
				put_be64(d + 8, pr->holder->key);
			d[21] = pr->type & 0x0f; /* scope LU */
			n = 24;
		}
		break;
	case 0x02: /* REPORT CAPABILITIES (6.15.4) */
		put_be16(d, 8);
		d[2] = 0x01; /* PTPL_C; CRH SIP_C ATP_C 0 */
		/* TMV: the type mask is valid; PTPL_A: APTPL in force */
		d[3] = 0x80 | (pr->aptpl ? 0x01 : 0);
		d[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02;
		d[5] = 0x01;
		n = 8;
		break;
	case 0x03: /* READ FULL STATUS (6.15.5) */
		put_be32(d, pr->generation);
		LIST_FOREACH(r, &pr->regs, link) {
			uint8_t *p = d + n;
			put_be64(p, r->key);
			if (pr_is_holder(pr, r)) {
				p[12] = 0x01; /* R_HOLDER */
				p[13] = pr->type & 0x0f;
			}
			put_be16(p + 18, r->rel_target_port_id);
			size_t tl = pr_transport_id(r, p + 24);
			put_be32(p + 20, (uint32_t)tl);
			n += 24 + tl;
		}
		put_be32(d + 4, (uint32_t)(n - 8));
		break;
	}
	scsi_task_data_in(tk, d, n, alloc);
	free(d);
	scsi_task_done(tk);
}

/* ---- PERSISTENT RESERVE OUT (SPC-5 6.16, 5.14.6-5.14.11) ---------------- */

static void pr_bump(struct scsi_pr *pr)
{
	pr->generation++;
}

/* Removes every registration with `key` except `keep`; PREEMPT AND ABORT
 * also aborts their tasks. Returns how many went. */
static unsigned pr_remove_key(struct scsi_task *tk, uint64_t key,
			      struct scsi_pr_reg *keep, bool abort)
{
	struct scsi_lu *lu = tk->lu;
	struct scsi_pr_reg *r, *next;
	unsigned n = 0;
	for (r = LIST_FIRST(&lu->pr.regs); r; r = next) {
		next = LIST_NEXT(r, link);
		if (r == keep || r->key != key)
			continue;
		pr_ua(lu, r, SCSI_UA_REG_PREEMPTED);
		if (abort)
			scsi_lu_abort_tasks(lu, r->initiator_port, tk);
		if (lu->pr.holder == r)
			lu->pr.holder = NULL;
		LIST_REMOVE(r, link);
		lu->pr.nregs--;
		free(r);
		n++;
	}
	return n;
}

static void pr_preempt(struct scsi_task *tk, struct scsi_pr_reg *me,
		       uint64_t sark, uint8_t type, bool abort)
{
	struct scsi_lu *lu = tk->lu;
	struct scsi_pr *pr = &lu->pr;
	if (!pr->reserved) {
		/* 5.14.11.4.2: no reservation: remove registrations only */
		if (!sark) {
			scsi_task_bad_param(tk, 8, -1);
			return;
		}
		if (!pr_remove_key(tk, sark, me, abort)) {
			scsi_task_conflict(tk);
			return;
		}
		pr_bump(pr);
		scsi_task_good(tk);
		return;
	}
	if (pr_all_registrants(pr->type)) {
		/* 5.14.11.4.4: SARK 0 removes every other registration and
		 * takes the reservation with the new type. */
		if (!sark) {
			struct scsi_pr_reg *r, *next;
			for (r = LIST_FIRST(&pr->regs); r; r = next) {
				next = LIST_NEXT(r, link);
				if (r == me)
					continue;
				pr_remove_key(tk, r->key, me, abort);
				next = LIST_FIRST(&pr->regs);
			}
			pr->type = type;
			pr->holder = me;
		} else if (!pr_remove_key(tk, sark, me, abort)) {
			scsi_task_conflict(tk);
			return;
		}
		pr_bump(pr);
		scsi_task_good(tk);
		return;
	}
	if (pr->holder && pr->holder->key == sark) {
		/* 5.14.11.4.3: preempt the holder: its registrations go and
		 * this nexus holds a reservation of the new type. */
		pr_remove_key(tk, sark, me, abort);
		pr->holder = me;
		pr->type = type;
		pr->reserved = true;
		pr_bump(pr);
		scsi_task_good(tk);
		return;
	}
	if (!sark) {
		scsi_task_bad_param(tk, 8, -1);
		return;
	}
	if (!pr_remove_key(tk, sark, me, abort)) {
		scsi_task_conflict(tk);
		return;
	}
	pr_bump(pr);
	scsi_task_good(tk);
}

static void pr_out_apply(struct scsi_task *tk)
{
	struct scsi_cmd *c = tk->c;
	struct scsi_lu *lu = tk->lu;
	struct scsi_pr *pr = &lu->pr;
	uint8_t sa = c->cdb[1] & 0x1f;
	uint8_t scope = c->cdb[2] >> 4, type = c->cdb[2] & 0x0f;
	uint32_t plen = get_be32(c->cdb + 5);
	c->xfer_len = plen;
	if (!c->nexus) {
		scsi_task_conflict(tk);
		return;
	}
	/* 6.16.3: the basic parameter list is 24 bytes */
	if (plen != 24 || c->data_out_len < 24 || !c->data_out) {
		scsi_task_check(tk, SK_ILLEGAL_REQUEST,
				ASC_PARAM_LIST_LENGTH_ERROR);
		return;
	}
	const uint8_t *p = c->data_out;
	uint64_t key = get_be64(p), sark = get_be64(p + 8);
	if (p[20] & 0x08) { /* SPEC_I_PT: SIP_C=0 */
		scsi_task_bad_param(tk, 20, 3);
		return;
	}
	if (p[20] & 0x04) { /* ALL_TG_PT: ATP_C=0 */
		scsi_task_bad_param(tk, 20, 2);
		return;
	}
	bool needs_type = sa == 0x01 || sa == 0x02 || sa == 0x04 || sa == 0x05;
	if (needs_type) {
		if (scope != 0) {
			scsi_task_bad_cdb(tk, 2, 7);
			return;
		}
		if (!pr_type_valid(type)) {
			scsi_task_bad_cdb(tk, 2, 3);
			return;
		}
	}
	struct scsi_pr_reg *me = pr_find(lu, c->nexus);

	if (sa == 0x00 || sa == 0x06) { /* REGISTER [AND IGNORE EXISTING] */
		bool ignore = sa == 0x06;
		if (!me) {
			if (!ignore && key) {
				scsi_task_conflict(tk);
				return;
			}
			if (!sark) {
				pr->aptpl = p[20] & 0x01;
				scsi_task_good(tk);
				return;
			}
			if (pr->nregs >= PR_MAX_REGS) {
				/* registrations outlive logins: bounded */
				scsi_task_check(tk, SK_ILLEGAL_REQUEST,
						ASC_INSUFFICIENT_REGISTRATION);
				return;
			}
			struct scsi_pr_reg *r = calloc(1, sizeof(*r));
			if (!r) {
				scsi_task_errno(tk, -ENOMEM, false);
				return;
			}
			r->key = sark;
			str_copy(r->initiator_port, c->nexus->initiator_port,
				 sizeof(r->initiator_port));
			str_copy(r->target_port, c->nexus->target_port,
				 sizeof(r->target_port));
			r->rel_target_port_id = c->nexus->rel_target_port_id;
			LIST_INSERT_HEAD(&pr->regs, r, link);
			pr->nregs++;
			pr_bump(pr);
			pr->aptpl = p[20] & 0x01;
			scsi_task_good(tk);
			return;
		}
		if (!ignore && key != me->key) {
			scsi_task_conflict(tk);
			return;
		}
		if (!sark)
			pr_unregister(lu, me);
		else
			me->key = sark;
		pr_bump(pr);
		/* 6.16.3: the last successful REGISTER sets APTPL */
		pr->aptpl = p[20] & 0x01;
		scsi_task_good(tk);
		return;
	}

	/* Every other service action needs a registration with this key. */
	if (!me || me->key != key) {
		scsi_task_conflict(tk);
		return;
	}
	switch (sa) {
	case 0x01: /* RESERVE (5.14.9) */
		if (pr->reserved) {
			if (pr_is_holder(pr, me) && pr->type == type)
				scsi_task_good(tk);
			else
				scsi_task_conflict(tk);
			return;
		}
		pr->reserved = true;
		pr->type = type;
		pr->holder = me;
		scsi_task_good(tk);
		return;
	case 0x02: /* RELEASE (5.14.11.2) */
		if (!pr->reserved || !pr_is_holder(pr, me)) {
			scsi_task_good(tk);
			return;
		}
		if (pr->type != type) {
			scsi_task_check(tk, SK_ILLEGAL_REQUEST,
					ASC_INVALID_RELEASE_OF_PR);
			return;
		}
		pr_release(lu, me, true);
		scsi_task_good(tk);
		return;
	case 0x03: { /* CLEAR (5.14.11.3) */
		struct scsi_pr_reg *r;
		LIST_FOREACH(r, &pr->regs, link)
			if (r != me)
				pr_ua(lu, r, SCSI_UA_RES_PREEMPTED);
		pr_lu_free(lu);
		pr_bump(pr);
		scsi_task_good(tk);
		return;
	}
	case 0x04: /* PREEMPT */
	case 0x05: /* PREEMPT AND ABORT */
		pr_preempt(tk, me, sark, type, sa == 0x05);
		return;
	}
	scsi_task_bad_cdb(tk, 1, 4);
}

/* 5.14.5: with APTPL in force (or just turned off) the new state is
 * durable before the command completes. The handler above runs inside
 * scsi_cmd_submit, so its completion is only queued (scsi_task_done) and
 * its status can still be changed here. If the state cannot be stored, it
 * goes back to what it was and the command fails. */
void pr_out(struct scsi_task *tk)
{
	struct scsi_lu *lu = tk->lu;
	bool was = lu->pr.aptpl;
	uint8_t *before = NULL;
	size_t blen = 0;
	if (pr_store_encode(lu, &before, &blen)) {
		scsi_task_errno(tk, -ENOMEM, true);
		return;
	}
	pr_out_apply(tk);
	assert(tk->in_submit);
	if ((!was && !lu->pr.aptpl) || tk->c->status != SCSI_STATUS_GOOD) {
		free(before);
		return;
	}
	int rc = pr_store_save(lu);
	if (rc) {
		log_error("scsi", "%s: persistent reservation state not "
			  "stored: %s", lu->name, strerror(-rc));
		pr_store_decode(lu, before, blen);
		lu->pr.aptpl = was;
		scsi_sense(tk->c, SK_HARDWARE_ERROR,
			   ASC_INTERNAL_TARGET_FAILURE);
	}
	free(before);
}

/* ---- SPC-2 reservations: RESERVE / RELEASE (6) and (10) ------------------
 * Obsolete since SPC-3 but still sent by some initiators (and by Windows
 * clusters of old). Held by one I_T nexus; released by RELEASE, by the
 * nexus going away, and by a LUN or target reset. With persistent
 * reservation state present they conflict (CRH=0, SPC-5 5.14.3). */

bool pr_spc2_conflict(struct scsi_lu *lu, const struct scsi_nexus *n,
		      uint16_t op_flags)
{
	uint64_t h = lu->pr.spc2_holder;
	return h && (!n || n->id != h) && !(op_flags & OPF_SPC2_OK);
}

void pr_spc2_reset(struct scsi_lu *lu, uint64_t nexus_id)
{
	if (!nexus_id || lu->pr.spc2_holder == nexus_id)
		lu->pr.spc2_holder = 0;
}

void pr_reserve_spc2(struct scsi_task *tk)
{
	struct scsi_cmd *c = tk->c;
	struct scsi_pr *pr = &tk->lu->pr;
	if (c->cdb[0] == 0x56 && (c->cdb[1] & 0x12)) {
		/* third-party reservations are not supported */
		scsi_task_bad_cdb(tk, 1, (c->cdb[1] & 0x10) ? 4 : 1);
		return;
	}
	if (!c->nexus || pr->nregs || pr->reserved ||
	    (pr->spc2_holder && pr->spc2_holder != c->nexus->id)) {
		scsi_task_conflict(tk);
		return;
	}
	pr->spc2_holder = c->nexus->id;
	scsi_task_good(tk);
}

void pr_release_spc2(struct scsi_task *tk)
{
	struct scsi_cmd *c = tk->c;
	struct scsi_pr *pr = &tk->lu->pr;
	if (pr->nregs || pr->reserved) {
		scsi_task_conflict(tk);
		return;
	}
	/* Releasing someone else's reservation is a no-op (SPC-2 7.17). */
	if (c->nexus && pr->spc2_holder == c->nexus->id)
		pr->spc2_holder = 0;
	scsi_task_good(tk);
}
