/* EXTENDED COPY (LID1) and RECEIVE COPY RESULTS (SPC-5 6.6 / 6.27;
 * SPC-4 6.3 / 6.18 numbering in older copies of the standard).
 *
 * Supported: identification CSCD descriptors (E4h) naming an LU by its
 * NAA designator, and block device to block device segment descriptors
 * (02h). A CSCD is resolved only among the LUs of the issuing nexus's LUN
 * map: an initiator can never copy from or into an LU it cannot address
 * (the class of CVE-2020-28374, where a target searched every LU). Each
 * segment is one SDS_OP_COPY_RANGE: metadata sharing where aligned. */
#include <stdlib.h>
#include <string.h>

#include "scsi_internal.h"

#define XCOPY_HDR 16
#define XCOPY_CSCD_LEN 32
#define XCOPY_SEG_B2B_LEN 28
#define XCOPY_MAX_RESULTS 16

#define ASC_INCORRECT_COPY_TARGET_TYPE 0x0d03
#define ASC_OPERATION_IN_PROGRESS 0x0016

struct xcopy_seg {
	struct scsi_lu *src, *dst;
	uint64_t src_off, dst_off, len;
};

struct xcopy_ctx {
	unsigned nseg, cur;
	uint64_t bytes;
	/* overlapping copy within one LU: bounced through memory */
	uint8_t *bounce;
	uint64_t done; /* bytes of the current segment moved */
	uint64_t piece_off, piece_len;
	struct scsi_copy_result *res;
	struct xcopy_seg seg[XCOPY_MAX_SEGMENT_DESC];
};

/* COPY ABORTED with the segment number in COMMAND-SPECIFIC INFORMATION
 * (SPC-5 6.6.5.2). */
static void xcopy_abort(struct scsi_task *tk, uint16_t asc, unsigned seg)
{
	scsi_sense(tk->c, SK_COPY_ABORTED, asc);
	put_be32(tk->c->sense + 8, seg);
	scsi_task_done(tk);
}

static struct scsi_copy_result *xcopy_result(struct scsi_lu *lu,
					     uint64_t nexus_id,
					     uint8_t list_id)
{
	struct scsi_copy_result *r;
	LIST_FOREACH(r, &lu->copy_results, link)
		if (r->nexus_id == nexus_id && r->list_id == list_id)
			return r;
	return NULL;
}

static void xcopy_result_drop(struct scsi_lu *lu, struct scsi_copy_result *r)
{
	LIST_REMOVE(r, link);
	lu->n_copy_results--;
	free(r);
}

void xcopy_lu_free(struct scsi_lu *lu)
{
	struct scsi_copy_result *r;
	while ((r = LIST_FIRST(&lu->copy_results)))
		xcopy_result_drop(lu, r);
}

void xcopy_nexus_gone(struct scsi_lu *lu, uint64_t nexus_id)
{
	struct scsi_copy_result *r, *next;
	for (r = LIST_FIRST(&lu->copy_results); r; r = next) {
		next = LIST_NEXT(r, link);
		/* a copy in flight keeps its record until it ends */
		if (r->nexus_id == nexus_id && r->status != 0x00)
			xcopy_result_drop(lu, r);
	}
}

/* SPC-5 6.6.6.? identification descriptor CSCD: resolve the designator
 * among the nexus's LUs only. */
static struct scsi_lu *xcopy_resolve(const struct scsi_nexus *n,
				     const uint8_t *d)
{
	uint8_t code_set = d[4] & 0x0f, type = d[5] & 0x0f;
	uint8_t assoc = (d[5] >> 4) & 3, len = d[7];
	if (!n || !n->map || code_set != 1 || type != 3 || assoc != 0 ||
	    len != 16)
		return NULL;
	for (unsigned i = 0; i < n->map->n; i++) {
		struct scsi_lu *lu = n->map->e[i].lu;
		if (lu && !memcmp(lu->naa, d + 8, 16))
			return lu;
	}
	return NULL;
}

