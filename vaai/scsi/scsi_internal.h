/* SCSI target core, private: the target, its logical units, the task
 * (one per command) and the opcode dispatch table. One file per standard:
 *   scsi_target.c  targets, LUs, nexus registry, unit attentions, task set,
 *                  TMF, the dispatch table and scsi_cdb_xfer()
 *   sense.c        sense data (SPC-5 4.4)
 *   spc.c          SPC-5 primary commands
 *   vpd.c          INQUIRY VPD pages (SPC-5 7.7, SBC-4 6.6)
 *   sbc.c          SBC-4 block commands
 *   pr.c           persistent reservations (SPC-5 5.14, 6.15, 6.16)
 *   xcopy.c        EXTENDED COPY (LID1) and RECEIVE COPY RESULTS (SPC-5 6.6)
 *   sanitize.c     SANITIZE (SBC-4 5.30, 4.11)
 */
#ifndef CAIRN_SCSI_INTERNAL_H
#define CAIRN_SCSI_INTERNAL_H

#include <cairn/scsi.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "freelist.h"
#include "hmap.h"
#include "util.h"

/* ---- sense keys and additional sense codes (SPC-5 4.4, Annex D) -------- */
#define SK_NO_SENSE 0x0
#define SK_NOT_READY 0x2
#define SK_MEDIUM_ERROR 0x3
#define SK_HARDWARE_ERROR 0x4
#define SK_ILLEGAL_REQUEST 0x5
#define SK_UNIT_ATTENTION 0x6
#define SK_DATA_PROTECT 0x7
#define SK_COPY_ABORTED 0xa
#define SK_ABORTED_COMMAND 0xb
#define SK_MISCOMPARE 0xe

/* (ASC << 8) | ASCQ */
#define ASC_NONE 0x0000
#define ASC_UNREACHABLE_COPY_TARGET 0x0804
#define ASC_WRITE_ERROR 0x0c00
#define ASC_UNRECOVERED_READ_ERROR 0x1100
#define ASC_MISCOMPARE_DURING_VERIFY 0x1d00
#define ASC_PARAM_LIST_LENGTH_ERROR 0x1a00
#define ASC_INVALID_OPCODE 0x2000
#define ASC_LBA_OUT_OF_RANGE 0x2100
#define ASC_INVALID_FIELD_IN_CDB 0x2400
#define ASC_LU_NOT_SUPPORTED 0x2500
#define ASC_INVALID_FIELD_IN_PARAM 0x2600
#define ASC_INVALID_RELEASE_OF_PR 0x2604
#define ASC_TOO_MANY_SEGMENT_DESCRIPTORS 0x2608
#define ASC_UNSUPPORTED_SEGMENT_DESCRIPTOR 0x2609
#define ASC_UNSUPPORTED_TARGET_DESCRIPTOR 0x2607
#define ASC_TOO_MANY_TARGET_DESCRIPTORS 0x2606
#define ASC_WRITE_PROTECTED 0x2700
#define ASC_SPACE_ALLOC_FAILED_WP 0x2707
#define ASC_POWER_ON_OCCURRED 0x2900
#define ASC_TARGET_RESET_OCCURRED 0x2902
#define ASC_LUN_RESET_OCCURRED 0x2903
#define ASC_MODE_PARAMETERS_CHANGED 0x2a01
#define ASC_RESERVATIONS_PREEMPTED 0x2a03
#define ASC_RESERVATIONS_RELEASED 0x2a04
#define ASC_REGISTRATIONS_PREEMPTED 0x2a05
#define ASC_CAPACITY_CHANGED 0x2a09
#define ASC_SAVING_PARAMS_UNSUP 0x3900
#define ASC_REPORTED_LUNS_CHANGED 0x3f0e
#define ASC_INSUFFICIENT_REGISTRATION 0x5504
#define ASC_INTERNAL_TARGET_FAILURE 0x4400
#define ASC_COMMANDS_CLEARED_BY_ANOTHER 0x2f00
#define ASC_LOGICAL_UNIT_NOT_READY_STOPPED 0x0402
#define ASC_SANITIZE_IN_PROGRESS 0x041b
#define ASC_SANITIZE_FAILED 0x3103

