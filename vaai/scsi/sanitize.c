/* SANITIZE (SBC-4 5.30, 4.11): the service actions a thin, redirect-on-
 * write vdisk can honestly carry out.
 *
 *   OVERWRITE (01h)     the initialization pattern written over every
 *                       logical block, OVERWRITE COUNT passes, inverted
 *                       between passes when INVERT=1; then a flush.
 *   BLOCK ERASE (02h)   every block deallocated (the engine's write
 *                       zeroes over the whole vdisk: LBPRZ, reads return
 *                       zeroes, GET LBA STATUS reports deallocated); then a
 *                       flush. WABEREQ=01b in VPD B1h.
 *   EXIT FAILURE MODE   leaves the failure state of a sanitize that failed
 *   (1Fh)               with AUSE=1.
 *
 * CRYPTOGRAPHIC ERASE (03h) is not offered: the pool does not encrypt, so
 * there is no key whose change would make the data unreadable; it is left
 * out of the table (INVALID FIELD IN CDB, absent from REPORT SUPPORTED
 * OPERATION CODES, WACEREQ=00b).
 *
 * What "sanitized" means here: the LU's data is gone from every path the
 * LU offers. The pool redirects writes, so the disk blocks that held the
 * old data are freed, not overwritten, and snapshots or clones that share
 * them keep them (docs/scsi.md).
 *
 * The operation belongs to the LU, not to the command (4.11.2): it goes on
 * after the command is aborted, after resets and after the I_T nexus is
 * lost; while it runs every command but INQUIRY, REPORT LUNS and REQUEST
 * SENSE (OPF_SANITIZE_OK) ends with NOT READY, SANITIZE IN PROGRESS and a
 * progress indication. It writes at most SANITIZE_RATE bytes a second, so
 * that the other vdisks of the pool keep their throughput.
 *
 * It survives a restart (4.11.2: it resumes after a power on): the vdisk
 * attribute "scsi.sanitize" holds the operation from its start (written,
 * durably, before any block is touched) to its end, and the failure state
 * after a failure; an LU that finds one carries on with the operation
 * (sanitize_lu_load). Every SANITIZE_CHECKPOINT bytes an OVERWRITE makes
 * what it wrote durable (a FLUSH: the group commit) and only then records
 * how far it got, so a restart resumes at the last checkpoint, never past
 * a block whose new contents could be lost. Encoding: "CSN" version(1),
 * u8 SA, u8 flags (1 AUSE, 2 INVERT, 4 failed), u8 OVERWRITE COUNT, u8 0,
 * be16 pattern length, the pattern; then, once a checkpoint was taken,
 * u8 pass and be64 offset (bytes of that pass done). */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "scsi_internal.h"

#define SANITIZE_PIECE (1u << 20)
#define SANITIZE_RATE (32ull << 20) /* bytes per second */
#define SANITIZE_CHECKPOINT (16ull << 20) /* OVERWRITE bytes between them */
#define SANITIZE_CK_LEN 9u /* u8 pass, be64 offset */

#define SA_OVERWRITE 0x01
#define SA_BLOCK_ERASE 0x02
#define SA_EXIT_FAILURE_MODE 0x1f
#define SANITIZE_ATTR "scsi.sanitize"
#define SANITIZE_MAGIC "CSN\x01"
#define SANITIZE_HDR 10u
#define SANITIZE_F_AUSE 1u
#define SANITIZE_F_INVERT 2u
#define SANITIZE_F_FAILED 4u

struct scsi_sanitize {
	struct scsi_lu *lu; /* NULL once the LU is destroyed */
	struct sds_vdisk *vd; /* own handle: outlives the LU's if orphaned */
	uv_timer_t timer;
	struct sds_io io;
	uint8_t sa;
	bool ause;
	bool io_busy;
	bool flushed;
	unsigned passes, pass;
	bool invert;
	uint16_t ipl;		/* INITIALIZATION PATTERN LENGTH */
	uint8_t raw[SDS_BLOCK_SIZE]; /* the pattern as given */
	uint8_t *pat[2]; /* one piece: pattern, inverted pattern */
	uint64_t off, size;
	uint64_t t0, written; /* for the rate */
	uint64_t since_ck;    /* bytes written since the last checkpoint */
	bool ck_flush;        /* the FLUSH in flight is a checkpoint's */
	struct scsi_task *waiter; /* IMMED=0: the command, until aborted */
};

