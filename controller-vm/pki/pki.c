/* Certificate authority and node certificates with OpenSSL 3. */
#include <arpa/inet.h>
#include <cairn/pki.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int pki__fail(char *err, size_t errlen, const char *what)
{
	unsigned long e = ERR_get_error();
	char buf[160] = "";
	if (e)
		ERR_error_string_n(e, buf, sizeof(buf));
	snprintf(err, errlen, "%s%s%s", what, e ? ": " : "", buf);
	ERR_clear_error();
	return -EIO;
}

static int pki__write(const char *dir, const char *name, const char *ext,
		      EVP_PKEY *key, X509 *crt, char *err, size_t errlen)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s.%s", dir, name, ext);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
		      key ? 0600 : 0644);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f) {
		if (fd >= 0)
			close(fd);
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	int ok = key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)
		     : PEM_write_X509(f, crt);
	if (fclose(f) != 0)
		ok = 0;
	return ok ? 0 : pki__fail(err, errlen, path);
}

static int pki__ext(X509 *crt, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer, crt, NULL, NULL, 0);
	X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!ex)
		return -1;
	int ok = X509_add_ext(crt, ex, -1);
	X509_EXTENSION_free(ex);
	return ok ? 0 : -1;
}

#define PKI__NAMES_MAX 200
#define PKI__SAN_MAX 512

/* A certificate name list (include/cairn/pki.h): 1-200 characters, each
 * name non-empty and made of [A-Za-z0-9._:-] only, so that no name can add
 * anything to the subjectAltName configuration string built from it. */
static bool pki__names_ok(const char *names)
{
	size_t n = strlen(names);
	if (n == 0 || n > PKI__NAMES_MAX || names[0] == ',' ||
	    names[n - 1] == ',' || strstr(names, ",,"))
		return false;
	for (const char *c = names; *c; c++)
		if (!isalnum((unsigned char)*c) && !strchr("._:-,", *c))
			return false;
	return true;
}

/* The common name: the list's first name. */
static void pki__cn(const char *names, char *cn, size_t len)
{
	snprintf(cn, len, "%.*s", (int)strcspn(names, ","), names);
}

/* "DNS:a,IP:10.0.0.1,...": an address literal is an IP name. */
static void pki__san(const char *names, char *san, size_t len)
{
	size_t used = 0;
	san[0] = 0;
	for (const char *p = names; *p;) {
		size_t n = strcspn(p, ",");
		char one[PKI__NAMES_MAX + 1];
		unsigned char addr[16];
		snprintf(one, sizeof(one), "%.*s", (int)n, p);
		bool ip = inet_pton(AF_INET, one, addr) == 1 ||
			  inet_pton(AF_INET6, one, addr) == 1;
		used += (size_t)snprintf(san + used, len - used, "%s%s:%s",
					 used ? "," : "", ip ? "IP" : "DNS",
					 one);
		p += n + (p[n] == ',');
	}
}

/* A certificate for `key` named by the list `cn_list` (the first name is
 * the subject's CN, every name a subjectAltName), valid [from, from + days]
 * days from now; self-signed (cn_list is then the CN only) when issuer is
 * NULL. */