/* ---- unit attention conditions, in reporting priority order ----------- */
enum scsi_ua {
	SCSI_UA_POWER_ON,
	SCSI_UA_TARGET_RESET,
	SCSI_UA_LUN_RESET,
	SCSI_UA_COMMANDS_CLEARED,
	SCSI_UA_RES_PREEMPTED,
	SCSI_UA_RES_RELEASED,
	SCSI_UA_REG_PREEMPTED,
	SCSI_UA_MODE_CHANGED,
	SCSI_UA_CAPACITY_CHANGED,
	SCSI_UA_LUNS_CHANGED,
	SCSI_UA_COUNT,
};

/* ---- persistent reservations (pr.c) ------------------------------------ */
#define PR_TYPE_WE 0x1
#define PR_TYPE_EA 0x3
#define PR_TYPE_WE_RO 0x5
#define PR_TYPE_EA_RO 0x6
#define PR_TYPE_WE_AR 0x7
#define PR_TYPE_EA_AR 0x8

#define PR_MAX_REGS 1024 /* per LU */

static inline bool pr_type_valid(uint8_t type)
{
	return type == PR_TYPE_WE || type == PR_TYPE_EA ||
	       type == PR_TYPE_WE_RO || type == PR_TYPE_EA_RO ||
	       type == PR_TYPE_WE_AR || type == PR_TYPE_EA_AR;
}

static inline bool pr_all_registrants(uint8_t type)
{
	return type == PR_TYPE_WE_AR || type == PR_TYPE_EA_AR;
}

struct scsi_pr_reg {
	LIST_ENTRY(scsi_pr_reg) link;
	uint64_t key;
	char initiator_port[SCSI_NAME_MAX + 32];
	char target_port[SCSI_NAME_MAX + 32];
	uint16_t rel_target_port_id;
};

struct scsi_pr {
	uint32_t generation;
	LIST_HEAD(, scsi_pr_reg) regs;
	unsigned nregs;
	/* The reservation: holder is the registration of the holder (for the
	 * all-registrants types, any registration is a holder). */
	bool reserved;
	uint8_t type;
	struct scsi_pr_reg *holder;
	/* SPC-2 reservation (RESERVE(6)/(10)): the holding nexus, 0 none */
	uint64_t spc2_holder;
	bool aptpl; /* SPC-5 5.14.5: kept in the vdisk (pr_store.c) */
};

/* ---- EXTENDED COPY results (xcopy.c) ----------------------------------- */
struct scsi_copy_result {
	LIST_ENTRY(scsi_copy_result) link;
	uint64_t nexus_id;
	uint8_t list_id;
	uint8_t status; /* COPY STATUS, SPC-5 6.18.3 */
	uint16_t segments_processed;
	uint64_t transfer_count; /* blocks */
};

/* ---- target, LU ---------------------------------------------------------- */
struct scsi_task;

struct scsi_target {
	uv_loop_t *loop;
	struct sds_pool *pool;
	uint8_t pool_uuid[16];
	TAILQ_HEAD(, scsi_lu) lus;
	struct scsi_nexus **nexus;
	unsigned n_nexus, cap_nexus;
	uint64_t next_nexus_id;
	/* Completions produced inside scsi_cmd_submit() wait here for the
	 * next loop turn (the interface promises done() never runs inside
	 * submit). */
	TAILQ_HEAD(, scsi_task) deferred;
	uv_idle_t idle;
	bool closing;
	TAILQ_HEAD(, scsi_tmf_req) tmfs;
	struct scsi_cmd *oom_head; /* BUSY answers owed, via priv_scsi */
	struct freelist task_fl;   /* struct scsi_task, recycled */
};

struct scsi_mode {
	bool wce;  /* caching page: write cache enabled */
	bool rcd;  /* caching page: read cache disable */
	bool swp;  /* control page: software write protect */
	uint8_t qerr;
	bool dexcpt; /* informational exceptions: disable exception control */
	uint8_t mrie;
};