static void xcopy_finish(struct scsi_task *tk, int status)
{
	struct xcopy_ctx *x = tk->ctx;
	free(x->bounce);
	x->bounce = NULL;
	if (x->res) {
		x->res->status = status ? 0x02 : 0x01;
		x->res->segments_processed = (uint16_t)x->cur;
		x->res->transfer_count = x->bytes;
	}
}

static void xcopy_step(struct scsi_task *tk, int status);
static void xcopy_bounce_read(struct scsi_task *tk, int status);

#define XCOPY_BOUNCE (1u << 20)

static bool xcopy_overlaps(const struct xcopy_seg *s)
{
	return s->src == s->dst && s->src_off < s->dst_off + s->len &&
	       s->dst_off < s->src_off + s->len;
}

/* The engine refuses an overlapping copy within one vdisk (SPC allows
 * it): move it through memory, from the end when the destination lies
 * above the source, so no piece overwrites source not yet read. */
static void xcopy_bounce_next(struct scsi_task *tk)
{
	struct xcopy_ctx *x = tk->ctx;
	struct xcopy_seg *s = &x->seg[x->cur];
	uint64_t piece = MIN((uint64_t)XCOPY_BOUNCE, s->len - x->done);
	x->piece_len = piece;
	x->piece_off = s->dst_off > s->src_off ? s->len - x->done - piece
					       : x->done;
	tk->io = (struct sds_io){.op = SDS_OP_READ,
				 .offset = s->src_off + x->piece_off,
				 .len = piece,
				 .buf = x->bounce};
	scsi_task_io(tk, s->src->vd, xcopy_bounce_read);
}

static void xcopy_bounce_written(struct scsi_task *tk, int status)
{
	struct xcopy_ctx *x = tk->ctx;
	if (status) {
		xcopy_step(tk, status);
		return;
	}
	x->done += x->piece_len;
	if (x->done < x->seg[x->cur].len && !tk->aborted) {
		xcopy_bounce_next(tk);
		return;
	}
	xcopy_step(tk, 0);
}

static void xcopy_bounce_read(struct scsi_task *tk, int status)
{
	struct xcopy_ctx *x = tk->ctx;
	struct xcopy_seg *s = &x->seg[x->cur];
	if (status) {
		xcopy_step(tk, status);
		return;
	}
	tk->io = (struct sds_io){.op = SDS_OP_WRITE,
				 .offset = s->dst_off + x->piece_off,
				 .len = x->piece_len,
				 .buf = x->bounce};
	scsi_task_io(tk, s->dst->vd, xcopy_bounce_written);
}

static void xcopy_next(struct scsi_task *tk)
{
	struct xcopy_ctx *x = tk->ctx;
	while (x->cur < x->nseg && !x->seg[x->cur].len)
		x->cur++;
	if (x->cur == x->nseg || tk->aborted) {
		xcopy_finish(tk, 0);
		scsi_task_good(tk);
		return;
	}
	struct xcopy_seg *s = &x->seg[x->cur];
	if (xcopy_overlaps(s)) {
		if (!x->bounce &&
		    posix_memalign((void **)&x->bounce, SDS_BLOCK_SIZE,
				   XCOPY_BOUNCE)) {
			x->bounce = NULL;
			xcopy_step(tk, -ENOMEM);
			return;
		}
		x->done = 0;
		xcopy_bounce_next(tk);
		return;
	}
	tk->io = (struct sds_io){.op = SDS_OP_COPY_RANGE,
				 .offset = s->dst_off,
				 .len = s->len,
				 .src = s->src->vd,
				 .src_offset = s->src_off};
	scsi_task_io(tk, s->dst->vd, xcopy_step);
}

