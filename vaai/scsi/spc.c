/* SPC-5 primary commands: TEST UNIT READY, REQUEST SENSE, INQUIRY
 * (standard data; VPD pages in vpd.c), REPORT LUNS, MODE SENSE/SELECT,
 * REPORT SUPPORTED OPERATION CODES / TASK MANAGEMENT FUNCTIONS. */
#include <stdlib.h>
#include <string.h>

#include "scsi_internal.h"

static const uint16_t ua_asc[SCSI_UA_COUNT] = {
	[SCSI_UA_POWER_ON] = ASC_POWER_ON_OCCURRED,
	[SCSI_UA_TARGET_RESET] = ASC_TARGET_RESET_OCCURRED,
	[SCSI_UA_LUN_RESET] = ASC_LUN_RESET_OCCURRED,
	[SCSI_UA_COMMANDS_CLEARED] = ASC_COMMANDS_CLEARED_BY_ANOTHER,
	[SCSI_UA_RES_PREEMPTED] = ASC_RESERVATIONS_PREEMPTED,
	[SCSI_UA_RES_RELEASED] = ASC_RESERVATIONS_RELEASED,
	[SCSI_UA_REG_PREEMPTED] = ASC_REGISTRATIONS_PREEMPTED,
	[SCSI_UA_MODE_CHANGED] = ASC_MODE_PARAMETERS_CHANGED,
	[SCSI_UA_CAPACITY_CHANGED] = ASC_CAPACITY_CHANGED,
	[SCSI_UA_LUNS_CHANGED] = ASC_REPORTED_LUNS_CHANGED,
};

/* SAM-5 5.14: report the highest-priority pending unit attention as
 * CHECK CONDITION, UNIT ATTENTION, and clear it. */
bool spc_ua_pending(struct scsi_task *tk, bool clear)
{
	uint64_t id = scsi_nexus_id(tk), bits = 0;
	if (!tk->lu || !id || !hmap_get(&tk->lu->ua, id, &bits) || !bits)
		return false;
	unsigned ua = (unsigned)__builtin_ctzll(bits);
	scsi_sense(tk->c, SK_UNIT_ATTENTION,
		   ua < SCSI_UA_COUNT ? ua_asc[ua] : ASC_POWER_ON_OCCURRED);
	if (clear) {
		bits &= ~(1ull << ua);
		if (bits)
			hmap_put(&tk->lu->ua, id, bits);
		else
			hmap_del(&tk->lu->ua, id);
	}
	return true;
}

/* SPC-5 6.47 */
void spc_test_unit_ready(struct scsi_task *tk)
{
	if (tk->lu->stopped) {
		scsi_task_check(tk, SK_NOT_READY,
				ASC_LOGICAL_UNIT_NOT_READY_STOPPED);
		return;
	}
	scsi_task_good(tk);
}

/* SPC-5 6.39: sense data as parameter data, status GOOD. Autosense
 * carries every error, so what is left to report is a pending unit
 * attention, the LU's readiness, or nothing. */
void spc_request_sense(struct scsi_task *tk)
{
	struct scsi_cmd *c = tk->c;
	bool desc = c->cdb[1] & 0x01;
	uint8_t alloc = c->cdb[4];
	uint8_t key = SK_NO_SENSE;
	uint16_t asc = ASC_NONE;
	bool progress = false;
	if (!tk->lu) {
		key = SK_ILLEGAL_REQUEST;
		asc = ASC_LU_NOT_SUPPORTED;
	} else if (spc_ua_pending(tk, true)) {
		key = SK_UNIT_ATTENTION;
		asc = (uint16_t)(c->sense[12] << 8 | c->sense[13]);
	} else if (tk->lu->san) {
		/* SBC-4 4.11.2: with the progress indication */
		key = SK_NOT_READY;
		asc = ASC_SANITIZE_IN_PROGRESS;
		progress = true;
	} else if (tk->lu->stopped) {
		key = SK_NOT_READY;
		asc = ASC_LOGICAL_UNIT_NOT_READY_STOPPED;
	}
	uint8_t d[18] = {0};
	size_t n;
	uint16_t pi = progress ? sanitize_progress(tk->lu) : 0;
	if (desc) { /* SPC-5 4.4.2 descriptor format */
		d[0] = 0x72;
		d[1] = key;
		d[2] = (uint8_t)(asc >> 8);
		d[3] = (uint8_t)asc;
		n = 8;
		if (progress) { /* 4.4.2.6: progress indication descriptor */
			d[7] = 8;
			d[8] = 0x0a;
			d[9] = 0x06;
			d[10] = key;
			d[11] = (uint8_t)(asc >> 8);
			d[12] = (uint8_t)asc;
			put_be16(d + 14, pi);
			n = 16;
		}
	} else {
		d[0] = 0x70;
		d[2] = key;
		d[7] = 10;
		d[12] = (uint8_t)(asc >> 8);
		d[13] = (uint8_t)asc;
		if (progress) { /* 4.4.2.4.4: SKSV, PROGRESS INDICATION */
			d[15] = 0x80;
			put_be16(d + 16, pi);
		}
		n = 18;
	}
	c->status = SCSI_STATUS_GOOD;
	c->sense_len = 0;
	scsi_task_data_in(tk, d, n, alloc);
	scsi_task_done(tk);
}

