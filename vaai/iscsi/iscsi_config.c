/* The iSCSI configuration: a JSON file (jansson), validated in full before
 * anything starts, so a mistake is one clear message naming the field.
 *
 *   {
 *     "portal": "127.0.0.1:3260",          HOST:PORT, [V6]:PORT; port 0 =
 *                                          any free port
 *     "discovery_chap": {"user": "...", "secret": "..."},   optional
 *     "nop_interval_ms": 5000,             optional; 0: no NOP-In pings
 *     "nop_timeout_ms": 15000,             optional
 *     "targets": [{
 *       "name": "iqn.2026-11.org.cairn:demo",
 *       "alias": "demo",                   optional
 *       "luns": {"0": "demo", "1": "other-vdisk"},
 *       "initiators": ["*"],               IQNs, or "*" for any
 *       "chap": {"user": "...", "secret": "...",             optional
 *                "mutual_user": "...", "mutual_secret": "..."}
 *     }]
 *   }
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iscsi_proto.h"
#include "util.h"

#define ISCSI_CFG_MAX_LUN 16383 /* flat space addressing */

bool iscsi_name_valid(const char *name)
{
	size_t n = strlen(name);
	if (n < 5 || n > ISCSI_NAME_MAX)
		return false;
	if (strncasecmp(name, "iqn.", 4) && strncasecmp(name, "eui.", 4) &&
	    strncasecmp(name, "naa.", 4))
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c <= 0x20 || c >= 0x7f || c == ',' || c == '=')
			return false;
	}
	return true;
}

static char *iscsi_cfg_strdup(json_t *o, const char *key, bool required,
			      const char *where, char *err, size_t errlen,
			      int *rc)
{
	json_t *v = json_object_get(o, key);
	if (!v) {
		if (required) {
			snprintf(err, errlen, "%s: \"%s\" is required", where,
				 key);
			*rc = -EINVAL;
		}
		return NULL;
	}
	if (!json_is_string(v) || !*json_string_value(v)) {
		snprintf(err, errlen, "%s: \"%s\" must be a non-empty string",
			 where, key);
		*rc = -EINVAL;
		return NULL;
	}
	char *s = strdup(json_string_value(v));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		*rc = -ENOMEM;
	}
	return s;
}

void iscsi_config_free(struct iscsi_config *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < c->ntargets; i++) {
		struct iscsi_cfg_target *t = &c->targets[i];
		free(t->name);
		free(t->alias);
		for (unsigned j = 0; j < t->nluns; j++)
			free(t->luns[j].vdisk);
		free(t->luns);
		for (unsigned j = 0; j < t->ninit; j++)
			free(t->initiators[j]);
		free(t->initiators);
		free(t->chap_user);
		free(t->chap_secret);
		free(t->mutual_user);
		free(t->mutual_secret);
	}
	free(c->targets);
	free(c->host);
	free(c->discovery_user);
	free(c->discovery_secret);
	free(c);
}

/* An optional duration in milliseconds, ISCSI_NOP_MS_MIN..MAX (or 0 when
 * zero_ok). */
static int iscsi_cfg_ms(json_t *root, const char *key, bool zero_ok,
			unsigned *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(root, key);
	if (!v)
		return 0;
	json_int_t n = json_is_integer(v) ? json_integer_value(v) : -1;
	if ((n == 0 && zero_ok) ||
	    (n >= ISCSI_NOP_MS_MIN && n <= ISCSI_NOP_MS_MAX)) {
		*out = (unsigned)n;
		return 0;
	}
	snprintf(err, errlen, "\"%s\": expected %san integer %u..%u (ms)", key,
		 zero_ok ? "0 or " : "", ISCSI_NOP_MS_MIN, ISCSI_NOP_MS_MAX);
	return -EINVAL;
}

static int iscsi_cfg_portal(struct iscsi_config *c, const char *s, char *err,
			    size_t errlen)
{
	const char *colon = strrchr(s, ':');
	char *end;
	if (!colon || !colon[1])
		goto bad;
	errno = 0;
	unsigned long port = strtoul(colon + 1, &end, 10);
	if (errno || *end || port > 65535 || colon[1] == '-' || colon[1] == '+')
		goto bad;
	const char *h = s;
	size_t hl = (size_t)(colon - s);
	if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	c->host = hl ? strndup(h, hl) : strdup("0.0.0.0");
	if (!c->host) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	c->port = (uint16_t)port;
	return 0;
bad:
	snprintf(err, errlen, "\"portal\": expected HOST:PORT, got '%s'", s);
	return -EINVAL;
}

