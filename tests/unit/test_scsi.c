/* SCSI target core tests: a real sds pool on temp files, a target with
 * LUs, nexuses with a LUN map, and CDBs fed through scsi_cmd_submit. */
#include <cairn/scsi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

/* for the engine-error mapping test, which builds a task by hand */
#include "../../vaai/scsi/scsi_internal.h"

#include "check.h"
#include "pool_fixture.h"

int failures;

/* ---- fixture ---------------------------------------------------------------- */

struct env {
	struct pool_fixture pf; /* the pool and the loop */
	struct scsi_target *t;
	struct scsi_lu *lu512, *lu4k, *snap, *hidden, *peer;
	struct scsi_lun_map map, map_b;
	struct scsi_lun_map_entry ents[4], ents_b[4];
	struct scsi_nexus na, nb;
};

struct res {
	uint8_t status;
	uint8_t key, asc, ascq;
	uint8_t sense[SCSI_SENSE_MAX];
	uint8_t sense_len;
	uint32_t data_in_len;
	uint32_t xfer_len;
	uint8_t *data; /* the data-in buffer (env-owned, 1 MiB) */
};

#define D4K_SIZE (48ull << 20)

static uint8_t *g_in;
static bool g_in_submit;

static void cmd_done(struct scsi_cmd *c)
{
	CHECK(!g_in_submit); /* never from inside submit */
	*(bool *)c->priv = true;
}

static struct res run_cap(struct env *e, struct scsi_nexus *n, uint64_t lun,
			  const uint8_t *cdb, uint8_t cdb_len,
			  const void *out, uint32_t out_len, uint32_t in_cap)
{
	struct scsi_cmd c;
	memset(&c, 0, sizeof(c));
	c.nexus = n;
	c.lun = lun;
	memcpy(c.cdb, cdb, cdb_len);
	c.cdb_len = cdb_len < 16 ? 16 : cdb_len; /* iSCSI carries 16 */
	uint8_t *ob = NULL;
	if (out_len) {
		ob = pool_fixture_abuf(out_len);
		memcpy(ob, out, out_len);
	}
	c.data_out = ob;
	c.data_out_len = out_len;
	memset(g_in, 0xee, 1 << 20);
	c.data_in = g_in;
	c.data_in_cap = in_cap;
	bool done = false;
	c.priv = &done;
	c.done = cmd_done;
	g_in_submit = true;
	scsi_cmd_submit(e->t, &c);
	g_in_submit = false;
	CHECK(!done);
	while (!done)
		uv_run(&e->pf.loop, UV_RUN_ONCE);
	struct res r;
	memset(&r, 0, sizeof(r));
	r.status = c.status;
	r.sense_len = c.sense_len;
	memcpy(r.sense, c.sense, sizeof(r.sense));
	if (c.sense_len >= 14) {
		r.key = c.sense[2] & 0xf;
		r.asc = c.sense[12];
		r.ascq = c.sense[13];
	}
	r.data_in_len = c.data_in_len;
	r.xfer_len = c.xfer_len;
	r.data = g_in;
	free(ob);
	return r;
}

static struct res run(struct env *e, uint64_t lun, const uint8_t *cdb,
		      uint8_t cdb_len, const void *out, uint32_t out_len)
{
	return run_cap(e, &e->na, lun, cdb, cdb_len, out, out_len, 1 << 20);
}

#define CHECK_GOOD(r) CHECK_EQ((r).status, SCSI_STATUS_GOOD)
#define CHECK_SENSE(r, k, a, q)                                                \
	do {                                                                   \
		CHECK_EQ((r).status, SCSI_STATUS_CHECK_CONDITION);             \
		CHECK_EQ((r).key, k);                                          \
		CHECK_EQ((r).asc, a);                                          \
		CHECK_EQ((r).ascq, q);                                         \
	} while (0)

static void loop_until(struct env *e, bool *flag)
{
	while (!*flag)
		uv_run(&e->pf.loop, UV_RUN_ONCE);
}

static void env_init(struct env *e)
{
	memset(e, 0, sizeof(*e));
	pool_fixture_init(&e->pf, "scsi", 128 << 20, NULL);
	CHECK_EQ(sds_vdisk_create(e->pf.pool, "d512", 16 << 20, 512), 0);
	CHECK_EQ(sds_vdisk_create(e->pf.pool, "d4k", D4K_SIZE, 4096), 0);
	CHECK_EQ(sds_vdisk_create(e->pf.pool, "hidden", 16 << 20, 512), 0);
	CHECK_EQ(sds_vdisk_create(e->pf.pool, "peer", 16 << 20, 512), 0);
	CHECK_EQ(sds_vdisk_snapshot(e->pf.pool, "d512", "snap"), 0);
	CHECK_EQ(scsi_target_create(&e->pf.loop, e->pf.pool, &e->t), 0);
	CHECK_EQ(scsi_lu_create(e->t, "d512", &e->lu512), 0);
	CHECK_EQ(scsi_lu_create(e->t, "d4k", &e->lu4k), 0);
	CHECK_EQ(scsi_lu_create(e->t, "snap", &e->snap), 0);
	CHECK_EQ(scsi_lu_create(e->t, "hidden", &e->hidden), 0);
	CHECK_EQ(scsi_lu_create(e->t, "peer", &e->peer), 0);
	CHECK_EQ(scsi_lu_block_size(e->lu512), 512);
	CHECK_EQ(scsi_lu_block_size(e->lu4k), 4096);
	/* nexus A sees LUN 0 (512), 1 (4k), 2 (snapshot), 3 (peer);
	 * "hidden" is in nobody's map. */
	e->ents[0] = (struct scsi_lun_map_entry){0, e->lu512};
	e->ents[1] = (struct scsi_lun_map_entry){1, e->lu4k};
	e->ents[2] = (struct scsi_lun_map_entry){2, e->snap};
	e->ents[3] = (struct scsi_lun_map_entry){3, e->peer};
	e->map = (struct scsi_lun_map){4, e->ents};
	e->ents_b[0] = (struct scsi_lun_map_entry){0, e->lu512};
	e->ents_b[1] = (struct scsi_lun_map_entry){300, e->lu4k};
	e->map_b = (struct scsi_lun_map){2, e->ents_b};
	snprintf(e->na.initiator_port, sizeof(e->na.initiator_port),
		 "iqn.2026-01.test:a,i,0x000000000001");
	snprintf(e->na.target_port, sizeof(e->na.target_port),
		 "iqn.2026-01.cairn:t,t,0x0001");
	e->na.rel_target_port_id = 1;
	e->na.map = &e->map;
	e->nb = e->na;
	snprintf(e->nb.initiator_port, sizeof(e->nb.initiator_port),
		 "iqn.2026-01.test:b,i,0x000000000002");
	e->nb.map = &e->map_b;
	scsi_nexus_register(e->t, &e->na);
	scsi_nexus_register(e->t, &e->nb);
	CHECK(e->na.id && e->nb.id && e->na.id != e->nb.id);
}

static void env_fini(struct env *e)
{
	scsi_nexus_unregister(e->t, &e->na);
	scsi_nexus_unregister(e->t, &e->nb);
	scsi_lu_destroy(e->lu512);
	scsi_lu_destroy(e->lu4k);
	scsi_lu_destroy(e->snap);
	scsi_lu_destroy(e->hidden);
	scsi_lu_destroy(e->peer);
	scsi_target_destroy(e->t);
	pool_fixture_fini(&e->pf);
}

static const uint8_t TUR[6] = {0x00};

/* Clears the power-on unit attention of a nexus on a LUN. */
static void clear_ua(struct env *e, struct scsi_nexus *n, uint64_t lun)
{
	for (int i = 0; i < 8; i++) {
		struct res r = run_cap(e, n, lun, TUR, 6, NULL, 0, 4096);
		if (r.status == SCSI_STATUS_GOOD)
			return;
		CHECK_EQ(r.key, 0x6);
	}
	CHECK(!"unit attention not cleared");
}

static void cdb_rw16(uint8_t *cdb, uint8_t op, uint64_t lba, uint32_t n)
{
	memset(cdb, 0, 16);
	cdb[0] = op;
	put_be64(cdb + 2, lba);
	put_be32(cdb + 10, n);
}

static void cdb_rw10(uint8_t *cdb, uint8_t op, uint32_t lba, uint16_t n)
{
	memset(cdb, 0, 16);
	cdb[0] = op;
	put_be32(cdb + 2, lba);
	put_be16(cdb + 7, n);
}

/* ---- tests -------------------------------------------------------------------- */

static void test_ua_and_basics(struct env *e)
{
	/* A new nexus: POWER ON unit attention first, INQUIRY exempt. */
	uint8_t inq[6] = {0x12, 0, 0, 0, 96, 0};
	struct res r = run(e, 0, inq, 6, NULL, 0);
	CHECK_GOOD(r);
	r = run(e, 0, TUR, 6, NULL, 0);
	CHECK_SENSE(r, 0x6, 0x29, 0x00);
	CHECK_EQ(r.sense[0], 0x70);
	r = run(e, 0, TUR, 6, NULL, 0);
	CHECK_GOOD(r);
	for (uint64_t l = 1; l < 4; l++)
		clear_ua(e, &e->na, l);
	clear_ua(e, &e->nb, 0);
	clear_ua(e, &e->nb, 300);

	/* standard INQUIRY */
	r = run(e, 0, inq, 6, NULL, 0);
	CHECK_GOOD(r);
	CHECK_EQ(r.data_in_len, 96);
	CHECK_EQ(r.data[0], 0x00);
	CHECK_EQ(r.data[2], 0x06); /* see spc.c: SPC-4 claimed for libiscsi */
	CHECK_EQ(r.data[3] & 0x10, 0x10); /* HiSup */
	CHECK_EQ(r.data[5] & 0x08, 0x08); /* 3PC */
	CHECK_EQ(r.data[7] & 0x02, 0x02); /* CmdQue */
	CHECK(!memcmp(r.data + 8, "CAIRN", 5));
	/* allocation length truncates */
	inq[4] = 36;
	r = run(e, 0, inq, 6, NULL, 0);
	CHECK_EQ(r.data_in_len, 36);
	/* and so does the buffer */
	r = run_cap(e, &e->na, 0, inq, 6, NULL, 0, 5);
	CHECK_EQ(r.data_in_len, 5);
	/* LUN not in the map: qualifier 3 */
	r = run(e, 7, inq, 6, NULL, 0);
	CHECK_GOOD(r);
	CHECK_EQ(r.data[0], 0x7f);
	r = run(e, 7, TUR, 6, NULL, 0);
	CHECK_SENSE(r, 0x5, 0x25, 0x00);
	/* EVPD=0 with a page code: invalid field, pointer to byte 2 */
	uint8_t bad_inq[6] = {0x12, 0, 0x80, 0, 96, 0};
	r = run(e, 0, bad_inq, 6, NULL, 0);
	CHECK_SENSE(r, 0x5, 0x24, 0x00);
	CHECK_EQ(r.sense[15] & 0xc0, 0xc0); /* SKSV, C/D */
	CHECK_EQ(get_be16(r.sense + 16), 2);

	/* unknown opcode */
	uint8_t unk[6] = {0x02};
	r = run(e, 0, unk, 6, NULL, 0);
	CHECK_SENSE(r, 0x5, 0x20, 0x00);
	/* reserved bit in a CDB */
	uint8_t tur_bad[6] = {0x00, 0x00, 0x00, 0x00, 0x01, 0};
	r = run(e, 0, tur_bad, 6, NULL, 0);
	CHECK_SENSE(r, 0x5, 0x24, 0x00);
	CHECK_EQ(get_be16(r.sense + 16), 4);
	CHECK_EQ(r.sense[15] & 0x0f, 0x08); /* BPV, bit 0 */
	/* NACA in the control byte is not supported */
	uint8_t naca[6] = {0x00, 0, 0, 0, 0, 0x04};
	r = run(e, 0, naca, 6, NULL, 0);
	CHECK_SENSE(r, 0x5, 0x24, 0x00);

	/* REQUEST SENSE: nothing pending -> NO SENSE, GOOD */
	uint8_t rs[6] = {0x03, 0, 0, 0, 252, 0};
	r = run(e, 0, rs, 6, NULL, 0);
	CHECK_GOOD(r);
	CHECK_EQ(r.data_in_len, 18);
	CHECK_EQ(r.data[0], 0x70);
	CHECK_EQ(r.data[2], 0);
	rs[1] = 1; /* descriptor format */
	r = run(e, 0, rs, 6, NULL, 0);
	CHECK_EQ(r.data[0], 0x72);
	/* unsupported LUN reported as data */
	rs[1] = 0;
	r = run(e, 9, rs, 6, NULL, 0);
	CHECK_GOOD(r);
	CHECK_EQ(r.data[2], 0x5);
	CHECK_EQ(r.data[12], 0x25);
}