/* SPC-5 6.7.2: standard INQUIRY data.
 *
 * VERSION: 07h would claim SPC-5, which the command set follows; libiscsi's
 * conformance suite (1.19 and its current source) accepts only 04h-06h and
 * fails the LU otherwise, so the field claims SPC-4 (06h) and the version
 * descriptors list SPC-5/SBC-4 beside SPC-4/SBC-3. One constant to flip. */
#define SPC_INQUIRY_VERSION 0x06

void spc_inquiry(struct scsi_task *tk)
{
	struct scsi_cmd *c = tk->c;
	bool evpd = c->cdb[1] & 0x01;
	uint8_t page = c->cdb[2];
	uint16_t alloc = get_be16(c->cdb + 3);
	if (!evpd && page) {
		scsi_task_bad_cdb(tk, 2, 7);
		return;
	}
	if (evpd) {
		if (!tk->lu) {
			scsi_task_check(tk, SK_ILLEGAL_REQUEST,
					ASC_LU_NOT_SUPPORTED);
			return;
		}
		vpd_inquiry(tk, page, alloc);
		return;
	}
	uint8_t d[96] = {0};
	/* Peripheral qualifier 011b / type 1Fh: no LU at this LUN. */
	d[0] = tk->lu ? 0x00 : 0x7f;
	d[2] = SPC_INQUIRY_VERSION;
	d[3] = 0x10 | 0x02; /* HISUP, RESPONSE DATA FORMAT 2 */
	d[4] = sizeof(d) - 5;
	d[5] = 0x08; /* 3PC: EXTENDED COPY */
	d[7] = 0x02; /* CMDQUE */
	memcpy(d + 8, "CAIRN   ", 8);
	memcpy(d + 16, "VDISK           ", 16);
	memcpy(d + 32, "0001", 4);
	/* Version descriptors (SPC-5 table 147): SAM-5, SPC-5, SPC-4,
	 * SBC-4, SBC-3, iSCSI. */
	put_be16(d + 58, 0x00a0);
	put_be16(d + 60, 0x05c0);
	put_be16(d + 62, 0x0460);
	put_be16(d + 64, 0x0600);
	put_be16(d + 66, 0x04c0);
	put_be16(d + 68, 0x0960);
	scsi_task_data_in(tk, d, sizeof(d), alloc);
	scsi_task_done(tk);
}

/* SPC-5 6.33: REPORT LUNS, SAM-5 4.7 single level LUNs. */
void spc_report_luns(struct scsi_task *tk)
{
	struct scsi_cmd *c = tk->c;
	uint8_t sel = c->cdb[2];
	uint32_t alloc = get_be32(c->cdb + 6);
	if (sel > 0x02) {
		scsi_task_bad_cdb(tk, 2, 7);
		return;
	}
	if (alloc < 4) { /* SPC-5 6.33 */
		scsi_task_bad_cdb(tk, 6, -1);
		return;
	}
	const struct scsi_lun_map *m = c->nexus ? c->nexus->map : NULL;
	unsigned n = (m && sel != 0x01) ? m->n : 0; /* no well-known LUs */
	size_t len = 8 + (size_t)n * 8;
	uint8_t *d = calloc(1, len);
	if (!d) {
		scsi_task_errno(tk, -ENOMEM, false);
		return;
	}
	put_be32(d, n * 8);
	for (unsigned i = 0; i < n; i++) {
		uint64_t lun = m->e[i].lun;
		uint8_t *p = d + 8 + i * 8;
		if (lun < 256) {
			p[1] = (uint8_t)lun; /* peripheral device addressing */
		} else {
			p[0] = 0x40 | (uint8_t)((lun >> 8) & 0x3f); /* flat */
			p[1] = (uint8_t)lun;
		}
	}
	scsi_task_data_in(tk, d, len, alloc);
	free(d);
	scsi_task_done(tk);
}

