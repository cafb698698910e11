/* SBC-4 block commands over an sds vdisk: READ/WRITE 6/10/12/16, VERIFY,
 * WRITE AND VERIFY, READ CAPACITY, SYNCHRONIZE CACHE, START STOP UNIT,
 * PRE-FETCH, and the VAAI offloads WRITE SAME, UNMAP, COMPARE AND WRITE
 * (GET LBA STATUS reports what UNMAP did). */
#include <stdlib.h>
#include <string.h>

#include "scsi_internal.h"

/* ---- engine requests ------------------------------------------------------ */

static void sbc_io_cb(struct sds_io *io, int status)
{
	struct scsi_task *tk = io->priv;
	tk->cont(tk, status);
}

void scsi_task_io(struct scsi_task *tk, struct sds_vdisk *vd,
		  void (*cont)(struct scsi_task *tk, int status))
{
	tk->cont = cont;
	tk->io.priv = tk;
	tk->io.cb = sbc_io_cb;
	sds_vdisk_submit(vd, &tk->io);
}

static void *sbc_alloc(size_t len)
{
	void *p = NULL;
	if (posix_memalign(&p, SDS_BLOCK_SIZE, len ? len : SDS_BLOCK_SIZE))
		return NULL;
	return p;
}

/* ---- CDB decoding ---------------------------------------------------------- */

void sbc_decode(const uint8_t *cdb, struct sbc_rw *rw)
{
	memset(rw, 0, sizeof(*rw));
	if (cdb[0] >> 5 == 0) { /* 6-byte: SBC-4 5.11 / 5.43, no flags */
		rw->lba = ((uint64_t)(cdb[1] & 0x1f) << 16) | get_be16(cdb + 2);
		rw->nblk = cdb[4] ? cdb[4] : 256;
		rw->len_byte = 4;
		return;
	}
	switch (cdb[0]) {
	case 0x89: /* COMPARE AND WRITE (SBC-4 5.3): a one-byte count */
		rw->lba = get_be64(cdb + 2);
		rw->nblk = cdb[13];
		rw->len_byte = 13;
		break;
	case 0x9c: /* WRITE ATOMIC(16) (SBC-4 5.48): ATOMIC BOUNDARY at 10 */
		rw->lba = get_be64(cdb + 2);
		rw->nblk = get_be16(cdb + 12);
		rw->len_byte = 12;
		break;
	default:
		switch (cdb[0] >> 5) {
		case 1: /* 10-byte */
		case 2:
			rw->lba = get_be32(cdb + 2);
			rw->nblk = get_be16(cdb + 7);
			rw->len_byte = 7;
			break;
		case 5: /* 12-byte */
			rw->lba = get_be32(cdb + 2);
			rw->nblk = get_be32(cdb + 6);
			rw->len_byte = 6;
			break;
		case 4: /* 16-byte */
			rw->lba = get_be64(cdb + 2);
			rw->nblk = get_be32(cdb + 10);
			rw->len_byte = 10;
			break;
		}
	}
	rw->fua = cdb[1] & 0x08;
	rw->protect = cdb[1] >> 5;
}

/* SBC-4 4.5: LBA + count must stay inside the capacity (no overflow). */
static bool sbc_range_ok(const struct scsi_lu *lu, uint64_t lba, uint64_t n)
{
	return lba <= lu->nblocks && n <= lu->nblocks - lba;
}

