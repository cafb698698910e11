/* Target-initiated NOP-In (RFC 7143 § 11.19, § 7.1.2): a connection in the
 * full feature phase that has been silent for nop_interval_ms gets a
 * NOP-In with a Target Transfer Tag of ours (not 0xffffffff), which the
 * initiator must echo in a NOP-Out (§ 11.18: ITT 0xffffffff, the same
 * TTT). No echo within nop_timeout_ms: the initiator is gone or stuck, and
 * the connection is closed as a connection loss (its tasks end with it at
 * ErrorRecoveryLevel 0), so a dead peer does not hold its session, its
 * reservations or its commands' buffers until TCP gives up.
 *
 * One timer per connection, armed for the next deadline only; reads just
 * note the time (c->last_rx), so busy connections cost nothing. */
#include <stdlib.h>

#include "iscsi_int.h"
#include "log.h"
#include "util.h"

static void iscsi_nop_timer_closed(uv_handle_t *h)
{
	free(h);
}

static void iscsi_nop_ping(struct iscsi_conn *c, uint64_t now)
{
	struct iscsi_out *o = iscsi_out_new(c, ISCSI_OP_NOP_IN,
					    ISCSI_FLAG_FINAL, NULL, 0, false);
	if (!o)
		return;
	c->nop_ttt = iscsi_conn_new_ttt(c);
	/* LUN 0, ITT reserved, our TTT; StatSN not advanced (§ 11.19.3). */
	put_be32(o->hdr + 16, ISCSI_RSVD_TAG);
	put_be32(o->hdr + 20, c->nop_ttt);
	c->nop_pending = true;
	c->nop_sent = now;
	iscsi_conn_queue(c, o, false);
}

static void iscsi_nop_tick(uv_timer_t *t)
{
	struct iscsi_conn *c = t->data;
	const struct iscsi_config *cfg = c->srv->cfg;
	uint64_t now = uv_now(c->srv->loop);
	if (c->closing)
		return;
	if (c->nop_pending) {
		if (now - c->nop_sent >= cfg->nop_timeout_ms) {
			log_info(ISCSI_LOG,
				 "conn %llu %s: no answer to NOP-In in %u ms: "
				 "closing",
				 (unsigned long long)c->base.id, c->peer,
				 cfg->nop_timeout_ms);
			iscsi_conn_close(c, true);
			return;
		}
		uv_timer_start(t, iscsi_nop_tick,
			       c->nop_sent + cfg->nop_timeout_ms - now, 0);
		return;
	}
	uint64_t idle = now - c->last_rx;
	if (idle < cfg->nop_interval_ms) {
		uv_timer_start(t, iscsi_nop_tick, cfg->nop_interval_ms - idle,
			       0);
		return;
	}
	iscsi_nop_ping(c, now);
	uv_timer_start(t, iscsi_nop_tick, cfg->nop_timeout_ms, 0);
}

void iscsi_nop_start(struct iscsi_conn *c)
{
	const struct iscsi_config *cfg = c->srv->cfg;
	if (!cfg->nop_interval_ms || c->nop_timer)
		return;
	uv_timer_t *t = malloc(sizeof(*t));
	if (!t)
		return; /* no pings: TCP keepalive is the fallback */
	uv_timer_init(c->srv->loop, t);
	t->data = c;
	c->nop_timer = t;
	c->last_rx = uv_now(c->srv->loop);
	uv_timer_start(t, iscsi_nop_tick, cfg->nop_interval_ms, 0);
}

void iscsi_nop_answer(struct iscsi_conn *c, uint32_t ttt)
{
	if (!c->nop_pending || ttt != c->nop_ttt)
		return; /* an answer to an older ping, or not ours */
	c->nop_pending = false;
	if (c->nop_timer)
		uv_timer_start(c->nop_timer, iscsi_nop_tick,
			       c->srv->cfg->nop_interval_ms, 0);
}

void iscsi_nop_stop(struct iscsi_conn *c)
{
	if (!c->nop_timer)
		return;
	uv_close((uv_handle_t *)c->nop_timer, iscsi_nop_timer_closed);
	c->nop_timer = NULL;
}