/* ---- mode pages (SPC-5 7.5, SBC-4 6.5) ----------------------------------- */

enum { PC_CURRENT, PC_CHANGEABLE, PC_DEFAULT, PC_SAVED };

/* SBC-4 6.5.5 caching mode page */
static size_t page_caching(const struct scsi_lu *lu, int pc, uint8_t *p)
{
	memset(p, 0, 20);
	p[0] = 0x08;
	p[1] = 0x12;
	if (pc == PC_CHANGEABLE)
		p[2] = 0x04; /* WCE */
	else if (pc == PC_DEFAULT)
		p[2] = 0x04;
	else
		p[2] = (lu->mode.wce ? 0x04 : 0) | (lu->mode.rcd ? 0x01 : 0);
	return 20;
}

/* SPC-5 7.5.9 control mode page */
static size_t page_control(const struct scsi_lu *lu, int pc, uint8_t *p)
{
	memset(p, 0, 12);
	p[0] = 0x0a;
	p[1] = 0x0a;
	if (pc == PC_CHANGEABLE) {
		p[4] = 0x08; /* SWP */
		return 12;
	}
	p[2] = 0x02; /* GLTSD: no implicit log saving */
	p[3] = 0x10; /* QUEUE ALGORITHM MODIFIER 1: unrestricted */
	if (pc == PC_CURRENT && lu->mode.swp)
		p[4] = 0x08;
	p[5] = 0x40;      /* TAS: aborted tasks get TASK ABORTED */
	put_be16(p + 8, 0xffff); /* BUSY TIMEOUT PERIOD: unlimited */
	return 12;
}

/* SPC-5 7.5.12 informational exceptions control mode page */
static size_t page_iec(const struct scsi_lu *lu, int pc, uint8_t *p)
{
	memset(p, 0, 12);
	p[0] = 0x1c;
	p[1] = 0x0a;
	if (pc == PC_CHANGEABLE) {
		p[2] = 0x08; /* DEXCPT */
		p[3] = 0x0f; /* MRIE */
		return 12;
	}
	if (pc == PC_DEFAULT) {
		p[2] = 0x08;
		return 12;
	}
	p[2] = lu->mode.dexcpt ? 0x08 : 0;
	p[3] = lu->mode.mrie & 0x0f;
	return 12;
}

static const struct {
	uint8_t code;
	size_t (*fill)(const struct scsi_lu *, int, uint8_t *);
	uint8_t len;
} mode_pages[] = {
	{0x08, page_caching, 20},
	{0x0a, page_control, 12},
	{0x1c, page_iec, 12},
};

/* SPC-5 6.11 / 6.12 */
void spc_mode_sense(struct scsi_task *tk)
{
	struct scsi_cmd *c = tk->c;
	struct scsi_lu *lu = tk->lu;
	bool ten = c->cdb[0] == 0x5a;
	bool dbd = c->cdb[1] & 0x08;
	bool llbaa = ten && (c->cdb[1] & 0x10);
	int pc = c->cdb[2] >> 6;
	uint8_t page = c->cdb[2] & 0x3f, sub = c->cdb[3];
	uint32_t alloc = ten ? get_be16(c->cdb + 7) : c->cdb[4];
	if (pc == PC_SAVED) {
		scsi_task_check(tk, SK_ILLEGAL_REQUEST, ASC_SAVING_PARAMS_UNSUP);
		return;
	}
	uint8_t d[256];
	memset(d, 0, sizeof(d));
	size_t hdr = ten ? 8 : 4, n = hdr;
	bool wp = lu->readonly || lu->mode.swp;
	d[ten ? 3 : 2] = (wp ? 0x80 : 0) | 0x10; /* WP, DPOFUA */
	if (!dbd) {
		if (llbaa) {
			d[4] = 0x01; /* LONGLBA */
			put_be16(d + 6, 16);
			put_be64(d + n, lu->nblocks);
			put_be32(d + n + 12, lu->bs);
			n += 16;
		} else {
			if (ten)
				put_be16(d + 6, 8);
			else
				d[3] = 8;
			put_be32(d + n, lu->nblocks > UINT32_MAX
						? UINT32_MAX
						: (uint32_t)lu->nblocks);
			put_be32(d + n + 4, lu->bs & 0xffffff);
			n += 8;
		}
	}
	bool found = false;
	if (page == 0x3f) {
		if (sub != 0x00 && sub != 0xff) {
			scsi_task_bad_cdb(tk, 3, 7);
			return;
		}
		for (size_t i = 0; i < ARRAY_SIZE(mode_pages); i++)
			n += mode_pages[i].fill(lu, pc, d + n);
		found = true;
	} else {
		for (size_t i = 0; i < ARRAY_SIZE(mode_pages); i++) {
			if (mode_pages[i].code != page)
				continue;
			if (sub != 0) {
				scsi_task_bad_cdb(tk, 3, 7);
				return;
			}
			n += mode_pages[i].fill(lu, pc, d + n);
			found = true;
		}
	}
	if (!found) {
		scsi_task_bad_cdb(tk, 2, 5);
		return;
	}
	if (ten)
		put_be16(d, (uint16_t)(n - 2));
	else
		d[0] = (uint8_t)(n - 1);
	scsi_task_data_in(tk, d, n, alloc);
	scsi_task_done(tk);
}

