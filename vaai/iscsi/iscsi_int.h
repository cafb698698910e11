/* iSCSI target internals, shared by the sources in vaai/iscsi/ only.
 *
 *   iscsi_server.c   listener, targets and their LUNs, shutdown
 *   iscsi_conn.c     one TCP connection: PDU framing, digests, output
 *   iscsi_login.c    login: security, operational, full feature stages
 *   iscsi_session.c  sessions, connections of a session, CmdSN window
 *   iscsi_scsi.c     full feature phase: SCSI commands, Data-Out / R2T /
 *                    Data-In, task management, NOP, Text, Logout
 *   iscsi_nop.c      target-initiated NOP-In pings, dead initiators
 *   iscsi_pdu.c, iscsi_keys.c, iscsi_chap.c, iscsi_config.c: pure
 *                    (iscsi_proto.h)
 *
 * Threading: one uv loop (the pool's); no locks. A connection stages
 * whole PDUs in its read buffer and handles them in order; responses are
 * queued and written once per loop turn from the server's uv_prepare, as
 * the NBD server does (sds/nbd/nbd_conn.c). */
#ifndef CAIRN_ISCSI_INT_H
#define CAIRN_ISCSI_INT_H

#include <cairn/iscsi.h>
#include <cairn/scsi.h>
#include <cairn/sds.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <uv.h>

#include "freelist.h"
#include "iscsi_proto.h"
#include "srv.h"

#define ISCSI_LOG "iscsi"
#define ISCSI_TPGT 1 /* our one target portal group */
#define ISCSI_MAX_RECV_DSL                                                     \
	(256u << 10)	      /* MaxRecvDataSegmentLength we declare */
#define ISCSI_LOGIN_DSL 8192u /* § 13.12: during login */
#define ISCSI_LOGIN_TEXT_MAX (64u << 10) /* login text over C-bit PDUs */
#define ISCSI_QUEUE_DEPTH 128u		 /* CmdSN window per session */
/* Largest Expected Data Transfer Length: the SCSI core's MAXIMUM TRANSFER
 * LENGTH (256 MiB, Block Limits VPD); scsi.h does not export it. */
#define ISCSI_MAX_XFER (256u << 20)
#define ISCSI_SESSION_BYTES (512u << 20) /* data buffers per session */
#define ISCSI_MAX_R2T 4			 /* MaxOutstandingR2T we offer */
#define ISCSI_OUT_BATCH 128		 /* PDUs gathered into one write */
#define ISCSI_OUT_PAUSE 4096		 /* unsent PDUs before reading pauses */
#define ISCSI_SHUTDOWN_GRACE_MS 5000
#define ISCSI_IO_ALIGN 4096u
#define ISCSI_OUT_SMALL 128u /* copied data that fits a pooled PDU */

struct iscsi_conn;
struct iscsi_session;
struct iscsi_task;
struct iscsi_out;
TAILQ_HEAD(iscsi_connq, iscsi_conn);
TAILQ_HEAD(iscsi_sessq, iscsi_session);
TAILQ_HEAD(iscsi_taskq, iscsi_task);
TAILQ_HEAD(iscsi_outq, iscsi_out);

/* A configured target with its logical units. */
struct iscsi_tgt {
	const struct iscsi_cfg_target *cfg;
	struct scsi_lun_map map;
};

struct iscsi_server {
	struct srv net; /* listener, connections, flush, shutdown (lib/srv) */
	uv_loop_t *loop;
	struct sds_pool *pool;
	struct iscsi_config *cfg;
	struct scsi_target *scsi;
	struct iscsi_tgt *tgts;
	unsigned ntgts;
	struct iscsi_limits lim;
	uint16_t next_tsih;
	struct iscsi_sessq sessions;
	/* Per-command objects, recycled (lib/freelist.h). */
	struct freelist task_fl, out_fl, batch_fl;
	struct bufpool bufs; /* task data buffers, ISCSI_IO_ALIGN */
};

struct iscsi_session {
	struct iscsi_server *srv;
	TAILQ_ENTRY(iscsi_session) link;
	struct iscsi_tgt *tgt; /* NULL: discovery */
	uint8_t isid[6];
	uint16_t tsih;
	char initiator[ISCSI_NAME_MAX + 1];
	struct iscsi_params params;
	uint32_t exp_cmdsn, max_cmdsn;
	struct iscsi_connq conns;
	unsigned nconns;
	unsigned ntasks; /* tasks of every connection */
	size_t nbytes;	 /* their data buffers */
	struct scsi_nexus nexus;
	bool nexus_registered;
	bool closing;
};