/* The checks shared by the data commands; false when tk is finished. */
static bool sbc_check_rw(struct scsi_task *tk, struct sbc_rw *rw,
			 bool limit_xfer)
{
	struct scsi_lu *lu = tk->lu;
	if (rw->protect) { /* no protection information (SBC-4 4.22) */
		scsi_task_bad_cdb(tk, 1, 7);
		return false;
	}
	if (!sbc_range_ok(lu, rw->lba, rw->nblk)) {
		scsi_task_check(tk, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
		return false;
	}
	if (limit_xfer && rw->nblk * lu->bs > SBC_MAX_XFER_BYTES) {
		/* SBC-4 6.6.4: above MAXIMUM TRANSFER LENGTH */
		scsi_task_bad_cdb(tk, rw->len_byte, -1);
		return false;
	}
	return true;
}

bool sbc_write_protected(struct scsi_task *tk)
{
	struct scsi_lu *lu = tk->lu;
	if (lu->readonly) {
		scsi_task_check(tk, SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
		return true;
	}
	if (lu->mode.swp) { /* SPC-5 7.5.9: software write protect */
		scsi_task_check(tk, SK_DATA_PROTECT, 0x2702);
		return true;
	}
	return false;
}

static uint32_t sbc_io_flags(const struct scsi_lu *lu, bool fua)
{
	return (fua || !lu->mode.wce) ? SDS_IO_FUA : 0;
}

/* The data-out buffer must hold what the CDB says (the transport checks the
 * initiator's expected length against scsi_cdb_xfer). */
static bool sbc_data_out_ok(struct scsi_task *tk, uint64_t need)
{
	if (tk->c->data_out_len >= need && (tk->c->data_out || !need))
		return true;
	scsi_task_check(tk, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH_ERROR);
	return false;
}

/* From the transfer length on, for commands moving len bytes: a zero
 * TRANSFER LENGTH "shall not be considered an error" (SBC-4 5.11-5.16,
 * 5.40-5.45) and ends GOOD at once; a write's data-out must hold the
 * data. false when tk is finished. */
static bool sbc_xfer_begin(struct scsi_task *tk, uint64_t len, bool write)
{
	tk->c->xfer_len = (uint32_t)len;
	if (!len) {
		scsi_task_good(tk);
		return false;
	}
	return !write || sbc_data_out_ok(tk, len);
}

/* The prologue READ, WRITE, WRITE AND VERIFY and ORWRITE share: decode,
 * the checks of sbc_check_rw, write protection (write), then
 * sbc_xfer_begin. false when tk is finished; else *len is the byte
 * count. */
static bool sbc_rw_begin(struct scsi_task *tk, struct sbc_rw *rw, bool write,
			 uint64_t *len)
{
	sbc_decode(tk->c->cdb, rw);
	if (!sbc_check_rw(tk, rw, true) || (write && sbc_write_protected(tk)))
		return false;
	*len = rw->nblk * tk->lu->bs;
	return sbc_xfer_begin(tk, *len, write);
}

/* ---- READ ------------------------------------------------------------------- */

/* READ and WRITE larger than the engine's largest IO (SDS_MAX_IO) go in
 * pieces: tk->lba is the byte offset, tk->nblk the byte count, tk->done_blk
 * the bytes done, tk->ctx unused. */
static void sbc_piece_done(struct scsi_task *tk, int status);

static void sbc_piece_next(struct scsi_task *tk, enum sds_op op, uint8_t *buf,
			   uint32_t flags)
{
	uint64_t n = MIN(tk->nblk - tk->done_blk, (uint64_t)SDS_MAX_IO);
	tk->io = (struct sds_io){.op = op,
				 .flags = flags,
				 .offset = tk->lba + tk->done_blk,
				 .len = n,
				 .buf = buf + tk->done_blk};
	tk->done_blk += n;
	scsi_task_io(tk, tk->lu->vd, sbc_piece_done);
}

static void sbc_piece_done(struct scsi_task *tk, int status)
{
	struct scsi_cmd *c = tk->c;
	bool write = tk->io.op == SDS_OP_WRITE;
	if (status) {
		scsi_task_errno(tk, status, write);
		return;
	}
	if (tk->done_blk < tk->nblk && !tk->aborted) {
		sbc_piece_next(tk, tk->io.op,
			       (uint8_t *)tk->io.buf - (tk->done_blk - tk->io.len),
			       tk->io.flags);
		return;
	}
	if (!write) {
		if (tk->buf) /* read through a bounce: copy what fits */
			scsi_task_data_in(tk, tk->buf, tk->nblk, c->xfer_len);
		else
			c->data_in_len = (uint32_t)tk->nblk;
	}
	scsi_task_good(tk);
}

/* SBC-4 5.11-5.16 */
void sbc_read(struct scsi_task *tk)
{
	struct scsi_cmd *c = tk->c;
	struct scsi_lu *lu = tk->lu;
	struct sbc_rw rw;
	uint64_t len;
	if (!sbc_rw_begin(tk, &rw, false, &len))
		return;
	uint8_t *buf = c->data_in;
	if (!buf || c->data_in_cap < len) {
		/* The initiator takes at most data_in_cap bytes: read only
		 * the blocks that reach into them. */
		uint64_t cap = c->data_in ? c->data_in_cap : 0;
		len = MIN(len, DIV_ROUND_UP(cap, lu->bs) * lu->bs);
		if (!len) {
			scsi_task_good(tk);
			return;
		}
		tk->buf = sbc_alloc(len);
		if (!tk->buf) {
			scsi_task_errno(tk, -ENOMEM, false);
			return;
		}
		buf = tk->buf;
	}
	tk->lba = rw.lba * lu->bs;
	tk->nblk = len;
	tk->done_blk = 0;
	sbc_piece_next(tk, SDS_OP_READ, buf, 0);
}

/* ---- WRITE ------------------------------------------------------------------ */

static void sbc_write_done(struct scsi_task *tk, int status)
{
	scsi_task_errno(tk, status, true);
}

/* COMPARE AND WRITE and WRITE SAME take exactly what the CDB says: a
 * data-out of any other size is a malformed command, not a residual. */
static bool sbc_data_out_exact(struct scsi_task *tk, uint64_t need)
{
	if (tk->c->data_out_len == need && (tk->c->data_out || !need))
		return true;
	scsi_task_check(tk, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH_ERROR);
	return false;
}

/* SBC-4 5.40-5.45 */
void sbc_write(struct scsi_task *tk)
{
	struct scsi_cmd *c = tk->c;
	struct scsi_lu *lu = tk->lu;
	struct sbc_rw rw;
	uint64_t len;
	if (!sbc_rw_begin(tk, &rw, true, &len))
		return;
	tk->lba = rw.lba * lu->bs;
	tk->nblk = len;
	tk->done_blk = 0;
	sbc_piece_next(tk, SDS_OP_WRITE, c->data_out,
		       sbc_io_flags(lu, rw.fua));
}

/* ---- VERIFY and WRITE AND VERIFY (SBC-4 5.32-5.34, 5.46-5.48) ------------- */

/* Compare what was read (tk->buf) with the data-out buffer: BYTCHK 01b
 * compares block for block, 11b every block with the one sent. */
static void sbc_verify_done(struct scsi_task *tk, int status)
{
	struct scsi_cmd *c = tk->c;
	uint32_t bs = tk->lu->bs;
	if (status) {
		scsi_task_errno(tk, status, false);
		return;
	}
	const uint8_t *got = tk->buf;
	if (tk->phase == 1) {
		for (uint64_t i = 0; i < tk->io.len; i++) {
			if (got[i] != c->data_out[i]) {
				scsi_sense_info(c, SK_MISCOMPARE,
						ASC_MISCOMPARE_DURING_VERIFY, i);
				scsi_task_done(tk);
				return;
			}
		}
	} else if (tk->phase == 3) {
		for (uint64_t i = 0; i < tk->io.len; i++) {
			if (got[i] != c->data_out[i % bs]) {
				scsi_sense_info(c, SK_MISCOMPARE,
						ASC_MISCOMPARE_DURING_VERIFY, i);
				scsi_task_done(tk);
				return;
			}
		}
	}
	scsi_task_good(tk);
}

static void sbc_verify_read(struct scsi_task *tk, uint64_t lba, uint64_t len)
{
	tk->buf = sbc_alloc(len);
	if (!tk->buf) {
		scsi_task_errno(tk, -ENOMEM, false);
		return;
	}
	tk->io = (struct sds_io){.op = SDS_OP_READ,
				 .offset = lba * tk->lu->bs,
				 .len = len,
				 .buf = tk->buf};
	scsi_task_io(tk, tk->lu->vd, sbc_verify_done);
}

void sbc_verify(struct scsi_task *tk)
{
	struct scsi_cmd *c = tk->c;
	struct scsi_lu *lu = tk->lu;
	struct sbc_rw rw;
	sbc_decode(c->cdb, &rw);
	uint8_t bytchk = (c->cdb[1] >> 1) & 3;
	if (bytchk == 2) {
		scsi_task_bad_cdb(tk, 1, 2);
		return;
	}
	if (!sbc_check_rw(tk, &rw, true))
		return;
	uint64_t len = rw.nblk * lu->bs;
	if (!len) {
		scsi_task_good(tk);
		return;
	}
	if (bytchk == 1 && !sbc_data_out_ok(tk, len))
		return;
	if (bytchk == 3 && !sbc_data_out_ok(tk, lu->bs))
		return;
	c->xfer_len = bytchk == 1 ? (uint32_t)len : bytchk == 3 ? lu->bs : 0;
	tk->phase = bytchk;
	sbc_verify_read(tk, rw.lba, len);
}

static void sbc_write_verify_written(struct scsi_task *tk, int status)
{
	if (status) {
		scsi_task_errno(tk, status, true);
		return;
	}
	/* Read back: checksums are verified by the engine on every read;
	 * BYTCHK=1 also compares with the data sent. */
	sbc_verify_read(tk, tk->lba, tk->io.len);
}

void sbc_write_verify(struct scsi_task *tk)
{
	struct scsi_cmd *c = tk->c;
	struct scsi_lu *lu = tk->lu;
	struct sbc_rw rw;
	uint64_t len;
	uint8_t bytchk = (c->cdb[1] >> 1) & 3;
	if (bytchk > 1) {
		scsi_task_bad_cdb(tk, 1, 2);
		return;
	}
	if (!sbc_rw_begin(tk, &rw, true, &len))
		return;
	tk->phase = bytchk;
	tk->lba = rw.lba;
	tk->io = (struct sds_io){.op = SDS_OP_WRITE,
				 .flags = sbc_io_flags(lu, rw.fua),
				 .offset = rw.lba * lu->bs,
				 .len = len,
				 .buf = c->data_out};
	scsi_task_io(tk, lu->vd, sbc_write_verify_written);
}

/* ---- READ CAPACITY (SBC-4 5.20, 5.21) ------------------------------------- */

void sbc_read_capacity10(struct scsi_task *tk)
{
	struct scsi_lu *lu = tk->lu;
	uint8_t d[8];
	uint64_t last = lu->nblocks ? lu->nblocks - 1 : 0;
	put_be32(d, last > 0xfffffffeull ? 0xffffffffu : (uint32_t)last);
	put_be32(d + 4, lu->bs);
	scsi_task_data_in(tk, d, sizeof(d), sizeof(d));
	scsi_task_done(tk);
}

static unsigned sbc_lbppbe(const struct scsi_lu *lu)
{
	unsigned e = 0;
	while ((lu->bs << e) < SDS_BLOCK_SIZE)
		e++;
	return e;
}

void sbc_read_capacity16(struct scsi_task *tk)
{
	struct scsi_lu *lu = tk->lu;
	uint8_t d[32] = {0};
	put_be64(d, lu->nblocks ? lu->nblocks - 1 : 0);
	put_be32(d + 8, lu->bs);
	d[13] = (uint8_t)sbc_lbppbe(lu); /* 3 for 512-byte sectors */
	d[14] = 0x80 | 0x40;            /* LBPME, LBPRZ */
	scsi_task_data_in(tk, d, sizeof(d), get_be32(tk->c->cdb + 10));
	scsi_task_done(tk);
}

/* ---- SYNCHRONIZE CACHE (SBC-4 5.24, 5.25), START STOP (5.27) -------------- */

static void sbc_flush_done(struct scsi_task *tk, int status)
{
	scsi_task_errno(tk, status, true);
}

void sbc_sync_cache(struct scsi_task *tk)
{
	struct scsi_cmd *c = tk->c;
	struct scsi_lu *lu = tk->lu;
	struct sbc_rw rw;
	sbc_decode(c->cdb, &rw);
	rw.protect = 0;
	if (!sbc_check_rw(tk, &rw, false))
		return;
	/* The engine's flush covers every acknowledged write, a superset of
	 * the range asked for. */
	tk->io = (struct sds_io){.op = SDS_OP_FLUSH};
	scsi_task_io(tk, lu->vd, sbc_flush_done);
}

void sbc_start_stop(struct scsi_task *tk)
{
	struct scsi_cmd *c = tk->c;
	struct scsi_lu *lu = tk->lu;
	uint8_t pc = c->cdb[4] >> 4;
	bool start = c->cdb[4] & 0x01, loej = c->cdb[4] & 0x02;
	bool no_flush = c->cdb[4] & 0x04;
	if (pc) { /* power conditions: accepted, nothing to change */
		scsi_task_good(tk);
		return;
	}
	if (loej && !start) {
		/* SBC-4 5.27: no removable medium to eject */
		scsi_task_bad_cdb(tk, 4, 1);
		return;
	}
	lu->stopped = !start;
	if (!start && !no_flush) {
		tk->io = (struct sds_io){.op = SDS_OP_FLUSH};
		scsi_task_io(tk, lu->vd, sbc_flush_done);
		return;
	}
	scsi_task_good(tk);
}

/* SBC-4 5.17, 5.18: the data is already as close as it gets. */
void sbc_prefetch(struct scsi_task *tk)
{
	struct sbc_rw rw;
	sbc_decode(tk->c->cdb, &rw);
	rw.protect = 0;
	if (!sbc_check_rw(tk, &rw, false))
		return;
	scsi_task_good(tk);
}

/* ---- WRITE SAME (SBC-4 5.49, 5.50) --------------------------------------- */

#define WS_PIECE (1u << 20)

static void sbc_ws_step(struct scsi_task *tk, int status);

static void sbc_ws_next(struct scsi_task *tk)
{
	struct scsi_lu *lu = tk->lu;
	uint64_t left = tk->nblk - tk->done_blk;
	uint64_t piece = MIN(left, (uint64_t)WS_PIECE / lu->bs);
	tk->io = (struct sds_io){.op = SDS_OP_WRITE,
				 .flags = sbc_io_flags(lu, false),
				 .offset = (tk->lba + tk->done_blk) * lu->bs,
				 .len = piece * lu->bs,
				 .buf = tk->buf};
	tk->done_blk += piece;
	scsi_task_io(tk, lu->vd, sbc_ws_step);
}

static void sbc_ws_step(struct scsi_task *tk, int status)
{
	if (status) {
		scsi_task_errno(tk, status, true);
		return;
	}
	if (tk->aborted || tk->done_blk == tk->nblk) {
		scsi_task_good(tk);
		return;
	}
	sbc_ws_next(tk);
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

void sbc_write_same(struct scsi_task *tk)
{
	struct scsi_cmd *c = tk->c;
	struct scsi_lu *lu = tk->lu;
	bool sixteen = c->cdb[0] == 0x93;
	struct sbc_rw rw;
	sbc_decode(c->cdb, &rw);
	bool unmap = c->cdb[1] & 0x08, anchor = c->cdb[1] & 0x10;
	bool ndob = sixteen && (c->cdb[1] & 0x01);
	if (rw.protect) {
		scsi_task_bad_cdb(tk, 1, 7);
		return;
	}
	if (anchor) { /* ANC_SUP=0 in VPD B2 */
		scsi_task_bad_cdb(tk, 1, 4);
		return;
	}
	/* WSNZ=0 (VPD B0): zero blocks means through the last LBA. */
	if (rw.nblk == 0) {
		if (rw.lba > lu->nblocks) {
			scsi_task_check(tk, SK_ILLEGAL_REQUEST,
					ASC_LBA_OUT_OF_RANGE);
			return;
		}
		rw.nblk = lu->nblocks - rw.lba;
	}
	if (rw.nblk > SBC_MAX_WS_BLOCKS) { /* MAXIMUM WRITE SAME LENGTH */
		scsi_task_bad_cdb(tk, rw.len_byte, -1);
		return;
	}
	rw.fua = false;
	if (!sbc_check_rw(tk, &rw, false) || sbc_write_protected(tk))
		return;
	if (!sbc_data_out_exact(tk, ndob ? 0 : lu->bs))
		return;
	if (!rw.nblk) {
		scsi_task_good(tk);
		return;
	}
	c->xfer_len = ndob ? 0 : lu->bs;
	/* UNMAP=1: deallocate whatever the data (libiscsi's conformance
	 * suite and LIO read it so; ESXi always sends zeroes). */
	bool zero = ndob || unmap || all_zero(c->data_out, lu->bs);
	if (zero) {
		/* SBC-4 4.7.3.4: UNMAP=1 may deallocate, and LBPRZ=1
		 * promises zeroes. The engine's write zeroes deallocates
		 * whole 4 KiB blocks and writes zeroes into partial ones;
		 * its UNMAP would leave partial blocks as they were, so it
		 * serves both UNMAP=1 and UNMAP=0. */
		tk->io = (struct sds_io){
			.op = SDS_OP_WRITE_ZEROES,
			.offset = rw.lba * lu->bs,
			.len = rw.nblk * lu->bs};
		scsi_task_io(tk, lu->vd, sbc_write_done);
		return;
	}
	/* A pattern: written in pieces of at most 1 MiB. */
	uint64_t piece = MIN(rw.nblk, (uint64_t)WS_PIECE / lu->bs);
	tk->buf = sbc_alloc(piece * lu->bs);
	if (!tk->buf) {
		scsi_task_errno(tk, -ENOMEM, true);
		return;
	}
	for (uint64_t i = 0; i < piece; i++)
		memcpy((uint8_t *)tk->buf + i * lu->bs, c->data_out, lu->bs);
	tk->lba = rw.lba;
	tk->nblk = rw.nblk;
	tk->done_blk = 0;
	sbc_ws_next(tk);
}

/* ---- UNMAP (SBC-4 5.31) --------------------------------------------------- */

static void sbc_unmap_step(struct scsi_task *tk, int status);

static void sbc_unmap_next(struct scsi_task *tk)
{
	struct scsi_lu *lu = tk->lu;
	const uint8_t *desc = tk->c->data_out + 8;
	while (tk->done_blk < tk->nblk) {
		const uint8_t *d = desc + 16 * tk->done_blk++;
		uint64_t lba = get_be64(d);
		uint32_t n = get_be32(d + 8);
		if (!n)
			continue;
		/* write zeroes, not SDS_OP_UNMAP: see sbc_write_same */
		tk->io = (struct sds_io){.op = SDS_OP_WRITE_ZEROES,
					 .offset = lba * lu->bs,
					 .len = (uint64_t)n * lu->bs};
		scsi_task_io(tk, lu->vd, sbc_unmap_step);
		return;
	}
	scsi_task_good(tk);
}

static void sbc_unmap_step(struct scsi_task *tk, int status)
{
	if (status) {
		scsi_task_errno(tk, status, true);
		return;
	}
	if (tk->aborted) {
		scsi_task_good(tk);
		return;
	}
	sbc_unmap_next(tk);
}

void sbc_unmap(struct scsi_task *tk)
{
	struct scsi_cmd *c = tk->c;
	struct scsi_lu *lu = tk->lu;
	uint32_t plen = get_be16(c->cdb + 7);
	if (c->cdb[1] & 0x01) { /* ANCHOR: ANC_SUP=0 */
		scsi_task_bad_cdb(tk, 1, 0);
		return;
	}
	if (sbc_write_protected(tk))
		return;
	c->xfer_len = plen;
	if (plen == 0) {
		scsi_task_good(tk);
		return;
	}
	if (plen < 8 || c->data_out_len < 8 || !c->data_out) {
		scsi_task_check(tk, SK_ILLEGAL_REQUEST,
				ASC_PARAM_LIST_LENGTH_ERROR);
		return;
	}
	const uint8_t *p = c->data_out;
	uint32_t avail = MIN(plen, c->data_out_len);
	uint32_t bddl = get_be16(p + 2);
	if (bddl > avail - 8)
		bddl = avail - 8;
	uint32_t ndesc = bddl / 16;
	if (ndesc > SBC_MAX_UNMAP_DESC) {
		scsi_task_bad_param(tk, 2, -1);
		return;
	}
	/* Validate every descriptor before unmapping anything. */
	for (uint32_t i = 0; i < ndesc; i++) {
		const uint8_t *d = p + 8 + 16 * i;
		uint64_t lba = get_be64(d);
		uint32_t n = get_be32(d + 8);
		if (!sbc_range_ok(lu, lba, n)) {
			scsi_task_check(tk, SK_ILLEGAL_REQUEST,
					ASC_LBA_OUT_OF_RANGE);
			return;
		}
		/* MAXIMUM UNMAP LBA COUNT is FFFFFFFFh (no limit): the
		 * engine works in bounded steps whatever the count. */
	}
	tk->nblk = ndesc;
	tk->done_blk = 0;
	sbc_unmap_next(tk);
}

/* ---- GET LBA STATUS (SBC-4 5.7) ------------------------------------------- */

void sbc_get_lba_status(struct scsi_task *tk)
{
	struct scsi_cmd *c = tk->c;
	struct scsi_lu *lu = tk->lu;
	uint64_t lba = get_be64(c->cdb + 2);
	uint32_t alloc = get_be32(c->cdb + 10);
	if (lba >= lu->nblocks) {
		scsi_task_check(tk, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
		return;
	}
	unsigned max = alloc > 24 ? (alloc - 8) / 16 : 1;
	if (max > 64)
		max = 64;
	uint8_t d[8 + 64 * 16];
	memset(d, 0, sizeof(d));
	unsigned n = 0;
	while (n < max && lba < lu->nblocks) {
		bool mapped;
		uint64_t len = 0;
		uint64_t max_len = (lu->nblocks - lba) * lu->bs;
		if (max_len > (uint64_t)UINT32_MAX * lu->bs)
			max_len = (uint64_t)UINT32_MAX * lu->bs;
		int rc = sds_vdisk_lba_status(lu->vd, lba * lu->bs, max_len,
					      &mapped, &len);
		if (rc) {
			scsi_task_errno(tk, rc, false);
			return;
		}
		uint64_t blocks = len / lu->bs;
		if (!blocks)
			blocks = 1;
		uint8_t *p = d + 8 + 16 * n;
		put_be64(p, lba);
		put_be32(p + 8, (uint32_t)blocks);
		p[12] = mapped ? 0x00 : 0x01; /* mapped / deallocated */
		lba += blocks;
		n++;
	}
	put_be32(d, 4 + n * 16);
	scsi_task_data_in(tk, d, 8 + n * 16, alloc);
	scsi_task_done(tk);
}

/* ---- COMPARE AND WRITE (SBC-4 5.3) ------------------------------------- */

static void sbc_caw_done(struct scsi_task *tk, int status)
{
	if (status == -EILSEQ) {
		/* SBC-4 5.3: MISCOMPARE, INFORMATION = offset of the first
		 * byte that differs in the verify data. */
		scsi_sense_info(tk->c, SK_MISCOMPARE,
				ASC_MISCOMPARE_DURING_VERIFY,
				tk->io.miscompare_offset);
		scsi_task_done(tk);
		return;
	}
	scsi_task_errno(tk, status, true);
}

void sbc_compare_and_write(struct scsi_task *tk)
{
	struct scsi_cmd *c = tk->c;
	struct scsi_lu *lu = tk->lu;
	struct sbc_rw rw;
	sbc_decode(c->cdb, &rw);
	if (rw.nblk > SBC_MAX_CAW_BLOCKS) {
		scsi_task_bad_cdb(tk, 13, -1);
		return;
	}
	if (!sbc_check_rw(tk, &rw, false) || sbc_write_protected(tk))
		return;
	uint64_t len = rw.nblk * lu->bs;
	c->xfer_len = (uint32_t)(2 * len);
	if (!len && c->data_out_len) {
		/* data for a CDB that asks for none: typically a count of
		 * 256 wrapped to 0 by the one-byte field */
		scsi_task_bad_cdb(tk, 13, -1);
		return;
	}
	if (!sbc_data_out_exact(tk, 2 * len))
		return;
	if (!len) { /* SBC-4 5.3: not an error */
		scsi_task_good(tk);
		return;
	}
	tk->io = (struct sds_io){.op = SDS_OP_COMPARE_AND_WRITE,
				 .flags = sbc_io_flags(lu, rw.fua),
				 .offset = rw.lba * lu->bs,
				 .len = len,
				 .buf = c->data_out};
	scsi_task_io(tk, lu->vd, sbc_caw_done);
}

/* ---- WRITE ATOMIC(16) (SBC-4 5.48) -------------------------------------- */

/* One engine write is atomic: its blocks are locked for its whole life and
 * their new pointers land in one metadata generation. VPD B0 advertises
 * one extent (1 MiB) as the MAXIMUM ATOMIC TRANSFER LENGTH. */
void sbc_write_atomic(struct scsi_task *tk)
{
	struct scsi_cmd *c = tk->c;
	struct scsi_lu *lu = tk->lu;
	struct sbc_rw rw;
	sbc_decode(c->cdb, &rw);
	if (get_be16(c->cdb + 10)) { /* ATOMIC BOUNDARY: size 0 in B0 */
		scsi_task_bad_cdb(tk, 10, -1);
		return;
	}
	if (!sbc_check_rw(tk, &rw, false) || sbc_write_protected(tk))
		return;
	uint64_t len = rw.nblk * lu->bs;
	if (len > SDS_EXTENT_SIZE) {
		scsi_task_bad_cdb(tk, 12, -1);
		return;
	}
	if (!sbc_xfer_begin(tk, len, true))
		return;
	tk->io = (struct sds_io){.op = SDS_OP_WRITE,
				 .flags = sbc_io_flags(lu, rw.fua),
				 .offset = rw.lba * lu->bs,
				 .len = len,
				 .buf = c->data_out};
	scsi_task_io(tk, lu->vd, sbc_write_done);
}

/* ---- ORWRITE(16) (SBC-4 5.9) ---------------------------------------------- */

/* new = old OR data, made atomic per piece (at most one extent) by the
 * engine's COMPARE AND WRITE: read, OR, then compare-and-write against
 * what was read; a concurrent change makes the compare fail, and the piece
 * is simply done again. */
#define ORW_PIECE SDS_EXTENT_SIZE
#define ORW_RETRIES 16

struct sbc_orw {
	uint64_t off, len, done, piece;
	uint32_t flags;
	unsigned retries;
	uint8_t *buf; /* piece bytes read, then piece bytes to write */
};

static void sbc_orw_read(struct scsi_task *tk);

static void sbc_orw_written(struct scsi_task *tk, int status)
{
	struct sbc_orw *o = tk->ctx;
	if (status == -EILSEQ && ++o->retries < ORW_RETRIES) {
		sbc_orw_read(tk); /* someone wrote in between: again */
		return;
	}
	if (status == -EILSEQ) { /* contended beyond reason: retry later */
		status = -ENOMEM;
	}
	if (status) {
		scsi_task_errno(tk, status, true);
		return;
	}
	o->done += o->piece;
	o->retries = 0;
	if (o->done == o->len || tk->aborted) {
		scsi_task_good(tk);
		return;
	}
	sbc_orw_read(tk);
}

static void sbc_orw_got(struct scsi_task *tk, int status)
{
	struct sbc_orw *o = tk->ctx;
	if (status) {
		scsi_task_errno(tk, status, false);
		return;
	}
	const uint8_t *data = tk->c->data_out + o->done;
	for (uint64_t i = 0; i < o->piece; i++)
		o->buf[o->piece + i] = o->buf[i] | data[i];
	tk->io = (struct sds_io){.op = SDS_OP_COMPARE_AND_WRITE,
				 .flags = o->flags,
				 .offset = o->off + o->done,
				 .len = o->piece,
				 .buf = o->buf};
	scsi_task_io(tk, tk->lu->vd, sbc_orw_written);
}

static void sbc_orw_read(struct scsi_task *tk)
{
	struct sbc_orw *o = tk->ctx;
	o->piece = MIN(o->len - o->done, (uint64_t)ORW_PIECE);
	tk->io = (struct sds_io){.op = SDS_OP_READ,
				 .offset = o->off + o->done,
				 .len = o->piece,
				 .buf = o->buf};
	scsi_task_io(tk, tk->lu->vd, sbc_orw_got);
}

void sbc_orwrite(struct scsi_task *tk)
{
	struct scsi_lu *lu = tk->lu;
	struct sbc_rw rw;
	uint64_t len;
	if (!sbc_rw_begin(tk, &rw, true, &len))
		return;
	struct sbc_orw *o = calloc(1, sizeof(*o));
	if (!o) {
		scsi_task_errno(tk, -ENOMEM, true);
		return;
	}
	tk->ctx = o;
	o->buf = tk->buf = sbc_alloc(2 * MIN(len, (uint64_t)ORW_PIECE));
	if (!o->buf) {
		scsi_task_errno(tk, -ENOMEM, true);
		return;
	}
	o->off = rw.lba * lu->bs;
	o->len = len;
	o->flags = sbc_io_flags(lu, rw.fua);
	sbc_orw_read(tk);
}

/* ---- READ DEFECT DATA (SBC-4 5.19, 5.20) -------------------------------- */

/* No medium defects to report: an empty list in the format asked for. */
void sbc_read_defect_data(struct scsi_task *tk)
{
	struct scsi_cmd *c = tk->c;
	uint8_t d[8] = {0};
	size_t n;
	uint32_t alloc;
	if (c->cdb[0] == 0x37) {
		d[1] = c->cdb[2] & 0x1f; /* PLISTV GLISTV FORMAT */
		alloc = get_be16(c->cdb + 7);
		n = 4;
	} else {
		d[1] = c->cdb[1] & 0x1f;
		alloc = get_be32(c->cdb + 6);
		n = 8;
	}
	scsi_task_data_in(tk, d, n, alloc);
	scsi_task_done(tk);
}