static void sanitize_next(struct scsi_sanitize *s);
static void sanitize_submit(struct scsi_sanitize *s, enum sds_op op,
			    uint64_t off, uint64_t len, void *buf);

static void sanitize_timer_cb(uv_timer_t *t)
{
	sanitize_next(t->data);
}

static void sanitize_release(struct scsi_sanitize *s)
{
	sds_vdisk_close(s->vd);
	free(s->pat[0]);
	free(s->pat[1]);
	free(s);
}

static void sanitize_timer_closed(uv_handle_t *h)
{
	sanitize_release(h->data);
}

/* The vdisk handle goes now, not from the close callback: at shutdown the
 * pool may close before that callback runs. */
static void sanitize_free(struct scsi_sanitize *s)
{
	sds_vdisk_close(s->vd);
	s->vd = NULL;
	uv_close((uv_handle_t *)&s->timer, sanitize_timer_closed);
}

/* The record of the operation (failed: of its failure), durable on return;
 * failed with no s: EXIT FAILURE MODE or success, the record goes. */
static int sanitize_store(struct scsi_lu *lu, const struct scsi_sanitize *s,
			  bool failed)
{
	if (!s)
		return sds_vdisk_attr_set(lu->vd, SANITIZE_ATTR, NULL, 0);
	uint8_t d[SANITIZE_HDR + SDS_BLOCK_SIZE + SANITIZE_CK_LEN] = {0};
	memcpy(d, SANITIZE_MAGIC, 4);
	d[4] = s->sa;
	d[5] = (uint8_t)((s->ause ? SANITIZE_F_AUSE : 0) |
			 (s->invert ? SANITIZE_F_INVERT : 0) |
			 (failed ? SANITIZE_F_FAILED : 0));
	d[6] = (uint8_t)s->passes;
	put_be16(d + 8, s->ipl);
	memcpy(d + SANITIZE_HDR, s->raw, s->ipl);
	size_t len = SANITIZE_HDR + s->ipl;
	if (!failed && (s->pass || s->off)) {
		d[len] = (uint8_t)s->pass;
		put_be64(d + len + 1, s->off);
		len += SANITIZE_CK_LEN;
	}
	return sds_vdisk_attr_set(lu->vd, SANITIZE_ATTR, d, len);
}

/* Ends the operation: the LU becomes ready again, or enters the failure
 * state (4.11.3) when status is an error. */
static void sanitize_finish(struct scsi_sanitize *s, int status)
{
	struct scsi_lu *lu = s->lu;
	struct scsi_task *tk = s->waiter;
	s->waiter = NULL;
	if (lu) {
		lu->san = NULL;
		lu->san_failed = status != 0;
		lu->san_ause = s->ause;
		if (status)
			log_warn("scsi", "%s: SANITIZE failed: %s", lu->name,
				 strerror(-status));
		else
			log_info("scsi", "%s: SANITIZE done", lu->name);
		/* A record that cannot be updated stays as it was: the
		 * operation then runs again after a restart, which is the
		 * safe side. */
		int rc = sanitize_store(lu, status ? s : NULL, status != 0);
		if (rc)
			log_error("scsi", "%s: sanitize record: %s", lu->name,
				  strerror(-rc));
	}
	if (tk) {
		tk->cancel = NULL;
		if (status)
			scsi_task_check(tk, SK_MEDIUM_ERROR,
					ASC_SANITIZE_FAILED);
		else
			scsi_task_good(tk);
	}
	sanitize_free(s);
}

