/* iscsi_io: a small libiscsi load generator for bench/iscsi.sh (built by
 * that script with -liscsi; the Makefile's tools do not link libiscsi).
 *
 *   iscsi_io URL randread|randwrite QD SECONDS [SPAN_MIB]
 *       4 KiB random IO at queue depth QD for SECONDS over the first
 *       SPAN_MIB of the LUN (default: all); prints "iops N".
 *   iscsi_io URL writesame|writezero BYTES
 *       zeroes BYTES from LBA 0: WRITE SAME (16) (no UNMAP), or WRITE (16)
 *       of zero buffers, 1 MiB per command, 8 in flight; prints
 *       "seconds S" (or "unsupported" if the LUN refuses WRITE SAME).
 *   iscsi_io URL fill BYTES
 *       writes a non-zero pattern over BYTES from LBA 0 (prefill).
 *   iscsi_io URL xcopy|copyrw BYTES
 *       copies BYTES from LBA 0 of the URL's LUN to LBA 0 of the next LUN:
 *       EXTENDED COPY (LID1, identification CSCDs naming both LUs by their
 *       NAA designator, block-to-block segments of at most 65535 blocks),
 *       or READ (16) + WRITE (16) through the initiator, 1 MiB at a time,
 *       8 in flight; prints "seconds S" (or "unsupported").
 */
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

struct st {
	struct iscsi_context *iscsi;
	int lun;
	uint32_t bs;
	uint64_t nblk; /* blocks in the span */
	int write;
	unsigned inflight, qd;
	uint64_t done, errors;
	int stop, unsupported;
	uint64_t next_lba, end_lba; /* zeroing */
	int zero_mode;		    /* 1 writesame, 2 writezero */
	unsigned char *buf;
	uint64_t seed;
};

static uint64_t rnd(struct st *s)
{
	s->seed ^= s->seed << 13;
	s->seed ^= s->seed >> 7;
	s->seed ^= s->seed << 17;
	return s->seed;
}

static void submit(struct st *s);

static void cb(struct iscsi_context *iscsi, int status, void *data, void *priv)
{
	(void)iscsi;
	struct st *s = priv;
	struct scsi_task *t = data;
	s->inflight--;
	if (status == SCSI_STATUS_GOOD) {
		s->done++;
	} else {
		s->errors++;
		if (status == SCSI_STATUS_CHECK_CONDITION &&
		    t->sense.key == SCSI_SENSE_ILLEGAL_REQUEST)
			s->unsupported = 1;
	}
	scsi_free_scsi_task(t);
	if (!s->stop)
		submit(s);
}

static void submit(struct st *s)
{
	while (s->inflight < s->qd && !s->stop) {
		struct scsi_task *t;
		if (s->zero_mode) {
			if (s->next_lba >= s->end_lba)
				return;
			uint32_t n = (1u << 20) / s->bs;
			if (s->next_lba + n > s->end_lba)
				n = (uint32_t)(s->end_lba - s->next_lba);
			if (s->zero_mode == 1)
				t = iscsi_writesame16_task(
				    s->iscsi, s->lun, s->next_lba, s->buf,
				    s->bs, n, 0, 0, 0, 0, cb, s);
			else
				t = iscsi_write16_task(
				    s->iscsi, s->lun, s->next_lba, s->buf,
				    n * s->bs, s->bs, 0, 0, 0, 0, 0, cb, s);
			s->next_lba += n;
		} else {
			uint32_t per = 4096 / s->bs;
			uint64_t lba = (rnd(s) % (s->nblk / per)) * per;
			if (s->write)
				t = iscsi_write16_task(s->iscsi, s->lun, lba,
						       s->buf, 4096, s->bs, 0,
						       0, 0, 0, 0, cb, s);
			else
				t = iscsi_read16_task(s->iscsi, s->lun, lba,
						      4096, s->bs, 0, 0, 0, 0,
						      0, cb, s);
		}
		if (!t) {
			fprintf(stderr, "submit: %s\n",
				iscsi_get_error(s->iscsi));
			exit(1);
		}
		s->inflight++;
	}
}

static void run(struct st *s, double deadline)
{
	while (s->inflight) {
		if (deadline && now() >= deadline)
			s->stop = 1;
		struct pollfd pfd = {.fd = iscsi_get_fd(s->iscsi),
				     .events = iscsi_which_events(s->iscsi)};
		if (poll(&pfd, 1, 1000) < 0 ||
		    iscsi_service(s->iscsi, pfd.revents) < 0) {
			fprintf(stderr, "service: %s\n",
				iscsi_get_error(s->iscsi));
			exit(1);
		}
	}
}

/* The LU's NAA designation descriptor (VPD 0x83), 4-byte header and
 * designator, into out (20 bytes, zero padded). */