enum iscsi_conn_state {
	ISCSI_CONN_LOGIN,
	ISCSI_CONN_FFP,
	ISCSI_CONN_LOGOUT, /* logout received: finishing tasks */
	ISCSI_CONN_CLOSED,
};

/* Login progress of one connection (iscsi_login.c). */
struct iscsi_login {
	bool started; /* first Login Request seen */
	uint8_t isid[6];
	uint16_t tsih;
	uint16_t cid;
	uint32_t itt;
	uint32_t cmdsn;
	uint8_t csg;
	bool discovery;
	struct iscsi_tgt *tgt;
	char initiator[ISCSI_NAME_MAX + 1];
	bool auth_required, auth_method_chosen, auth_done;
	bool chap;
	struct iscsi_chap chap_state;
	bool sent_tpgt, sent_mrdsl;
	struct iscsi_params params;
	char *text; /* accumulated over C-bit PDUs */
	size_t text_len;
};

struct iscsi_conn {
	struct srv_conn base; /* in the server's list; base.id for logs */
	struct iscsi_server *srv;
	uv_tcp_t tcp;
	TAILQ_ENTRY(iscsi_conn) sess_link; /* session's list */
	struct iscsi_session *sess;
	uint16_t cid;
	char peer[64];
	char local[64]; /* our address as the initiator reached it */
	enum iscsi_conn_state state;
	struct iscsi_login login;

	uint32_t stat_sn;
	bool hdigest, ddigest;
	uint32_t max_recv_dsl; /* what we accept now */
	uint32_t max_send_dsl; /* what the initiator accepts */

	/* Input: bytes [rpos, wpos) of rbuf are unparsed. */
	uint8_t *rbuf;
	size_t rpos, wpos, rcap;

	struct iscsi_outq outq;
	unsigned nout;	   /* queued, not yet handed to libuv */
	unsigned nwriting; /* handed to libuv */

	struct iscsi_taskq tasks;
	unsigned nio; /* commands and TMFs inside the SCSI core */
	uint32_t next_ttt;
	uint32_t logout_itt;
	uint8_t logout_reason;
	bool logout_session;

	/* A Text Response longer than max_send_dsl, sent in pieces: the rest
	 * goes when the initiator asks with text_ttt (§ 11.10.4, 11.11). */
	char *text_rsp;
	size_t text_len, text_off;
	uint32_t text_itt, text_ttt;

	/* iscsi_nop.c */
	uv_timer_t *nop_timer;
	uint64_t last_rx; /* loop time of the last read */
	uint64_t nop_sent;
	uint32_t nop_ttt;
	bool nop_pending;

	bool reading, in_process, closing, hard, handle_closing;
	bool close_after_send; /* a login failure or logout: close once sent */
};

struct iscsi_task {
	struct scsi_cmd cmd;
	struct iscsi_server *srv;
	struct iscsi_conn *conn;
	TAILQ_ENTRY(iscsi_task) link;
	unsigned refs; /* the connection's list + PDUs still being written */
	uint32_t itt;
	uint32_t cmdsn;
	uint32_t edtl;
	uint32_t cdb_xfer; /* bytes the CDB asks for (scsi_cdb_xfer) */
	bool read, write;
	bool listed;	    /* in conn->tasks */
	bool submitted;	    /* inside the SCSI core */
	bool aborted;	    /* by task management: no response */
	uint8_t *buf;	    /* data-out, edtl bytes */
	uint8_t *in;	    /* data-in, edtl bytes */
	size_t bytes;	    /* counted in session nbytes */
	uint32_t got;	    /* data-out bytes received */
	uint32_t unsol_end; /* unsolicited data ends here */
	uint32_t r2t_next;  /* next offset to solicit */
	unsigned r2t_out;   /* R2Ts outstanding */
	uint32_t r2tsn;
	/* § 11.7.5: DataSN counts the Data-Out PDUs of each sequence, the
	 * unsolicited one and one per R2T; with DataPDUInOrder=Yes offsets
	 * must follow each other too. */
	uint32_t unsol_next, unsol_datasn;
	struct iscsi_r2t {
		bool used;
		uint32_t ttt, off, len, got, datasn;
	} r2t[ISCSI_MAX_R2T];
};

/* One PDU on its way out. */
struct iscsi_out {
	TAILQ_ENTRY(iscsi_out) link;
	uint8_t hdr[ISCSI_BHS_SIZE + ISCSI_DIGEST_SIZE];
	const uint8_t *data;
	uint32_t dlen;
	uint8_t tail[3 + ISCSI_DIGEST_SIZE]; /* padding, data digest */
	uint8_t hlen, tlen; /* header and tail bytes: digests fixed at queue
			     * time (the final Login Response goes out
			     * without digests, the next PDU with them) */
	struct iscsi_task *task; /* holds a reference while written */
	bool stat;		 /* carries a StatSN: set at queue time */
	bool pooled;		 /* from srv->out_fl (own[] of OUT_SMALL) */
	uint8_t own[];		 /* data copied with the PDU */
};