static void sanitize_io_done(struct sds_io *io, int status)
{
	struct scsi_sanitize *s = io->priv;
	s->io_busy = false;
	if (!s->lu) { /* the LU went away while this was in flight */
		sanitize_free(s);
		return;
	}
	if (status) {
		sanitize_finish(s, status);
		return;
	}
	if (io->op == SDS_OP_FLUSH && s->ck_flush) {
		/* Everything so far is durable: now say so. A record that
		 * cannot be updated keeps the older one (more is redone). */
		s->ck_flush = false;
		s->since_ck = 0;
		int rc = sanitize_store(s->lu, s, false);
		if (rc)
			log_warn("scsi", "%s: sanitize checkpoint: %s",
				 s->lu->name, strerror(-rc));
		sanitize_next(s);
		return;
	}
	if (io->op == SDS_OP_FLUSH) {
		s->flushed = true;
		sanitize_finish(s, 0);
		return;
	}
	if (io->op == SDS_OP_WRITE_ZEROES)
		s->off = s->size;
	else
		s->off += io->len;
	s->written += io->len;
	s->since_ck += io->len;
	if (s->off >= s->size && ++s->pass < s->passes)
		s->off = 0;
	if (io->op == SDS_OP_WRITE && s->since_ck >= SANITIZE_CHECKPOINT &&
	    s->pass < s->passes) {
		s->ck_flush = true;
		sanitize_submit(s, SDS_OP_FLUSH, 0, 0, NULL);
		return;
	}
	/* Keep to SANITIZE_RATE: wait until the bytes written so far are
	 * due. */
	uint64_t due = s->t0 + s->written * 1000 / SANITIZE_RATE;
	uint64_t now = uv_now(s->lu->t->loop);
	if (io->op == SDS_OP_WRITE && due > now) {
		uv_timer_start(&s->timer, sanitize_timer_cb, due - now, 0);
		return;
	}
	sanitize_next(s);
}

static void sanitize_submit(struct scsi_sanitize *s, enum sds_op op,
			    uint64_t off, uint64_t len, void *buf)
{
	s->io = (struct sds_io){.op = op,
				.offset = off,
				.len = len,
				.buf = buf,
				.cb = sanitize_io_done,
				.priv = s};
	s->io_busy = true;
	sds_vdisk_submit(s->vd, &s->io);
}

static void sanitize_next(struct scsi_sanitize *s)
{
	if (s->sa == SA_BLOCK_ERASE && s->off < s->size) {
		sanitize_submit(s, SDS_OP_WRITE_ZEROES, 0, s->size, NULL);
		return;
	}
	if (s->sa == SA_OVERWRITE && s->pass < s->passes) {
		uint64_t n = MIN((uint64_t)SANITIZE_PIECE, s->size - s->off);
		bool inv = s->invert && (s->pass & 1);
		sanitize_submit(s, SDS_OP_WRITE, s->off, n, s->pat[inv]);
		return;
	}
	/* Every block written: durable before the LU is ready again. */
	sanitize_submit(s, SDS_OP_FLUSH, 0, 0, NULL);
}

/* TMF: the command ends (TASK ABORTED); the operation goes on. */
static void sanitize_cancel(struct scsi_task *tk)
{
	struct scsi_sanitize *s = tk->lu ? tk->lu->san : NULL;
	if (s && s->waiter == tk)
		s->waiter = NULL;
	tk->cancel = NULL;
	scsi_task_done_later(tk);
}

/* The OVERWRITE parameter list (SBC-4 5.30.3): INVERT, TEST, OVERWRITE
 * COUNT, INITIALIZATION PATTERN LENGTH, the pattern. */
static bool sanitize_overwrite_params(struct scsi_task *tk,
				      struct scsi_sanitize *s, uint32_t plen)
{
	struct scsi_lu *lu = tk->lu;
	const uint8_t *p = tk->c->data_out;
	/* The list is 4 bytes and a pattern of 1..block size bytes. */
	if (plen < 5 || plen > lu->bs + 4) {
		scsi_task_bad_cdb(tk, 7, -1);
		return false;
	}
	if (!p || tk->c->data_out_len < plen) {
		scsi_task_check(tk, SK_ILLEGAL_REQUEST,
				ASC_PARAM_LIST_LENGTH_ERROR);
		return false;
	}
	uint32_t ipl = get_be16(p + 2);
	if (p[0] & 0x60) { /* TEST: vendor specific, none here */
		scsi_task_bad_param(tk, 0, 6);
		return false;
	}
	if (!(p[0] & 0x1f)) { /* OVERWRITE COUNT 0 is reserved */
		scsi_task_bad_param(tk, 0, 4);
		return false;
	}
	if (p[1]) {
		scsi_task_bad_param(tk, 1, 7);
		return false;
	}
	if (!ipl || ipl > lu->bs || ipl + 4 != plen) {
		scsi_task_bad_param(tk, 2, -1);
		return false;
	}
	s->invert = p[0] & 0x80;
	s->passes = p[0] & 0x1f;
	s->ipl = (uint16_t)ipl;
	memcpy(s->raw, p + 4, ipl);
	return true;
}

