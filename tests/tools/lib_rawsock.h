/* Raw TCP client sockets for the bad-input tools, which must send bytes a
 * protocol library never would (tests/tools/nbd_bad_input.c,
 * iscsi_bad_input.c). Blocking sockets with send and receive timeouts, so a
 * server that stops answering fails the test instead of hanging it. Linked
 * into the tools that use it (see the Makefile). */
#ifndef CAIRN_TEST_RAWSOCK_H
#define CAIRN_TEST_RAWSOCK_H

#include <stdbool.h>
#include <stddef.h>

/* Connects to host:port with SO_RCVTIMEO/SO_SNDTIMEO of timeout_s seconds
 * and TCP_NODELAY; the fd, or -1. */
int rawsock_open(const char *host, const char *port, unsigned timeout_s);
/* Sends all of buf (no SIGPIPE); false on error or timeout. */
bool rawsock_send_all(int fd, const void *buf, size_t len);
/* 1: got len bytes; 0: orderly EOF or reset; -1: timeout or other error. */
int rawsock_recv_all(int fd, void *buf, size_t len);
/* Reads and discards until the server closes the connection: true on EOF
 * or reset, false if it went silent (timeout) or another error. */
bool rawsock_closed_by_peer(int fd);
/* Reads and discards whatever comes, until ms of silence, the end or an
 * error; the receive timeout stays at ms. For fuzzers leaving a
 * connection. */
void rawsock_drain(int fd, unsigned ms);

#endif