struct scsi_lu {
	struct scsi_target *t;
	TAILQ_ENTRY(scsi_lu) link;
	struct sds_vdisk *vd;
	char name[SDS_NAME_MAX + 1];
	uint64_t vdisk_id;
	uint64_t size;    /* bytes */
	uint32_t bs;      /* logical block size */
	uint64_t nblocks; /* logical blocks */
	bool readonly;    /* snapshot: write protected */
	uint8_t naa[16];  /* NAA IEEE Registered Extended (type 6) */
	char serial[33];
	struct hmap ua; /* nexus id -> bitmask of pending enum scsi_ua */
	TAILQ_HEAD(, scsi_task) tasks;
	struct scsi_pr pr;
	struct scsi_mode mode;
	bool stopped; /* START STOP UNIT with START=0 */
	LIST_HEAD(, scsi_copy_result) copy_results;
	unsigned n_copy_results;
	struct scsi_sanitize *san; /* a SANITIZE in progress (sanitize.c) */
	bool san_failed;	   /* SBC-4 4.11.3: failure mode */
	bool san_ause;		   /* ... which EXIT FAILURE MODE may end */
};

/* ---- the task: one per command ----------------------------------------- */
struct scsi_op;

struct scsi_tmf_wait {
	struct scsi_tmf_wait *next;
	struct scsi_tmf_req *tmf;
};

struct scsi_tmf_req {
	TAILQ_ENTRY(scsi_tmf_req) link;
	unsigned pending;
	int response;
	void (*cb)(void *arg, int response);
	void *arg;
};

struct scsi_task {
	struct scsi_cmd *c;
	struct scsi_target *t;
	struct scsi_lu *lu; /* NULL when the LUN is not in the map */
	TAILQ_ENTRY(scsi_task) link;  /* lu->tasks */
	TAILQ_ENTRY(scsi_task) dlink; /* t->deferred */
	bool in_submit;
	bool completed;
	bool aborted;
	bool on_lu;
	struct scsi_tmf_wait *waiters;

	/* command state, for the handlers that go to the engine */
	struct sds_io io;
	void *buf; /* owned, freed at completion */
	uint64_t lba;
	uint64_t nblk;
	uint64_t done_blk;
	uint32_t flags;
	int phase;
	void *ctx; /* handler-private, freed at completion */
	/* continuation of an engine request (scsi_task_io) */
	void (*cont)(struct scsi_task *tk, int status);
	/* Set by a handler whose command only waits for work that goes on
	 * without it (SANITIZE): task management ends the command at once
	 * through it instead of waiting for the work. */
	void (*cancel)(struct scsi_task *tk);
};

/* A handler runs the command; it ends by calling scsi_task_done() (now or
 * from an engine completion). */
typedef void (*scsi_handler)(struct scsi_task *tk);

/* Dispatch flags */
#define OPF_DATA_IN (1u << 0)
#define OPF_DATA_OUT (1u << 1)
#define OPF_NO_LU (1u << 2)       /* runs for a LUN not in the map */
#define OPF_SKIP_UA (1u << 3)     /* does not report unit attentions */
#define OPF_CONFLICT_EA (1u << 4) /* conflicts with Exclusive Access */
#define OPF_CONFLICT_WE (1u << 5) /* conflicts with Write Exclusive too */
#define OPF_PR_IN_OUT (1u << 6)   /* the reservation code decides itself */
#define OPF_WRITE (1u << 7)       /* modifies the medium (write protect) */
#define OPF_NEEDS_READY (1u << 8) /* fails while stopped */
#define OPF_SA (1u << 9)          /* has a service action sub-table */
#define OPF_SPC2_OK (1u << 10)    /* allowed under another's RESERVE(6) */
#define OPF_SANITIZE_OK (1u << 11) /* runs while a SANITIZE is in progress */

struct scsi_op {
	const char *name;
	scsi_handler fn;
	uint16_t flags;
	uint8_t cdb_len;
	/* CDB usage data (SPC-5 6.35.3): the bits the device server looks
	 * at; byte 0 is the opcode. A bit set in a CDB but clear here is a
	 * reserved bit: INVALID FIELD IN CDB. */
	uint8_t usage[16];
	uint16_t sa; /* service action, when part of a sub-table */
	const struct scsi_op *sub; /* service action sub-table, ends with !fn */
};