static void test_vpd(struct env *e)
{
	uint8_t cdb[6] = {0x12, 0x01, 0x00, 0x04, 0x00, 0};
	struct res r = run(e, 0, cdb, 6, NULL, 0);
	CHECK_GOOD(r);
	CHECK_EQ(r.data[1], 0x00);
	uint8_t want[] = {0x00, 0x80, 0x83, 0x8f, 0xb0, 0xb1, 0xb2};
	CHECK_EQ(get_be16(r.data + 2), sizeof(want));
	CHECK(!memcmp(r.data + 4, want, sizeof(want)));

	cdb[2] = 0x80;
	r = run(e, 0, cdb, 6, NULL, 0);
	CHECK_GOOD(r);
	CHECK_EQ(get_be16(r.data + 2), 32);
	char s0[40] = {0}, s1[40] = {0};
	memcpy(s0, r.data + 4, 32);
	r = run(e, 1, cdb, 6, NULL, 0);
	memcpy(s1, r.data + 4, 32);
	CHECK(strcmp(s0, s1) != 0);

	cdb[2] = 0x83;
	r = run(e, 0, cdb, 6, NULL, 0);
	CHECK_GOOD(r);
	CHECK_EQ(r.data[4 + 1] & 0x0f, 0x03); /* first: NAA */
	CHECK_EQ(r.data[4 + 4] >> 4, 0x6);    /* IEEE Registered Extended */
	uint8_t naa0[16], naa1[16];
	memcpy(naa0, r.data + 8, 16);
	/* walk the designators: relative target port and name present */
	size_t len = get_be16(r.data + 2) + 4, pos = 4;
	bool rtp = false, name = false;
	while (pos + 4 <= len) {
		uint8_t type = r.data[pos + 1] & 0x0f;
		uint8_t assoc = (r.data[pos + 1] >> 4) & 3;
		if (type == 4 && assoc == 1) {
			rtp = true;
			CHECK_EQ(get_be16(r.data + pos + 6), 1);
		}
		if (type == 8 && assoc == 1)
			name = !strncmp((char *)r.data + pos + 4,
					"iqn.2026-01.cairn:t,t,0x0001", 28);
		pos += 4 + r.data[pos + 3];
	}
	CHECK_EQ(pos, len);
	CHECK(rtp && name);
	r = run(e, 1, cdb, 6, NULL, 0);
	memcpy(naa1, r.data + 8, 16);
	CHECK(memcmp(naa0, naa1, 16) != 0);

	/* B0: block limits */
	cdb[2] = 0xb0;
	r = run(e, 0, cdb, 6, NULL, 0);
	CHECK_GOOD(r);
	CHECK_EQ(get_be16(r.data + 2), 0x3c);
	CHECK(r.data[5] >= 1); /* MAXIMUM COMPARE AND WRITE LENGTH */
	CHECK(get_be32(r.data + 20) > 0); /* MAXIMUM UNMAP LBA COUNT */
	CHECK(get_be32(r.data + 24) > 0);
	CHECK_EQ(get_be32(r.data + 28), 8); /* 4 KiB / 512 */
	CHECK(get_be64(r.data + 36) > 0);   /* MAXIMUM WRITE SAME LENGTH */
	cdb[2] = 0xb1;
	r = run(e, 0, cdb, 6, NULL, 0);
	CHECK_EQ(get_be16(r.data + 4), 1); /* non-rotating */
	cdb[2] = 0xb2;
	r = run(e, 0, cdb, 6, NULL, 0);
	CHECK_EQ(r.data[5] & 0xe0, 0xe0); /* LBPU, LBPWS, LBPWS10 */
	CHECK_EQ((r.data[5] >> 2) & 7, 1); /* LBPRZ */
	CHECK_EQ(r.data[6] & 7, 2);        /* thin */
	cdb[2] = 0x8f;
	r = run(e, 0, cdb, 6, NULL, 0);
	CHECK_GOOD(r);
	CHECK_EQ(get_be16(r.data + 4), 0x0001); /* supported commands */
	/* unknown page */
	cdb[2] = 0x42;
	r = run(e, 0, cdb, 6, NULL, 0);
	CHECK_SENSE(r, 0x5, 0x24, 0x00);
	CHECK_EQ(get_be16(r.sense + 16), 2);
}

static void test_report_luns_capacity(struct env *e)
{
	uint8_t cdb[12] = {0xa0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0};
	struct res r = run(e, 0, cdb, 12, NULL, 0);
	CHECK_GOOD(r);
	CHECK_EQ(get_be32(r.data), 32);
	CHECK_EQ(r.data[8 + 1], 0);
	CHECK_EQ(r.data[8 + 8 + 1], 1);
	/* nexus B: LUN 300 in the flat format */
	r = run_cap(e, &e->nb, 0, cdb, 12, NULL, 0, 4096);
	CHECK_EQ(get_be32(r.data), 16);
	CHECK_EQ(r.data[16], 0x40 | (300 >> 8));
	CHECK_EQ(r.data[17], 300 & 0xff);
	/* select report 1: well-known only (none); 2: all; 3: invalid */
	cdb[2] = 1;
	r = run(e, 0, cdb, 12, NULL, 0);
	CHECK_EQ(get_be32(r.data), 0);
	cdb[2] = 2;
	r = run(e, 0, cdb, 12, NULL, 0);
	CHECK_EQ(get_be32(r.data), 32);
	cdb[2] = 3;
	r = run(e, 0, cdb, 12, NULL, 0);
	CHECK_SENSE(r, 0x5, 0x24, 0x00);
	/* works for a LUN not in the map */
	cdb[2] = 0;
	r = run(e, 77, cdb, 12, NULL, 0);
	CHECK_GOOD(r);

	uint8_t rc10[10] = {0x25};
	r = run(e, 0, rc10, 10, NULL, 0);
	CHECK_GOOD(r);
	CHECK_EQ(get_be32(r.data), (16 << 20) / 512 - 1);
	CHECK_EQ(get_be32(r.data + 4), 512);
	uint8_t rc16[16] = {0x9e, 0x10};
	put_be32(rc16 + 10, 32);
	r = run(e, 0, rc16, 16, NULL, 0);
	CHECK_GOOD(r);
	CHECK_EQ(r.data_in_len, 32);
	CHECK_EQ(get_be64(r.data), (16 << 20) / 512 - 1);
	CHECK_EQ(get_be32(r.data + 8), 512);
	CHECK_EQ(r.data[13] & 0x0f, 3);
	CHECK_EQ(r.data[14] & 0xc0, 0xc0); /* LBPME, LBPRZ */
	r = run(e, 1, rc16, 16, NULL, 0);
	CHECK_EQ(get_be32(r.data + 8), 4096);
	CHECK_EQ(r.data[13] & 0x0f, 0);
	/* unknown service action */
	rc16[1] = 0x11;
	r = run(e, 0, rc16, 16, NULL, 0);
	CHECK_SENSE(r, 0x5, 0x24, 0x00);
	CHECK_EQ(get_be16(r.sense + 16), 1);
}

static void test_read_write(struct env *e)
{
	uint8_t *w = pool_fixture_abuf(1 << 20);
	uint8_t cdb[16];
	/* WRITE(16)/READ(16) on the 512 LU at an unaligned LBA */
	pool_fixture_fill(w, 64 * 512, 1);
	cdb_rw16(cdb, 0x8a, 13, 64);
	struct res r = run(e, 0, cdb, 16, w, 64 * 512);
	CHECK_GOOD(r);
	cdb_rw16(cdb, 0x88, 13, 64);
	r = run(e, 0, cdb, 16, NULL, 0);
	CHECK_GOOD(r);
	CHECK_EQ(r.data_in_len, 64 * 512);
	CHECK(!memcmp(r.data, w, 64 * 512));
	/* WRITE(10) FUA / READ(10) on the 4k LU */
	pool_fixture_fill(w, 3 * 4096, 2);
	cdb_rw10(cdb, 0x2a, 100, 3);
	cdb[1] = 0x08;
	r = run(e, 1, cdb, 10, w, 3 * 4096);
	CHECK_GOOD(r);
	cdb_rw10(cdb, 0x28, 100, 3);
	r = run(e, 1, cdb, 10, NULL, 0);
	CHECK_GOOD(r);
	CHECK(!memcmp(r.data, w, 3 * 4096));
	/* READ(10) into a buffer smaller than the read: truncated */
	r = run_cap(e, &e->na, 1, cdb, 10, NULL, 0, 4096);
	CHECK_GOOD(r);
	CHECK_EQ(r.data_in_len, 4096);
	CHECK_EQ(r.xfer_len, 3 * 4096);
	CHECK(!memcmp(r.data, w, 4096));
	/* WRITE(6)/READ(6), WRITE(12)/READ(12) */
	pool_fixture_fill(w, 2 * 512, 3);
	uint8_t c6[6] = {0x0a, 0x00, 0x02, 0x03, 2, 0};
	r = run(e, 0, c6, 6, w, 1024);
	CHECK_GOOD(r);
	c6[0] = 0x08;
	r = run(e, 0, c6, 6, NULL, 0);
	CHECK_GOOD(r);
	CHECK(!memcmp(r.data, w, 1024));
	pool_fixture_fill(w, 5 * 512, 4);
	uint8_t c12[12] = {0xaa, 0, 0, 0, 0x10, 0, 0, 0, 0, 5, 0, 0};
	r = run(e, 0, c12, 12, w, 5 * 512);
	CHECK_GOOD(r);
	c12[0] = 0xa8;
	r = run(e, 0, c12, 12, NULL, 0);
	CHECK(!memcmp(r.data, w, 5 * 512));
	/* never written: zeroes */
	cdb_rw16(cdb, 0x88, 20000, 8);
	r = run(e, 0, cdb, 16, NULL, 0);
	CHECK_GOOD(r);
	for (int i = 0; i < 8 * 512; i++)
		if (r.data[i]) {
			CHECK(!"hole not zero");
			break;
		}
	/* zero blocks: no transfer, no error */
	cdb_rw10(cdb, 0x28, 0, 0);
	r = run(e, 0, cdb, 10, NULL, 0);
	CHECK_GOOD(r);
	CHECK_EQ(r.data_in_len, 0);

	/* LBA out of range, with and without overflow */
	uint64_t nb = (16 << 20) / 512;
	cdb_rw16(cdb, 0x88, nb - 1, 2);
	r = run(e, 0, cdb, 16, NULL, 0);
	CHECK_SENSE(r, 0x5, 0x21, 0x00);
	cdb_rw16(cdb, 0x88, UINT64_MAX, 2);
	r = run(e, 0, cdb, 16, NULL, 0);
	CHECK_SENSE(r, 0x5, 0x21, 0x00);
	cdb_rw10(cdb, 0x28, (uint32_t)nb + 1, 0);
	r = run(e, 0, cdb, 10, NULL, 0);
	CHECK_SENSE(r, 0x5, 0x21, 0x00);
	cdb_rw16(cdb, 0x8a, nb, 1);
	r = run(e, 0, cdb, 16, w, 512);
	CHECK_SENSE(r, 0x5, 0x21, 0x00);
	/* RDPROTECT without protection information */
	cdb_rw10(cdb, 0x28, 0, 1);
	cdb[1] = 0x20;
	r = run(e, 0, cdb, 10, NULL, 0);
	CHECK_SENSE(r, 0x5, 0x24, 0x00);
	CHECK_EQ(get_be16(r.sense + 16), 1);
	/* a read larger than the buffer: only what fits comes back */
	cdb_rw16(cdb, 0x88, 13, 64);
	r = run_cap(e, &e->na, 0, cdb, 16, NULL, 0, 1000);
	CHECK_GOOD(r);
	CHECK_EQ(r.data_in_len, 1000);
	CHECK_EQ(r.xfer_len, 64 * 512);
	pool_fixture_fill(w, 64 * 512, 1);
	CHECK(!memcmp(r.data, w, 1000));
	/* a write larger than the engine's largest IO goes in pieces */
	{
		uint32_t big = 40u << 20;
		uint8_t *bw = pool_fixture_abuf(big);
		pool_fixture_fill(bw, big, 77);
		cdb_rw16(cdb, 0x8a, 0, big / 4096);
		r = run(e, 1, cdb, 16, bw, big);
		CHECK_GOOD(r);
		cdb_rw16(cdb, 0x88, (big >> 12) - 256, 256);
		r = run(e, 1, cdb, 16, NULL, 0);
		CHECK(!memcmp(r.data, bw + big - (1 << 20), 1 << 20));
		free(bw);
	}
	/* data-out shorter than the CDB says */
	cdb_rw10(cdb, 0x2a, 0, 4);
	r = run(e, 0, cdb, 10, w, 512);
	CHECK_EQ(r.status, SCSI_STATUS_CHECK_CONDITION);

	/* the snapshot is write protected, readable */
	cdb_rw10(cdb, 0x2a, 0, 1);
	r = run(e, 2, cdb, 10, w, 512);
	CHECK_SENSE(r, 0x7, 0x27, 0x00);
	cdb_rw10(cdb, 0x28, 0, 1);
	r = run(e, 2, cdb, 10, NULL, 0);
	CHECK_GOOD(r);

	/* SYNCHRONIZE CACHE 10 and 16 */
	uint8_t sc10[10] = {0x35};
	r = run(e, 0, sc10, 10, NULL, 0);
	CHECK_GOOD(r);
	uint8_t sc16[16] = {0x91};
	put_be64(sc16 + 2, 10);
	put_be32(sc16 + 10, 10);
	r = run(e, 1, sc16, 16, NULL, 0);
	CHECK_GOOD(r);
	put_be64(sc16 + 2, nb);
	r = run(e, 0, sc16, 16, NULL, 0);
	CHECK_SENSE(r, 0x5, 0x21, 0x00);
	free(w);
}

