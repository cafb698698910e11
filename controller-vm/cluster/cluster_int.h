/* Private to controller-vm/cluster/. */
#ifndef CAIRN_CLUSTER_INT_H
#define CAIRN_CLUSTER_INT_H

#include <cairn/cluster.h>
#include <raft.h>
#include <raft/uv.h>

#include "tls.h"

struct cluster_apply_result;

struct cluster {
	uv_loop_t *loop;
	struct cluster_config cfg;
	struct raft raft;
	struct raft_io io;
	struct raft_uv_transport transport;
	bool transport_ready;
	struct raft_fsm fsm;
	struct tls_ctx *tls;
	json_t *map;
	struct cluster_apply_result *last_result;
	uv_timer_t tick;
	bool registering, promoting, closing;
	struct raft_change promote;
	void (*stop_cb)(void *arg);
	void *stop_arg;
};

#endif
