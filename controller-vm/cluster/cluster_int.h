/* Private to controller-vm/cluster/. */
#ifndef CAIRN_CLUSTER_INT_H
#define CAIRN_CLUSTER_INT_H

#include <cairn/cluster.h>
#include <raft.h>
#include <raft/uv.h>

#include "tls.h"

#define CLUSTER_SEEN_MAX 64

struct cluster_apply_result;
struct cluster_removal;

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
	/* The leader's view of which servers answered lately (libraft's
	 * recent_recv flag, reset every election timeout, smoothed over
	 * CLUSTER_ALIVE_MS), for the voter policy (cluster_voters.h);
	 * forgotten when this node stops leading. */
	struct {
		raft_id id;
		uint64_t seen; /* uv_now */
	} seen[CLUSTER_SEEN_MAX];
	json_t *admin; /* bootstrap: the first admin password hash */
	/* Removing nodes (the leader drives it from the map, one step per
	 * tick; docs/cluster.md) and the callers waiting for it. */
	bool removing;
	struct raft_change remove_change;
	struct raft_transfer transfer;
	struct raft_barrier leave_barrier;
	raft_index leave_index;
	unsigned leave_waits;
	struct cluster_removal *removals;
	/* This node was removed from the cluster (it applied its own
	 * node.leave, or saw itself leave the map). */
	bool removed, was_member;
	void (*stop_cb)(void *arg);
	void *stop_arg;
};

#endif