static int naa_of(struct st *s, int lun, unsigned char out[20])
{
	struct scsi_task *t = iscsi_inquiry_sync(s->iscsi, lun, 1, 0x83, 255);
	if (!t || t->status != SCSI_STATUS_GOOD)
		return -1;
	unsigned char *d = t->datain.data;
	int len = t->datain.size, pos = 4;
	memset(out, 0, 20);
	while (pos + 4 <= len) {
		int dl = d[pos + 3];
		if ((d[pos + 1] & 0x0f) == 3 && (d[pos + 1] & 0x30) == 0 &&
		    dl <= 16) {
			memcpy(out, d + pos, 4 + dl);
			scsi_free_scsi_task(t);
			return 0;
		}
		pos += 4 + dl;
	}
	scsi_free_scsi_task(t);
	return -1;
}

static int xcopy(struct st *s, uint64_t bytes)
{
	unsigned char naa0[20], naa1[20];
	if (naa_of(s, s->lun, naa0) < 0 || naa_of(s, s->lun + 1, naa1) < 0) {
		printf("unsupported\n");
		return 0;
	}
	uint64_t nblk = bytes / s->bs;
	/* Segments of whole MiB (at most 65535 blocks each), so that every
	 * one stays aligned to the store's 4 KiB blocks. */
	uint32_t mib = (1u << 20) / s->bs;
	uint32_t per = 65535 / mib * mib;
	unsigned nseg = (unsigned)((nblk + per - 1) / per);
	size_t len = 16 + 2 * 32 + (size_t)nseg * 28;
	unsigned char *p = calloc(1, len);
	p[1] = 0x18; /* LIST ID USAGE 11b: no list identifier */
	p[3] = 64;   /* two CSCD descriptors */
	uint32_t sl = nseg * 28;
	p[8] = (unsigned char)(sl >> 24), p[9] = (unsigned char)(sl >> 16);
	p[10] = (unsigned char)(sl >> 8), p[11] = (unsigned char)sl;
	for (int i = 0; i < 2; i++) {
		unsigned char *c = p + 16 + 32 * i;
		c[0] = 0xe4; /* identification descriptor CSCD */
		memcpy(c + 4, i ? naa1 : naa0, 20);
		c[29] = (unsigned char)(s->bs >> 16);
		c[30] = (unsigned char)(s->bs >> 8);
		c[31] = (unsigned char)s->bs;
	}
	uint64_t lba = 0;
	for (unsigned i = 0; i < nseg; i++) {
		unsigned char *g = p + 16 + 64 + 28 * i;
		uint64_t n = nblk - lba < per ? nblk - lba : per;
		g[0] = 0x02; /* block device to block device */
		g[3] = 0x18;
		g[5] = 0; /* source CSCD 0 */
		g[7] = 1; /* destination CSCD 1 */
		g[10] = (unsigned char)(n >> 8), g[11] = (unsigned char)n;
		for (int b = 0; b < 8; b++) {
			g[12 + b] = (unsigned char)(lba >> (56 - 8 * b));
			g[20 + b] = (unsigned char)(lba >> (56 - 8 * b));
		}
		lba += n;
	}
	struct iscsi_data d = {.size = len, .data = p};
	double t0 = now();
	struct scsi_task *t = iscsi_extended_copy_sync(s->iscsi, s->lun, &d);
	double el = now() - t0;
	if (!t || t->status != SCSI_STATUS_GOOD) {
		if (t && t->status == SCSI_STATUS_CHECK_CONDITION &&
		    t->sense.key == SCSI_SENSE_ILLEGAL_REQUEST) {
			printf("unsupported\n");
			return 0;
		}
		fprintf(stderr, "xcopy: %s\n", iscsi_get_error(s->iscsi));
		return 1;
	}
	scsi_free_scsi_task(t);
	free(p);
	printf("seconds %.6f errors 0\n", el);
	return 0;
}

struct cp {
	struct st *s;
	uint64_t lba;
	uint32_t n;
	unsigned char *buf;
};

static void copy_next(struct st *s, struct cp *c);

static void copy_written(struct iscsi_context *iscsi, int status, void *data,
			 void *priv)
{
	(void)iscsi;
	struct cp *c = priv;
	struct st *s = c->s;
	struct scsi_task *t = data;
	if (status != SCSI_STATUS_GOOD) {
		s->errors++;
		fprintf(stderr, "write lba %llu: status %d sense %x/%04x\n",
			(unsigned long long)c->lba, status, t->sense.key,
			t->sense.ascq);
	}
	scsi_free_scsi_task(t);
	s->done++;
	s->inflight--;
	copy_next(s, c);
}

static void copy_read(struct iscsi_context *iscsi, int status, void *data,
		      void *priv)
{
	struct cp *c = priv;
	struct st *s = c->s;
	struct scsi_task *t = data;
	if (status != SCSI_STATUS_GOOD) {
		s->errors++;
		s->inflight--;
		scsi_free_scsi_task(t);
		return;
	}
	memcpy(c->buf, t->datain.data, (size_t)c->n * s->bs);
	scsi_free_scsi_task(t);
	if (!iscsi_write16_task(iscsi, s->lun + 1, c->lba, c->buf, c->n * s->bs,
				s->bs, 0, 0, 0, 0, 0, copy_written, c))
		exit(1);
}