/* iscsi_server.c */
struct iscsi_tgt *iscsi_server_find_target(struct iscsi_server *srv,
					   const char *name);

/* iscsi_conn.c */
/* lib/srv ops (srv.h) */
int iscsi_conn_accept(struct srv *net);
void iscsi_conn_flush_cb(struct srv_conn *base);
void iscsi_conn_shutdown(struct srv_conn *base, bool grace_over);
void iscsi_conn_pools_init(struct iscsi_server *srv);
void iscsi_conn_pools_drain(struct iscsi_server *srv);
/* A target PDU with `dlen` bytes of data: copied when own, else
 * referenced until written (task data). NULL on out of memory (the
 * connection is then closing). */
struct iscsi_out *iscsi_out_new(struct iscsi_conn *c, uint8_t opcode,
				uint8_t flags, const void *data, uint32_t dlen,
				bool copy);
/* Fills StatSN (if stat: then increments it), ExpCmdSN, MaxCmdSN and the
 * digests, and queues the PDU for the next flush. */
void iscsi_conn_queue(struct iscsi_conn *c, struct iscsi_out *o, bool stat);
void iscsi_conn_flush(struct iscsi_conn *c);
void iscsi_conn_close(struct iscsi_conn *c, bool hard);
/* Reject PDU (§ 11.17) carrying the offending header. */
void iscsi_conn_reject(struct iscsi_conn *c, const uint8_t *bhs,
		       uint8_t reason);
/* Commands or TMFs returned from the core / tasks freed: resume or finish
 * closing. */
void iscsi_conn_io_done(struct iscsi_conn *c);
void iscsi_conn_task_put(struct iscsi_task *t);
/* A target transfer tag of this connection's, never the reserved one. */
uint32_t iscsi_conn_new_ttt(struct iscsi_conn *c);

/* iscsi_nop.c */
void iscsi_nop_start(struct iscsi_conn *c); /* full feature phase begins */
void iscsi_nop_answer(struct iscsi_conn *c, uint32_t ttt);
void iscsi_nop_stop(struct iscsi_conn *c);

/* iscsi_login.c */
void iscsi_login_pdu(struct iscsi_conn *c, const struct iscsi_bhs *h,
		     uint8_t *data, uint32_t dlen);
void iscsi_login_free(struct iscsi_login *l);

/* iscsi_session.c */
/* Finds a session by TSIH for a connection joining it. */
struct iscsi_session *iscsi_session_find(struct iscsi_server *srv,
					 uint16_t tsih);
/* Ends any session with the same initiator, ISID and target (§ 6.3.5
 * session reinstatement). */
void iscsi_session_reinstate(struct iscsi_server *srv, const char *initiator,
			     const uint8_t isid[6], struct iscsi_tgt *tgt);
struct iscsi_session *iscsi_session_new(struct iscsi_server *srv,
					struct iscsi_login *l);
void iscsi_session_add_conn(struct iscsi_session *s, struct iscsi_conn *c);
void iscsi_session_remove_conn(struct iscsi_session *s, struct iscsi_conn *c);
/* The I_T nexus ends (SPC-2 reservations and unit attentions with it). */
void iscsi_session_release_nexus(struct iscsi_session *s);
/* § 4.2.2.1: whether a non-immediate command's CmdSN is acceptable; it
 * then advances ExpCmdSN. */
bool iscsi_session_cmdsn(struct iscsi_session *s, uint32_t cmdsn,
			 bool immediate);
uint32_t iscsi_session_max_cmdsn(struct iscsi_session *s);
void iscsi_session_close(struct iscsi_session *s);

/* iscsi_scsi.c */
void iscsi_scsi_pdu(struct iscsi_conn *c, const struct iscsi_bhs *h,
		    const uint8_t *ahs, size_t ahs_len, uint8_t *data,
		    uint32_t dlen);
/* The data digest of a Data-Out or immediate data was wrong: the PDU is
 * rejected (§ 7.8). */
void iscsi_scsi_digest_error(struct iscsi_conn *c, const struct iscsi_bhs *h);
/* Frees what is left of a long Text Response (connection gone). */
void iscsi_scsi_text_drop(struct iscsi_conn *c);
void iscsi_scsi_logout_check(struct iscsi_conn *c);
/* Frees tasks not yet in the SCSI core (connection closing). */
void iscsi_scsi_drop_tasks(struct iscsi_conn *c);

#endif
