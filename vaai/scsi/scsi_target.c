/* Targets, logical units, the nexus registry, unit attentions, the task set
 * and task management (SAM-5), and the dispatch of a CDB through the
 * opcode table (scsi_ops, below).
 *
 * LUN numbers: scsi_cmd.lun and scsi_lun_map_entry.lun are plain LUN
 * numbers (0..16383); REPORT LUNS encodes them in the SAM-5 4.7 single
 * level format (peripheral device addressing below 256, flat above). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "scsi_internal.h"

/* Placeholder IEEE company id for NAA designators (a CID, so it can never
 * equal a manufacturer's OUI); one place to change once registered. */
#define CAIRN_IEEE_CID 0x5ac41eu

/* ---- the dispatch table ------------------------------------------------- */

#define U6(op, b1, b2, b3, b4) {op, b1, b2, b3, b4, 0}
#define RW_CONFLICT (OPF_CONFLICT_EA | OPF_CONFLICT_WE)

/* SBC-4 4.17.1 table 13 / SPC-5 5.14.1 table 63: reads conflict only with
 * the Exclusive Access types, writes with every type. */
/* SBC-4 5.30: CRYPTOGRAPHIC ERASE (03h) is not offered (sanitize.c). */
#define SANITIZE_SA(n, nm)                                                    \
	{.name = "SANITIZE " nm, .fn = sbc_sanitize, .sa = (n),              \
	 .flags = OPF_DATA_OUT | RW_CONFLICT | OPF_WRITE, .cdb_len = 10,       \
	 .usage = {0x48, 0xbf, 0, 0, 0, 0, 0, 0xff, 0xff, 0}}
static const struct scsi_op sanitize_sa[] = {
	SANITIZE_SA(0x01, "OVERWRITE"),
	SANITIZE_SA(0x02, "BLOCK ERASE"),
	SANITIZE_SA(0x1f, "EXIT FAILURE MODE"),
	{0},
};

static const struct scsi_op sa_in16[] = {
	{.name = "READ CAPACITY(16)", .fn = sbc_read_capacity16, .sa = 0x10,
	 .flags = OPF_DATA_IN, .cdb_len = 16,
	 .usage = {0x9e, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff,
		   0xff, 0x00, 0}},
	{.name = "GET LBA STATUS", .fn = sbc_get_lba_status, .sa = 0x12,
	 .flags = OPF_DATA_IN | OPF_CONFLICT_EA | OPF_NEEDS_READY,
	 .cdb_len = 16,
	 .usage = {0x9e, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		   0xff, 0xff, 0xff, 0xff, 0x00, 0}},
	{0},
};

static const struct scsi_op maint_in[] = {
	{.name = "REPORT SUPPORTED OPERATION CODES",
	 .fn = spc_report_supported_opcodes, .sa = 0x0c,
	 .flags = OPF_DATA_IN | OPF_SPC2_OK, .cdb_len = 12,
	 .usage = {0xa3, 0x1f, 0x87, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		   0, 0}},
	{.name = "REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS",
	 .fn = spc_report_supported_tmf, .sa = 0x0d,
	 .flags = OPF_DATA_IN | OPF_SPC2_OK, .cdb_len = 12,
	 .usage = {0xa3, 0x1f, 0x80, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0}},
	{0},
};

static const struct scsi_op pr_in_sa[] = {
	{.name = "PERSISTENT RESERVE IN", .fn = pr_in, .sa = 0x00,
	 .flags = OPF_DATA_IN | OPF_PR_IN_OUT, .cdb_len = 10,
	 .usage = {0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0}},
	{.name = "PERSISTENT RESERVE IN", .fn = pr_in, .sa = 0x01,
	 .flags = OPF_DATA_IN | OPF_PR_IN_OUT, .cdb_len = 10,
	 .usage = {0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0}},
	{.name = "PERSISTENT RESERVE IN", .fn = pr_in, .sa = 0x02,
	 .flags = OPF_DATA_IN | OPF_PR_IN_OUT, .cdb_len = 10,
	 .usage = {0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0}},
	{.name = "PERSISTENT RESERVE IN", .fn = pr_in, .sa = 0x03,
	 .flags = OPF_DATA_IN | OPF_PR_IN_OUT, .cdb_len = 10,
	 .usage = {0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0}},
	{0},
};

#define PR_OUT_SA(n)                                                          \
	{.name = "PERSISTENT RESERVE OUT", .fn = pr_out, .sa = (n),           \
	 .flags = OPF_DATA_OUT | OPF_PR_IN_OUT, .cdb_len = 10,                \
	 .usage = {0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0}}
static const struct scsi_op pr_out_sa[] = {
	PR_OUT_SA(0x00), PR_OUT_SA(0x01), PR_OUT_SA(0x02), PR_OUT_SA(0x03),
	PR_OUT_SA(0x04), PR_OUT_SA(0x05), PR_OUT_SA(0x06), {0},
};

static const struct scsi_op xcopy_sa[] = {
	{.name = "EXTENDED COPY(LID1)", .fn = xcopy_extended_copy, .sa = 0x00,
	 .flags = OPF_DATA_OUT | RW_CONFLICT | OPF_NEEDS_READY, .cdb_len = 16,
	 .usage = {0x83, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,
		   0, 0}},
	{0},
};