static void copy_next(struct st *s, struct cp *c)
{
	if (s->next_lba >= s->end_lba)
		return;
	c->lba = s->next_lba;
	c->n = (1u << 20) / s->bs;
	if (c->lba + c->n > s->end_lba)
		c->n = (uint32_t)(s->end_lba - c->lba);
	s->next_lba += c->n;
	s->inflight++;
	if (!iscsi_read16_task(s->iscsi, s->lun, c->lba, c->n * s->bs, s->bs, 0,
			       0, 0, 0, 0, copy_read, c))
		exit(1);
}

static int copyrw(struct st *s, uint64_t bytes)
{
	struct cp c[8];
	s->end_lba = bytes / s->bs;
	double t0 = now();
	for (int i = 0; i < 8; i++) {
		c[i].s = s;
		c[i].buf = malloc(1u << 20);
		copy_next(s, &c[i]);
	}
	run(s, 0);
	printf("seconds %.6f errors %llu\n", now() - t0,
	       (unsigned long long)s->errors);
	return s->errors ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: see the comment in bench/iscsi_io.c\n");
		return 2;
	}
	struct st s = {.seed = 0x9e3779b97f4a7c15ull};
	s.iscsi = iscsi_create_context("iqn.2026-11.org.cairn:bench");
	struct iscsi_url *u = iscsi_parse_full_url(s.iscsi, argv[1]);
	if (!u) {
		fprintf(stderr, "url: %s\n", iscsi_get_error(s.iscsi));
		return 1;
	}
	iscsi_set_targetname(s.iscsi, u->target);
	iscsi_set_session_type(s.iscsi, ISCSI_SESSION_NORMAL);
	iscsi_set_header_digest(s.iscsi, ISCSI_HEADER_DIGEST_NONE);
	if (u->user[0])
		iscsi_set_initiator_username_pwd(s.iscsi, u->user, u->passwd);
	if (iscsi_full_connect_sync(s.iscsi, u->portal, u->lun) != 0) {
		fprintf(stderr, "login: %s\n", iscsi_get_error(s.iscsi));
		return 1;
	}
	s.lun = u->lun;
	/* Consume the unit attentions a new nexus sees (SAM-5 5.14), on this
	 * LUN and the next (the copy modes' destination). */
	for (int l = 0; l < 2; l++)
		for (int i = 0; i < 3; i++) {
			struct scsi_task *tu =
			    iscsi_testunitready_sync(s.iscsi, s.lun + l);
			if (tu)
				scsi_free_scsi_task(tu);
		}
	struct scsi_task *t = iscsi_readcapacity16_sync(s.iscsi, s.lun);
	struct scsi_readcapacity16 *rc16 = t ? scsi_datain_unmarshall(t) : NULL;
	if (!rc16) {
		fprintf(stderr, "readcapacity16 failed\n");
		return 1;
	}
	s.bs = rc16->block_length;
	s.nblk = rc16->returned_lba + 1;
	scsi_free_scsi_task(t);
	s.buf = calloc(1, 1u << 20);
	for (int i = 0; i < (1 << 20); i++)
		s.buf[i] = (unsigned char)(i * 31 + 7);
	if (!strcmp(argv[2], "randread") || !strcmp(argv[2], "randwrite")) {
		if (argc < 5)
			return 2;
		s.write = argv[2][4] == 'w';
		s.qd = (unsigned)atoi(argv[3]);
		double secs = atof(argv[4]);
		if (argc > 5) {
			uint64_t span = strtoull(argv[5], NULL, 0) << 20;
			if (span / s.bs < s.nblk)
				s.nblk = span / s.bs;
		}
		double t0 = now();
		submit(&s);
		run(&s, t0 + secs);
		double el = now() - t0;
		printf("iops %.0f errors %llu\n", s.done / el,
		       (unsigned long long)s.errors);
		return s.errors ? 1 : 0;
	}
	if (!strcmp(argv[2], "writesame") || !strcmp(argv[2], "writezero") ||
	    !strcmp(argv[2], "fill")) {
		if (strcmp(argv[2], "fill"))
			memset(s.buf, 0, 1u << 20);
		s.zero_mode = argv[2][5] == 's' ? 1 : 2;
		s.qd = 8;
		s.end_lba = strtoull(argv[3], NULL, 0) / s.bs;
		if (s.end_lba > s.nblk)
			s.end_lba = s.nblk;
		double t0 = now();
		submit(&s);
		run(&s, 0);
		if (s.unsupported) {
			printf("unsupported\n");
			return 0;
		}
		printf("seconds %.6f errors %llu\n", now() - t0,
		       (unsigned long long)s.errors);
		return s.errors ? 1 : 0;
	}
	if (!strcmp(argv[2], "xcopy"))
		return xcopy(&s, strtoull(argv[3], NULL, 0));
	if (!strcmp(argv[2], "copyrw"))
		return copyrw(&s, strtoull(argv[3], NULL, 0));
	return 2;
}