static void test_verify(struct env *e)
{
	uint8_t *w = pool_fixture_abuf(8192);
	uint8_t cdb[16];
	pool_fixture_fill(w, 4096, 9);
	/* WRITE AND VERIFY(10), BYTCHK 1 */
	cdb_rw10(cdb, 0x2e, 200, 8);
	cdb[1] = 0x02;
	struct res r = run(e, 0, cdb, 10, w, 4096);
	CHECK_GOOD(r);
	/* VERIFY(10) BYTCHK 0: medium check only */
	cdb_rw10(cdb, 0x2f, 200, 8);
	r = run(e, 0, cdb, 10, NULL, 0);
	CHECK_GOOD(r);
	/* VERIFY(16) BYTCHK 1: equal */
	cdb_rw16(cdb, 0x8f, 200, 8);
	cdb[1] = 0x02;
	r = run(e, 0, cdb, 16, w, 4096);
	CHECK_GOOD(r);
	/* and different at byte 1000 */
	w[1000] ^= 0xff;
	r = run(e, 0, cdb, 16, w, 4096);
	CHECK_SENSE(r, 0xe, 0x1d, 0x00);
	CHECK_EQ(r.sense[0] & 0x80, 0x80);
	CHECK_EQ(get_be32(r.sense + 3), 1000);
	w[1000] ^= 0xff;
	/* BYTCHK 2 is reserved */
	cdb[1] = 0x04;
	r = run(e, 0, cdb, 16, w, 4096);
	CHECK_SENSE(r, 0x5, 0x24, 0x00);
	/* WRITE AND VERIFY(16), VERIFY(16) BYTCHK 3 (one block for all) */
	memset(w, 0x5a, 512);
	cdb_rw16(cdb, 0x8e, 300, 1);
	r = run(e, 0, cdb, 16, w, 512);
	CHECK_GOOD(r);
	cdb_rw16(cdb, 0x8e, 301, 1);
	r = run(e, 0, cdb, 16, w, 512);
	cdb_rw16(cdb, 0x8f, 300, 2);
	cdb[1] = 0x06;
	r = run(e, 0, cdb, 16, w, 512);
	CHECK_GOOD(r);
	free(w);
}

static void test_mode(struct env *e)
{
	uint8_t ms6[6] = {0x1a, 0, 0x3f, 0, 255, 0};
	struct res r = run(e, 0, ms6, 6, NULL, 0);
	CHECK_GOOD(r);
	CHECK_EQ(r.data[0] + 1, r.data_in_len);
	CHECK_EQ(r.data[3], 8); /* block descriptor */
	CHECK_EQ(get_be32(r.data + 4 + 4) & 0xffffff, 512);
	/* caching page: WCE=1 */
	ms6[2] = 0x08;
	r = run(e, 0, ms6, 6, NULL, 0);
	CHECK_GOOD(r);
	CHECK_EQ(r.data[12], 0x08);
	CHECK_EQ(r.data[14] & 0x04, 0x04);
	/* changeable values */
	ms6[2] = 0x40 | 0x08;
	r = run(e, 0, ms6, 6, NULL, 0);
	CHECK_EQ(r.data[14], 0x04);
	/* saved values: not supported */
	ms6[2] = 0xc0 | 0x08;
	r = run(e, 0, ms6, 6, NULL, 0);
	CHECK_SENSE(r, 0x5, 0x39, 0x00);
	/* unknown page */
	ms6[2] = 0x19;
	r = run(e, 0, ms6, 6, NULL, 0);
	CHECK_SENSE(r, 0x5, 0x24, 0x00);
	CHECK_EQ(get_be16(r.sense + 16), 2);
	/* MODE SENSE(10) with long LBA descriptor, control and IE pages */
	uint8_t ms10[10] = {0x5a, 0x10, 0x0a, 0, 0, 0, 0, 0x01, 0x00, 0};
	r = run(e, 1, ms10, 10, NULL, 0);
	CHECK_GOOD(r);
	CHECK_EQ(get_be16(r.data + 6), 16);
	CHECK_EQ(get_be64(r.data + 8), D4K_SIZE / 4096);
	CHECK_EQ(r.data[24], 0x0a);
	ms10[1] = 0x08; /* DBD */
	ms10[2] = 0x1c;
	r = run(e, 1, ms10, 10, NULL, 0);
	CHECK_EQ(get_be16(r.data + 6), 0);
	CHECK_EQ(r.data[8], 0x1c);
	/* the snapshot reports WP */
	ms6[2] = 0x3f;
	r = run(e, 2, ms6, 6, NULL, 0);
	CHECK_EQ(r.data[2] & 0x80, 0x80);

	/* MODE SELECT(6): turn WCE off, then on again */
	uint8_t ps[4 + 20] = {0};
	ps[4] = 0x08;
	ps[5] = 0x12;
	uint8_t sel6[6] = {0x15, 0x10, 0, 0, sizeof(ps), 0};
	r = run(e, 0, sel6, 6, ps, sizeof(ps));
	CHECK_GOOD(r);
	ms6[2] = 0x08;
	r = run(e, 0, ms6, 6, NULL, 0);
	CHECK_EQ(r.data[14] & 0x04, 0);
	/* nexus B sees MODE PARAMETERS CHANGED */
	r = run_cap(e, &e->nb, 0, TUR, 6, NULL, 0, 4096);
	CHECK_SENSE(r, 0x6, 0x2a, 0x01);
	ps[6] = 0x04;
	r = run(e, 0, sel6, 6, ps, sizeof(ps));
	CHECK_GOOD(r);
	clear_ua(e, &e->nb, 0);
	/* a non-changeable bit (RCD) */
	ps[6] = 0x05;
	r = run(e, 0, sel6, 6, ps, sizeof(ps));
	CHECK_SENSE(r, 0x5, 0x26, 0x00);
	CHECK_EQ(get_be16(r.sense + 16), 6);
	/* SP=1 */
	ps[6] = 0x04;
	sel6[1] = 0x11;
	r = run(e, 0, sel6, 6, ps, sizeof(ps));
	CHECK_SENSE(r, 0x5, 0x24, 0x00);
	/* unknown page in the list */
	sel6[1] = 0x10;
	ps[4] = 0x19;
	r = run(e, 0, sel6, 6, ps, sizeof(ps));
	CHECK_SENSE(r, 0x5, 0x26, 0x00);
	/* MODE SELECT(10): SWP on: writes fail DATA PROTECT, then off */
	uint8_t ps10[8 + 12] = {0};
	ps10[8] = 0x0a;
	ps10[9] = 0x0a;
	ps10[10] = 0x02;
	ps10[11] = 0x10;
	ps10[12] = 0x08;
	ps10[13] = 0x40;
	put_be16(ps10 + 16, 0xffff);
	uint8_t sel10[10] = {0x55, 0x10, 0, 0, 0, 0, 0, 0, sizeof(ps10), 0};
	r = run(e, 1, sel10, 10, ps10, sizeof(ps10));
	CHECK_GOOD(r);
	uint8_t *w = pool_fixture_abuf(4096), cdb[16];
	cdb_rw10(cdb, 0x2a, 0, 1);
	r = run(e, 1, cdb, 10, w, 4096);
	CHECK_SENSE(r, 0x7, 0x27, 0x02);
	ps10[12] = 0;
	r = run(e, 1, sel10, 10, ps10, sizeof(ps10));
	CHECK_GOOD(r);
	r = run(e, 1, cdb, 10, w, 4096);
	CHECK_GOOD(r);
	clear_ua(e, &e->nb, 300);
	free(w);
}

static void test_start_stop(struct env *e)
{
	uint8_t ssu[6] = {0x1b, 0, 0, 0, 0x00, 0};
	struct res r = run(e, 1, ssu, 6, NULL, 0);
	CHECK_GOOD(r);
	r = run(e, 1, TUR, 6, NULL, 0);
	CHECK_SENSE(r, 0x2, 0x04, 0x02);
	uint8_t cdb[16];
	cdb_rw10(cdb, 0x28, 0, 1);
	r = run(e, 1, cdb, 10, NULL, 0);
	CHECK_SENSE(r, 0x2, 0x04, 0x02);
	ssu[4] = 0x01;
	r = run(e, 1, ssu, 6, NULL, 0);
	CHECK_GOOD(r);
	r = run(e, 1, TUR, 6, NULL, 0);
	CHECK_GOOD(r);
	ssu[4] = 0x02; /* eject a non-removable medium */
	r = run(e, 1, ssu, 6, NULL, 0);
	CHECK_SENSE(r, 0x5, 0x24, 0x00);
}

static bool lba_mapped(struct env *e, uint64_t lun, uint64_t lba,
		       uint32_t *blocks)
{
	uint8_t cdb[16] = {0x9e, 0x12};
	put_be64(cdb + 2, lba);
	put_be32(cdb + 10, 24);
	struct res r = run(e, lun, cdb, 16, NULL, 0);
	CHECK_GOOD(r);
	CHECK_EQ(r.data_in_len, 24);
	CHECK_EQ(get_be64(r.data + 8), lba);
	if (blocks)
		*blocks = get_be32(r.data + 16);
	return r.data[8 + 12] == 0;
}