extern const struct scsi_op scsi_ops[256];
const struct scsi_op *scsi_op_lookup(const uint8_t *cdb, uint8_t cdb_len,
				     bool *sa_unknown);

/* scsi_target.c */
void scsi_task_done(struct scsi_task *tk);
/* Completes at the next loop turn (from inside a walk of lu->tasks). */
void scsi_task_done_later(struct scsi_task *tk);
void scsi_ua_raise(struct scsi_lu *lu, uint64_t nexus_id, enum scsi_ua ua);
void scsi_ua_raise_all(struct scsi_lu *lu, uint64_t except_nexus_id,
		       enum scsi_ua ua);
/* Aborts the tasks of lu (all nexuses when n == NULL) except `keep`
 * (PREEMPT AND ABORT, SPC-5 5.14.11.2.6). */
void scsi_lu_abort_tasks(struct scsi_lu *lu, const char *initiator_port,
			 const struct scsi_task *keep);
struct scsi_nexus *scsi_target_nexus_by_port(struct scsi_target *t,
					     const char *initiator_port,
					     const char *target_port);

/* sense.c */
void scsi_sense(struct scsi_cmd *c, uint8_t key, uint16_t asc);
/* INVALID FIELD IN CDB / PARAMETER LIST with the sense-key specific field
 * pointer (SPC-5 4.4.2.4.2): byte, and bit (-1: no bit pointer). */
void scsi_sense_field(struct scsi_cmd *c, bool in_cdb, uint16_t byte, int bit);
void scsi_sense_info(struct scsi_cmd *c, uint8_t key, uint16_t asc,
		     uint64_t information);
void scsi_task_check(struct scsi_task *tk, uint8_t key, uint16_t asc);
void scsi_task_bad_cdb(struct scsi_task *tk, uint16_t byte, int bit);
void scsi_task_bad_param(struct scsi_task *tk, uint16_t byte, int bit);
void scsi_task_good(struct scsi_task *tk);
void scsi_task_conflict(struct scsi_task *tk);
/* Maps an engine status to sense data; write says which error class. */
void scsi_task_errno(struct scsi_task *tk, int status, bool write);
/* Copies produced data-in bytes, truncated to the allocation length and
 * to the buffer (data_in_len = min(alloc, cap, produced)). */
void scsi_task_data_in(struct scsi_task *tk, const void *data, size_t produced,
		       uint32_t alloc_len);

/* spc.c */
void spc_test_unit_ready(struct scsi_task *tk);
void spc_request_sense(struct scsi_task *tk);
void spc_inquiry(struct scsi_task *tk);
void spc_report_luns(struct scsi_task *tk);
void spc_mode_sense(struct scsi_task *tk);
void spc_mode_select(struct scsi_task *tk);
void spc_report_supported_opcodes(struct scsi_task *tk);
void spc_report_supported_tmf(struct scsi_task *tk);
bool spc_ua_pending(struct scsi_task *tk, bool clear);

/* vpd.c */
void vpd_inquiry(struct scsi_task *tk, uint8_t page, uint32_t alloc_len);
size_t vpd_designator_naa(const struct scsi_lu *lu, uint8_t *out);

/* sbc.c */
/* The LBA and the block count of a READ, WRITE, VERIFY, WRITE AND VERIFY,
 * ORWRITE, WRITE SAME, PRE-FETCH, SYNCHRONIZE CACHE, COMPARE AND WRITE or
 * WRITE ATOMIC CDB (6/10/12/16 bytes, by opcode group), for the handlers
 * and for scsi_cdb_xfer; the caller has checked the CDB's length. */
struct sbc_rw {
	uint64_t lba;
	uint64_t nblk;
	bool fua;
	uint8_t protect;   /* RDPROTECT / WRPROTECT / VRPROTECT */
	uint16_t len_byte; /* where the length field starts, for sense */
};
void sbc_decode(const uint8_t *cdb, struct sbc_rw *rw);
/* Submits tk->io (filled by the caller) to vd; cont runs on completion. */
void scsi_task_io(struct scsi_task *tk, struct sds_vdisk *vd,
		  void (*cont)(struct scsi_task *tk, int status));