/* SPC-5 6.9 / 6.10: only the changeable bits may differ from the current
 * values; anything else is INVALID FIELD IN PARAMETER LIST. */
void spc_mode_select(struct scsi_task *tk)
{
	struct scsi_cmd *c = tk->c;
	struct scsi_lu *lu = tk->lu;
	bool ten = c->cdb[0] == 0x55;
	uint32_t plen = ten ? get_be16(c->cdb + 7) : c->cdb[4];
	if (!(c->cdb[1] & 0x10)) { /* PF=0: vendor-specific format */
		scsi_task_bad_cdb(tk, 1, 4);
		return;
	}
	if (c->cdb[1] & 0x01) { /* SP: no saved pages */
		scsi_task_bad_cdb(tk, 1, 0);
		return;
	}
	if (plen == 0) {
		scsi_task_good(tk);
		return;
	}
	size_t hdr = ten ? 8 : 4;
	if (plen > c->data_out_len || plen < hdr) {
		scsi_task_check(tk, SK_ILLEGAL_REQUEST,
				ASC_PARAM_LIST_LENGTH_ERROR);
		return;
	}
	const uint8_t *d = c->data_out;
	size_t bdl = ten ? get_be16(d + 6) : d[3];
	size_t pos = hdr;
	if (bdl) {
		size_t want = (ten && (d[4] & 1)) ? 16 : 8;
		if (bdl != want || pos + bdl > plen) {
			scsi_task_bad_param(tk, ten ? 6 : 3, -1);
			return;
		}
		uint32_t blen = want == 16 ? get_be32(d + pos + 12)
					   : (get_be32(d + pos + 4) & 0xffffff);
		if (blen != lu->bs) {
			scsi_task_bad_param(tk, (uint16_t)(pos + want - 3), -1);
			return;
		}
		pos += bdl;
	}
	struct scsi_mode m = lu->mode;
	while (pos < plen) {
		if (pos + 2 > plen) {
			scsi_task_check(tk, SK_ILLEGAL_REQUEST,
					ASC_PARAM_LIST_LENGTH_ERROR);
			return;
		}
		const uint8_t *p = d + pos;
		if (p[0] & 0x40) { /* SPF: no subpages here */
			scsi_task_bad_param(tk, (uint16_t)pos, 6);
			return;
		}
		size_t i;
		for (i = 0; i < ARRAY_SIZE(mode_pages); i++)
			if (mode_pages[i].code == (p[0] & 0x3f))
				break;
		if (i == ARRAY_SIZE(mode_pages)) {
			scsi_task_bad_param(tk, (uint16_t)pos, 5);
			return;
		}
		size_t len = mode_pages[i].len;
		if (p[1] != len - 2) {
			scsi_task_bad_param(tk, (uint16_t)(pos + 1), -1);
			return;
		}
		if (pos + len > plen) {
			scsi_task_check(tk, SK_ILLEGAL_REQUEST,
					ASC_PARAM_LIST_LENGTH_ERROR);
			return;
		}
		uint8_t cur[32], chg[32];
		mode_pages[i].fill(lu, PC_CURRENT, cur);
		mode_pages[i].fill(lu, PC_CHANGEABLE, chg);
		for (size_t b = 2; b < len; b++) {
			uint8_t diff = (p[b] ^ cur[b]) & (uint8_t)~chg[b];
			if (diff) {
				int bit = 7;
				while (!(diff & (1u << bit)))
					bit--;
				scsi_task_bad_param(tk, (uint16_t)(pos + b),
						    bit);
				return;
			}
		}
		switch (p[0] & 0x3f) {
		case 0x08:
			m.wce = p[2] & 0x04;
			break;
		case 0x0a:
			m.swp = p[4] & 0x08;
			break;
		case 0x1c:
			m.dexcpt = p[2] & 0x08;
			m.mrie = p[3] & 0x0f;
			break;
		}
		pos += len;
	}
	if (memcmp(&m, &lu->mode, sizeof(m))) {
		lu->mode = m;
		/* SPC-5 7.5.1: other nexuses learn of the change */
		scsi_ua_raise_all(lu, scsi_nexus_id(tk),
				  SCSI_UA_MODE_CHANGED);
	}
	scsi_task_good(tk);
}