static void test_write_same_unmap(struct env *e)
{
	uint8_t *w = pool_fixture_abuf(1 << 20), cdb[16];
	uint32_t n;
	/* write 2 MiB at LBA 8192 on the 512 LU: mapped */
	pool_fixture_fill(w, 1 << 20, 11);
	cdb_rw16(cdb, 0x8a, 8192, 2048);
	struct res r = run(e, 0, cdb, 16, w, 1 << 20);
	CHECK_GOOD(r);
	cdb_rw16(cdb, 0x8a, 8192 + 2048, 2048);
	r = run(e, 0, cdb, 16, w, 1 << 20);
	CHECK(lba_mapped(e, 0, 8192, &n));
	CHECK(n >= 4096);
	/* WRITE SAME(16) UNMAP with a zero block: deallocated, reads zero */
	memset(w, 0, 512);
	cdb_rw16(cdb, 0x93, 8192, 2048);
	cdb[1] = 0x08;
	r = run(e, 0, cdb, 16, w, 512);
	CHECK_GOOD(r);
	CHECK(!lba_mapped(e, 0, 8192, &n));
	CHECK(n >= 2048);
	cdb_rw16(cdb, 0x88, 8192, 16);
	r = run(e, 0, cdb, 16, NULL, 0);
	CHECK(r.data[0] == 0 && r.data[16 * 512 - 1] == 0);
	/* WRITE SAME(16) NDOB: zeroes without data */
	cdb_rw16(cdb, 0x93, 8192 + 2048, 1024);
	cdb[1] = 0x09;
	r = run(e, 0, cdb, 16, NULL, 0);
	CHECK_GOOD(r);
	cdb_rw16(cdb, 0x88, 8192 + 2048, 8);
	r = run(e, 0, cdb, 16, NULL, 0);
	CHECK_EQ(r.data[100], 0);
	/* WRITE SAME(10) with a pattern, larger than one 1 MiB piece */
	memset(w, 0xa5, 512);
	cdb_rw10(cdb, 0x41, 4096, 3000);
	r = run(e, 0, cdb, 10, w, 512);
	CHECK_GOOD(r);
	cdb_rw16(cdb, 0x88, 4096 + 2999, 1);
	r = run(e, 0, cdb, 16, NULL, 0);
	CHECK_EQ(r.data[0], 0xa5);
	CHECK_EQ(r.data[511], 0xa5);
	/* WRITE SAME(10) zero block, no UNMAP: reads zero */
	memset(w, 0, 512);
	cdb_rw10(cdb, 0x41, 4096, 8);
	r = run(e, 0, cdb, 10, w, 512);
	CHECK_GOOD(r);
	cdb_rw16(cdb, 0x88, 4096, 1);
	r = run(e, 0, cdb, 16, NULL, 0);
	CHECK_EQ(r.data[0], 0);
	/* 0 blocks (WSNZ=0): through the last LBA */
	uint32_t nb = (16 << 20) / 512;
	memset(w, 0x3c, 512);
	cdb_rw10(cdb, 0x41, nb - 4, 0);
	r = run(e, 0, cdb, 10, w, 512);
	CHECK_GOOD(r);
	cdb_rw16(cdb, 0x88, nb - 4, 4);
	r = run(e, 0, cdb, 16, NULL, 0);
	CHECK_EQ(r.data[0], 0x3c);
	CHECK_EQ(r.data[4 * 512 - 1], 0x3c);
	cdb_rw10(cdb, 0x41, nb + 1, 0);
	r = run(e, 0, cdb, 10, w, 512);
	CHECK_SENSE(r, 0x5, 0x21, 0x00);
	/* the data-out must be exactly one block */
	cdb_rw10(cdb, 0x41, 0, 1);
	r = run(e, 0, cdb, 10, w, 1024);
	CHECK_SENSE(r, 0x5, 0x1a, 0x00);
	r = run(e, 0, cdb, 10, w, 256);
	CHECK_SENSE(r, 0x5, 0x1a, 0x00);
	/* bad: ANCHOR, out of range, snapshot */
	memset(w, 0, 512);
	cdb_rw10(cdb, 0x41, 0, 1);
	cdb[1] = 0x10;
	r = run(e, 0, cdb, 10, w, 512);
	CHECK_SENSE(r, 0x5, 0x24, 0x00);
	cdb_rw16(cdb, 0x93, (16 << 20) / 512, 1);
	r = run(e, 0, cdb, 16, w, 512);
	CHECK_SENSE(r, 0x5, 0x21, 0x00);
	cdb_rw16(cdb, 0x93, 0, 1);
	r = run(e, 2, cdb, 16, w, 512);
	CHECK_SENSE(r, 0x7, 0x27, 0x00);

	/* UNMAP: two descriptors on the 4k LU */
	pool_fixture_fill(w, 1 << 20, 12);
	cdb_rw16(cdb, 0x8a, 512, 256);
	r = run(e, 1, cdb, 16, w, 1 << 20);
	CHECK(lba_mapped(e, 1, 512, NULL));
	uint8_t pl[8 + 32] = {0};
	put_be16(pl, sizeof(pl) - 2);
	put_be16(pl + 2, 32);
	put_be64(pl + 8, 512);
	put_be32(pl + 16, 128);
	put_be64(pl + 24, 640);
	put_be32(pl + 32, 128);
	uint8_t um[10] = {0x42, 0, 0, 0, 0, 0, 0, 0, sizeof(pl), 0};
	r = run(e, 1, um, 10, pl, sizeof(pl));
	CHECK_GOOD(r);
	CHECK(!lba_mapped(e, 1, 512, &n));
	CHECK(n >= 256);
	/* UNMAP of an unaligned range of the 512 LU reads back zeroes
	 * (LBPRZ), partial 4 KiB blocks included */
	pool_fixture_fill(w, 8192, 13);
	cdb_rw16(cdb, 0x8a, 40, 16);
	CHECK_GOOD(run(e, 0, cdb, 16, w, 8192));
	uint8_t pl1[8 + 16] = {0};
	put_be16(pl1, sizeof(pl1) - 2);
	put_be16(pl1 + 2, 16);
	put_be64(pl1 + 8, 43);
	put_be32(pl1 + 16, 3);
	uint8_t um1[10] = {0x42, 0, 0, 0, 0, 0, 0, 0, sizeof(pl1), 0};
	CHECK_GOOD(run(e, 0, um1, 10, pl1, sizeof(pl1)));
	cdb_rw16(cdb, 0x88, 40, 16);
	r = run(e, 0, cdb, 16, NULL, 0);
	CHECK(!memcmp(r.data, w, 3 * 512));
	CHECK(r.data[3 * 512] == 0 && r.data[6 * 512 - 1] == 0);
	CHECK(!memcmp(r.data + 6 * 512, w + 6 * 512, 10 * 512));
	/* out of range descriptor: nothing done, LBA OUT OF RANGE */
	put_be64(pl + 24, D4K_SIZE / 4096 - 1);
	put_be32(pl + 32, 2);
	r = run(e, 1, um, 10, pl, sizeof(pl));
	CHECK_SENSE(r, 0x5, 0x21, 0x00);
	/* parameter list too short */
	um[8] = 4;
	r = run(e, 1, um, 10, pl, 4);
	CHECK_SENSE(r, 0x5, 0x1a, 0x00);
	/* GET LBA STATUS beyond the end */
	uint8_t gls[16] = {0x9e, 0x12};
	put_be64(gls + 2, D4K_SIZE / 4096);
	put_be32(gls + 10, 24);
	r = run(e, 1, gls, 16, NULL, 0);
	CHECK_SENSE(r, 0x5, 0x21, 0x00);
	free(w);
}

static void test_caw(struct env *e)
{
	uint8_t *w = pool_fixture_abuf(8192), cdb[16];
	pool_fixture_fill(w, 1024, 21);
	cdb_rw16(cdb, 0x8a, 50, 2);
	struct res r = run(e, 0, cdb, 16, w, 1024);
	CHECK_GOOD(r);
	/* match: compare 1 block with what is there, write new data */
	uint8_t *caw = pool_fixture_abuf(1024);
	memcpy(caw, w, 512);
	pool_fixture_fill(caw + 512, 512, 22);
	uint8_t c[16] = {0x89};
	put_be64(c + 2, 50);
	c[13] = 1;
	r = run(e, 0, c, 16, caw, 1024);
	CHECK_GOOD(r);
	cdb_rw16(cdb, 0x88, 50, 1);
	r = run(e, 0, cdb, 16, NULL, 0);
	CHECK(!memcmp(r.data, caw + 512, 512));
	/* miscompare: INFORMATION = offset of the first difference */
	memcpy(caw, caw + 512, 512);
	caw[77] ^= 1;
	r = run(e, 0, c, 16, caw, 1024);
	CHECK_SENSE(r, 0xe, 0x1d, 0x00);
	CHECK_EQ(r.sense[0] & 0x80, 0x80);
	CHECK_EQ(get_be32(r.sense + 3), 77);
	/* unchanged */
	r = run(e, 0, cdb, 16, NULL, 0);
	CHECK(!memcmp(r.data + 78, caw + 512 + 78, 512 - 78));
	/* data-out of the wrong size (SBC-4 5.3: exactly 2 x blocks) */
	r = run(e, 0, c, 16, caw, 512);
	CHECK_SENSE(r, 0x5, 0x1a, 0x00);
	uint8_t *big = pool_fixture_abuf(2048);
	r = run(e, 0, c, 16, big, 2048);
	CHECK_SENSE(r, 0x5, 0x1a, 0x00);
	/* NUMBER OF LOGICAL BLOCKS 0 with data (256 wrapped): invalid */
	c[13] = 0;
	r = run(e, 0, c, 16, big, 1024);
	CHECK_SENSE(r, 0x5, 0x24, 0x00);
	CHECK_EQ(get_be16(r.sense + 16), 13);
	r = run(e, 0, c, 16, NULL, 0);
	CHECK_GOOD(r);
	c[13] = 1;
	free(big);
	/* out of range, snapshot */
	put_be64(c + 2, (16 << 20) / 512);
	r = run(e, 0, c, 16, caw, 1024);
	CHECK_SENSE(r, 0x5, 0x21, 0x00);
	put_be64(c + 2, 0);
	r = run(e, 2, c, 16, caw, 1024);
	CHECK_SENSE(r, 0x7, 0x27, 0x00);
	free(caw);
	free(w);
}

static void test_cdb_xfer(void)
{
	enum scsi_dir dir;
	uint32_t len;
	uint8_t c[16] = {0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0};
	CHECK_EQ(scsi_cdb_xfer(c, 10, 512, &dir, &len), 0);
	CHECK_EQ(dir, SCSI_DIR_READ);
	CHECK_EQ(len, 4096);
	uint8_t w6[6] = {0x0a, 0, 0, 0, 0, 0};
	CHECK_EQ(scsi_cdb_xfer(w6, 6, 4096, &dir, &len), 0);
	CHECK_EQ(dir, SCSI_DIR_WRITE);
	CHECK_EQ(len, 256 * 4096);
	uint8_t ws[16] = {0x93, 0x01};
	CHECK_EQ(scsi_cdb_xfer(ws, 16, 512, &dir, &len), 0);
	CHECK_EQ(dir, SCSI_DIR_NONE);
	uint8_t caw[16] = {0x89};
	caw[13] = 2;
	CHECK_EQ(scsi_cdb_xfer(caw, 16, 512, &dir, &len), 0);
	CHECK_EQ(len, 2048);
	uint8_t big[16] = {0x8a};
	put_be32(big + 10, 0xffffffff);
	CHECK_EQ(scsi_cdb_xfer(big, 16, 4096, &dir, &len), -EINVAL);
	uint8_t unk[6] = {0x02};
	CHECK_EQ(scsi_cdb_xfer(unk, 6, 512, &dir, &len), -EINVAL);
	uint8_t inq[6] = {0x12, 0, 0, 0x01, 0x00, 0};
	CHECK_EQ(scsi_cdb_xfer(inq, 6, 512, &dir, &len), 0);
	CHECK_EQ(dir, SCSI_DIR_READ);
	CHECK_EQ(len, 256);
	uint8_t tur[6] = {0};
	CHECK_EQ(scsi_cdb_xfer(tur, 6, 512, &dir, &len), 0);
	CHECK_EQ(dir, SCSI_DIR_NONE);
	CHECK_EQ(len, 0);
}

#define PR_WE 0x1
#define PR_EA 0x3
#define PR_WE_RO 0x5
#define PR_EA_RO 0x6
#define PR_WE_AR 0x7
#define PR_EA_AR 0x8
/* ---- persistent reservations ---------------------------------------------- */

static struct res prout(struct env *e, struct scsi_nexus *n, uint64_t lun,
			uint8_t sa, uint8_t type, uint64_t key, uint64_t sark)
{
	uint8_t cdb[10] = {0x5f, sa, type, 0, 0, 0, 0, 0, 24, 0};
	uint8_t p[24] = {0};
	put_be64(p, key);
	put_be64(p + 8, sark);
	return run_cap(e, n, lun, cdb, 10, p, 24, 4096);
}

static struct res prin(struct env *e, struct scsi_nexus *n, uint64_t lun,
		       uint8_t sa)
{
	uint8_t cdb[10] = {0x5e, sa, 0, 0, 0, 0, 0, 0x10, 0x00, 0};
	return run_cap(e, n, lun, cdb, 10, NULL, 0, 1 << 20);
}

static struct res rw1(struct env *e, struct scsi_nexus *n, uint64_t lun,
		      bool write)
{
	static uint8_t blk[512];
	uint8_t cdb[16];
	cdb_rw10(cdb, write ? 0x2a : 0x28, 7, 1);
	return run_cap(e, n, lun, cdb, 10, write ? blk : NULL, write ? 512 : 0,
		       4096);
}

/* The peer LU (LUN 3) as after a cairnd restart: closed and opened
 * again. */
static void reopen_peer(struct env *e)
{
	scsi_lu_destroy(e->peer);
	CHECK_EQ(scsi_lu_create(e->t, "peer", &e->peer), 0);
	e->ents[3].lu = e->peer;
}

/* SPC-5 5.14.5: APTPL keeps registrations, the reservation and the
 * generation across a restart; APTPL=0 drops what was kept. */
