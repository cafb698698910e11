/* libFuzzer target over the iSCSI target's parsers: the PDU decoder (BHS,
 * AHS, CDB assembly, LUN), the text key parser and the operational key
 * negotiation, CHAP value decoding and the CHAP exchange, the JSON
 * configuration, and the SCSI core's CDB length logic (scsi_cdb_xfer),
 * which sizes the transport's buffers and R2Ts.
 *
 *   make MODE=fuzz fuzzers && build/fuzz/fuzz_iscsi -runs=200000 -seed=1
 *
 * The first input byte picks the parser; the rest is its input. */
#include <cairn/scsi.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../vaai/iscsi/iscsi_proto.h"

static void fuzz_pdu(const uint8_t *d, size_t n)
{
	uint8_t bhs[ISCSI_BHS_SIZE] = {0};
	memcpy(bhs, d, n < sizeof(bhs) ? n : sizeof(bhs));
	struct iscsi_bhs h;
	int rc = iscsi_pdu_decode_bhs(bhs, &h);
	(void)iscsi_pdu_rest_len(&h, bhs[0] & 1, bhs[1] & 1);
	if (rc < 0 || n <= ISCSI_BHS_SIZE)
		return;
	const uint8_t *ahs = d + ISCSI_BHS_SIZE;
	size_t ahs_len = (size_t)h.ahs_len * 4;
	if (ahs_len > n - ISCSI_BHS_SIZE)
		ahs_len = n - ISCSI_BHS_SIZE;
	uint8_t cdb[SCSI_CDB_MAX];
	int cl = iscsi_pdu_cdb(bhs, ahs, ahs_len, cdb, sizeof(cdb));
	(void)iscsi_pdu_lun_decode(h.lun_raw);
	if (cl > 0) {
		enum scsi_dir dir;
		uint32_t len;
		(void)scsi_cdb_xfer(cdb, (uint8_t)cl, 512, &dir, &len);
		(void)scsi_cdb_xfer(cdb, (uint8_t)cl, 4096, &dir, &len);
	}
	(void)iscsi_digest(d, n);
}

static void fuzz_keys(const uint8_t *d, size_t n)
{
	char *buf = malloc(n + 1);
	if (!buf)
		return;
	memcpy(buf, d, n);
	struct iscsi_kv kv[ISCSI_KEYS_MAX];
	int k = iscsi_keys_parse(buf, n, kv, ISCSI_KEYS_MAX);
	struct iscsi_limits lim = {.max_recv_dsl = 262144,
				   .max_burst = 1 << 20,
				   .first_burst = 65536,
				   .max_connections = 8,
				   .max_outstanding_r2t = 16,
				   .immediate_data = true};
	struct iscsi_params p;
	iscsi_params_default(&p, &lim);
	p.discovery = n & 1;
	struct iscsi_text t = {0};
	for (int i = 0; i < k; i++)
		(void)iscsi_keys_negotiate(&p, &lim, kv[i].key, kv[i].val, &t);
	iscsi_keys_finish(&p);
	if (p.first_burst > p.max_burst)
		abort();
	/* CHAP with every value taken from the input. */
	if (k > 0) {
		struct iscsi_chap c = {0};
		uint8_t rnd[17] = {1};
		char err[128];
		if (iscsi_chap_start(&c, kv[0].val, rnd, &t, err,
				     sizeof(err)) == 0) {
			const char *v[4] = {NULL, NULL, NULL, NULL};
			for (int i = 1; i < k && i < 5; i++)
				v[i - 1] = kv[i].val;
			(void)iscsi_chap_finish(&c, "user", "secret-0123456",
						"target", "secret-6543210",
						v[0], v[1], v[2], v[3], &t, err,
						sizeof(err));
		}
	}
	iscsi_text_free(&t);
	free(buf);
}

static void fuzz_chap_decode(const uint8_t *d, size_t n)
{
	char *s = malloc(n + 1);
	if (!s)
		return;
	memcpy(s, d, n);
	s[n] = '\0';
	uint8_t out[64];
	int r = iscsi_chap_decode(s, out, sizeof(out));
	if (r > (int)sizeof(out))
		abort();
	free(s);
}

static void fuzz_cdb(const uint8_t *d, size_t n)
{
	uint8_t cdb[SCSI_CDB_MAX] = {0};
	size_t l = n < sizeof(cdb) ? n : sizeof(cdb);
	memcpy(cdb, d, l);
	enum scsi_dir dir;
	uint32_t len;
	(void)scsi_cdb_xfer(cdb, (uint8_t)l, 512, &dir, &len);
	(void)scsi_cdb_xfer(cdb, (uint8_t)l, 4096, &dir, &len);
}

static void fuzz_config(const uint8_t *d, size_t n)
{
	struct iscsi_config *c = NULL;
	char err[256];
	if (iscsi_config_parse((const char *)d, n, &c, err, sizeof(err)) == 0)
		iscsi_config_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const uint8_t *d = data + 1;
	size_t n = size - 1;
	switch (data[0] % 5) {
	case 0:
		fuzz_pdu(d, n);
		break;
	case 1:
		fuzz_keys(d, n);
		break;
	case 2:
		fuzz_chap_decode(d, n);
		break;
	case 3:
		fuzz_cdb(d, n);
		break;
	case 4:
		fuzz_config(d, n);
		break;
	}
	return 0;
}
