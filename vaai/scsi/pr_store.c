/* Persistent reservations that persist through power loss (SPC-5 5.14.5,
 * APTPL): when the last successful REGISTER had APTPL=1, the LU's
 * registrations, its reservation and the PRgeneration are kept as the
 * vdisk attribute "scsi.pr" (sds_vdisk_attr_set: durable on return) after
 * every PERSISTENT RESERVE OUT that changes them, before the command
 * completes, and restored when the LU is created. A REGISTER with APTPL=0
 * deletes the attribute (the state from then on lives in memory only).
 *
 * Encoding (little room for doubt across versions): "CPR" version(1)
 *   u8 flags (bit 0: reserved), u8 type, u16 0, be32 generation,
 *   be32 holder index (0xffffffff: none or all registrants), be32 count,
 *   then per registration: be64 key, be16 relative target port id,
 *   be16 initiator port length, be16 target port length, the two names. */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "scsi_internal.h"

#define PR_STORE_ATTR "scsi.pr"
#define PR_STORE_MAGIC "CPR\x01"
#define PR_STORE_HDR 20u
#define PR_STORE_NONE 0xffffffffu

int pr_store_encode(const struct scsi_lu *lu, uint8_t **out, size_t *len)
{
	const struct scsi_pr *pr = &lu->pr;
	size_t cap = PR_STORE_HDR, n = 0;
	const struct scsi_pr_reg *r;
	LIST_FOREACH(r, &pr->regs, link)
		cap += 14 + strlen(r->initiator_port) + strlen(r->target_port);
	uint8_t *d = calloc(1, cap);
	if (!d)
		return -ENOMEM;
	memcpy(d, PR_STORE_MAGIC, 4);
	d[4] = pr->reserved ? 1 : 0;
	d[5] = pr->type;
	put_be32(d + 8, pr->generation);
	uint32_t holder = PR_STORE_NONE, i = 0;
	size_t off = PR_STORE_HDR;
	LIST_FOREACH(r, &pr->regs, link) {
		if (pr->holder == r)
			holder = i;
		uint16_t il = (uint16_t)strlen(r->initiator_port);
		uint16_t tl = (uint16_t)strlen(r->target_port);
		put_be64(d + off, r->key);
		put_be16(d + off + 8, r->rel_target_port_id);
		put_be16(d + off + 10, il);
		put_be16(d + off + 12, tl);
		memcpy(d + off + 14, r->initiator_port, il);
		memcpy(d + off + 14 + il, r->target_port, tl);
		off += 14u + il + tl;
		i++;
		n++;
	}
	put_be32(d + 12, holder);
	put_be32(d + 16, (uint32_t)n);
	*out = d;
	*len = off;
	return 0;
}

/* Whether registration i of an encoding starts at *off and fits; moves
 * *off past it. */
static bool pr_store_reg_ok(const uint8_t *d, size_t len, size_t *off)
{
	if (*off + 14 > len)
		return false;
	size_t il = get_be16(d + *off + 10), tl = get_be16(d + *off + 12);
	if (!il || il >= SCSI_NAME_MAX + 32 || tl >= SCSI_NAME_MAX + 32 ||
	    *off + 14 + il + tl > len)
		return false;
	*off += 14 + il + tl;
	return true;
}

/* Replaces the LU's state with the encoded one (the SPC-2 reservation and
 * the APTPL state stay). -EINVAL, with the state untouched, if it does not
 * parse; -ENOMEM with the registrations that could be allocated.
 * Registrations keep their order, so encode(decode(x)) == x. */
int pr_store_decode(struct scsi_lu *lu, const uint8_t *d, size_t len)
{
	if (len < PR_STORE_HDR || memcmp(d, PR_STORE_MAGIC, 4))
		return -EINVAL;
	uint32_t holder = get_be32(d + 12), count = get_be32(d + 16);
	if (count > PR_MAX_REGS || (holder != PR_STORE_NONE && holder >= count))
		return -EINVAL;
	size_t off = PR_STORE_HDR;
	for (uint32_t i = 0; i < count; i++)
		if (!pr_store_reg_ok(d, len, &off))
			return -EINVAL;
	if (off != len)
		return -EINVAL;
	pr_lu_free(lu);
	struct scsi_pr *pr = &lu->pr;
	pr->generation = get_be32(d + 8);
	pr->type = d[5];
	struct scsi_pr_reg *last = NULL;
	off = PR_STORE_HDR;
	for (uint32_t i = 0; i < count; i++) {
		struct scsi_pr_reg *r = calloc(1, sizeof(*r));
		if (!r)
			return -ENOMEM;
		size_t il = get_be16(d + off + 10), tl = get_be16(d + off + 12);
		r->key = get_be64(d + off);
		r->rel_target_port_id = get_be16(d + off + 8);
		memcpy(r->initiator_port, d + off + 14, il);
		memcpy(r->target_port, d + off + 14 + il, tl);
		off += 14 + il + tl;
		if (last)
			LIST_INSERT_AFTER(last, r, link);
		else
			LIST_INSERT_HEAD(&pr->regs, r, link);
		last = r;
		pr->nregs++;
		if (i == holder)
			pr->holder = r;
	}
	/* A reservation needs a holder, but for the all-registrants types
	 * (any registration holds it) and a known type. */
	pr->reserved = (d[4] & 1) && pr_type_valid(pr->type) &&
		       (pr->holder || pr_all_registrants(pr->type)) &&
		       pr->nregs;
	if (!pr->reserved) {
		pr->type = 0;
		pr->holder = NULL;
	}
	return 0;
}

int pr_store_save(struct scsi_lu *lu)
{
	if (!lu->pr.aptpl)
		return sds_vdisk_attr_set(lu->vd, PR_STORE_ATTR, NULL, 0);
	uint8_t *d;
	size_t len;
	int rc = pr_store_encode(lu, &d, &len);
	if (rc)
		return rc;
	rc = sds_vdisk_attr_set(lu->vd, PR_STORE_ATTR, d, len);
	free(d);
	return rc;
}

void pr_store_load(struct scsi_lu *lu)
{
	void *d;
	size_t len;
	int rc = sds_vdisk_attr_get(lu->vd, PR_STORE_ATTR, &d, &len);
	if (rc == -ENOENT)
		return;
	if (!rc)
		rc = pr_store_decode(lu, d, len);
	free(d);
	if (rc) {
		/* Better no reservation than a wrong one; the initiators
		 * register again. */
		log_error("scsi", "%s: persistent reservations not restored: "
			  "%s", lu->name, strerror(-rc));
		pr_lu_free(lu);
		return;
	}
	lu->pr.aptpl = true;
	log_info("scsi", "%s: %u persistent reservation registration(s) "
		 "restored (APTPL), %s", lu->name, lu->pr.nregs,
		 lu->pr.reserved ? "reserved" : "not reserved");
}