static void test_pr_aptpl(struct env *e, struct scsi_nexus *a)
{
	const uint64_t lun = 3;
	uint8_t cdb[10] = {0x5f, 0x00, 0, 0, 0, 0, 0, 0, 24, 0};
	uint8_t p[24] = {0};
	put_be64(p + 8, 0xfeed);
	p[20] = 0x01; /* APTPL */
	CHECK_GOOD(run_cap(e, a, lun, cdb, 10, p, 24, 4096));
	CHECK_GOOD(prout(e, a, lun, 0x01, PR_TYPE_WE, 0xfeed, 0));
	struct res r = prin(e, a, lun, 0x02); /* REPORT CAPABILITIES */
	CHECK_GOOD(r);
	CHECK_EQ(r.data[2] & 0x01, 0x01); /* PTPL_C */
	CHECK_EQ(r.data[3] & 0x01, 0x01); /* PTPL_A */
	uint32_t gen = get_be32(prin(e, a, lun, 0x00).data);
	reopen_peer(e);
	clear_ua(e, a, lun);
	r = prin(e, a, lun, 0x00); /* READ KEYS */
	CHECK_EQ(get_be32(r.data), gen);
	CHECK_EQ(get_be32(r.data + 4), 8);
	CHECK_EQ(get_be64(r.data + 8), 0xfeed);
	r = prin(e, a, lun, 0x01); /* READ RESERVATION */
	CHECK_EQ(get_be32(r.data + 4), 16);
	CHECK_EQ(get_be64(r.data + 8), 0xfeed);
	CHECK_EQ(r.data[21], PR_TYPE_WE);
	CHECK_EQ(prin(e, a, lun, 0x02).data[3] & 0x01, 0x01);
	/* the same I_T nexus (by port names) still holds it */
	r = prin(e, a, lun, 0x03); /* READ FULL STATUS */
	CHECK_EQ(get_be64(r.data + 8), 0xfeed);
	CHECK_EQ(r.data[8 + 12] & 0x01, 0x01); /* R_HOLDER */
	/* RELEASE is kept too */
	CHECK_GOOD(prout(e, a, lun, 0x02, PR_TYPE_WE, 0xfeed, 0));
	reopen_peer(e);
	clear_ua(e, a, lun);
	CHECK_EQ(get_be32(prin(e, a, lun, 0x01).data + 4), 0);
	CHECK_EQ(get_be32(prin(e, a, lun, 0x00).data + 4), 8);
	/* REGISTER with APTPL=0: from now on in memory only */
	p[20] = 0;
	put_be64(p, 0xfeed);
	put_be64(p + 8, 0xbeef);
	CHECK_GOOD(run_cap(e, a, lun, cdb, 10, p, 24, 4096));
	CHECK_EQ(prin(e, a, lun, 0x02).data[3] & 0x01, 0);
	reopen_peer(e);
	clear_ua(e, a, lun);
	CHECK_EQ(get_be32(prin(e, a, lun, 0x00).data + 4), 0);
	/* the encoding: round trip, and garbage refused without harm */
	CHECK_GOOD(prout(e, a, lun, 0x00, 0, 0, 0x1234));
	CHECK_GOOD(prout(e, a, lun, 0x01, PR_TYPE_EA_AR, 0x1234, 0));
	uint8_t *d = NULL, *d2 = NULL;
	size_t len = 0, len2 = 0;
	CHECK_EQ(pr_store_encode(e->peer, &d, &len), 0);
	CHECK_EQ(pr_store_decode(e->peer, d, len), 0);
	CHECK_EQ(pr_store_encode(e->peer, &d2, &len2), 0);
	CHECK(len == len2 && d && d2 && !memcmp(d, d2, len));
	for (size_t cut = 0; d && cut < len; cut++)
		CHECK_EQ(pr_store_decode(e->peer, d, cut), -EINVAL);
	if (d) {
		d[19] = 0x7f; /* count */
		CHECK_EQ(pr_store_decode(e->peer, d, len), -EINVAL);
	}
	free(d);
	free(d2);
	CHECK_EQ(e->peer->pr.nregs, 1);
	CHECK(e->peer->pr.reserved);
	CHECK_GOOD(prout(e, a, lun, 0x03, 0, 0x1234, 0)); /* CLEAR */
}

static void test_pr(struct env *e)
{
	struct scsi_nexus *a = &e->na, *b = &e->nb; /* both see LUN 0 */
	struct res r = prin(e, a, 0, 0x02);
	CHECK_GOOD(r);
	CHECK_EQ(get_be16(r.data), 8);
	CHECK_EQ(r.data[3] & 0x80, 0x80);
	CHECK_EQ(r.data[4], 0xea);
	CHECK_EQ(r.data[5], 0x01);
	r = prin(e, a, 0, 0x00);
	CHECK_GOOD(r);
	uint32_t gen0 = get_be32(r.data);
	CHECK_EQ(get_be32(r.data + 4), 0);

	/* register A (0xa) and B (0xb) */
	CHECK_GOOD(prout(e, a, 0, 0x00, 0, 0, 0xa));
	CHECK_GOOD(prout(e, b, 0, 0x00, 0, 0, 0xb));
	/* registering again with a wrong key: conflict */
	r = prout(e, b, 0, 0x00, 0, 0x77, 0xbb);
	CHECK_EQ(r.status, SCSI_STATUS_RESERVATION_CONFLICT);
	r = prin(e, a, 0, 0x00);
	CHECK_EQ(get_be32(r.data), gen0 + 2);
	CHECK_EQ(get_be32(r.data + 4), 16);
	/* reserve with a wrong key: conflict; bad type: invalid field */
	r = prout(e, a, 0, 0x01, PR_WE, 0xb, 0);
	CHECK_EQ(r.status, SCSI_STATUS_RESERVATION_CONFLICT);
	r = prout(e, a, 0, 0x01, 0x02, 0xa, 0);
	CHECK_SENSE(r, 0x5, 0x24, 0x00);
	/* A reserves Write Exclusive */
	CHECK_GOOD(prout(e, a, 0, 0x01, PR_WE, 0xa, 0));
	r = prin(e, b, 0, 0x01);
	CHECK_EQ(get_be32(r.data + 4), 16);
	CHECK_EQ(get_be64(r.data + 8), 0xa);
	CHECK_EQ(r.data[21], PR_WE);
	/* B: reads allowed, writes conflict; A: both */
	CHECK_GOOD(rw1(e, b, 0, false));
	CHECK_EQ(rw1(e, b, 0, true).status, SCSI_STATUS_RESERVATION_CONFLICT);
	CHECK_GOOD(rw1(e, a, 0, true));
	/* commands always allowed: INQUIRY, TUR, READ CAPACITY, PR IN */
	uint8_t inq[6] = {0x12, 0, 0, 0, 36, 0};
	CHECK_GOOD(run_cap(e, b, 0, inq, 6, NULL, 0, 4096));
	CHECK_GOOD(run_cap(e, b, 0, TUR, 6, NULL, 0, 4096));
	/* B cannot reserve; B's release is a no-op */
	r = prout(e, b, 0, 0x01, PR_WE, 0xb, 0);
	CHECK_EQ(r.status, SCSI_STATUS_RESERVATION_CONFLICT);
	CHECK_GOOD(prout(e, b, 0, 0x02, PR_WE, 0xb, 0));
	CHECK_EQ(rw1(e, b, 0, true).status, SCSI_STATUS_RESERVATION_CONFLICT);
	/* A releases with the wrong type */
	r = prout(e, a, 0, 0x02, PR_EA, 0xa, 0);
	CHECK_SENSE(r, 0x5, 0x26, 0x04);
	/* A converts to Exclusive Access via reserve? conflict (type) */
	r = prout(e, a, 0, 0x01, PR_EA, 0xa, 0);
	CHECK_EQ(r.status, SCSI_STATUS_RESERVATION_CONFLICT);
	CHECK_GOOD(prout(e, a, 0, 0x02, PR_WE, 0xa, 0));
	CHECK_GOOD(rw1(e, b, 0, true));

	/* Exclusive Access: B may not even read */
	CHECK_GOOD(prout(e, a, 0, 0x01, PR_EA, 0xa, 0));
	CHECK_EQ(rw1(e, b, 0, false).status,
		 SCSI_STATUS_RESERVATION_CONFLICT);
	/* B preempts A: A's registration goes, B holds WE_RO */
	CHECK_GOOD(prout(e, b, 0, 0x04, PR_WE_RO, 0xb, 0xa));
	r = prin(e, b, 0, 0x01);
	CHECK_EQ(get_be64(r.data + 8), 0xb);
	CHECK_EQ(r.data[21], PR_WE_RO);
	r = prin(e, b, 0, 0x00);
	CHECK_EQ(get_be32(r.data + 4), 8);
	CHECK_EQ(get_be64(r.data + 8), 0xb);
	/* A learns it was preempted */
	r = run(e, 0, TUR, 6, NULL, 0);
	CHECK_SENSE(r, 0x6, 0x2a, 0x05);
	/* A (unregistered) cannot write under WE_RO, can read */
	CHECK_EQ(rw1(e, a, 0, true).status, SCSI_STATUS_RESERVATION_CONFLICT);
	CHECK_GOOD(rw1(e, a, 0, false));
	/* A registers (register-and-ignore): now a registrant, may write */
	CHECK_GOOD(prout(e, a, 0, 0x06, 0, 0, 0xa2));
	CHECK_GOOD(rw1(e, a, 0, true));
	/* READ FULL STATUS: two registrants, B the holder, TransportIDs */
	r = prin(e, a, 0, 0x03);
	CHECK_GOOD(r);
	size_t len = get_be32(r.data + 4) + 8, pos = 8;
	unsigned nreg = 0, holders = 0;
	while (pos + 24 <= len) {
		const uint8_t *p = r.data + pos;
		nreg++;
		if (p[12] & 1) {
			holders++;
			CHECK_EQ(get_be64(p), 0xb);
			CHECK_EQ(p[13] & 0xf, PR_WE_RO);
		}
		CHECK_EQ(p[24] & 0x3f, 0x05); /* iSCSI */
		CHECK(strstr((const char *)p + 28, ",i,0x") != NULL);
		pos += 24 + get_be32(p + 20);
	}
	CHECK_EQ(nreg, 2);
	CHECK_EQ(holders, 1);
	/* B unregisters: a registrants-only reservation is released and A
	 * told so */
	CHECK_GOOD(prout(e, b, 0, 0x00, 0, 0xb, 0));
	r = run(e, 0, TUR, 6, NULL, 0);
	CHECK_SENSE(r, 0x6, 0x2a, 0x04);
	r = prin(e, a, 0, 0x01);
	CHECK_EQ(get_be32(r.data + 4), 0);

	/* Exclusive Access, All Registrants: both registered hold it */
	CHECK_GOOD(prout(e, b, 0, 0x00, 0, 0, 0xb));
	CHECK_GOOD(prout(e, a, 0, 0x01, PR_EA_AR, 0xa2, 0));
	CHECK_GOOD(rw1(e, b, 0, true));
	r = prin(e, b, 0, 0x01);
	CHECK_EQ(get_be64(r.data + 8), 0); /* all registrants: key 0 */
	/* PREEMPT AND ABORT with SARK 0 under AR: B alone holds it */
	CHECK_GOOD(prout(e, b, 0, 0x05, PR_EA, 0xb, 0));
	r = run(e, 0, TUR, 6, NULL, 0);
	CHECK_SENSE(r, 0x6, 0x2a, 0x05);
	CHECK_EQ(rw1(e, a, 0, false).status,
		 SCSI_STATUS_RESERVATION_CONFLICT);
	/* CLEAR: everything goes */
	r = prout(e, a, 0, 0x03, 0, 0xa2, 0);
	CHECK_EQ(r.status, SCSI_STATUS_RESERVATION_CONFLICT);
	CHECK_GOOD(prout(e, b, 0, 0x03, 0, 0xb, 0));
	r = prin(e, a, 0, 0x00);
	CHECK_EQ(get_be32(r.data + 4), 0);
	CHECK_GOOD(rw1(e, a, 0, true));
	/* bad parameter list length, APTPL */
	uint8_t cdb[10] = {0x5f, 0, 0, 0, 0, 0, 0, 0, 20, 0};
	uint8_t p[24] = {0};
	r = run_cap(e, a, 0, cdb, 10, p, 20, 4096);
	CHECK_SENSE(r, 0x5, 0x1a, 0x00);
	cdb[8] = 24;
	p[20] = 0x01;
	put_be64(p + 8, 5);
	test_pr_aptpl(e, a);
	/* unsupported service action (REGISTER AND MOVE) */
	cdb[1] = 0x07;
	r = run_cap(e, a, 0, cdb, 10, p, 24, 4096);
	CHECK_SENSE(r, 0x5, 0x24, 0x00);
}

