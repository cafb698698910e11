/* libraft's transport over mutual TLS (see raft_tls.c). Node certificates
 * must be named "node-<raft id>". */
#ifndef CAIRN_RAFT_TLS_H
#define CAIRN_RAFT_TLS_H

#include <raft.h>
#include <raft/uv.h>

#include "tls.h"

int raft_tls_init(struct raft_uv_transport *t, uv_loop_t *loop,
		  struct tls_ctx *tls);
/* After the transport's close callback ran. */
void raft_tls_free(struct raft_uv_transport *t);

#endif