/* The pattern repeats from the start of every logical block. */
static int sanitize_fill(struct scsi_sanitize *s, uint32_t bs)
{
	for (int i = 0; i < 2; i++)
		if (posix_memalign((void **)&s->pat[i], SDS_BLOCK_SIZE,
				   SANITIZE_PIECE))
			return -ENOMEM;
	for (uint32_t b = 0; b < SANITIZE_PIECE; b += bs)
		for (uint32_t i = 0; i < bs; i++) {
			uint8_t v = s->raw[i % s->ipl];
			s->pat[0][b + i] = v;
			s->pat[1][b + i] = (uint8_t)~v;
		}
	return 0;
}

/* Starts s on lu (s filled: sa, ause, passes, invert, pattern). 0, or
 * -errno with s freed. */
static int sanitize_start(struct scsi_lu *lu, struct scsi_sanitize *s)
{
	s->size = lu->size;
	int rc = s->sa == SA_OVERWRITE ? sanitize_fill(s, lu->bs) : 0;
	if (!rc)
		rc = sds_vdisk_open(lu->t->pool, lu->name, &s->vd);
	if (rc) {
		sanitize_release(s);
		return rc;
	}
	uv_timer_init(lu->t->loop, &s->timer);
	s->timer.data = s;
	s->lu = lu;
	s->t0 = uv_now(lu->t->loop);
	lu->san = s;
	lu->san_failed = false;
	log_info("scsi", "%s: SANITIZE %s started", lu->name,
		 s->sa == SA_OVERWRITE ? "OVERWRITE" : "BLOCK ERASE");
	sanitize_next(s);
	return 0;
}

void sbc_sanitize(struct scsi_task *tk)
{
	struct scsi_cmd *c = tk->c;
	struct scsi_lu *lu = tk->lu;
	bool immed = c->cdb[1] & 0x80, ause = c->cdb[1] & 0x20;
	uint8_t sa = c->cdb[1] & 0x1f;
	uint32_t plen = get_be16(c->cdb + 7);
	c->xfer_len = plen;
	if (sa != SA_OVERWRITE && plen) {
		/* BLOCK ERASE, EXIT FAILURE MODE: no parameter list */
		scsi_task_bad_cdb(tk, 7, -1);
		return;
	}
	if (sa == SA_EXIT_FAILURE_MODE) {
		/* 4.11.3: only a failure with AUSE=1 may be left this way. */
		if (lu->san_failed && !lu->san_ause) {
			scsi_task_bad_cdb(tk, 1, 4);
			return;
		}
		int rc = lu->san_failed ? sanitize_store(lu, NULL, false) : 0;
		if (rc) {
			scsi_task_errno(tk, rc, true);
			return;
		}
		lu->san_failed = false;
		scsi_task_good(tk);
		return;
	}
	if (sbc_write_protected(tk))
		return;
	struct scsi_sanitize *s = calloc(1, sizeof(*s));
	if (!s) {
		scsi_task_errno(tk, -ENOMEM, true);
		return;
	}
	s->sa = sa;
	s->ause = ause;
	s->passes = 1;
	if (sa == SA_OVERWRITE && !sanitize_overwrite_params(tk, s, plen)) {
		sanitize_release(s);
		return;
	}
	/* Recorded before any block changes: a restart resumes it. */
	int rc = sanitize_store(lu, s, false);
	if (!rc)
		rc = sanitize_start(lu, s);
	else
		sanitize_release(s);
	if (rc) {
		scsi_task_errno(tk, rc, true);
		return;
	}
	if (immed) {
		scsi_task_good(tk);
	} else {
		s->waiter = tk;
		tk->cancel = sanitize_cancel;
	}
}