static const struct scsi_op rcr_sa[] = {
	{.name = "RECEIVE COPY STATUS(LID1)", .fn = xcopy_receive_copy_results,
	 .sa = 0x00, .flags = OPF_DATA_IN | RW_CONFLICT, .cdb_len = 16,
	 .usage = {0x84, 0x1f, 0xff, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff,
		   0xff, 0, 0}},
	{.name = "RECEIVE COPY OPERATING PARAMETERS",
	 .fn = xcopy_receive_copy_results, .sa = 0x03,
	 .flags = OPF_DATA_IN | RW_CONFLICT, .cdb_len = 16,
	 .usage = {0x84, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,
		   0, 0}},
	{0},
};

const struct scsi_op scsi_ops[256] = {
	[0x00] = {.name = "TEST UNIT READY", .fn = spc_test_unit_ready,
		  .cdb_len = 6, .usage = U6(0x00, 0, 0, 0, 0)},
	[0x03] = {.name = "REQUEST SENSE", .fn = spc_request_sense,
		  .flags = OPF_DATA_IN | OPF_NO_LU | OPF_SKIP_UA | OPF_SPC2_OK |
			   OPF_SANITIZE_OK,
		  .cdb_len = 6,
		  .usage = U6(0x03, 0x01, 0, 0, 0xff)},
	[0x08] = {.name = "READ(6)", .fn = sbc_read,
		  .flags = OPF_DATA_IN | OPF_CONFLICT_EA | OPF_NEEDS_READY,
		  .cdb_len = 6, .usage = U6(0x08, 0x1f, 0xff, 0xff, 0xff)},
	[0x0a] = {.name = "WRITE(6)", .fn = sbc_write,
		  .flags = OPF_DATA_OUT | RW_CONFLICT | OPF_WRITE |
			   OPF_NEEDS_READY,
		  .cdb_len = 6, .usage = U6(0x0a, 0x1f, 0xff, 0xff, 0xff)},
	[0x12] = {.name = "INQUIRY", .fn = spc_inquiry,
		  .flags = OPF_DATA_IN | OPF_NO_LU | OPF_SKIP_UA | OPF_SPC2_OK |
			   OPF_SANITIZE_OK,
		  .cdb_len = 6,
		  .usage = U6(0x12, 0x01, 0xff, 0xff, 0xff)},
	[0x15] = {.name = "MODE SELECT(6)", .fn = spc_mode_select,
		  .flags = OPF_DATA_OUT | RW_CONFLICT, .cdb_len = 6,
		  .usage = U6(0x15, 0x11, 0, 0, 0xff)},
	[0x16] = {.name = "RESERVE(6)", .fn = pr_reserve_spc2, .cdb_len = 6,
		  .flags = OPF_PR_IN_OUT, .usage = U6(0x16, 0, 0, 0, 0)},
	[0x17] = {.name = "RELEASE(6)", .fn = pr_release_spc2, .cdb_len = 6,
		  .flags = OPF_PR_IN_OUT | OPF_SPC2_OK,
		  .usage = U6(0x17, 0, 0, 0, 0)},
	[0x1a] = {.name = "MODE SENSE(6)", .fn = spc_mode_sense,
		  .flags = OPF_DATA_IN | OPF_CONFLICT_EA, .cdb_len = 6,
		  .usage = U6(0x1a, 0x08, 0xff, 0xff, 0xff)},
	[0x1b] = {.name = "START STOP UNIT", .fn = sbc_start_stop,
		  .flags = RW_CONFLICT, .cdb_len = 6,
		  .usage = U6(0x1b, 0x01, 0, 0x0f, 0xf7)},
	[0x25] = {.name = "READ CAPACITY(10)", .fn = sbc_read_capacity10,
		  .flags = OPF_DATA_IN, .cdb_len = 10,
		  .usage = {0x25, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0x01, 0}},
	[0x28] = {.name = "READ(10)", .fn = sbc_read,
		  .flags = OPF_DATA_IN | OPF_CONFLICT_EA | OPF_NEEDS_READY,
		  .cdb_len = 10,
		  .usage = {0x28, 0xfe, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff,
			    0}},
	[0x2a] = {.name = "WRITE(10)", .fn = sbc_write,
		  .flags = OPF_DATA_OUT | RW_CONFLICT | OPF_WRITE |
			   OPF_NEEDS_READY,
		  .cdb_len = 10,
		  .usage = {0x2a, 0xfa, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff,
			    0}},
	[0x2e] = {.name = "WRITE AND VERIFY(10)", .fn = sbc_write_verify,
		  .flags = OPF_DATA_OUT | RW_CONFLICT | OPF_WRITE |
			   OPF_NEEDS_READY,
		  .cdb_len = 10,
		  .usage = {0x2e, 0xf6, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff,
			    0}},
	[0x2f] = {.name = "VERIFY(10)", .fn = sbc_verify,
		  .flags = OPF_DATA_OUT | OPF_CONFLICT_EA | OPF_NEEDS_READY,
		  .cdb_len = 10,
		  .usage = {0x2f, 0xf6, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff,
			    0}},
	[0x34] = {.name = "PRE-FETCH(10)", .fn = sbc_prefetch,
		  .flags = OPF_CONFLICT_EA | OPF_NEEDS_READY, .cdb_len = 10,
		  .usage = {0x34, 0x02, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff,
			    0}},
	[0x35] = {.name = "SYNCHRONIZE CACHE(10)", .fn = sbc_sync_cache,
		  .flags = RW_CONFLICT | OPF_NEEDS_READY, .cdb_len = 10,
		  .usage = {0x35, 0x06, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff,
			    0}},
	[0x37] = {.name = "READ DEFECT DATA(10)", .fn = sbc_read_defect_data,
		  .flags = OPF_DATA_IN | OPF_CONFLICT_EA, .cdb_len = 10,
		  .usage = {0x37, 0, 0x1f, 0, 0, 0, 0, 0xff, 0xff, 0}},
	[0x41] = {.name = "WRITE SAME(10)", .fn = sbc_write_same,
		  .flags = OPF_DATA_OUT | RW_CONFLICT | OPF_WRITE |
			   OPF_NEEDS_READY,
		  .cdb_len = 10,
		  .usage = {0x41, 0xf8, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff,
			    0}},
	[0x42] = {.name = "UNMAP", .fn = sbc_unmap,
		  .flags = OPF_DATA_OUT | RW_CONFLICT | OPF_WRITE |
			   OPF_NEEDS_READY,
		  .cdb_len = 10,
		  .usage = {0x42, 0x01, 0, 0, 0, 0, 0x1f, 0xff, 0xff, 0}},
	[0x48] = {.name = "SANITIZE", .flags = OPF_SA, .cdb_len = 10,
		  .sub = sanitize_sa},
	[0x55] = {.name = "MODE SELECT(10)", .fn = spc_mode_select,
		  .flags = OPF_DATA_OUT | RW_CONFLICT, .cdb_len = 10,
		  .usage = {0x55, 0x11, 0, 0, 0, 0, 0, 0xff, 0xff, 0}},
	[0x56] = {.name = "RESERVE(10)", .fn = pr_reserve_spc2, .cdb_len = 10,
		  .flags = OPF_PR_IN_OUT,
		  .usage = {0x56, 0x12, 0, 0, 0, 0, 0, 0, 0, 0}},
	[0x57] = {.name = "RELEASE(10)", .fn = pr_release_spc2, .cdb_len = 10,
		  .flags = OPF_PR_IN_OUT | OPF_SPC2_OK,
		  .usage = {0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
	[0x5a] = {.name = "MODE SENSE(10)", .fn = spc_mode_sense,
		  .flags = OPF_DATA_IN | OPF_CONFLICT_EA, .cdb_len = 10,
		  .usage = {0x5a, 0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0}},
	[0x5e] = {.name = "PERSISTENT RESERVE IN", .flags = OPF_SA,
		  .cdb_len = 10, .sub = pr_in_sa},
	[0x5f] = {.name = "PERSISTENT RESERVE OUT", .flags = OPF_SA,
		  .cdb_len = 10, .sub = pr_out_sa},
	[0x83] = {.name = "EXTENDED COPY", .flags = OPF_SA, .cdb_len = 16,
		  .sub = xcopy_sa},
	[0x84] = {.name = "RECEIVE COPY RESULTS", .flags = OPF_SA,
		  .cdb_len = 16, .sub = rcr_sa},
	[0x88] = {.name = "READ(16)", .fn = sbc_read,
		  .flags = OPF_DATA_IN | OPF_CONFLICT_EA | OPF_NEEDS_READY,
		  .cdb_len = 16,
		  .usage = {0x88, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
			    0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0}},
	[0x89] = {.name = "COMPARE AND WRITE", .fn = sbc_compare_and_write,
		  .flags = OPF_DATA_OUT | RW_CONFLICT | OPF_WRITE |
			   OPF_NEEDS_READY,
		  .cdb_len = 16,
		  .usage = {0x89, 0xfa, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
			    0xff, 0, 0, 0, 0xff, 0x1f, 0}},
	[0x8a] = {.name = "WRITE(16)", .fn = sbc_write,
		  .flags = OPF_DATA_OUT | RW_CONFLICT | OPF_WRITE |
			   OPF_NEEDS_READY,
		  .cdb_len = 16,
		  .usage = {0x8a, 0xfa, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
			    0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0}},
	[0x8b] = {.name = "ORWRITE(16)", .fn = sbc_orwrite,
		  .flags = OPF_DATA_OUT | RW_CONFLICT | OPF_WRITE |
			   OPF_NEEDS_READY,
		  .cdb_len = 16,
		  .usage = {0x8b, 0xfa, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
			    0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0}},
	[0x8e] = {.name = "WRITE AND VERIFY(16)", .fn = sbc_write_verify,
		  .flags = OPF_DATA_OUT | RW_CONFLICT | OPF_WRITE |
			   OPF_NEEDS_READY,
		  .cdb_len = 16,
		  .usage = {0x8e, 0xf6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
			    0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0}},
	[0x8f] = {.name = "VERIFY(16)", .fn = sbc_verify,
		  .flags = OPF_DATA_OUT | OPF_CONFLICT_EA | OPF_NEEDS_READY,
		  .cdb_len = 16,
		  .usage = {0x8f, 0xf6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
			    0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0}},
	[0x90] = {.name = "PRE-FETCH(16)", .fn = sbc_prefetch,
		  .flags = OPF_CONFLICT_EA | OPF_NEEDS_READY, .cdb_len = 16,
		  .usage = {0x90, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
			    0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0}},
	[0x91] = {.name = "SYNCHRONIZE CACHE(16)", .fn = sbc_sync_cache,
		  .flags = RW_CONFLICT | OPF_NEEDS_READY, .cdb_len = 16,
		  .usage = {0x91, 0x06, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
			    0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0}},
	[0x93] = {.name = "WRITE SAME(16)", .fn = sbc_write_same,
		  .flags = OPF_DATA_OUT | RW_CONFLICT | OPF_WRITE |
			   OPF_NEEDS_READY,
		  .cdb_len = 16,
		  .usage = {0x93, 0xf9, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
			    0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0}},
	[0x9c] = {.name = "WRITE ATOMIC(16)", .fn = sbc_write_atomic,
		  .flags = OPF_DATA_OUT | RW_CONFLICT | OPF_WRITE |
			   OPF_NEEDS_READY,
		  .cdb_len = 16,
		  .usage = {0x9c, 0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
			    0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0}},
	[0x9e] = {.name = "SERVICE ACTION IN(16)", .flags = OPF_SA,
		  .cdb_len = 16, .sub = sa_in16},
	[0xa0] = {.name = "REPORT LUNS", .fn = spc_report_luns,
		  .flags = OPF_DATA_IN | OPF_NO_LU | OPF_SKIP_UA | OPF_SPC2_OK |
			   OPF_SANITIZE_OK,
		  .cdb_len = 12,
		  .usage = {0xa0, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0,
			    0}},
	[0xa3] = {.name = "MAINTENANCE IN", .flags = OPF_SA, .cdb_len = 12,
		  .sub = maint_in},
	[0xa8] = {.name = "READ(12)", .fn = sbc_read,
		  .flags = OPF_DATA_IN | OPF_CONFLICT_EA | OPF_NEEDS_READY,
		  .cdb_len = 12,
		  .usage = {0xa8, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
			    0xff, 0x1f, 0}},
	[0xaa] = {.name = "WRITE(12)", .fn = sbc_write,
		  .flags = OPF_DATA_OUT | RW_CONFLICT | OPF_WRITE |
			   OPF_NEEDS_READY,
		  .cdb_len = 12,
		  .usage = {0xaa, 0xfa, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
			    0xff, 0x1f, 0}},
	[0xae] = {.name = "WRITE AND VERIFY(12)", .fn = sbc_write_verify,
		  .flags = OPF_DATA_OUT | RW_CONFLICT | OPF_WRITE |
			   OPF_NEEDS_READY,
		  .cdb_len = 12,
		  .usage = {0xae, 0xf6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
			    0xff, 0x1f, 0}},
	[0xb7] = {.name = "READ DEFECT DATA(12)", .fn = sbc_read_defect_data,
		  .flags = OPF_DATA_IN | OPF_CONFLICT_EA, .cdb_len = 12,
		  .usage = {0xb7, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
			    0xff, 0, 0}},
	[0xaf] = {.name = "VERIFY(12)", .fn = sbc_verify,
		  .flags = OPF_DATA_OUT | OPF_CONFLICT_EA | OPF_NEEDS_READY,
		  .cdb_len = 12,
		  .usage = {0xaf, 0xf6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
			    0xff, 0x1f, 0}},
};

/* The CDB's service action field: byte 1 bits 4-0 for every opcode with a
 * sub-table here (SPC-5 4.2.5.2). */
const struct scsi_op *scsi_op_lookup(const uint8_t *cdb, uint8_t cdb_len,
				     bool *sa_unknown)
{
	const struct scsi_op *op = &scsi_ops[cdb[0]];
	*sa_unknown = false;
	if (!(op->flags & OPF_SA))
		return op->fn ? op : NULL;
	if (cdb_len < 2) {
		*sa_unknown = true;
		return NULL;
	}
	for (const struct scsi_op *s = op->sub; s->fn; s++)
		if (s->sa == (cdb[1] & 0x1f))
			return s;
	*sa_unknown = true;
	return NULL;
}

/* ---- transfer length from the CDB ---------------------------------------- */

int scsi_cdb_xfer(const uint8_t *cdb, uint8_t cdb_len, uint32_t block_size,
		  enum scsi_dir *dir, uint32_t *len)
{
	*dir = SCSI_DIR_NONE;
	*len = 0;
	if (!cdb || cdb_len < 6)
		return -EINVAL;
	bool sa_unknown;
	const struct scsi_op *op = scsi_op_lookup(cdb, cdb_len, &sa_unknown);
	if (!op || cdb_len < op->cdb_len)
		return -EINVAL;
	uint64_t n = 0;
	uint64_t bs = block_size ? block_size : 512;
	struct sbc_rw rw; /* the block count, as the handlers read it */
	switch (cdb[0]) {
	case 0x08: case 0x0a: /* READ/WRITE(6): 0 means 256 (SBC-4 5.11) */
	case 0x28: case 0x2a: case 0x2e:
	case 0xa8: case 0xaa: case 0xae:
	case 0x88: case 0x8a: case 0x8e: case 0x8b:
	case 0x9c: /* WRITE ATOMIC(16) */
		sbc_decode(cdb, &rw);
		n = rw.nblk * bs;
		break;
	case 0x37:
		n = get_be16(cdb + 7);
		break;
	case 0xb7:
		n = get_be32(cdb + 6);
		break;
	case 0x2f: case 0xaf: case 0x8f: { /* VERIFY: BYTCHK (SBC-4 5.32) */
		sbc_decode(cdb, &rw);
		uint8_t bytchk = (cdb[1] >> 1) & 3;
		n = bytchk == 1 ? rw.nblk * bs : bytchk == 3 ? bs : 0;
		break;
	}
	case 0x41: /* WRITE SAME(10) */
		n = bs;
		break;
	case 0x93: /* WRITE SAME(16): NDOB has no data-out */
		n = (cdb[1] & 0x01) ? 0 : bs;
		break;
	case 0x89: /* COMPARE AND WRITE: verify + write data */
		sbc_decode(cdb, &rw);
		n = 2 * rw.nblk * bs;
		break;
	case 0x42: case 0x48: case 0x55: case 0x5a: case 0x5e:
		n = get_be16(cdb + 7);
		break;
	case 0x15: case 0x1a: case 0x03:
		n = cdb[4];
		break;
	case 0x12:
		n = get_be16(cdb + 3);
		break;
	case 0x25:
		n = 8;
		break;
	case 0x5f:
		n = get_be32(cdb + 5);
		break;
	case 0x83: case 0x84: case 0x9e:
		n = get_be32(cdb + 10);
		break;
	case 0xa0: case 0xa3:
		n = get_be32(cdb + 6);
		break;
	default:
		n = 0;
	}
	if (n > UINT32_MAX)
		return -EINVAL;
	*len = (uint32_t)n;
	if (n)
		*dir = (op->flags & OPF_DATA_OUT) ? SCSI_DIR_WRITE
						  : SCSI_DIR_READ;
	return 0;
}

/* ---- target --------------------------------------------------------------- */

static void target_deliver(struct scsi_task *tk);

/* Delivers what was queued before this turn only: a done() that submits
 * again (a transport pipelining commands) queues for the next turn, so a
 * stream of synchronous commands cannot keep the loop from polling. */
static void target_idle_cb(uv_idle_t *h)
{
	struct scsi_target *t = h->data;
	TAILQ_HEAD(, scsi_task) now = TAILQ_HEAD_INITIALIZER(now);
	TAILQ_CONCAT(&now, &t->deferred, dlink);
	TAILQ_HEAD(, scsi_tmf_req) tmfs = TAILQ_HEAD_INITIALIZER(tmfs);
	TAILQ_CONCAT(&tmfs, &t->tmfs, link);
	struct scsi_cmd *busy = t->oom_head;
	t->oom_head = NULL;
	struct scsi_task *tk;
	while ((tk = TAILQ_FIRST(&now))) {
		TAILQ_REMOVE(&now, tk, dlink);
		target_deliver(tk);
	}
	while (busy) {
		struct scsi_cmd *c = busy;
		busy = c->priv_scsi;
		c->priv_scsi = NULL;
		c->done(c);
	}
	struct scsi_tmf_req *r;
	while ((r = TAILQ_FIRST(&tmfs))) {
		TAILQ_REMOVE(&tmfs, r, link);
		r->cb(r->arg, r->response);
		free(r);
	}
	if (TAILQ_EMPTY(&t->deferred) && TAILQ_EMPTY(&t->tmfs) && !t->oom_head)
		uv_idle_stop(&t->idle);
}

int scsi_target_create(uv_loop_t *loop, struct sds_pool *pool,
		       struct scsi_target **out)
{
	struct scsi_target *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->loop = loop;
	t->pool = pool;
	sds_pool_uuid(pool, t->pool_uuid);
	TAILQ_INIT(&t->lus);
	TAILQ_INIT(&t->deferred);
	TAILQ_INIT(&t->tmfs);
	/* a queue depth's worth of commands on a few LUs */
	freelist_init(&t->task_fl, sizeof(struct scsi_task), 512);
	uv_idle_init(loop, &t->idle);
	t->idle.data = t;
	*out = t;
	return 0;
}

static void target_idle_closed(uv_handle_t *h)
{
	struct scsi_target *t = h->data;
	freelist_drain(&t->task_fl);
	free(t);
}

void scsi_target_destroy(struct scsi_target *t)
{
	if (!t)
		return;
	/* Nothing may be pending: the transport waits for its commands. */
	free(t->nexus);
	t->closing = true;
	uv_close((uv_handle_t *)&t->idle, target_idle_closed);
}

/* ---- logical units ---------------------------------------------------------- */

static uint64_t fold64(const uint8_t *b)
{
	return get_be64(b) ^ get_be64(b + 8);
}

int scsi_lu_create(struct scsi_target *t, const char *vdisk,
		   struct scsi_lu **out)
{
	struct sds_vdisk_info info;
	int rc = sds_vdisk_stat(t->pool, vdisk, &info);
	if (rc)
		return rc;
	struct scsi_lu *lu = calloc(1, sizeof(*lu));
	if (!lu)
		return -ENOMEM;
	rc = sds_vdisk_open(t->pool, vdisk, &lu->vd);
	if (rc) {
		free(lu);
		return rc;
	}
	lu->t = t;
	str_copy(lu->name, vdisk, sizeof(lu->name));
	lu->vdisk_id = info.id;
	lu->size = sds_vdisk_size(lu->vd);
	lu->bs = sds_vdisk_sector_size(lu->vd);
	lu->nblocks = lu->size / lu->bs;
	lu->readonly = sds_vdisk_readonly(lu->vd);
	/* SPC-5 7.7.6.6.5: NAA IEEE Registered Extended: NAA 6, 24-bit
	 * company id, 36-bit vendor specific id, 64-bit extension. Stable
	 * across restarts: 36 bits of the pool's uuid, then 24 more bits of
	 * it and 40 bits of the vdisk id in the extension. */
	uint64_t u = fold64(t->pool_uuid);
	uint64_t hi = (6ull << 60) | ((uint64_t)CAIRN_IEEE_CID << 36) |
		      (u & 0xfffffffffull);
	uint64_t lo = ((u >> 36) & 0xffffffull) << 40 |
		      (info.id & 0xffffffffffull);
	put_be64(lu->naa, hi);
	put_be64(lu->naa + 8, lo);
	snprintf(lu->serial, sizeof(lu->serial), "%016llx%016llx",
		 (unsigned long long)get_be64(t->pool_uuid),
		 (unsigned long long)info.id);
	hmap_init(&lu->ua);
	TAILQ_INIT(&lu->tasks);
	LIST_INIT(&lu->pr.regs);
	LIST_INIT(&lu->copy_results);
	pr_store_load(lu);
	sanitize_lu_load(lu);
	/* SBC-4 7.5.5: the engine behaves like a volatile write cache. */
	lu->mode.wce = true;
	TAILQ_INSERT_TAIL(&t->lus, lu, link);
	*out = lu;
	return 0;
}

void scsi_lu_destroy(struct scsi_lu *lu)
{
	if (!lu)
		return;
	TAILQ_REMOVE(&lu->t->lus, lu, link);
	sanitize_lu_free(lu);
	pr_lu_free(lu);
	xcopy_lu_free(lu);
	hmap_free(&lu->ua);
	sds_vdisk_close(lu->vd);
	free(lu);
}

uint32_t scsi_lu_block_size(const struct scsi_lu *lu)
{
	return lu->bs;
}

/* ---- nexus registry and unit attentions (SAM-5 5.14) --------------------- */

void scsi_ua_raise(struct scsi_lu *lu, uint64_t nexus_id, enum scsi_ua ua)
{
	uint64_t bits = 0;
	if (!nexus_id)
		return;
	hmap_get(&lu->ua, nexus_id, &bits);
	bits |= 1ull << ua;
	if (hmap_put(&lu->ua, nexus_id, bits))
		log_warn("scsi", "no memory for a unit attention");
}

void scsi_ua_raise_all(struct scsi_lu *lu, uint64_t except_nexus_id,
		       enum scsi_ua ua)
{
	struct scsi_target *t = lu->t;
	for (unsigned i = 0; i < t->n_nexus; i++)
		if (t->nexus[i]->id != except_nexus_id)
			scsi_ua_raise(lu, t->nexus[i]->id, ua);
}

void scsi_nexus_register(struct scsi_target *t, struct scsi_nexus *n)
{
	if (t->n_nexus == t->cap_nexus) {
		unsigned cap = t->cap_nexus ? t->cap_nexus * 2 : 8;
		struct scsi_nexus **a = realloc(t->nexus, cap * sizeof(*a));
		if (!a) {
			log_error("scsi", "no memory to register a nexus");
			n->id = 0;
			return;
		}
		t->nexus = a;
		t->cap_nexus = cap;
	}
	n->id = ++t->next_nexus_id;
	t->nexus[t->n_nexus++] = n;
	/* SAM-5 5.14: a new I_T nexus sees POWER ON, RESET, OR BUS DEVICE
	 * RESET OCCURRED on every LU first. */
	struct scsi_lu *lu;
	TAILQ_FOREACH(lu, &t->lus, link)
		scsi_ua_raise(lu, n->id, SCSI_UA_POWER_ON);
}

void scsi_nexus_unregister(struct scsi_target *t, struct scsi_nexus *n)
{
	for (unsigned i = 0; i < t->n_nexus; i++) {
		if (t->nexus[i] == n) {
			t->nexus[i] = t->nexus[--t->n_nexus];
			break;
		}
	}
	struct scsi_lu *lu;
	TAILQ_FOREACH(lu, &t->lus, link) {
		hmap_del(&lu->ua, n->id);
		xcopy_nexus_gone(lu, n->id);
		pr_spc2_reset(lu, n->id);
	}
}

struct scsi_nexus *scsi_target_nexus_by_port(struct scsi_target *t,
					     const char *initiator_port,
					     const char *target_port)
{
	for (unsigned i = 0; i < t->n_nexus; i++)
		if (!strcmp(t->nexus[i]->initiator_port, initiator_port) &&
		    !strcmp(t->nexus[i]->target_port, target_port))
			return t->nexus[i];
	return NULL;
}

/* ---- tasks ------------------------------------------------------------------ */

static void tmf_finish_one(struct scsi_tmf_req *r)
{
	if (--r->pending == 0) {
		r->cb(r->arg, r->response);
		free(r);
	}
}

static void target_deliver(struct scsi_task *tk)
{
	struct scsi_cmd *c = tk->c;
	if (tk->on_lu)
		TAILQ_REMOVE(&tk->lu->tasks, tk, link);
	if (tk->aborted) {
		/* SAM-5 5.6: an aborted task ends with TASK ABORTED (the
		 * transport decides whether a status is sent at all). */
		c->status = SCSI_STATUS_TASK_ABORTED;
		c->sense_len = 0;
		c->data_in_len = 0;
	}
	if (c->data_in_len > c->data_in_cap)
		c->data_in_len = c->data_in_cap;
	struct scsi_tmf_wait *w = tk->waiters;
	free(tk->buf);
	free(tk->ctx);
	freelist_put(&tk->t->task_fl, tk);
	c->priv_scsi = NULL;
	c->done(c);
	while (w) {
		struct scsi_tmf_wait *next = w->next;
		tmf_finish_one(w->tmf);
		free(w);
		w = next;
	}
}

void scsi_task_done_later(struct scsi_task *tk)
{
	tk->completed = true;
	TAILQ_INSERT_TAIL(&tk->t->deferred, tk, dlink);
	uv_idle_start(&tk->t->idle, target_idle_cb);
}

void scsi_task_done(struct scsi_task *tk)
{
	if (tk->in_submit) {
		scsi_task_done_later(tk);
		return;
	}
	tk->completed = true;
	target_deliver(tk);
}

static struct scsi_lu *nexus_lu(const struct scsi_nexus *n, uint64_t lun)
{
	if (!n || !n->map)
		return NULL;
	for (unsigned i = 0; i < n->map->n; i++)
		if (n->map->e[i].lun == lun)
			return n->map->e[i].lu;
	return NULL;
}

/* The checks every command goes through before its handler, in SAM-5
 * 5.14 / SPC-5 order: LU, unit attention, opcode, CDB fields,
 * reservation, readiness, write protection. */
static void target_dispatch(struct scsi_task *tk)
{
	struct scsi_cmd *c = tk->c;
	struct scsi_lu *lu = tk->lu;
	if (c->cdb_len < 6 || c->cdb_len > SCSI_CDB_MAX) {
		scsi_task_check(tk, SK_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
		return;
	}
	bool sa_unknown;
	const struct scsi_op *op = scsi_op_lookup(c->cdb, c->cdb_len,
						  &sa_unknown);
	uint16_t flags = op ? op->flags : 0;
	if (!lu && !(flags & OPF_NO_LU)) {
		scsi_task_check(tk, SK_ILLEGAL_REQUEST, ASC_LU_NOT_SUPPORTED);
		return;
	}
	if (lu && !(flags & OPF_SKIP_UA) && spc_ua_pending(tk, true)) {
		scsi_task_done(tk);
		return;
	}
	if (!op) {
		if (sa_unknown) /* SPC-5 4.2.5.2: unsupported service action */
			scsi_task_bad_cdb(tk, 1, 4);
		else
			scsi_task_check(tk, SK_ILLEGAL_REQUEST,
					ASC_INVALID_OPCODE);
		return;
	}
	if (c->cdb_len < op->cdb_len) {
		scsi_task_check(tk, SK_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
		return;
	}
	/* Reserved bits (SPC-5 4.2.1): anything outside the usage data.
	 * The control byte's NACA (SAM-5 5.11) is unsupported: 0 in usage. */
	for (unsigned i = 1; i < op->cdb_len; i++) {
		uint8_t bad = c->cdb[i] & (uint8_t)~op->usage[i];
		if (bad) {
			int bit = 7;
			while (!(bad & (1u << bit)))
				bit--;
			scsi_task_bad_cdb(tk, (uint16_t)i, bit);
			return;
		}
	}
	if (lu && lu->san && !(flags & OPF_SANITIZE_OK)) {
		/* SBC-4 4.11.2 */
		sanitize_busy(tk);
		return;
	}
	if (lu && lu->san_failed && (flags & OPF_NEEDS_READY)) {
		/* SBC-4 4.11.3: medium access fails until a sanitize
		 * succeeds or EXIT FAILURE MODE */
		scsi_task_check(tk, SK_MEDIUM_ERROR, ASC_SANITIZE_FAILED);
		return;
	}
	if (lu && (pr_spc2_conflict(lu, c->nexus, flags) ||
		   (!(flags & OPF_PR_IN_OUT) &&
		    pr_conflict(lu, c->nexus, flags)))) {
		scsi_task_conflict(tk);
		return;
	}
	if (lu && (flags & OPF_NEEDS_READY) && lu->stopped) {
		/* SBC-4 4.20: stopped: NOT READY, INITIALIZING COMMAND
		 * REQUIRED (we answer with 04/02) */
		scsi_task_check(tk, SK_NOT_READY,
				ASC_LOGICAL_UNIT_NOT_READY_STOPPED);
		return;
	}
	tk->flags = flags;
	op->fn(tk);
}

void scsi_cmd_submit(struct scsi_target *t, struct scsi_cmd *c)
{
	c->status = SCSI_STATUS_GOOD;
	c->sense_len = 0;
	c->data_in_len = 0;
	c->xfer_len = 0;
	struct scsi_task *tk = freelist_zget(&t->task_fl);
	if (!tk) {
		/* No memory for a task: BUSY at the next loop turn, queued
		 * through priv_scsi (the initiator retries a BUSY). */
		c->status = SCSI_STATUS_BUSY;
		c->priv_scsi = t->oom_head;
		t->oom_head = c;
		uv_idle_start(&t->idle, target_idle_cb);
		return;
	}
	tk->c = c;
	tk->t = t;
	c->priv_scsi = tk;
	tk->lu = nexus_lu(c->nexus, c->lun);
	if (tk->lu) {
		TAILQ_INSERT_TAIL(&tk->lu->tasks, tk, link);
		tk->on_lu = true;
	}
	tk->in_submit = true;
	target_dispatch(tk);
	/* tk is still alive: a completion inside submit is only queued, and
	 * engine completions never run inside a submit. */
	tk->in_submit = false;
}

/* ---- task management (SAM-5 7) ------------------------------------------- */

static void tmf_wait_for(struct scsi_tmf_req *r, struct scsi_task *tk)
{
	struct scsi_tmf_wait *w = calloc(1, sizeof(*w));
	tk->aborted = true;
	if (!w)
		return; /* the TMF then completes without waiting for it */
	w->tmf = r;
	w->next = tk->waiters;
	tk->waiters = w;
	r->pending++;
	if (tk->cancel)
		tk->cancel(tk);
}

static unsigned tmf_abort_lu(struct scsi_tmf_req *r, struct scsi_lu *lu,
			     const struct scsi_nexus *n, bool by_tag,
			     uint64_t tag)
{
	unsigned found = 0;
	struct scsi_task *tk;
	TAILQ_FOREACH(tk, &lu->tasks, link) {
		if (n && tk->c->nexus != n)
			continue;
		if (by_tag && tk->c->tag != tag)
			continue;
		tmf_wait_for(r, tk);
		found++;
	}
	return found;
}

void scsi_lu_abort_tasks(struct scsi_lu *lu, const char *initiator_port,
			 const struct scsi_task *keep)
{
	struct scsi_task *tk;
	TAILQ_FOREACH(tk, &lu->tasks, link) {
		if (tk == keep || !tk->c->nexus)
			continue;
		if (initiator_port &&
		    strcmp(tk->c->nexus->initiator_port, initiator_port))
			continue;
		tk->aborted = true;
	}
}

void scsi_tmf(struct scsi_target *t, struct scsi_nexus *n, enum scsi_tmf fn,
	      uint64_t lun, uint64_t ref_tag, void (*cb)(void *arg, int response),
	      void *arg)
{
	struct scsi_tmf_req *r = calloc(1, sizeof(*r));
	if (!r) {
		cb(arg, SCSI_TMF_REJECTED);
		return;
	}
	r->cb = cb;
	r->arg = arg;
	r->response = SCSI_TMF_COMPLETE;
	r->pending = 1; /* held until the end of this function */
	struct scsi_lu *lu = nexus_lu(n, lun), *l;
	switch (fn) {
	case SCSI_TMF_ABORT_TASK:
		if (!lu)
			r->response = SCSI_TMF_NO_LUN;
		else if (!tmf_abort_lu(r, lu, n, true, ref_tag))
			r->response = SCSI_TMF_NO_TASK;
		break;
	case SCSI_TMF_ABORT_TASK_SET:
		if (!lu)
			r->response = SCSI_TMF_NO_LUN;
		else
			tmf_abort_lu(r, lu, n, false, 0);
		break;
	case SCSI_TMF_CLEAR_TASK_SET:
		if (!lu) {
			r->response = SCSI_TMF_NO_LUN;
			break;
		}
		tmf_abort_lu(r, lu, NULL, false, 0);
		/* SAM-5 7.4: other nexuses learn their tasks were cleared */
		scsi_ua_raise_all(lu, n ? n->id : 0,
				  SCSI_UA_COMMANDS_CLEARED);
		break;
	case SCSI_TMF_LUN_RESET:
		if (!lu) {
			r->response = SCSI_TMF_NO_LUN;
			break;
		}
		/* SAM-5 6.3.3 / 7.7: abort every task, unit attention
		 * 29h/03h for every nexus. Persistent reservations stay
		 * (SPC-5 5.14.2). */
		tmf_abort_lu(r, lu, NULL, false, 0);
		scsi_ua_raise_all(lu, 0, SCSI_UA_LUN_RESET);
		pr_spc2_reset(lu, 0); /* SPC-2 reservations do not survive */
		lu->stopped = false;
		break;
	case SCSI_TMF_TARGET_RESET:
		TAILQ_FOREACH(l, &t->lus, link) {
			tmf_abort_lu(r, l, NULL, false, 0);
			scsi_ua_raise_all(l, 0, SCSI_UA_TARGET_RESET);
			pr_spc2_reset(l, 0);
			l->stopped = false;
		}
		break;
	case SCSI_TMF_CLEAR_ACA:
	default:
		r->response = SCSI_TMF_NOT_SUPPORTED;
		break;
	}
	if (--r->pending == 0) {
		/* Nothing to wait for: answer at the next loop turn. */
		TAILQ_INSERT_TAIL(&t->tmfs, r, link);
		uv_idle_start(&t->idle, target_idle_cb);
	}
}