/* ---- EXTENDED COPY ------------------------------------------------------- */

static void get_naa(struct env *e, struct scsi_nexus *n, uint64_t lun,
		    uint8_t naa[16])
{
	uint8_t cdb[6] = {0x12, 0x01, 0x83, 0x01, 0x00, 0};
	struct res r = run_cap(e, n, lun, cdb, 6, NULL, 0, 4096);
	CHECK_GOOD(r);
	CHECK_EQ(r.data[5] & 0x0f, 3);
	memcpy(naa, r.data + 8, 16);
}

static size_t xcopy_cscd(uint8_t *d, const uint8_t naa[16], uint32_t bs)
{
	memset(d, 0, 32);
	d[0] = 0xe4;
	d[4] = 0x01;
	d[5] = 0x03;
	d[7] = 16;
	memcpy(d + 8, naa, 16);
	d[29] = (uint8_t)(bs >> 16);
	put_be16(d + 30, (uint16_t)bs);
	return 32;
}

static size_t xcopy_seg(uint8_t *d, uint16_t si, uint16_t di, uint16_t nblk,
			uint64_t slba, uint64_t dlba)
{
	memset(d, 0, 28);
	d[0] = 0x02;
	put_be16(d + 2, 0x18);
	put_be16(d + 4, si);
	put_be16(d + 6, di);
	put_be16(d + 10, nblk);
	put_be64(d + 12, slba);
	put_be64(d + 20, dlba);
	return 28;
}

static struct res xcopy(struct env *e, uint64_t lun, uint8_t *pl, size_t len)
{
	uint8_t cdb[16] = {0x83, 0x00};
	put_be32(cdb + 10, (uint32_t)len);
	return run_cap(e, &e->na, lun, cdb, 16, pl, (uint32_t)len, 4096);
}

static uint64_t used_bytes(struct env *e)
{
	struct sds_pool_stats st;
	sds_pool_stats(e->pf.pool, &st);
	return st.used_bytes;
}

static void test_xcopy(struct env *e)
{
	uint8_t naa0[16], naa3[16], naah[16];
	get_naa(e, &e->na, 0, naa0);
	get_naa(e, &e->na, 3, naa3);
	/* the hidden LU's NAA, read through a nexus that may see it */
	struct scsi_lun_map_entry he = {0, e->hidden};
	struct scsi_lun_map hm = {1, &he};
	struct scsi_nexus nc = e->na;
	snprintf(nc.initiator_port, sizeof(nc.initiator_port),
		 "iqn.2026-01.test:c,i,0x000000000003");
	nc.map = &hm;
	scsi_nexus_register(e->t, &nc);
	clear_ua(e, &nc, 0);
	get_naa(e, &nc, 0, naah);
	scsi_nexus_unregister(e->t, &nc);

	/* 1 MiB of data at LBA 0 of LUN 0, copied to LUN 3 */
	uint8_t *w = pool_fixture_abuf(1 << 20), cdb[16];
	pool_fixture_fill(w, 1 << 20, 31);
	cdb_rw16(cdb, 0x8a, 0, 2048);
	CHECK_GOOD(run(e, 0, cdb, 16, w, 1 << 20));
	uint8_t pl[16 + 3 * 32 + 3 * 28];
	memset(pl, 0, sizeof(pl));
	size_t off = 16;
	off += xcopy_cscd(pl + off, naa0, 512);
	off += xcopy_cscd(pl + off, naa3, 512);
	put_be16(pl + 2, 64);
	off += xcopy_seg(pl + off, 0, 1, 2048, 0, 0);
	put_be32(pl + 8, 28);
	pl[0] = 7; /* list id, usage 00b: results held */
	uint64_t used = used_bytes(e);
	struct res r = xcopy(e, 0, pl, off);
	CHECK_GOOD(r);
	CHECK_EQ(used_bytes(e), used); /* aligned: metadata only */
	cdb_rw16(cdb, 0x88, 0, 2048);
	r = run(e, 3, cdb, 16, NULL, 0);
	CHECK(!memcmp(r.data, w, 1 << 20));
	/* RECEIVE COPY RESULTS: copy status of list 7, then unknown */
	uint8_t rcr[16] = {0x84, 0x00, 7};
	put_be32(rcr + 10, 64);
	r = run(e, 0, rcr, 16, NULL, 0);
	CHECK_GOOD(r);
	CHECK_EQ(r.data[4], 0x01);
	CHECK_EQ(get_be16(r.data + 5), 1);
	CHECK_EQ(get_be32(r.data + 8), 1024); /* KiB */
	rcr[2] = 8;
	r = run(e, 0, rcr, 16, NULL, 0);
	CHECK_SENSE(r, 0x5, 0x24, 0x00);
	/* operating parameters */
	rcr[1] = 0x03;
	rcr[2] = 0;
	r = run(e, 0, rcr, 16, NULL, 0);
	CHECK_GOOD(r);
	CHECK_EQ(r.data[4] & 1, 1);
	CHECK(get_be16(r.data + 8) >= 2);
	CHECK(get_be16(r.data + 10) >= 1);
	CHECK_EQ(r.data[43], 2);

	/* overlapping copy inside LUN 0 (bounced), unaligned 512 */
	memset(pl, 0, sizeof(pl));
	off = 16 + xcopy_cscd(pl + 16, naa0, 512);
	put_be16(pl + 2, 32);
	off += xcopy_seg(pl + off, 0, 0, 1000, 0, 100);
	put_be32(pl + 8, 28);
	pl[1] = 0x18; /* list id usage 11b: not held */
	r = xcopy(e, 0, pl, off);
	CHECK_GOOD(r);
	cdb_rw16(cdb, 0x88, 100, 1000);
	r = run(e, 0, cdb, 16, NULL, 0);
	CHECK(!memcmp(r.data, w, 1000 * 512));

	/* a CSCD outside the nexus's map: unreachable, nothing copied */
	memset(pl, 0, sizeof(pl));
	off = 16;
	off += xcopy_cscd(pl + off, naah, 512);
	off += xcopy_cscd(pl + off, naa3, 512);
	put_be16(pl + 2, 64);
	off += xcopy_seg(pl + off, 1, 0, 8, 0, 0);
	put_be32(pl + 8, 28);
	pl[1] = 0x18;
	r = xcopy(e, 0, pl, off);
	CHECK_SENSE(r, 0xa, 0x08, 0x04);
	/* copying from it is refused just the same */
	xcopy_seg(pl + 16 + 64, 0, 1, 8, 0, 0);
	r = xcopy(e, 0, pl, off);
	CHECK_SENSE(r, 0xa, 0x08, 0x04);

	/* beyond the end: COPY ABORTED */
	memset(pl, 0, sizeof(pl));
	off = 16 + xcopy_cscd(pl + 16, naa0, 512);
	put_be16(pl + 2, 32);
	off += xcopy_seg(pl + off, 0, 0, 2048, 0, (16 << 20) / 512 - 1);
	put_be32(pl + 8, 28);
	pl[1] = 0x18;
	r = xcopy(e, 0, pl, off);
	CHECK_EQ(r.status, SCSI_STATUS_CHECK_CONDITION);
	CHECK_EQ(r.key, 0xa);
	/* bad segment index */
	xcopy_seg(pl + 16 + 32, 0, 1, 8, 0, 4096);
	r = xcopy(e, 0, pl, off);
	CHECK_EQ(r.key, 0xa);
	/* unsupported segment type, CSCD type */
	pl[16 + 32] = 0x01;
	r = xcopy(e, 0, pl, off);
	CHECK_SENSE(r, 0x5, 0x26, 0x09);
	pl[16 + 32] = 0x02;
	pl[16] = 0xe0;
	r = xcopy(e, 0, pl, off);
	CHECK_SENSE(r, 0x5, 0x26, 0x07);
	pl[16] = 0xe4;
	/* truncated parameter list */
	r = xcopy(e, 0, pl, off - 1);
	CHECK_SENSE(r, 0x5, 0x1a, 0x00);
	/* too many CSCDs */
	memset(pl, 0, sizeof(pl));
	off = 16;
	for (int i = 0; i < 3; i++)
		off += xcopy_cscd(pl + off, naa0, 512);
	put_be16(pl + 2, 96);
	off += xcopy_seg(pl + off, 0, 0, 8, 0, 4096);
	put_be32(pl + 8, 28);
	r = xcopy(e, 0, pl, off);
	CHECK_SENSE(r, 0x5, 0x26, 0x06);
	/* parameter list length 0: nothing to do */
	r = xcopy(e, 0, pl, 0);
	CHECK_GOOD(r);
	/* to the snapshot: write protected */
	uint8_t naa2[16];
	get_naa(e, &e->na, 2, naa2);
	memset(pl, 0, sizeof(pl));
	off = 16;
	off += xcopy_cscd(pl + off, naa0, 512);
	off += xcopy_cscd(pl + off, naa2, 512);
	put_be16(pl + 2, 64);
	off += xcopy_seg(pl + off, 0, 1, 8, 0, 0);
	put_be32(pl + 8, 28);
	pl[1] = 0x18;
	r = xcopy(e, 0, pl, off);
	CHECK_SENSE(r, 0x7, 0x27, 0x00);
	free(w);
}

/* ---- REPORT SUPPORTED OPERATION CODES / TMFs ----------------------------- */

static void test_rsoc(struct env *e)
{
	uint8_t cdb[12] = {0xa3, 0x0c, 0x00};
	put_be32(cdb + 6, 8192);
	struct res r = run(e, 0, cdb, 12, NULL, 0);
	CHECK_GOOD(r);
	uint32_t len = get_be32(r.data);
	CHECK_EQ(len % 8, 0);
	bool read10 = false, rc16 = false, xcopy_seen = false;
	for (uint32_t i = 0; i < len / 8; i++) {
		const uint8_t *d = r.data + 4 + 8 * i;
		if (d[0] == 0x28 && !(d[5] & 1))
			read10 = get_be16(d + 6) == 10;
		if (d[0] == 0x9e && (d[5] & 1) && get_be16(d + 2) == 0x10)
			rc16 = true;
		if (d[0] == 0x83)
			xcopy_seen = true;
	}
	CHECK(read10 && rc16 && xcopy_seen);
	/* RCTD: 20-byte descriptors */
	cdb[2] = 0x80;
	r = run(e, 0, cdb, 12, NULL, 0);
	CHECK_EQ(get_be32(r.data) % 20, 0);
	/* one command: READ(16) with its usage data */
	cdb[2] = 0x01;
	cdb[3] = 0x88;
	r = run(e, 0, cdb, 12, NULL, 0);
	CHECK_GOOD(r);
	CHECK_EQ(r.data[1] & 7, 3);
	CHECK_EQ(get_be16(r.data + 2), 16);
	CHECK_EQ(r.data[4], 0x88);
	/* an opcode with service actions asked without one: invalid */
	cdb[3] = 0x9e;
	r = run(e, 0, cdb, 12, NULL, 0);
	CHECK_SENSE(r, 0x5, 0x24, 0x00);
	cdb[2] = 0x02;
	put_be16(cdb + 4, 0x12);
	r = run(e, 0, cdb, 12, NULL, 0);
	CHECK_EQ(r.data[1] & 7, 3);
	CHECK_EQ(r.data[4], 0x9e);
	/* unsupported */
	cdb[2] = 0x01;
	cdb[3] = 0x02;
	r = run(e, 0, cdb, 12, NULL, 0);
	CHECK_GOOD(r);
	CHECK_EQ(r.data[1] & 7, 1);
	/* every listed command must run the same table: check one more
	 * command is rejected when not listed */
	cdb[2] = 0x07;
	r = run(e, 0, cdb, 12, NULL, 0);
	CHECK_SENSE(r, 0x5, 0x24, 0x00);
	/* REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS */
	uint8_t tmf[12] = {0xa3, 0x0d};
	put_be32(tmf + 6, 16);
	r = run(e, 0, tmf, 12, NULL, 0);
	CHECK_GOOD(r);
	CHECK_EQ(r.data_in_len, 4);
	CHECK_EQ(r.data[0] & 0x88, 0x88); /* ATS, LURS */
}

/* ---- task management -------------------------------------------------------- */

struct tmf_wait {
	bool done;
	int resp;
};

