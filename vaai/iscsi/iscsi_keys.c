/* Text keys (RFC 7143 § 6) and the operational keys' negotiation (§ 13).
 * Pure: the login and text handlers feed it the initiator's pairs and get
 * back our answers. Each key has one rule, from its section:
 *
 *   list (first of the initiator's list we support): HeaderDigest,
 *       DataDigest (§ 13.1)
 *   minimum: MaxConnections (§ 13.2), MaxBurstLength (§ 13.13),
 *       FirstBurstLength (§ 13.14), DefaultTime2Retain (§ 13.16),
 *       MaxOutstandingR2T (§ 13.17), ErrorRecoveryLevel (§ 13.20)
 *   maximum: DefaultTime2Wait (§ 13.15)
 *   OR: InitialR2T (§ 13.10), DataPDUInOrder (§ 13.18),
 *       DataSequenceInOrder (§ 13.19)
 *   AND: ImmediateData (§ 13.11)
 *   declarative: MaxRecvDataSegmentLength (§ 13.12) */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iscsi_proto.h"
#include "util.h"

/* § 6.1: key names are letters, digits and . - + @ _ */
static bool iscsi_key_name_ok(const char *k, size_t n)
{
	if (n == 0 || n > ISCSI_KEY_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = k[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '-' ||
		      c == '+' || c == '@' || c == '_'))
			return false;
	}
	return true;
}

int iscsi_keys_parse(char *buf, size_t len, struct iscsi_kv *kv, unsigned max)
{
	unsigned n = 0;
	size_t pos = 0;
	/* Trailing NULs (padding, an empty last entry) are tolerated. */
	while (len && buf[len - 1] == '\0')
		len--;
	if (len == 0)
		return 0;
	buf[len] = '\0'; /* the caller's buffer has room: len < its size */
	while (pos <= len) {
		char *p = buf + pos;
		size_t l = strlen(p);
		char *eq = memchr(p, '=', l);
		if (!eq || !iscsi_key_name_ok(p, (size_t)(eq - p)) ||
		    l - (size_t)(eq - p) - 1 > ISCSI_KEY_VALUE_MAX)
			return -EINVAL;
		if (n == max)
			return -EINVAL;
		*eq = '\0';
		for (unsigned i = 0; i < n; i++)
			if (!strcmp(kv[i].key, p))
				return -EINVAL; /* § 6.1: at most once */
		kv[n].key = p;
		kv[n].val = eq + 1;
		n++;
		pos += l + 1;
		if (pos >= len)
			break;
	}
	return (int)n;
}

const char *iscsi_keys_get(const struct iscsi_kv *kv, unsigned n,
			   const char *key)
{
	for (unsigned i = 0; i < n; i++)
		if (!strcmp(kv[i].key, key))
			return kv[i].val;
	return NULL;
}