static int iscsi_cfg_chap(json_t *o, const char *where, char **user,
			  char **secret, char **muser, char **msecret,
			  char *err, size_t errlen)
{
	int rc = 0;
	if (!json_is_object(o)) {
		snprintf(err, errlen, "%s: must be an object", where);
		return -EINVAL;
	}
	const char *k;
	json_t *v;
	json_object_foreach(o, k, v)
	{
		if (strcmp(k, "user") && strcmp(k, "secret") &&
		    (!muser || (strcmp(k, "mutual_user") &&
				strcmp(k, "mutual_secret")))) {
			snprintf(err, errlen, "%s: unknown key \"%s\"", where,
				 k);
			return -EINVAL;
		}
	}
	*user = iscsi_cfg_strdup(o, "user", true, where, err, errlen, &rc);
	if (rc)
		return rc;
	*secret = iscsi_cfg_strdup(o, "secret", true, where, err, errlen, &rc);
	if (rc)
		return rc;
	if (muser) {
		*muser = iscsi_cfg_strdup(o, "mutual_user", false, where, err,
					  errlen, &rc);
		if (rc)
			return rc;
		*msecret = iscsi_cfg_strdup(o, "mutual_secret", false, where,
					    err, errlen, &rc);
		if (rc)
			return rc;
	}
	char why[160];
	if (iscsi_chap_check_secrets(*user, *secret, muser ? *muser : NULL,
				     msecret ? *msecret : NULL, why,
				     sizeof(why)) < 0) {
		snprintf(err, errlen, "%s: %s", where, why);
		return -EINVAL;
	}
	return 0;
}

static int iscsi_cfg_target(json_t *o, unsigned idx, struct iscsi_cfg_target *t,
			    char *err, size_t errlen)
{
	char where[64];
	int rc = 0;
	snprintf(where, sizeof(where), "targets[%u]", idx);
	if (!json_is_object(o)) {
		snprintf(err, errlen, "%s: must be an object", where);
		return -EINVAL;
	}
	const char *k;
	json_t *v;
	json_object_foreach(o, k, v)
	{
		if (strcmp(k, "name") && strcmp(k, "alias") &&
		    strcmp(k, "luns") && strcmp(k, "initiators") &&
		    strcmp(k, "chap")) {
			snprintf(err, errlen, "%s: unknown key \"%s\"", where,
				 k);
			return -EINVAL;
		}
	}
	t->name = iscsi_cfg_strdup(o, "name", true, where, err, errlen, &rc);
	if (rc)
		return rc;
	if (!iscsi_name_valid(t->name)) {
		snprintf(
		    err, errlen,
		    "%s: \"name\" '%s' is not an iSCSI name (iqn.*, eui.*, "
		    "naa.*; RFC 7143 4.2.7)",
		    where, t->name);
		return -EINVAL;
	}
	t->alias = iscsi_cfg_strdup(o, "alias", false, where, err, errlen, &rc);
	if (rc)
		return rc;

	json_t *luns = json_object_get(o, "luns");
	if (!json_is_object(luns) || json_object_size(luns) == 0) {
		snprintf(err, errlen,
			 "%s: \"luns\" must be a non-empty object "
			 "{\"LUN\": \"vdisk\"}",
			 where);
		return -EINVAL;
	}
	t->luns = calloc(json_object_size(luns), sizeof(*t->luns));
	if (!t->luns)
		return -ENOMEM;
	json_object_foreach(luns, k, v)
	{
		char *end;
		errno = 0;
		unsigned long lun = strtoul(k, &end, 10);
		if (!*k || *end || errno || lun > ISCSI_CFG_MAX_LUN ||
		    k[0] == '-' || k[0] == '+') {
			snprintf(err, errlen,
				 "%s.luns: '%s' is not a LUN number (0..%d)",
				 where, k, ISCSI_CFG_MAX_LUN);
			return -EINVAL;
		}
		if (!json_is_string(v) || !*json_string_value(v) ||
		    strlen(json_string_value(v)) > 63) {
			snprintf(err, errlen,
				 "%s.luns.%s: must be a vdisk name", where, k);
			return -EINVAL;
		}
		for (unsigned j = 0; j < t->nluns; j++)
			if (t->luns[j].lun == lun) {
				snprintf(err, errlen,
					 "%s.luns: LUN %lu given twice", where,
					 lun);
				return -EINVAL;
			}
		t->luns[t->nluns].lun = lun;
		t->luns[t->nluns].vdisk = strdup(json_string_value(v));
		if (!t->luns[t->nluns].vdisk)
			return -ENOMEM;
		t->nluns++;
	}

	json_t *inits = json_object_get(o, "initiators");
	if (!json_is_array(inits) || json_array_size(inits) == 0) {
		snprintf(err, errlen,
			 "%s: \"initiators\" must be a non-empty array of "
			 "IQNs or \"*\"",
			 where);
		return -EINVAL;
	}
	t->initiators = calloc(json_array_size(inits), sizeof(char *));
	if (!t->initiators)
		return -ENOMEM;
	size_t i;
	json_array_foreach(inits, i, v)
	{
		const char *s = json_string_value(v);
		if (!s || (strcmp(s, "*") && !iscsi_name_valid(s))) {
			snprintf(err, errlen,
				 "%s.initiators[%zu]: expected an iSCSI name "
				 "or \"*\"",
				 where, i);
			return -EINVAL;
		}
		t->initiators[t->ninit] = strdup(s);
		if (!t->initiators[t->ninit])
			return -ENOMEM;
		t->ninit++;
	}

	json_t *chap = json_object_get(o, "chap");
	if (chap) {
		char w[80];
		snprintf(w, sizeof(w), "%s.chap", where);
		rc = iscsi_cfg_chap(chap, w, &t->chap_user, &t->chap_secret,
				    &t->mutual_user, &t->mutual_secret, err,
				    errlen);
		if (rc)
			return rc;
	}
	return 0;
}

