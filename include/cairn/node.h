/* A cluster node as cairnd runs it: state directory, PKI, cluster (Raft)
 * and management API (controller-vm/node/node.c; docs/cluster.md). */
#ifndef CAIRN_NODE_H
#define CAIRN_NODE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct cairn_node;

struct node_config {
	const char *state_dir;
	/* A new node only (ignored when state_dir holds one): */
	const char *name;
	const char *raft_address; /* IPv4:port, node to node (mutual TLS) */
	const char *api_address;  /* HOST:PORT of the HTTPS management API */
	uint32_t domain;          /* fault domain */
	double capacity;          /* placement weight, 0 = 1 */
	const char *create_cluster; /* name: bootstrap a new cluster */
	const char *join_url;       /* https://HOST:PORT of a member's API */
	const char *join_token;     /* from `cairn node token` */
	unsigned election_ms;       /* 0: default */
};

/* Creates, joins (blocking HTTPS during start-up) or resumes. */
int node_start(uv_loop_t *loop, const struct node_config *cfg,
	       struct cairn_node **out, char *err, size_t errlen);
int node_api_port(const struct cairn_node *n);
void node_stop(struct cairn_node *n, void (*cb)(void *arg), void *arg);

#endif