static void tmf_cb(void *arg, int resp)
{
	struct tmf_wait *w = arg;
	w->done = true;
	w->resp = resp;
}

static void test_tmf(struct env *e)
{
	struct scsi_cmd c;
	memset(&c, 0, sizeof(c));
	bool done = false;
	c.nexus = &e->na;
	c.lun = 0;
	cdb_rw16(c.cdb, 0x88, 0, 64);
	c.cdb_len = 16;
	c.tag = 0x1234;
	c.data_in = g_in;
	c.data_in_cap = 1 << 20;
	c.done = cmd_done;
	c.priv = &done;
	scsi_cmd_submit(e->t, &c);
	struct tmf_wait w = {0};
	scsi_tmf(e->t, &e->na, SCSI_TMF_ABORT_TASK, 0, 0x1234, tmf_cb, &w);
	CHECK(!w.done);
	loop_until(e, &w.done);
	CHECK(done); /* the TMF answers after the task */
	CHECK_EQ(w.resp, SCSI_TMF_COMPLETE);
	CHECK_EQ(c.status, SCSI_STATUS_TASK_ABORTED);
	/* no such task */
	w.done = false;
	scsi_tmf(e->t, &e->na, SCSI_TMF_ABORT_TASK, 0, 0x9999, tmf_cb, &w);
	loop_until(e, &w.done);
	CHECK_EQ(w.resp, SCSI_TMF_NO_TASK);
	/* LUN not in the map */
	w.done = false;
	scsi_tmf(e->t, &e->na, SCSI_TMF_LUN_RESET, 42, 0, tmf_cb, &w);
	loop_until(e, &w.done);
	CHECK_EQ(w.resp, SCSI_TMF_NO_LUN);
	/* LUN reset: unit attention 29/03 for every nexus */
	w.done = false;
	scsi_tmf(e->t, &e->na, SCSI_TMF_LUN_RESET, 0, 0, tmf_cb, &w);
	loop_until(e, &w.done);
	CHECK_EQ(w.resp, SCSI_TMF_COMPLETE);
	struct res r = run(e, 0, TUR, 6, NULL, 0);
	CHECK_SENSE(r, 0x6, 0x29, 0x03);
	r = run_cap(e, &e->nb, 0, TUR, 6, NULL, 0, 4096);
	CHECK_SENSE(r, 0x6, 0x29, 0x03);
	/* REQUEST SENSE reports a pending unit attention and clears it */
	w.done = false;
	scsi_tmf(e->t, &e->na, SCSI_TMF_TARGET_RESET, 0, 0, tmf_cb, &w);
	loop_until(e, &w.done);
	uint8_t rs[6] = {0x03, 0, 0, 0, 18, 0};
	r = run(e, 0, rs, 6, NULL, 0);
	CHECK_GOOD(r);
	CHECK_EQ(r.data[2], 0x6);
	CHECK_EQ(r.data[12], 0x29);
	CHECK_EQ(r.data[13], 0x02);
	CHECK_GOOD(run(e, 0, TUR, 6, NULL, 0));
	for (uint64_t l = 1; l < 4; l++)
		clear_ua(e, &e->na, l);
	clear_ua(e, &e->nb, 0);
	clear_ua(e, &e->nb, 300);
	w.done = false;
	scsi_tmf(e->t, &e->na, SCSI_TMF_CLEAR_ACA, 0, 0, tmf_cb, &w);
	loop_until(e, &w.done);
	CHECK_EQ(w.resp, SCSI_TMF_NOT_SUPPORTED);
}

/* ---- SANITIZE (SBC-4 5.30) ---------------------------------------------- */

static struct res sanitize(struct env *e, uint64_t lun, uint8_t b1,
			   const void *pl, uint16_t plen)
{
	uint8_t cdb[10] = {0x48, b1};
	put_be16(cdb + 7, plen);
	return run(e, lun, cdb, 10, pl, plen);
}

/* Runs the loop until TEST UNIT READY stops answering SANITIZE IN
 * PROGRESS. */
static void sanitize_wait(struct env *e, uint64_t lun)
{
	for (;;) {
		struct res r = run(e, lun, TUR, 6, NULL, 0);
		if (r.status == SCSI_STATUS_GOOD)
			return;
		CHECK_SENSE(r, 0x2, 0x04, 0x1b);
		if (r.key != 0x2)
			return;
		uv_run(&e->pf.loop, UV_RUN_ONCE);
	}
}

static void test_sanitize(struct env *e)
{
	const uint64_t lun = 1; /* d4k */
	uint32_t bs = 4096;
	uint8_t *buf = pool_fixture_abuf(bs);
	uint8_t cdb[16];
	pool_fixture_fill(buf, bs, 77);
	cdb_rw16(cdb, 0x8a, 5, 1);
	CHECK_GOOD(run(e, lun, cdb, 16, buf, bs));
	/* bad CDBs and parameter lists: nothing starts */
	uint8_t pl[8 + 4096] = {0x01, 0, 0, 4, 0xa5, 0x5a, 0xc3, 0x3c};
	struct res r = sanitize(e, lun, 0x02, pl, 8); /* BLOCK ERASE + list */
	CHECK_SENSE(r, 0x5, 0x24, 0x00);
	r = sanitize(e, lun, 0x03, NULL, 0); /* CRYPTOGRAPHIC ERASE: no */
	CHECK_SENSE(r, 0x5, 0x24, 0x00);
	r = sanitize(e, lun, 0x05, NULL, 0);
	CHECK_SENSE(r, 0x5, 0x24, 0x00);
	r = sanitize(e, lun, 0x40 | 0x01, pl, 8); /* reserved bit */
	CHECK_SENSE(r, 0x5, 0x24, 0x00);
	r = sanitize(e, lun, 0x01, pl, 4); /* no pattern */
	CHECK_SENSE(r, 0x5, 0x24, 0x00);
	r = sanitize(e, lun, 0x01, pl, 4 + 4097); /* pattern > block */
	CHECK_SENSE(r, 0x5, 0x24, 0x00);
	pl[0] = 0x00; /* OVERWRITE COUNT 0 */
	r = sanitize(e, lun, 0x01, pl, 8);
	CHECK_SENSE(r, 0x5, 0x26, 0x00);
	pl[0] = 0x01;
	pl[3] = 3; /* pattern length != list length - 4 */
	r = sanitize(e, lun, 0x01, pl, 8);
	CHECK_SENSE(r, 0x5, 0x26, 0x00);
	pl[3] = 4;
	CHECK_GOOD(run(e, lun, TUR, 6, NULL, 0));
	/* write protected: the snapshot LU */
	r = sanitize(e, 2, 0x02, NULL, 0);
	CHECK_SENSE(r, 0x7, 0x27, 0x00);
	/* EXIT FAILURE MODE outside failure mode: nothing to do */
	CHECK_GOOD(sanitize(e, lun, 0x1f, NULL, 0));

	/* OVERWRITE, IMMED: GOOD at once, then the LU is busy with it
	 * (48 MiB at the sanitize rate takes a while). */
	CHECK_GOOD(sanitize(e, lun, 0x80 | 0x01, pl, 8));
	r = run(e, lun, TUR, 6, NULL, 0);
	CHECK_SENSE(r, 0x2, 0x04, 0x1b);
	CHECK_EQ(r.sense[15] & 0x80, 0x80); /* SKSV: progress */
	cdb_rw16(cdb, 0x88, 5, 1);
	r = run(e, lun, cdb, 16, NULL, 0);
	CHECK_SENSE(r, 0x2, 0x04, 0x1b);
	r = sanitize(e, lun, 0x02, NULL, 0); /* a second one waits too */
	CHECK_SENSE(r, 0x2, 0x04, 0x1b);
	uint8_t inq[6] = {0x12, 0, 0, 0, 96, 0};
	CHECK_GOOD(run(e, lun, inq, 6, NULL, 0));
	uint8_t rs[6] = {0x03, 0, 0, 0, 18, 0};
	r = run(e, lun, rs, 6, NULL, 0);
	CHECK_GOOD(r);
	CHECK_EQ(r.data[2], 0x2);
	CHECK_EQ(r.data[12], 0x04);
	CHECK_EQ(r.data[13], 0x1b);
	CHECK_EQ(r.data[15], 0x80);
	rs[1] = 0x01; /* descriptor format: progress indication descriptor */
	r = run(e, lun, rs, 6, NULL, 0);
	CHECK_GOOD(r);
	CHECK_EQ(r.data[0], 0x72);
	CHECK_EQ(r.data[8], 0x0a);
	/* other LUs are not affected */
	CHECK_GOOD(run(e, 0, TUR, 6, NULL, 0));
	sanitize_wait(e, lun);
	r = run(e, lun, cdb, 16, NULL, 0);
	CHECK_GOOD(r);
	for (uint32_t i = 0; i < bs; i++)
		if (r.data[i] != pl[4 + i % 4]) {
			CHECK(!"OVERWRITE pattern not read back");
			break;
		}

	/* BLOCK ERASE without IMMED, aborted: the command ends, the erase
	 * goes on (SBC-4 4.11.2). */
	struct scsi_cmd c;
	memset(&c, 0, sizeof(c));
	bool done = false;
	c.nexus = &e->na;
	c.lun = lun;
	c.cdb[0] = 0x48;
	c.cdb[1] = 0x02;
	c.cdb_len = 16;
	c.tag = 0x5a5a;
	c.done = cmd_done;
	c.priv = &done;
	scsi_cmd_submit(e->t, &c);
	struct tmf_wait w = {0};
	scsi_tmf(e->t, &e->na, SCSI_TMF_ABORT_TASK, lun, 0x5a5a, tmf_cb, &w);
	loop_until(e, &w.done);
	loop_until(e, &done);
	CHECK_EQ(w.resp, SCSI_TMF_COMPLETE);
	CHECK_EQ(c.status, SCSI_STATUS_TASK_ABORTED);
	sanitize_wait(e, lun);
	r = run(e, lun, cdb, 16, NULL, 0);
	CHECK_GOOD(r);
	for (uint32_t i = 0; i < bs; i++)
		if (r.data[i]) {
			CHECK(!"BLOCK ERASE left data");
			break;
		}
	uint32_t blocks = 0;
	CHECK(!lba_mapped(e, lun, 0, &blocks));
	CHECK_EQ(blocks, D4K_SIZE / bs);
	/* A restart in the middle (the LU closed and opened again, the
	 * engine write still in flight): it resumes from the start. */
	const uint64_t plun = 3; /* peer, 16 MiB of 512-byte blocks */
	clear_ua(e, &e->na, plun);
	CHECK_GOOD(sanitize(e, plun, 0x80 | 0x01, pl, 8));
	reopen_peer(e);
	r = run(e, plun, TUR, 6, NULL, 0);
	CHECK_SENSE(r, 0x2, 0x04, 0x1b);
	sanitize_wait(e, plun);
	cdb_rw16(cdb, 0x88, 31, 8);
	r = run(e, plun, cdb, 16, NULL, 0);
	CHECK_GOOD(r);
	for (uint32_t i = 0; i < 4096; i++)
		if (r.data[i] != pl[4 + i % 4]) {
			CHECK(!"resumed OVERWRITE pattern not read back");
			break;
		}
	reopen_peer(e); /* done: nothing resumes */
	CHECK_GOOD(run(e, plun, TUR, 6, NULL, 0));
	/* VPD B1h: WABEREQ 01b, WACEREQ 00b */
	uint8_t vpd[6] = {0x12, 0x01, 0xb1, 0, 64, 0};
	r = run(e, lun, vpd, 6, NULL, 0);
	CHECK_GOOD(r);
	CHECK_EQ(r.data[7] & 0xf0, 0x40);
	free(buf);
}

/* ---- garbage in: every opcode with random CDB bytes and short data -------- */

static void test_random_cdbs(struct env *e)
{
	uint64_t st = 0x243f6a8885a308d3ull;
	uint8_t *out = pool_fixture_abuf(65536);
	for (int i = 0; i < 4000; i++) {
		uint8_t cdb[16];
		for (int j = 0; j < 16; j++) {
			st ^= st << 13, st ^= st >> 7, st ^= st << 17;
			cdb[j] = (uint8_t)st;
		}
		cdb[0] = (uint8_t)i;
		/* keep lengths small so that in-range commands stay fast */
		if (i & 1)
			memset(cdb + 2, 0, 6);
		for (int j = 0; j < 4096; j++)
			out[j] = (uint8_t)(st >> (j & 31));
		uint32_t olen = (uint32_t)(st % 4096);
		uint64_t lun = (st >> 20) % 5;
		uint32_t cap = (uint32_t)((st >> 32) % 70000);
		struct res r = run_cap(e, &e->na, lun, cdb, 16, out, olen, cap);
		CHECK(r.data_in_len <= cap);
		CHECK(r.status == SCSI_STATUS_GOOD ||
		      r.status == SCSI_STATUS_CHECK_CONDITION ||
		      r.status == SCSI_STATUS_RESERVATION_CONFLICT ||
		      r.status == SCSI_STATUS_BUSY);
		if (r.status == SCSI_STATUS_CHECK_CONDITION)
			CHECK(r.sense_len >= 8);
		enum scsi_dir dir;
		uint32_t len;
		scsi_cdb_xfer(cdb, 16, 512, &dir, &len);
	}
	free(out);
}