static void xcopy_step(struct scsi_task *tk, int status)
{
	struct xcopy_ctx *x = tk->ctx;
	if (status) {
		xcopy_finish(tk, status);
		if (status == -EROFS || status == -ENOSPC || status == -ENOMEM) {
			scsi_task_errno(tk, status, true);
			return;
		}
		/* SPC-5 6.6.5.2: an error while copying a segment */
		xcopy_abort(tk, status == -EIO ? ASC_UNRECOVERED_READ_ERROR
					       : ASC_NONE,
			    x->cur);
		return;
	}
	x->bytes += x->seg[x->cur].len;
	x->cur++;
	xcopy_next(tk);
}

void xcopy_extended_copy(struct scsi_task *tk)
{
	struct scsi_cmd *c = tk->c;
	uint32_t plen = get_be32(c->cdb + 10);
	c->xfer_len = plen;
	if (plen == 0) { /* SPC-5 6.6.1: not an error */
		scsi_task_good(tk);
		return;
	}
	if (plen < XCOPY_HDR || c->data_out_len < plen || !c->data_out) {
		scsi_task_check(tk, SK_ILLEGAL_REQUEST,
				ASC_PARAM_LIST_LENGTH_ERROR);
		return;
	}
	const uint8_t *p = c->data_out;
	uint8_t list_id = p[0];
	uint8_t usage = (p[1] >> 3) & 3;
	uint32_t cscd_len = get_be16(p + 2);
	uint32_t seg_len = get_be32(p + 8);
	uint32_t inline_len = get_be32(p + 12);
	if (usage == 0x01 || (usage == 0x03 && list_id)) {
		scsi_task_bad_param(tk, 1, 4);
		return;
	}
	if (inline_len > XCOPY_MAX_INLINE) {
		scsi_task_bad_param(tk, 12, -1);
		return;
	}
	if ((uint64_t)XCOPY_HDR + cscd_len + seg_len + inline_len > plen) {
		scsi_task_check(tk, SK_ILLEGAL_REQUEST,
				ASC_PARAM_LIST_LENGTH_ERROR);
		return;
	}
	/* MAXIMUM DESCRIPTOR LIST LENGTH (RECEIVE COPY OPERATING
	 * PARAMETERS) */
	if ((uint64_t)cscd_len + seg_len >
	    XCOPY_MAX_TARGET_DESC * XCOPY_CSCD_LEN +
		    XCOPY_MAX_SEGMENT_DESC * XCOPY_SEG_B2B_LEN) {
		scsi_task_check(tk, SK_ILLEGAL_REQUEST,
				ASC_PARAM_LIST_LENGTH_ERROR);
		return;
	}
	if (cscd_len % XCOPY_CSCD_LEN) {
		scsi_task_bad_param(tk, 2, -1);
		return;
	}
	unsigned ncscd = cscd_len / XCOPY_CSCD_LEN;
	if (ncscd > XCOPY_MAX_TARGET_DESC) {
		scsi_task_check(tk, SK_ILLEGAL_REQUEST,
				ASC_TOO_MANY_TARGET_DESCRIPTORS);
		return;
	}
	/* Count segment descriptors first: too many is its own error. */
	unsigned nseg = 0;
	for (uint32_t off = 0; off < seg_len; nseg++) {
		if (off + 4 > seg_len) {
			scsi_task_check(tk, SK_ILLEGAL_REQUEST,
					ASC_PARAM_LIST_LENGTH_ERROR);
			return;
		}
		off += 4 + get_be16(p + XCOPY_HDR + cscd_len + off + 2);
	}
	if (nseg > XCOPY_MAX_SEGMENT_DESC) {
		scsi_task_check(tk, SK_ILLEGAL_REQUEST,
				ASC_TOO_MANY_SEGMENT_DESCRIPTORS);
		return;
	}
	/* CSCD descriptors */
	struct scsi_lu *cscd[XCOPY_MAX_TARGET_DESC] = {0};
	for (unsigned i = 0; i < ncscd; i++) {
		const uint8_t *d = p + XCOPY_HDR + i * XCOPY_CSCD_LEN;
		if (d[0] != 0xe4 || (d[1] & 0x1f) != 0x00) {
			scsi_task_check(tk, SK_ILLEGAL_REQUEST,
					ASC_UNSUPPORTED_TARGET_DESCRIPTOR);
			return;
		}
		if (d[1] & 0x20) { /* NUL: obsolete in SPC-4+, unsupported */
			xcopy_abort(tk, ASC_UNREACHABLE_COPY_TARGET, 0);
			return;
		}
		cscd[i] = xcopy_resolve(c->nexus, d);
		if (!cscd[i]) {
			xcopy_abort(tk, ASC_UNREACHABLE_COPY_TARGET, 0);
			return;
		}
		uint32_t blen = ((uint32_t)d[29] << 16) | get_be16(d + 30);
		if (blen && blen != cscd[i]->bs) {
			xcopy_abort(tk, ASC_INCORRECT_COPY_TARGET_TYPE, 0);
			return;
		}
	}
	struct xcopy_ctx *x = calloc(1, sizeof(*x));
	if (!x) {
		scsi_task_errno(tk, -ENOMEM, false);
		return;
	}
	tk->ctx = x;
	/* Segment descriptors: validate all before copying anything. */
	const uint8_t *s = p + XCOPY_HDR + cscd_len;
	for (uint32_t off = 0, i = 0; off < seg_len; i++) {
		const uint8_t *d = s + off;
		uint32_t dlen = 4 + get_be16(d + 2);
		if (off + dlen > seg_len) {
			scsi_task_check(tk, SK_ILLEGAL_REQUEST,
					ASC_PARAM_LIST_LENGTH_ERROR);
			return;
		}
		off += dlen;
		if (d[0] != 0x02) {
			scsi_task_check(tk, SK_ILLEGAL_REQUEST,
					ASC_UNSUPPORTED_SEGMENT_DESCRIPTOR);
			return;
		}
		if (dlen != XCOPY_SEG_B2B_LEN) {
			scsi_task_bad_param(tk, (uint16_t)(XCOPY_HDR + cscd_len +
							   off - dlen + 2),
					    -1);
			return;
		}
		uint16_t si = get_be16(d + 4), di = get_be16(d + 6);
		if (si >= ncscd || di >= ncscd) {
			xcopy_abort(tk, ASC_UNREACHABLE_COPY_TARGET, i);
			return;
		}
		struct scsi_lu *src = cscd[si], *dst = cscd[di];
		bool dc = d[1] & 0x02;
		uint64_t nblk = get_be16(d + 10);
		uint64_t len = nblk * (dc ? dst->bs : src->bs);
		uint64_t slba = get_be64(d + 12), dlba = get_be64(d + 20);
		if (len % src->bs || len % dst->bs) {
			scsi_task_bad_param(tk, (uint16_t)(XCOPY_HDR + cscd_len +
							   off - dlen + 10),
					    -1);
			return;
		}
		uint64_t sn = len / src->bs, dn = len / dst->bs;
		if (slba > src->nblocks || sn > src->nblocks - slba ||
		    dlba > dst->nblocks || dn > dst->nblocks - dlba) {
			/* SPC-5 6.6.5.2 */
			xcopy_abort(tk, ASC_NONE, i);
			return;
		}
		if (pr_conflict(src, c->nexus, OPF_CONFLICT_EA) ||
		    pr_conflict(dst, c->nexus, OPF_CONFLICT_WE) ||
		    pr_spc2_conflict(src, c->nexus, 0) ||
		    pr_spc2_conflict(dst, c->nexus, 0)) {
			scsi_task_conflict(tk);
			return;
		}
		if (dst->readonly || dst->mode.swp) {
			scsi_task_check(tk, SK_DATA_PROTECT,
					ASC_WRITE_PROTECTED);
			return;
		}
		x->seg[x->nseg++] = (struct xcopy_seg){
			.src = src,
			.dst = dst,
			.src_off = slba * src->bs,
			.dst_off = dlba * dst->bs,
			.len = len,
		};
	}
	/* LIST ID USAGE 00b: keep the results for RECEIVE COPY RESULTS */
	if (usage == 0x00) {
		struct scsi_lu *lu = tk->lu;
		struct scsi_copy_result *r =
			xcopy_result(lu, scsi_nexus_id(tk), list_id);
		if (r && r->status == 0x00) {
			scsi_task_check(tk, SK_ILLEGAL_REQUEST,
					ASC_OPERATION_IN_PROGRESS);
			return;
		}
		if (!r) {
			if (lu->n_copy_results >= XCOPY_MAX_RESULTS) {
				/* forget the oldest finished record */
				struct scsi_copy_result *o, *last = NULL;
				LIST_FOREACH(o, &lu->copy_results, link)
					if (o->status != 0x00)
						last = o;
				if (last)
					xcopy_result_drop(lu, last);
			}
			r = calloc(1, sizeof(*r));
			if (!r) {
				scsi_task_errno(tk, -ENOMEM, false);
				return;
			}
			r->nexus_id = scsi_nexus_id(tk);
			r->list_id = list_id;
			LIST_INSERT_HEAD(&lu->copy_results, r, link);
			lu->n_copy_results++;
		}
		r->status = 0x00; /* in progress */
		r->segments_processed = 0;
		r->transfer_count = 0;
		x->res = r;
	}
	xcopy_next(tk);
}