int iscsi_config_parse(const char *json, size_t len, struct iscsi_config **out,
		       char *err, size_t errlen)
{
	json_error_t je;
	json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
	if (!root) {
		snprintf(err, errlen, "line %d: %s", je.line, je.text);
		return -EINVAL;
	}
	struct iscsi_config *c = calloc(1, sizeof(*c));
	int rc = 0;
	if (!c) {
		json_decref(root);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	const char *k;
	json_t *v;
	if (!json_is_object(root)) {
		snprintf(err, errlen, "the top level must be an object");
		rc = -EINVAL;
		goto out;
	}
	json_object_foreach(root, k, v)
	{
		if (strcmp(k, "portal") && strcmp(k, "targets") &&
		    strcmp(k, "discovery_chap") &&
		    strcmp(k, "nop_interval_ms") &&
		    strcmp(k, "nop_timeout_ms")) {
			snprintf(err, errlen, "unknown key \"%s\"", k);
			rc = -EINVAL;
			goto out;
		}
	}
	json_t *portal = json_object_get(root, "portal");
	if (portal && !json_is_string(portal)) {
		snprintf(err, errlen, "\"portal\" must be a string HOST:PORT");
		rc = -EINVAL;
		goto out;
	}
	char def[32];
	snprintf(def, sizeof(def), "127.0.0.1:%d", 3260);
	rc = iscsi_cfg_portal(c, portal ? json_string_value(portal) : def, err,
			      errlen);
	if (rc)
		goto out;
	c->nop_interval_ms = ISCSI_NOP_INTERVAL_MS;
	c->nop_timeout_ms = ISCSI_NOP_TIMEOUT_MS;
	rc = iscsi_cfg_ms(root, "nop_interval_ms", true, &c->nop_interval_ms,
			  err, errlen);
	if (!rc)
		rc = iscsi_cfg_ms(root, "nop_timeout_ms", false,
				  &c->nop_timeout_ms, err, errlen);
	if (rc)
		goto out;
	json_t *dc = json_object_get(root, "discovery_chap");
	if (dc) {
		rc = iscsi_cfg_chap(dc, "discovery_chap", &c->discovery_user,
				    &c->discovery_secret, NULL, NULL, err,
				    errlen);
		if (rc)
			goto out;
	}
	json_t *targets = json_object_get(root, "targets");
	if (!json_is_array(targets) || json_array_size(targets) == 0) {
		snprintf(err, errlen, "\"targets\" must be a non-empty array");
		rc = -EINVAL;
		goto out;
	}
	c->targets = calloc(json_array_size(targets), sizeof(*c->targets));
	if (!c->targets) {
		rc = -ENOMEM;
		goto out;
	}
	size_t i;
	json_array_foreach(targets, i, v)
	{
		rc = iscsi_cfg_target(v, (unsigned)i, &c->targets[i], err,
				      errlen);
		c->ntargets++;
		if (rc)
			goto out;
		for (size_t j = 0; j < i; j++)
			if (!strcasecmp(c->targets[j].name,
					c->targets[i].name)) {
				snprintf(err, errlen,
					 "targets[%zu]: name '%s' given twice",
					 i, c->targets[i].name);
				rc = -EINVAL;
				goto out;
			}
	}
out:
	json_decref(root);
	if (rc) {
		if (rc == -ENOMEM && !err[0])
			snprintf(err, errlen, "out of memory");
		iscsi_config_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

int iscsi_config_load(const char *path, struct iscsi_config **out, char *err,
		      size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	char *buf = NULL;
	size_t len = 0, cap = 0;
	for (;;) {
		if (len == cap) {
			cap = cap ? cap * 2 : 4096;
			char *b = cap > (1u << 20) ? NULL : realloc(buf, cap);
			if (!b) {
				free(buf);
				fclose(f);
				snprintf(err, errlen, "%s: too big", path);
				return -EINVAL;
			}
			buf = b;
		}
		size_t n = fread(buf + len, 1, cap - len, f);
		if (n == 0)
			break;
		len += n;
	}
	fclose(f);
	char msg[256] = "";
	int rc = iscsi_config_parse(buf, len, out, msg, sizeof(msg));
	free(buf);
	if (rc)
		snprintf(err, errlen, "%s: %s", path, msg);
	return rc;
}

bool iscsi_config_allows(const struct iscsi_cfg_target *t,
			 const char *initiator)
{
	for (unsigned i = 0; i < t->ninit; i++)
		if (!strcmp(t->initiators[i], "*") ||
		    !strcasecmp(t->initiators[i], initiator))
			return true;
	return false;
}