/* The record's checkpoint, if it has one and it fits the LU. */
static bool sanitize_load_checkpoint(struct scsi_sanitize *s,
				     const struct scsi_lu *lu, const uint8_t *ck)
{
	unsigned pass = ck[0];
	uint64_t off = get_be64(ck + 1);
	if (pass >= s->passes || off > lu->size || off % lu->bs)
		return false;
	s->pass = pass;
	s->off = off;
	return true;
}

void sanitize_lu_load(struct scsi_lu *lu)
{
	uint8_t *d;
	size_t len;
	int rc = sds_vdisk_attr_get(lu->vd, SANITIZE_ATTR, (void **)&d, &len);
	if (rc == -ENOENT)
		return;
	struct scsi_sanitize *s = rc ? NULL : calloc(1, sizeof(*s));
	size_t base = len >= SANITIZE_HDR ? SANITIZE_HDR + get_be16(d + 8) : 0;
	if (s && len >= SANITIZE_HDR && !memcmp(d, SANITIZE_MAGIC, 4) &&
	    (d[4] == SA_OVERWRITE || d[4] == SA_BLOCK_ERASE) &&
	    (len == base || len == base + SANITIZE_CK_LEN) &&
	    get_be16(d + 8) <= lu->bs &&
	    (d[4] != SA_OVERWRITE || (get_be16(d + 8) && d[6]))) {
		s->sa = d[4];
		s->ause = d[5] & SANITIZE_F_AUSE;
		s->invert = d[5] & SANITIZE_F_INVERT;
		s->passes = d[4] == SA_OVERWRITE ? d[6] : 1;
		s->ipl = get_be16(d + 8);
		memcpy(s->raw, d + SANITIZE_HDR, s->ipl);
		if (d[5] & SANITIZE_F_FAILED) {
			lu->san_failed = true;
			lu->san_ause = s->ause;
			free(s);
			log_warn("scsi", "%s: in SANITIZE failure mode",
				 lu->name);
		} else {
			if (len > base && !sanitize_load_checkpoint(s, lu, d + base))
				log_warn("scsi", "%s: SANITIZE checkpoint does "
						 "not fit the LU; from the start",
					 lu->name);
			log_warn("scsi",
				 "%s: resuming an interrupted SANITIZE at pass "
				 "%u, offset %llu MiB",
				 lu->name, s->pass + 1,
				 (unsigned long long)(s->off >> 20));
			rc = sanitize_start(lu, s);
		}
	} else {
		free(s);
		rc = rc ? rc : -EINVAL;
	}
	free(d);
	if (rc) {
		/* Not ready to pretend it is sanitized: the failure state
		 * (medium access fails until a new SANITIZE). */
		log_error("scsi", "%s: cannot resume SANITIZE: %s", lu->name,
			  strerror(-rc));
		lu->san_failed = true;
		lu->san_ause = true;
	}
}

/* SBC-4 4.11.2: the progress indication, 0..65535, of the sense key
 * specific field (SPC-5 4.4.2.4.4). */
uint16_t sanitize_progress(const struct scsi_lu *lu)
{
	const struct scsi_sanitize *s = lu->san;
	if (!s || !s->size)
		return 0;
	uint64_t total = (uint64_t)s->passes * s->size;
	uint64_t done = (uint64_t)MIN(s->pass, s->passes) * s->size + s->off;
	if (s->pass >= s->passes)
		done = total;
	return (uint16_t)(done * 65535 / (total + 1));
}

void sanitize_busy(struct scsi_task *tk)
{
	scsi_sense(tk->c, SK_NOT_READY, ASC_SANITIZE_IN_PROGRESS);
	uint8_t *sn = tk->c->sense;
	sn[15] = 0x80; /* SKSV: progress indication */
	put_be16(sn + 16, sanitize_progress(tk->lu));
	scsi_task_done(tk);
}

void sanitize_lu_free(struct scsi_lu *lu)
{
	struct scsi_sanitize *s = lu->san;
	if (!s)
		return;
	/* The transport has waited for its commands, so no waiter; an
	 * operation still running stops here and resumes at the next start
	 * (its record stays). */
	log_warn("scsi", "%s: SANITIZE interrupted by shutdown", lu->name);
	lu->san = NULL;
	s->lu = NULL;
	uv_timer_stop(&s->timer);
	if (!s->io_busy)
		sanitize_free(s);
}