/* ---- RESERVE/RELEASE, ORWRITE, WRITE ATOMIC, READ DEFECT DATA ---------- */

static void test_spc2_and_extras(struct env *e)
{
	struct scsi_nexus *a = &e->na, *b = &e->nb;
	uint8_t rsv6[6] = {0x16}, rel6[6] = {0x17};
	CHECK_GOOD(run_cap(e, a, 0, rsv6, 6, NULL, 0, 4096));
	CHECK_GOOD(run_cap(e, a, 0, rsv6, 6, NULL, 0, 4096)); /* again */
	struct res r = run_cap(e, b, 0, rsv6, 6, NULL, 0, 4096);
	CHECK_EQ(r.status, SCSI_STATUS_RESERVATION_CONFLICT);
	/* B: RELEASE is a no-op, INQUIRY allowed, the rest conflicts */
	CHECK_GOOD(run_cap(e, b, 0, rel6, 6, NULL, 0, 4096));
	uint8_t inq[6] = {0x12, 0, 0, 0, 36, 0};
	CHECK_GOOD(run_cap(e, b, 0, inq, 6, NULL, 0, 4096));
	uint8_t ms6[6] = {0x1a, 0, 0x3f, 0, 255, 0};
	r = run_cap(e, b, 0, ms6, 6, NULL, 0, 4096);
	CHECK_EQ(r.status, SCSI_STATUS_RESERVATION_CONFLICT);
	CHECK_EQ(rw1(e, b, 0, false).status, SCSI_STATUS_RESERVATION_CONFLICT);
	CHECK_GOOD(rw1(e, a, 0, true));
	/* a persistent reservation registration conflicts with it */
	CHECK_EQ(prout(e, b, 0, 0x00, 0, 0, 0xb).status,
		 SCSI_STATUS_RESERVATION_CONFLICT);
	/* the holder's nexus going away releases it */
	struct scsi_nexus nc = *a;
	scsi_nexus_unregister(e->t, a);
	scsi_nexus_register(e->t, &nc);
	CHECK_GOOD(run_cap(e, b, 0, rsv6, 6, NULL, 0, 4096));
	/* RESERVE(10)/RELEASE(10), third party refused */
	uint8_t rel10[10] = {0x57}, rsv10[10] = {0x56, 0x10};
	r = run_cap(e, b, 0, rsv10, 10, NULL, 0, 4096);
	CHECK_SENSE(r, 0x5, 0x24, 0x00);
	CHECK_GOOD(run_cap(e, b, 0, rel10, 10, NULL, 0, 4096));
	/* a LUN reset clears an SPC-2 reservation */
	CHECK_GOOD(run_cap(e, b, 0, rsv6, 6, NULL, 0, 4096));
	struct tmf_wait w = {0};
	scsi_tmf(e->t, b, SCSI_TMF_LUN_RESET, 0, 0, tmf_cb, &w);
	loop_until(e, &w.done);
	clear_ua(e, &nc, 0);
	clear_ua(e, b, 0);
	CHECK_GOOD(run_cap(e, &nc, 0, rsv6, 6, NULL, 0, 4096));
	CHECK_GOOD(run_cap(e, &nc, 0, rel6, 6, NULL, 0, 4096));
	scsi_nexus_unregister(e->t, &nc);
	scsi_nexus_register(e->t, a);
	for (uint64_t l = 0; l < 4; l++)
		clear_ua(e, a, l);

	/* ORWRITE(16): old | data */
	uint8_t *w1 = pool_fixture_abuf(4096), cdb[16];
	memset(w1, 0x0f, 1024);
	cdb_rw16(cdb, 0x8a, 600, 2);
	CHECK_GOOD(run(e, 0, cdb, 16, w1, 1024));
	memset(w1, 0xa0, 1024);
	cdb_rw16(cdb, 0x8b, 600, 2);
	CHECK_GOOD(run(e, 0, cdb, 16, w1, 1024));
	cdb_rw16(cdb, 0x88, 600, 2);
	r = run(e, 0, cdb, 16, NULL, 0);
	CHECK_EQ(r.data[0], 0xaf);
	CHECK_EQ(r.data[1023], 0xaf);
	cdb_rw16(cdb, 0x8b, 0, 1);
	r = run(e, 2, cdb, 16, w1, 512);
	CHECK_SENSE(r, 0x7, 0x27, 0x00);

	/* WRITE ATOMIC(16): within the advertised maximum */
	uint8_t wa[16] = {0x9c};
	put_be64(wa + 2, 700);
	put_be16(wa + 12, 4);
	memset(w1, 0x42, 2048);
	CHECK_GOOD(run(e, 0, wa, 16, w1, 2048));
	cdb_rw16(cdb, 0x88, 700, 4);
	r = run(e, 0, cdb, 16, NULL, 0);
	CHECK_EQ(r.data[2047], 0x42);
	put_be16(wa + 12, 4096); /* 2 MiB of 512 blocks: above 1 MiB */
	r = run(e, 0, wa, 16, NULL, 0);
	CHECK_SENSE(r, 0x5, 0x24, 0x00);
	uint8_t vb0[6] = {0x12, 0x01, 0xb0, 0x01, 0x00, 0};
	r = run(e, 0, vb0, 6, NULL, 0);
	CHECK_EQ(get_be32(r.data + 44), SDS_EXTENT_SIZE / 512);

	/* READ DEFECT DATA: an empty list */
	uint8_t rdd[10] = {0x37, 0, 0x18, 0, 0, 0, 0, 0, 32, 0};
	r = run(e, 0, rdd, 10, NULL, 0);
	CHECK_GOOD(r);
	CHECK_EQ(r.data_in_len, 4);
	CHECK_EQ(get_be16(r.data + 2), 0);
	uint8_t rdd12[12] = {0xb7, 0x18};
	put_be32(rdd12 + 6, 32);
	r = run(e, 0, rdd12, 12, NULL, 0);
	CHECK_GOOD(r);
	CHECK_EQ(r.data_in_len, 8);
	free(w1);
}

/* ---- engine errors -> sense (sense.c) -------------------------------------- */

static struct res errno_sense(struct env *e, int status, bool write)
{
	struct scsi_cmd c;
	memset(&c, 0, sizeof(c));
	bool done = false;
	c.done = cmd_done;
	c.priv = &done;
	struct scsi_task *tk = calloc(1, sizeof(*tk));
	tk->c = &c;
	tk->t = e->t;
	scsi_task_errno(tk, status, write); /* delivers and frees tk */
	CHECK(done);
	struct res r;
	memset(&r, 0, sizeof(r));
	r.status = c.status;
	r.key = c.sense[2] & 0xf;
	r.asc = c.sense[12];
	r.ascq = c.sense[13];
	return r;
}

static void test_engine_errors(struct env *e)
{
	struct res r = errno_sense(e, -EIO, false);
	CHECK_SENSE(r, 0x3, 0x11, 0x00); /* MEDIUM ERROR, unrecovered read */
	r = errno_sense(e, -EIO, true);
	CHECK_SENSE(r, 0x4, 0x0c, 0x00); /* HARDWARE ERROR, write error */
	r = errno_sense(e, -ENOSPC, true);
	CHECK_SENSE(r, 0x7, 0x27, 0x07); /* space allocation failed */
	r = errno_sense(e, -EROFS, true);
	CHECK_SENSE(r, 0x7, 0x27, 0x00);
	r = errno_sense(e, -EINVAL, false);
	CHECK_SENSE(r, 0x5, 0x21, 0x00);
	r = errno_sense(e, -ENOMEM, true);
	CHECK_EQ(r.status, SCSI_STATUS_BUSY);
	r = errno_sense(e, 0, true);
	CHECK_GOOD(r);
}

/* A done() that submits again is served on the next loop turn, so a
 * stream of synchronous commands cannot starve the loop. */
struct chain {
	struct env *e;
	struct scsi_cmd c;
	int left, done;
};

static void chain_done(struct scsi_cmd *c)
{
	struct chain *ch = c->priv;
	ch->done++;
	if (--ch->left > 0)
		scsi_cmd_submit(ch->e->t, c);
}

static void test_resubmit_from_done(struct env *e)
{
	struct chain ch;
	memset(&ch, 0, sizeof(ch));
	ch.e = e;
	ch.left = 50;
	ch.c.nexus = &e->na;
	ch.c.cdb_len = 16; /* TEST UNIT READY */
	ch.c.done = chain_done;
	ch.c.priv = &ch;
	scsi_cmd_submit(e->t, &ch.c);
	uv_run(&e->pf.loop, UV_RUN_NOWAIT);
	CHECK_EQ(ch.done, 1);
	while (ch.left > 0)
		uv_run(&e->pf.loop, UV_RUN_ONCE);
	CHECK_EQ(ch.done, 50);
	CHECK_EQ(ch.c.status, SCSI_STATUS_GOOD);
}

/* The dispatch table is the single source of truth (REPORT SUPPORTED
 * OPERATION CODES, reserved-bit checks, scsi_cdb_xfer): check its shape. */
static unsigned group_len(unsigned op)
{
	static const unsigned len[8] = {6, 10, 10, 0, 16, 12, 0, 0};
	return len[op >> 5];
}

static void check_op(const struct scsi_op *o, unsigned op)
{
	CHECK(o->name != NULL);
	CHECK_EQ(o->usage[0], op);
	CHECK_EQ(o->cdb_len, group_len(op));
	CHECK_EQ(o->usage[o->cdb_len - 1], 0); /* control byte: no NACA */
	CHECK(!((o->flags & OPF_DATA_IN) && (o->flags & OPF_DATA_OUT)));
	/* a CDB of zeroes (plus the service action) sizes without error */
	uint8_t cdb[16] = {0};
	cdb[0] = (uint8_t)op;
	cdb[1] = (uint8_t)o->sa;
	enum scsi_dir dir;
	uint32_t len;
	CHECK_EQ(scsi_cdb_xfer(cdb, 16, 512, &dir, &len), 0);
	if (len)
		CHECK_EQ(dir, (o->flags & OPF_DATA_OUT) ? SCSI_DIR_WRITE
							 : SCSI_DIR_READ);
}

static void test_dispatch_table(void)
{
	unsigned n = 0;
	for (unsigned op = 0; op < 256; op++) {
		const struct scsi_op *o = &scsi_ops[op];
		if (o->flags & OPF_SA) {
			CHECK(o->sub != NULL && o->fn == NULL);
			for (const struct scsi_op *s = o->sub; s->fn; s++) {
				CHECK(s->sa < 32);
				CHECK(!(s->flags & OPF_SA));
				check_op(s, op);
				n++;
			}
		} else if (o->fn) {
			check_op(o, op);
			n++;
		} else {
			CHECK(o->sub == NULL);
		}
	}
	CHECK(n > 50);
}

static void test_more(struct env *e)
{
	test_dispatch_table();
	test_resubmit_from_done(e);
	test_engine_errors(e);
	test_spc2_and_extras(e);
	test_pr(e);
	test_xcopy(e);
	test_rsoc(e);
	test_tmf(e);
	test_sanitize(e);
	test_random_cdbs(e);
}

int main(void)
{
	log_init();
	g_in = pool_fixture_abuf(1 << 20);
	test_cdb_xfer();
	struct env e;
	env_init(&e);
	test_ua_and_basics(&e);
	test_vpd(&e);
	test_report_luns_capacity(&e);
	test_read_write(&e);
	test_verify(&e);
	test_mode(&e);
	test_start_stop(&e);
	test_write_same_unmap(&e);
	test_caw(&e);
	test_more(&e);
	env_fini(&e);
	free(g_in);
	if (failures) {
		fprintf(stderr, "test_scsi: %d check(s) failed\n", failures);
		return 1;
	}
	printf("test_scsi: ok\n");
	return 0;
}