void sbc_read(struct scsi_task *tk);
void sbc_write(struct scsi_task *tk);
void sbc_verify(struct scsi_task *tk);
void sbc_write_verify(struct scsi_task *tk);
void sbc_read_capacity10(struct scsi_task *tk);
void sbc_read_capacity16(struct scsi_task *tk);
void sbc_sync_cache(struct scsi_task *tk);
void sbc_start_stop(struct scsi_task *tk);
void sbc_write_same(struct scsi_task *tk);
void sbc_unmap(struct scsi_task *tk);
void sbc_get_lba_status(struct scsi_task *tk);
void sbc_compare_and_write(struct scsi_task *tk);
void sbc_prefetch(struct scsi_task *tk);
void sbc_write_atomic(struct scsi_task *tk);
void sbc_orwrite(struct scsi_task *tk);
void sbc_read_defect_data(struct scsi_task *tk);
/* Block limits shared by VPD B0 and the handlers. */
#define SBC_MAX_CAW_BLOCKS 255u
#define SBC_MAX_UNMAP_BLOCKS 0xffffffffu /* no limit */
#define SBC_MAX_UNMAP_DESC 256u
#define SBC_MAX_WS_BLOCKS (1u << 30)
#define SBC_MAX_ATOMIC_BYTES SDS_EXTENT_SIZE
#define SBC_MAX_XFER_BYTES (256u << 20) /* in SDS_MAX_IO pieces */

bool sbc_write_protected(struct scsi_task *tk);
void sbc_sanitize(struct scsi_task *tk);

/* sanitize.c */
struct scsi_sanitize;
/* NOT READY, SANITIZE IN PROGRESS with the progress indication. */
void sanitize_busy(struct scsi_task *tk);
uint16_t sanitize_progress(const struct scsi_lu *lu);
void sanitize_lu_free(struct scsi_lu *lu);
/* At LU creation: resumes a sanitize a restart interrupted, or restores
 * the failure state. */
void sanitize_lu_load(struct scsi_lu *lu);

/* pr.c */
void pr_in(struct scsi_task *tk);
void pr_out(struct scsi_task *tk);
/* Whether the reservation forbids this command to this nexus (SPC-5
 * 5.14.1, table 63; SBC-4 4.17, table 13). */
bool pr_conflict(struct scsi_lu *lu, const struct scsi_nexus *n,
		 uint16_t op_flags);
void pr_lu_free(struct scsi_lu *lu);
/* pr_store.c: the state with APTPL, as a vdisk attribute */
int pr_store_encode(const struct scsi_lu *lu, uint8_t **out, size_t *len);
int pr_store_decode(struct scsi_lu *lu, const uint8_t *d, size_t len);
int pr_store_save(struct scsi_lu *lu);  /* durable, or -errno */
void pr_store_load(struct scsi_lu *lu); /* at LU creation */
/* SPC-2 RESERVE / RELEASE (6) and (10) */
void pr_reserve_spc2(struct scsi_task *tk);
void pr_release_spc2(struct scsi_task *tk);
bool pr_spc2_conflict(struct scsi_lu *lu, const struct scsi_nexus *n,
		      uint16_t op_flags);
void pr_spc2_reset(struct scsi_lu *lu, uint64_t nexus_id);

/* xcopy.c */
void xcopy_extended_copy(struct scsi_task *tk);
void xcopy_receive_copy_results(struct scsi_task *tk);
void xcopy_lu_free(struct scsi_lu *lu);
void xcopy_nexus_gone(struct scsi_lu *lu, uint64_t nexus_id);
#define XCOPY_MAX_TARGET_DESC 2u
#define XCOPY_MAX_SEGMENT_DESC 64u
#define XCOPY_MAX_SEGMENT_BYTES (256u << 20) /* per segment, bytes */
#define XCOPY_MAX_INLINE 0

static inline uint64_t scsi_nexus_id(const struct scsi_task *tk)
{
	return tk->c->nexus ? tk->c->nexus->id : 0;
}

#endif