static X509 *pki__cert(EVP_PKEY *key, const char *cn_list, int from,
		       int days, X509 *issuer, EVP_PKEY *issuer_key)
{
	char cn[PKI__NAMES_MAX + 1];
	if (issuer)
		pki__cn(cn_list, cn, sizeof(cn));
	else
		snprintf(cn, sizeof(cn), "%s", cn_list);
	X509 *crt = X509_new();
	unsigned char serial[16];
	BIGNUM *bn = NULL;
	if (!crt || RAND_bytes(serial, sizeof(serial)) != 1)
		goto fail;
	serial[0] &= 0x7f; /* positive */
	bn = BN_bin2bn(serial, sizeof(serial), NULL);
	if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(crt)))
		goto fail;
	X509_set_version(crt, 2);
	if (!X509_gmtime_adj(X509_getm_notBefore(crt), (long)from * 86400) ||
	    !X509_gmtime_adj(X509_getm_notAfter(crt),
			     (long)(from + days) * 86400) ||
	    !X509_set_pubkey(crt, key))
		goto fail;
	X509_NAME *name = X509_get_subject_name(crt);
	X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
				   (const unsigned char *)"Cairn", -1, -1, 0);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
				   (const unsigned char *)cn, -1, -1, 0);
	X509 *iss = issuer ? issuer : crt;
	if (!X509_set_issuer_name(crt, X509_get_subject_name(iss)))
		goto fail;
	if (!issuer) {
		if (pki__ext(crt, crt, NID_basic_constraints,
			     "critical,CA:TRUE,pathlen:0") ||
		    pki__ext(crt, crt, NID_key_usage,
			     "critical,keyCertSign,cRLSign") ||
		    pki__ext(crt, crt, NID_subject_key_identifier, "hash"))
			goto fail;
	} else {
		char san[PKI__SAN_MAX];
		pki__san(cn_list, san, sizeof(san));
		if (pki__ext(crt, iss, NID_basic_constraints,
			     "critical,CA:FALSE") ||
		    pki__ext(crt, iss, NID_key_usage,
			     "critical,digitalSignature") ||
		    pki__ext(crt, iss, NID_ext_key_usage,
			     "serverAuth,clientAuth") ||
		    pki__ext(crt, iss, NID_subject_alt_name, san) ||
		    pki__ext(crt, iss, NID_authority_key_identifier,
			     "keyid:always"))
			goto fail;
	}
	if (!X509_sign(crt, issuer ? issuer_key : key, EVP_sha256()))
		goto fail;
	BN_free(bn);
	return crt;
fail:
	BN_free(bn);
	X509_free(crt);
	return NULL;
}

int pki_ca_create(const char *dir, const char *cluster, int days, char *err,
		  size_t errlen)
{
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		snprintf(err, errlen, "mkdir %s: %s", dir, strerror(errno));
		return -errno;
	}
	EVP_PKEY *key = EVP_EC_gen("P-256");
	if (!key)
		return pki__fail(err, errlen, "CA key");
	char cn[300];
	snprintf(cn, sizeof(cn), "Cairn cluster CA %s", cluster);
	X509 *crt = pki__cert(key, cn, 0, days, NULL, NULL);
	int rc = crt ? 0 : pki__fail(err, errlen, "CA certificate");
	if (!rc)
		rc = pki__write(dir, "ca", "key", key, NULL, err, errlen);
	if (!rc)
		rc = pki__write(dir, "ca", "crt", NULL, crt, err, errlen);
	X509_free(crt);
	EVP_PKEY_free(key);
	return rc;
}

static void *pki__read(const char *dir, const char *file, bool key)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	void *v = key ? (void *)PEM_read_PrivateKey(f, NULL, NULL, NULL)
		      : (void *)PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	return v;
}

int pki_cert_issue(const char *ca_dir, const char *name, const char *out_dir,
		   int valid_from_days, int days, char *err, size_t errlen)
{
	if (!pki__names_ok(name)) {
		snprintf(err, errlen, "bad certificate name '%s'", name);
		return -EINVAL;
	}
	char file[PKI__NAMES_MAX + 1];
	pki__cn(name, file, sizeof(file));
	EVP_PKEY *ca_key = pki__read(ca_dir, "ca.key", true);
	X509 *ca = pki__read(ca_dir, "ca.crt", false);
	EVP_PKEY *key = NULL;
	X509 *crt = NULL;
	int rc;
	if (!ca_key || !ca) {
		snprintf(err, errlen, "%s: no CA (ca.key, ca.crt)", ca_dir);
		rc = -ENOENT;
		goto out;
	}
	if (mkdir(out_dir, 0700) != 0 && errno != EEXIST) {
		snprintf(err, errlen, "mkdir %s: %s", out_dir, strerror(errno));
		rc = -errno;
		goto out;
	}
	key = EVP_EC_gen("P-256");
	crt = key ? pki__cert(key, name, valid_from_days, days, ca, ca_key)
		  : NULL;
	rc = crt ? 0 : pki__fail(err, errlen, "node certificate");
	if (!rc)
		rc = pki__write(out_dir, file, "key", key, NULL, err, errlen);
	if (!rc)
		rc = pki__write(out_dir, file, "crt", NULL, crt, err, errlen);
out:
	X509_free(crt);
	EVP_PKEY_free(key);
	X509_free(ca);
	EVP_PKEY_free(ca_key);
	return rc;
}

