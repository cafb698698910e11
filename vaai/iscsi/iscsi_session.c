/* iSCSI sessions (RFC 7143 § 4.4): the connections of one session, the
 * command window (§ 4.2.2.1), the I_T nexus the SCSI core knows the
 * session by, and session reinstatement (§ 6.3.5).
 *
 * ErrorRecoveryLevel is 0 and DefaultTime2Retain 0: a session ends when its
 * last connection does, with nothing kept for recovery. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iscsi_int.h"
#include "log.h"
#include "util.h"

struct iscsi_session *iscsi_session_find(struct iscsi_server *srv,
					 uint16_t tsih)
{
	struct iscsi_session *s;
	TAILQ_FOREACH(s, &srv->sessions, link)
	if (s->tsih == tsih && !s->closing)
		return s;
	return NULL;
}

void iscsi_session_close(struct iscsi_session *s)
{
	s->closing = true;
	struct iscsi_conn *c, *next;
	for (c = TAILQ_FIRST(&s->conns); c; c = next) {
		next = TAILQ_NEXT(c, sess_link);
		iscsi_conn_close(c, true);
	}
}

void iscsi_session_reinstate(struct iscsi_server *srv, const char *initiator,
			     const uint8_t isid[6], struct iscsi_tgt *tgt)
{
	struct iscsi_session *s;
	TAILQ_FOREACH(s, &srv->sessions, link)
	{
		if (s->closing || s->tgt != tgt || memcmp(s->isid, isid, 6) ||
		    strcasecmp(s->initiator, initiator))
			continue;
		log_info(ISCSI_LOG, "session tsih %u of %s reinstated",
			 (unsigned)s->tsih, s->initiator);
		iscsi_session_close(s);
	}
}

struct iscsi_session *iscsi_session_new(struct iscsi_server *srv,
					struct iscsi_login *l)
{
	struct iscsi_session *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->srv = srv;
	s->tgt = l->tgt;
	memcpy(s->isid, l->isid, 6);
	str_copy(s->initiator, l->initiator, sizeof(s->initiator));
	s->params = l->params;
	s->exp_cmdsn = l->cmdsn;
	s->max_cmdsn = l->cmdsn + ISCSI_QUEUE_DEPTH - 1;
	TAILQ_INIT(&s->conns);
	/* TSIH 0 is reserved (§ 11.12.6); skip ones in use. */
	do {
		if (++srv->next_tsih == 0)
			srv->next_tsih = 1;
	} while (iscsi_session_find(srv, srv->next_tsih));
	s->tsih = srv->next_tsih;
	if (s->tgt) {
		/* SPC-5 7.6.4.6 (iSCSI TransportID): initiator port name
		 * "<name>,i,0x<ISID>", target port "<name>,t,0x<TPGT>". */
		struct scsi_nexus *n = &s->nexus;
		snprintf(n->initiator_port, sizeof(n->initiator_port),
			 "%s,i,0x%02x%02x%02x%02x%02x%02x", s->initiator,
			 s->isid[0], s->isid[1], s->isid[2], s->isid[3],
			 s->isid[4], s->isid[5]);
		snprintf(n->target_port, sizeof(n->target_port), "%s,t,0x%04x",
			 s->tgt->cfg->name, ISCSI_TPGT);
		n->rel_target_port_id = ISCSI_TPGT;
		n->map = &s->tgt->map;
		scsi_nexus_register(srv->scsi, n);
		s->nexus_registered = true;
	}
	TAILQ_INSERT_TAIL(&srv->sessions, s, link);
	log_info(ISCSI_LOG, "session tsih %u: %s -> %s", (unsigned)s->tsih,
		 s->initiator, s->tgt ? s->tgt->cfg->name : "discovery");
	return s;
}

void iscsi_session_add_conn(struct iscsi_session *s, struct iscsi_conn *c)
{
	c->sess = s;
	TAILQ_INSERT_TAIL(&s->conns, c, sess_link);
	s->nconns++;
}

void iscsi_session_release_nexus(struct iscsi_session *s)
{
	if (!s->nexus_registered)
		return;
	s->nexus_registered = false;
	scsi_nexus_unregister(s->srv->scsi, &s->nexus);
}

void iscsi_session_remove_conn(struct iscsi_session *s, struct iscsi_conn *c)
{
	TAILQ_REMOVE(&s->conns, c, sess_link);
	c->sess = NULL;
	if (--s->nconns)
		return;
	log_info(ISCSI_LOG, "session tsih %u of %s ended", (unsigned)s->tsih,
		 s->initiator);
	iscsi_session_release_nexus(s);
	TAILQ_REMOVE(&s->srv->sessions, s, link);
	free(s);
}

/* § 4.2.2.1: "the target MUST silently ignore any non-immediate command
 * outside of this range or non-immediate duplicates within the range".
 * Commands are handled as they arrive: on one connection TCP keeps them in
 * order; across connections of a session we do not reorder (a gap just
 * moves ExpCmdSN past it). */
bool iscsi_session_cmdsn(struct iscsi_session *s, uint32_t cmdsn,
			 bool immediate)
{
	if (immediate)
		return true;
	/* The window is the one we announced, not what it could be now. */
	if (iscsi_sn_lt(cmdsn, s->exp_cmdsn) ||
	    iscsi_sn_lt(s->max_cmdsn, cmdsn))
		return false;
	s->exp_cmdsn = cmdsn + 1;
	return true;
}

/* The window closes as tasks pile up and never shrinks below what we
 * already announced (§ 4.2.2.1: MaxCmdSN does not decrease). */
uint32_t iscsi_session_max_cmdsn(struct iscsi_session *s)
{
	unsigned used = MIN(s->ntasks, ISCSI_QUEUE_DEPTH - 1);
	uint32_t m = s->exp_cmdsn + ISCSI_QUEUE_DEPTH - 1 - used;
	if (iscsi_sn_lt(s->max_cmdsn, m))
		s->max_cmdsn = m;
	return s->max_cmdsn;
}