void iscsi_text_add(struct iscsi_text *t, const char *key, const char *fmt, ...)
{
	char val[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(val, sizeof(val), fmt, ap);
	va_end(ap);
	size_t need = strlen(key) + 1 + strlen(val) + 1;
	if (t->oom)
		return;
	if (t->len + need > t->cap) {
		size_t cap = MAX(t->cap * 2, t->len + need + 256);
		char *b = realloc(t->buf, cap);
		if (!b) {
			t->oom = true;
			return;
		}
		t->buf = b;
		t->cap = cap;
	}
	t->len += (size_t)sprintf(t->buf + t->len, "%s=%s", key, val) + 1;
}

void iscsi_text_free(struct iscsi_text *t)
{
	free(t->buf);
	memset(t, 0, sizeof(*t));
}

void iscsi_params_default(struct iscsi_params *p, const struct iscsi_limits *l)
{
	memset(p, 0, sizeof(*p));
	p->max_connections = 1;
	p->initial_r2t = true;
	p->immediate_data = true;
	p->max_recv_dsl = 8192; /* § 13.12: until we declare ours */
	p->max_send_dsl = 8192;
	p->max_burst = 262144;
	p->first_burst = 65536;
	p->time2wait = 2;
	p->time2retain = 20;
	p->max_outstanding_r2t = 1;
	p->data_pdu_in_order = true;
	p->data_seq_in_order = true;
	p->erl = 0;
	(void)l;
}

/* § 6.2 numerical values: decimal or 0x hex; ranges per key. */
static int iscsi_keys_num(const char *v, uint32_t lo, uint32_t hi,
			  uint32_t *out)
{
	char *end;
	if (!*v || *v == '-' || *v == '+' || *v == ' ')
		return -EINVAL;
	errno = 0;
	unsigned long long x = strtoull(v, &end, 0);
	if (errno || *end || x < lo || x > hi)
		return -EINVAL;
	*out = (uint32_t)x;
	return 0;
}

static int iscsi_keys_bool(const char *v, bool *out)
{
	if (!strcmp(v, "Yes"))
		*out = true;
	else if (!strcmp(v, "No"))
		*out = false;
	else
		return -EINVAL;
	return 0;
}

/* First value of the initiator's list we support: CRC32C or None. */
static int iscsi_keys_digest(const char *v, struct iscsi_text *resp,
			     const char *key, bool *out)
{
	char tmp[256];
	if (strlen(v) >= sizeof(tmp))
		goto reject;
	strcpy(tmp, v);
	for (char *save, *tok = strtok_r(tmp, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		if (!strcmp(tok, "CRC32C") || !strcmp(tok, "None")) {
			*out = tok[0] == 'C';
			iscsi_text_add(resp, key, "%s", tok);
			return 1;
		}
	}
reject:
	iscsi_text_add(resp, key, "Reject");
	return 1;
}

enum iscsi_rule { RULE_MIN, RULE_MAX, RULE_OR, RULE_AND };

struct iscsi_numkey {
	const char *name;
	enum iscsi_rule rule;
	uint32_t lo, hi;
	bool normal_only; /* Irrelevant in a discovery session (§ 13) */
};

static const struct iscsi_numkey iscsi_numkeys[] = {
    {"MaxConnections", RULE_MIN, 1, 65535, true},
    {"MaxBurstLength", RULE_MIN, 512, 16777215, true},
    {"FirstBurstLength", RULE_MIN, 512, 16777215, true},
    {"DefaultTime2Wait", RULE_MAX, 0, 3600, false},
    {"DefaultTime2Retain", RULE_MIN, 0, 3600, false},
    {"MaxOutstandingR2T", RULE_MIN, 1, 65535, true},
    {"ErrorRecoveryLevel", RULE_MIN, 0, 2, false},
    {"InitialR2T", RULE_OR, 0, 1, true},
    {"ImmediateData", RULE_AND, 0, 1, true},
    {"DataPDUInOrder", RULE_OR, 0, 1, true},
    {"DataSequenceInOrder", RULE_OR, 0, 1, true},
};

/* Our side of each key, and where the result goes. */
static uint32_t *iscsi_keys_slot(struct iscsi_params *p, const char *name,
				 uint32_t *ours, const struct iscsi_limits *l,
				 bool **bslot)
{
	*bslot = NULL;
	if (!strcmp(name, "MaxConnections")) {
		*ours = l->max_connections;
		return &p->max_connections;
	}
	if (!strcmp(name, "MaxBurstLength")) {
		*ours = l->max_burst;
		return &p->max_burst;
	}
	if (!strcmp(name, "FirstBurstLength")) {
		*ours = l->first_burst;
		return &p->first_burst;
	}
	if (!strcmp(name, "DefaultTime2Wait")) {
		*ours = 0; /* we have nothing to wait for */
		return &p->time2wait;
	}
	if (!strcmp(name, "DefaultTime2Retain")) {
		*ours = 0; /* ErrorRecoveryLevel 0: no reinstatement state */
		return &p->time2retain;
	}
	if (!strcmp(name, "MaxOutstandingR2T")) {
		*ours = l->max_outstanding_r2t;
		return &p->max_outstanding_r2t;
	}
	if (!strcmp(name, "ErrorRecoveryLevel")) {
		*ours = 0;
		return &p->erl;
	}
	if (!strcmp(name, "InitialR2T")) {
		*ours = l->initial_r2t;
		*bslot = &p->initial_r2t;
		return NULL;
	}
	if (!strcmp(name, "ImmediateData")) {
		*ours = l->immediate_data;
		*bslot = &p->immediate_data;
		return NULL;
	}
	if (!strcmp(name, "DataPDUInOrder")) {
		*ours = 1; /* we want in-order Data-Out */
		*bslot = &p->data_pdu_in_order;
		return NULL;
	}
	if (!strcmp(name, "DataSequenceInOrder")) {
		*ours = 1;
		*bslot = &p->data_seq_in_order;
		return NULL;
	}
	return NULL;
}

int iscsi_keys_negotiate(struct iscsi_params *p, const struct iscsi_limits *l,
			 const char *key, const char *val,
			 struct iscsi_text *resp)
{
	if (!strcmp(key, "HeaderDigest") || !strcmp(key, "DataDigest")) {
		bool *slot =
		    key[0] == 'H' ? &p->header_digest : &p->data_digest;
		return iscsi_keys_digest(val, resp, key, slot);
	}
	if (!strcmp(key, "MaxRecvDataSegmentLength")) {
		uint32_t v;
		if (iscsi_keys_num(val, 512, 16777215, &v) < 0) {
			iscsi_text_add(resp, key, "Reject");
			return 1;
		}
		/* Declarative: the initiator's limit for what we send. Ours
		 * is declared once by the login code. */
		p->max_send_dsl = v;
		return 1;
	}
	for (size_t i = 0; i < ARRAY_SIZE(iscsi_numkeys); i++) {
		const struct iscsi_numkey *k = &iscsi_numkeys[i];
		if (strcmp(key, k->name))
			continue;
		if (p->discovery && k->normal_only) {
			iscsi_text_add(resp, key, "Irrelevant");
			return 1;
		}
		uint32_t ours = 0, v;
		bool *bslot;
		uint32_t *slot = iscsi_keys_slot(p, key, &ours, l, &bslot);
		if (k->rule == RULE_OR || k->rule == RULE_AND) {
			bool b;
			if (iscsi_keys_bool(val, &b) < 0) {
				iscsi_text_add(resp, key, "Reject");
				return 1;
			}
			bool r = k->rule == RULE_OR ? (b || ours) : (b && ours);
			*bslot = r;
			iscsi_text_add(resp, key, "%s", r ? "Yes" : "No");
			return 1;
		}
		if (iscsi_keys_num(val, k->lo, k->hi, &v) < 0) {
			iscsi_text_add(resp, key, "Reject");
			return 1;
		}
		uint32_t r = k->rule == RULE_MIN ? MIN(v, ours) : MAX(v, ours);
		*slot = r;
		iscsi_text_add(resp, key, "%u", r);
		return 1;
	}
	/* Markers (§ 13.25, obsolete in RFC 7143 but still offered by old
	 * initiators): we do not do them. */
	if (!strcmp(key, "IFMarker") || !strcmp(key, "OFMarker")) {
		iscsi_text_add(resp, key, "No");
		return 1;
	}
	if (!strcmp(key, "OFMarkInt") || !strcmp(key, "IFMarkInt")) {
		iscsi_text_add(resp, key, "Irrelevant");
		return 1;
	}
	return 0;
}

void iscsi_keys_finish(struct iscsi_params *p)
{
	if (p->first_burst > p->max_burst)
		p->first_burst = p->max_burst;
}