static char *pki__pem(EVP_PKEY *key, X509 *crt)
{
	BIO *b = BIO_new(BIO_s_mem());
	if (!b)
		return NULL;
	int ok = key ? PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL,
						NULL)
		     : PEM_write_bio_X509(b, crt);
	char *data = NULL;
	long n = BIO_get_mem_data(b, &data);
	char *out = ok && n > 0 ? strndup(data, (size_t)n) : NULL;
	BIO_free(b);
	return out;
}

static void *pki__parse(const char *pem, bool key)
{
	BIO *b = BIO_new_mem_buf(pem, -1);
	if (!b)
		return NULL;
	void *v = key ? (void *)PEM_read_bio_PrivateKey(b, NULL, NULL, NULL)
		      : (void *)PEM_read_bio_X509(b, NULL, NULL, NULL);
	BIO_free(b);
	return v;
}

int pki_cert_issue_pem(const char *ca_crt_pem, const char *ca_key_pem,
		       const char *name, int days, char **crt_pem,
		       char **key_pem, char *err, size_t errlen)
{
	*crt_pem = *key_pem = NULL;
	if (!pki__names_ok(name)) {
		snprintf(err, errlen, "bad certificate name '%s'", name);
		return -EINVAL;
	}
	X509 *ca = pki__parse(ca_crt_pem, false);
	EVP_PKEY *ca_key = pki__parse(ca_key_pem, true);
	EVP_PKEY *key = (ca && ca_key) ? EVP_EC_gen("P-256") : NULL;
	X509 *crt = key ? pki__cert(key, name, 0, days, ca, ca_key) : NULL;
	int rc = crt ? 0 : pki__fail(err, errlen, "certificate");
	if (!rc) {
		*crt_pem = pki__pem(NULL, crt);
		*key_pem = pki__pem(key, NULL);
		if (!*crt_pem || !*key_pem) {
			free(*crt_pem);
			free(*key_pem);
			*crt_pem = *key_pem = NULL;
			rc = -ENOMEM;
		}
	}
	X509_free(crt);
	EVP_PKEY_free(key);
	X509_free(ca);
	EVP_PKEY_free(ca_key);
	return rc;
}

int pki_fingerprint(const char *crt_pem, char out[65])
{
	X509 *crt = pki__parse(crt_pem, false);
	unsigned char md[32];
	unsigned int n = 0;
	int ok = crt && X509_digest(crt, EVP_sha256(), md, &n) && n == 32;
	X509_free(crt);
	if (!ok)
		return -EINVAL;
	for (unsigned i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	return 0;
}

char *pki_read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	char chunk[4096];
	size_t n;
	while (m && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		fwrite(chunk, 1, n, m);
	fclose(f);
	if (m)
		fclose(m);
	return buf;
}

int pki_api_names(const char *api_address, char *out, size_t len)
{
	/* HOST:PORT or [V6]:PORT; the host is named unless it is already. */
	char host[PKI__NAMES_MAX + 1] = "";
	const char *a = api_address ? api_address : "";
	if (a[0] == '[') {
		const char *e = strchr(a, ']');
		if (e)
			snprintf(host, sizeof(host), "%.*s", (int)(e - a - 1),
				 a + 1);
	} else {
		const char *e = strrchr(a, ':');
		snprintf(host, sizeof(host), "%.*s",
			 (int)(e ? (size_t)(e - a) : strlen(a)), a);
	}
	bool extra = host[0] && strcmp(host, "localhost") &&
		     strcmp(host, "127.0.0.1") && strcmp(host, "::1") &&
		     strcmp(host, "0.0.0.0") && strcmp(host, "::");
	int n = snprintf(out, len, "localhost,127.0.0.1,::1%s%s",
			 extra ? "," : "", extra ? host : "");
	if (n < 0 || (size_t)n >= len || !pki__names_ok(out))
		return -EINVAL;
	return 0;
}