/* RECEIVE COPY RESULTS: COPY STATUS (SA 00h) and OPERATING PARAMETERS
 * (SA 03h). */
void xcopy_receive_copy_results(struct scsi_task *tk)
{
	struct scsi_cmd *c = tk->c;
	uint8_t sa = c->cdb[1] & 0x1f;
	uint32_t alloc = get_be32(c->cdb + 10);
	uint8_t d[64];
	memset(d, 0, sizeof(d));
	size_t n;
	if (sa == 0x00) {
		struct scsi_copy_result *r =
			xcopy_result(tk->lu, scsi_nexus_id(tk), c->cdb[2]);
		if (!r) {
			scsi_task_bad_cdb(tk, 2, -1);
			return;
		}
		put_be32(d, 8);
		d[4] = r->status & 0x7f;
		put_be16(d + 5, r->segments_processed);
		d[7] = 0xf1; /* TRANSFER COUNT UNITS: KiB */
		uint64_t kib = r->transfer_count >> 10;
		put_be32(d + 8, kib > UINT32_MAX ? UINT32_MAX : (uint32_t)kib);
		n = 12;
		if (r->status != 0x00)
			xcopy_result_drop(tk->lu, r); /* reported once */
	} else {
		/* SPC-4 6.18.4 operating parameters */
		d[4] = 0x01; /* SNLID: no list identifier supported */
		put_be16(d + 8, XCOPY_MAX_TARGET_DESC);
		put_be16(d + 10, XCOPY_MAX_SEGMENT_DESC);
		put_be32(d + 12, XCOPY_MAX_TARGET_DESC * XCOPY_CSCD_LEN +
					 XCOPY_MAX_SEGMENT_DESC *
						 XCOPY_SEG_B2B_LEN);
		put_be32(d + 16, XCOPY_MAX_SEGMENT_BYTES);
		put_be32(d + 20, XCOPY_MAX_INLINE);
		put_be32(d + 24, 0); /* HELD DATA LIMIT */
		put_be32(d + 28, 0); /* MAXIMUM STREAM DEVICE TRANSFER SIZE */
		put_be16(d + 34, 1); /* TOTAL CONCURRENT COPIES */
		d[36] = 1;           /* MAXIMUM CONCURRENT COPIES */
		d[37] = 9;           /* DATA SEGMENT GRANULARITY, log2 */
		d[38] = 9;           /* INLINE DATA GRANULARITY */
		d[39] = 9;           /* HELD DATA GRANULARITY */
		d[43] = 2;           /* implemented descriptor list length */
		d[44] = 0x02;
		d[45] = 0xe4;
		n = 46;
		put_be32(d, (uint32_t)(n - 4));
	}
	scsi_task_data_in(tk, d, n, alloc);
	scsi_task_done(tk);
}
