/* The cluster's certificate authority and node certificates (OpenSSL).
 * Cluster create makes a CA; a joining node gets a certificate signed by
 * it; every node-to-node connection then checks both ends against that CA
 * (lib/tls.h). Keys are EC P-256; files are PEM, keys mode 0600. */
#ifndef CAIRN_PKI_H
#define CAIRN_PKI_H

#include <stddef.h>

/* dir/ca.key, dir/ca.crt: a self-signed CA named after the cluster. */
int pki_ca_create(const char *dir, const char *cluster, int days, char *err,
		  size_t errlen);

/* out_dir/<name>.key and <name>.crt, signed by the CA in ca_dir, usable
 * as TLS client and server. `name` is a comma-separated list of names
 * ([A-Za-z0-9._:-], 200 characters in all): the first is the subject's CN
 * and the files' name, each is a subjectAltName (IP for an address
 * literal, DNS otherwise).
 * valid_from_days shifts notBefore (negative = in the past) and `days` is
 * the validity: tests make expired certificates with (-10, 5). */
int pki_cert_issue(const char *ca_dir, const char *name, const char *out_dir,
		   int valid_from_days, int days, char *err, size_t errlen);

/* In memory: a certificate and key for `name`, signed by the CA given as
 * PEM text; *crt_pem and *key_pem are malloc'd PEM. For a node joining a
 * running cluster, whose leader holds the CA in the cluster map. */
int pki_cert_issue_pem(const char *ca_crt_pem, const char *ca_key_pem,
		       const char *name, int days, char **crt_pem,
		       char **key_pem, char *err, size_t errlen);
/* The name list of a node's management API certificate: localhost and
 * the loopback addresses, plus the host of `api_address` (HOST:PORT or
 * [V6]:PORT) when it is another, so that a client which checks host names
 * can follow a redirect to the leader's address. -EINVAL if the host is not
 * a valid name. */
int pki_api_names(const char *api_address, char *out, size_t len);
/* SHA-256 of the certificate (DER), lower-case hex: a join token names
 * the cluster CA by it, so the joining node can check whom it talks to. */
int pki_fingerprint(const char *crt_pem, char out[65]);
/* A whole (PEM) file, malloc'd; NULL on error. */
char *pki_read_file(const char *path);

#endif
