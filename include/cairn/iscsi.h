/* iSCSI target (RFC 7143) over the SCSI core (include/cairn/scsi.h): one
 * TCP portal, the targets of a JSON configuration file (IQN, LUN map of
 * vdisks, initiator ACL, CHAP one-way or mutual), discovery and normal
 * sessions. docs/iscsi.md lists what is supported.
 *
 * Threading: everything runs on the pool's uv_loop_t; call these functions
 * on that thread. The process must ignore SIGPIPE (cairnd does).
 */
#ifndef CAIRN_ISCSI_H
#define CAIRN_ISCSI_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct sds_pool;
struct iscsi_server;

#define ISCSI_DEFAULT_PORT 3260 /* IANA */

/* Loads and validates the configuration, opens every LUN's vdisk, binds
 * and listens on the configured portal. Returns 0, or -errno with a
 * message in err (a configuration error names the file and the field). */
int iscsi_server_start(uv_loop_t *loop, struct sds_pool *pool,
		       const char *config_path, struct iscsi_server **out,
		       char *err, size_t errlen);

/* The bound address: useful when the portal's port was 0. */
uint16_t iscsi_server_port(const struct iscsi_server *srv);
const char *iscsi_server_host(const struct iscsi_server *srv);

/* Stops listening, lets in-flight commands complete (for a bounded time),
 * closes every connection, the LUNs and the SCSI target, frees the server,
 * then calls cb (if any). The pool can be closed from cb. */
void iscsi_server_close(struct iscsi_server *srv, void (*cb)(void *arg),
			void *arg);

#endif
