/* SCSI target core (vaai/scsi/): logical units backed by sds vdisks and
 * the SPC-5 / SBC-4 command set, dispatched from one table indexed by
 * opcode. Transport independent: the iSCSI target (vaai/iscsi/) is one
 * transport; anything that can carry a CDB, its data and a status can be
 * another.
 *
 * Threading: everything runs on the loop thread that owns the sds pool;
 * completions are never delivered from inside scsi_cmd_submit().
 */
#ifndef CAIRN_SCSI_H
#define CAIRN_SCSI_H

#include <cairn/sds.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#define SCSI_SENSE_MAX 96 /* fixed or descriptor format sense data */
#define SCSI_CDB_MAX 32
#define SCSI_NAME_MAX 256 /* iSCSI names are at most 223 bytes */

/* SAM-5 status codes */
#define SCSI_STATUS_GOOD 0x00
#define SCSI_STATUS_CHECK_CONDITION 0x02
#define SCSI_STATUS_CONDITION_MET 0x04
#define SCSI_STATUS_BUSY 0x08
#define SCSI_STATUS_RESERVATION_CONFLICT 0x18
#define SCSI_STATUS_TASK_SET_FULL 0x28
#define SCSI_STATUS_TASK_ABORTED 0x40

struct scsi_target;
struct scsi_lu;

/* The LUNs a nexus may address: the target's LUN map after its ACLs. The
 * transport owns it; it must outlive the nexus. XCOPY resolves copy
 * targets only through this map (the class of CVE-2020-28374). */
struct scsi_lun_map {
	unsigned n;
	struct scsi_lun_map_entry {
		uint64_t lun;
		struct scsi_lu *lu;
	} *e;
};

/* An I_T nexus (SAM-5 4.6): persistent reservations key on it. For iSCSI
 * the initiator port is "<initiator name>,i,0x<ISID>" and the target port
 * "<target name>,t,0x<TPGT>" (RFC 7143 10.?/SPC-5 7.6.4.6). */
struct scsi_nexus {
	char initiator_port[SCSI_NAME_MAX + 32];
	char target_port[SCSI_NAME_MAX + 32];
	uint16_t rel_target_port_id;
	const struct scsi_lun_map *map;
	uint64_t id; /* unique per nexus, assigned by scsi_nexus_register */
};

enum scsi_dir { SCSI_DIR_NONE, SCSI_DIR_READ, SCSI_DIR_WRITE };

struct scsi_cmd {
	/* set by the transport */
	struct scsi_nexus *nexus;
	uint64_t lun;
	uint8_t cdb[SCSI_CDB_MAX];
	uint8_t cdb_len;
	uint64_t tag;          /* initiator task tag, for task management */
	uint8_t task_attr;     /* SAM-5 task attribute: 0 simple, 1 head, 2 ordered, 4 ACA */
	/* Data-out (write direction): every byte the initiator sent, already
	 * received. Data-in (read direction): a buffer of data_in_cap bytes
	 * (the transport's expected transfer length), 4096-byte aligned. */
	uint8_t *data_out;
	uint32_t data_out_len;
	uint8_t *data_in;
	uint32_t data_in_cap;
	void (*done)(struct scsi_cmd *c);
	void *priv;

	/* set by the SCSI layer before done() */
	uint32_t data_in_len; /* valid bytes in data_in (<= data_in_cap) */
	/* Bytes the command itself would move (from its CDB); the transport
	 * computes residual overflow / underflow from it. */
	uint32_t xfer_len;
	uint8_t status;
	uint8_t sense[SCSI_SENSE_MAX];
	uint8_t sense_len;

	/* private to the SCSI layer */
	void *priv_scsi;
};

/* What the CDB says about data transfer, before any data moves: the
 * transport sizes its buffers and R2Ts from it and checks the initiator's
 * expected length against it. Returns 0, or -EINVAL for an unknown opcode
 * or a malformed CDB (submit anyway: the command then fails with the right
 * sense data). */
int scsi_cdb_xfer(const uint8_t *cdb, uint8_t cdb_len, uint32_t block_size,
		  enum scsi_dir *dir, uint32_t *len);

int scsi_target_create(uv_loop_t *loop, struct sds_pool *pool,
		       struct scsi_target **out);
/* Every LU must be removed first. */
void scsi_target_destroy(struct scsi_target *t);

/* Opens the vdisk and makes it a logical unit of the target. */
int scsi_lu_create(struct scsi_target *t, const char *vdisk,
		   struct scsi_lu **out);
void scsi_lu_destroy(struct scsi_lu *lu);
uint32_t scsi_lu_block_size(const struct scsi_lu *lu);

/* A nexus exists from login to logout; the target gives it its id and
 * raises the unit attentions a new nexus must see. */
void scsi_nexus_register(struct scsi_target *t, struct scsi_nexus *n);
void scsi_nexus_unregister(struct scsi_target *t, struct scsi_nexus *n);

void scsi_cmd_submit(struct scsi_target *t, struct scsi_cmd *c);

/* Task management (SAM-5 7): the callback runs once every affected command
 * has completed (commands already in the engine are not interrupted; their
 * done() still runs, with status TASK ABORTED where SAM-5 says so).
 * Returns a SAM-5 service response through cb. */
enum scsi_tmf {
	SCSI_TMF_ABORT_TASK,
	SCSI_TMF_ABORT_TASK_SET,
	SCSI_TMF_CLEAR_TASK_SET,
	SCSI_TMF_LUN_RESET,
	SCSI_TMF_TARGET_RESET,
	SCSI_TMF_CLEAR_ACA,
};
#define SCSI_TMF_COMPLETE 0
#define SCSI_TMF_NO_TASK 1
#define SCSI_TMF_NO_LUN 2
#define SCSI_TMF_NOT_SUPPORTED 5
#define SCSI_TMF_REJECTED 255
void scsi_tmf(struct scsi_target *t, struct scsi_nexus *n, enum scsi_tmf fn,
	      uint64_t lun, uint64_t ref_tag, void (*cb)(void *arg, int response),
	      void *arg);

#endif