/* ---- REPORT SUPPORTED OPERATION CODES (SPC-5 6.35), from scsi_ops ------- */

static size_t rsoc_timeouts(uint8_t *p)
{
	memset(p, 0, 12);
	put_be16(p, 0x0a);
	put_be32(p + 4, 0);  /* nominal: not specified */
	put_be32(p + 8, 30); /* recommended, seconds */
	return 12;
}

static size_t rsoc_all_one(const struct scsi_op *op, uint8_t opcode,
			   bool has_sa, bool rctd, uint8_t *p)
{
	memset(p, 0, 8);
	p[0] = opcode;
	if (has_sa)
		put_be16(p + 2, op->sa);
	p[5] = (rctd ? 0x02 : 0) | (has_sa ? 0x01 : 0);
	put_be16(p + 6, op->cdb_len);
	if (rctd)
		return 8 + rsoc_timeouts(p + 8);
	return 8;
}

void spc_report_supported_opcodes(struct scsi_task *tk)
{
	struct scsi_cmd *c = tk->c;
	bool rctd = c->cdb[2] & 0x80;
	uint8_t opt = c->cdb[2] & 0x07;
	uint8_t req_op = c->cdb[3];
	uint16_t req_sa = get_be16(c->cdb + 4);
	uint32_t alloc = get_be32(c->cdb + 6);
	uint8_t *d = calloc(1, 8192);
	if (!d) {
		scsi_task_errno(tk, -ENOMEM, false);
		return;
	}
	size_t n = 0;
	const struct scsi_op *top = &scsi_ops[req_op], *op = NULL;
	bool has_sa = top->flags & OPF_SA;
	switch (opt) {
	case 0: /* every command */
		n = 4;
		for (unsigned i = 0; i < 256; i++) {
			const struct scsi_op *o = &scsi_ops[i];
			if (o->flags & OPF_SA) {
				for (const struct scsi_op *s = o->sub; s->fn;
				     s++)
					n += rsoc_all_one(s, (uint8_t)i, true,
							  rctd, d + n);
			} else if (o->fn) {
				n += rsoc_all_one(o, (uint8_t)i, false, rctd,
						  d + n);
			}
		}
		put_be32(d, (uint32_t)(n - 4));
		break;
	case 1: /* one opcode without service action */
	case 2: /* opcode and service action */
	case 3: /* opcode, and the service action when it has one */
		if ((opt == 1 && has_sa) || (opt == 2 && !has_sa)) {
			free(d);
			scsi_task_bad_cdb(tk, 2, 2);
			return;
		}
		if (has_sa) {
			for (const struct scsi_op *s = top->sub; s->fn; s++)
				if (s->sa == req_sa)
					op = s;
		} else if (top->fn) {
			op = top;
		}
		if (!op) {
			d[1] = 0x01; /* SUPPORT 001b: not supported */
			n = 2;
			break;
		}
		d[1] = (rctd ? 0x80 : 0) | 0x03; /* CTDP, SUPPORT 011b */
		put_be16(d + 2, op->cdb_len);
		memcpy(d + 4, op->usage, op->cdb_len);
		d[4] = req_op;
		n = 4 + op->cdb_len;
		if (rctd)
			n += rsoc_timeouts(d + n);
		break;
	default:
		free(d);
		scsi_task_bad_cdb(tk, 2, 2);
		return;
	}
	scsi_task_data_in(tk, d, n, alloc);
	free(d);
	scsi_task_done(tk);
}

/* SPC-5 6.37: ABORT TASK, ABORT TASK SET, CLEAR TASK SET, LOGICAL UNIT
 * RESET, TARGET RESET (scsi_tmf). */
void spc_report_supported_tmf(struct scsi_task *tk)
{
	struct scsi_cmd *c = tk->c;
	bool repd = c->cdb[2] & 0x80;
	uint32_t alloc = get_be32(c->cdb + 6);
	uint8_t d[16] = {0};
	d[0] = 0x80 | 0x40 | 0x10 | 0x08 | 0x02; /* ATS ATSS CTSS LURS TRS */
	size_t n = 4;
	if (repd) {
		d[3] = 0x0c;
		n = 16;
	}
	scsi_task_data_in(tk, d, n, alloc);
	scsi_task_done(tk);
}
