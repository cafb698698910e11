/* SCSI commands from an initiator's side, through libiscsi, one command
 * per run (tests/integration/iscsi_pr_restart.sh, iscsi_sanitize.sh):
 *
 *   iscsi_cdb URL ISID register KEY [aptpl]   REGISTER AND IGNORE EXISTING KEY
 *   iscsi_cdb URL ISID reserve KEY TYPE       RESERVE (TYPE 1..8)
 *   iscsi_cdb URL ISID release KEY TYPE
 *   iscsi_cdb URL ISID keys                   "generation G keys K1 K2 ..."
 *   iscsi_cdb URL ISID resv                   "reserved 0" | "reserved 1 key K type T"
 *   iscsi_cdb URL ISID caps                   "ptpl_c C ptpl_a A"
 *   iscsi_cdb URL ISID write                  one block at LBA 0: "status S"
 *   iscsi_cdb URL ISID tur                    "status S sense K/ASC/ASCQ"
 *   iscsi_cdb URL ISID progress               "progress N": TEST UNIT
 *                                             READY's progress indication
 *                                             (0..65535; 0 when none)
 *   iscsi_cdb URL ISID sanitize SA [immed]    SANITIZE OVERWRITE (SA 1, pattern
 *                                           "CAIRN!!!", one pass) or
 *                                           BLOCK ERASE (SA 2)
 *
 * ISID: the session's ISID qualifier (an I_T nexus is named by the
 * initiator name and the ISID, so the same ISID is the same nexus after a
 * reconnect). Keys are hex. Exit 0 when the command got GOOD (write:
 * always, the status is printed), 1 otherwise. */
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct iscsi_context *connect_lun(const char *url, uint32_t isid,
					 int *lun)
{
	struct iscsi_context *iscsi =
	    iscsi_create_context("iqn.2026-11.org.cairn:pr-tool");
	if (!iscsi)
		return NULL;
	struct iscsi_url *u = iscsi_parse_full_url(iscsi, url);
	if (!u) {
		fprintf(stderr, "url: %s\n", iscsi_get_error(iscsi));
		iscsi_destroy_context(iscsi);
		return NULL;
	}
	iscsi_set_isid_random(iscsi, isid, 0);
	iscsi_set_targetname(iscsi, u->target);
	iscsi_set_session_type(iscsi, ISCSI_SESSION_NORMAL);
	iscsi_set_header_digest(iscsi, ISCSI_HEADER_DIGEST_NONE);
	if (iscsi_full_connect_sync(iscsi, u->portal, u->lun)) {
		fprintf(stderr, "login: %s\n", iscsi_get_error(iscsi));
		iscsi_destroy_url(u);
		iscsi_destroy_context(iscsi);
		return NULL;
	}
	*lun = u->lun;
	iscsi_destroy_url(u);
	return iscsi;
}

static int good(struct scsi_task *t, struct iscsi_context *iscsi,
		const char *what)
{
	if (t && t->status == SCSI_STATUS_GOOD)
		return 1;
	fprintf(stderr, "%s: %s\n", what,
		t ? iscsi_get_error(iscsi) : "no task");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: see tests/tools/iscsi_pr.c\n");
		return 2;
	}
	int lun = 0, rc = 1;
	struct iscsi_context *iscsi =
	    connect_lun(argv[1], (uint32_t)strtoul(argv[2], NULL, 0), &lun);
	if (!iscsi)
		return 1;
	const char *cmd = argv[3];
	struct scsi_task *t = NULL;
	if (!strcmp(cmd, "register") && argc >= 5) {
		struct scsi_persistent_reserve_out_basic p = {
		    .service_action_reservation_key =
			strtoull(argv[4], NULL, 16),
		    .aptpl = argc > 5 && !strcmp(argv[5], "aptpl")};
		t = iscsi_persistent_reserve_out_sync(
		    iscsi, lun,
		    SCSI_PERSISTENT_RESERVE_REGISTER_AND_IGNORE_EXISTING_KEY, 0,
		    0, &p);
		rc = !good(t, iscsi, "register");
	} else if ((!strcmp(cmd, "reserve") || !strcmp(cmd, "release")) &&
		   argc == 6) {
		struct scsi_persistent_reserve_out_basic p = {
		    .reservation_key = strtoull(argv[4], NULL, 16)};
		t = iscsi_persistent_reserve_out_sync(
		    iscsi, lun,
		    cmd[2] == 's' ? SCSI_PERSISTENT_RESERVE_RESERVE
				  : SCSI_PERSISTENT_RESERVE_RELEASE,
		    0, atoi(argv[5]), &p);
		rc = !good(t, iscsi, cmd);
	} else if (!strcmp(cmd, "keys")) {
		t = iscsi_persistent_reserve_in_sync(
		    iscsi, lun, SCSI_PERSISTENT_RESERVE_READ_KEYS, 4096);
		struct scsi_persistent_reserve_in_read_keys *k =
		    good(t, iscsi, "keys") ? scsi_datain_unmarshall(t) : NULL;
		if (k) {
			printf("generation %" PRIu32 " keys", k->prgeneration);
			for (int i = 0; i < k->num_keys; i++)
				printf(" %" PRIx64, k->keys[i]);
			printf("\n");
			rc = 0;
		}
	} else if (!strcmp(cmd, "resv")) {
		t = iscsi_persistent_reserve_in_sync(
		    iscsi, lun, SCSI_PERSISTENT_RESERVE_READ_RESERVATION, 4096);
		struct scsi_persistent_reserve_in_read_reservation *r =
		    good(t, iscsi, "resv") ? scsi_datain_unmarshall(t) : NULL;
		if (r) {
			if (r->reserved)
				printf("reserved 1 key %" PRIx64 " type %d\n",
				       r->reservation_key, r->pr_type);
			else
				printf("reserved 0\n");
			rc = 0;
		}
	} else if (!strcmp(cmd, "caps")) {
		t = iscsi_persistent_reserve_in_sync(
		    iscsi, lun, SCSI_PERSISTENT_RESERVE_REPORT_CAPABILITIES,
		    4096);
		struct scsi_persistent_reserve_in_report_capabilities *c =
		    good(t, iscsi, "caps") ? scsi_datain_unmarshall(t) : NULL;
		/* libiscsi 1.19 leaves ptpl_a unset: byte 3 bit 0 */
		if (c && t->datain.size >= 4) {
			printf("ptpl_c %d ptpl_a %d\n", c->ptpl_c,
			       t->datain.data[3] & 0x01);
			rc = 0;
		}
	} else if (!strcmp(cmd, "tur")) {
		t = iscsi_testunitready_sync(iscsi, lun);
		if (t)
			printf("status %d sense %x/%02x/%02x\n", t->status,
			       t->sense.key, t->sense.ascq >> 8,
			       t->sense.ascq & 0xff);
		rc = t ? 0 : 1;
	} else if (!strcmp(cmd, "progress")) {
		t = iscsi_testunitready_sync(iscsi, lun);
		if (t)
			printf("progress %u\n", t->sense.sense_specific
						    ? t->sense.field_pointer
						    : 0u);
		rc = t ? 0 : 1;
	} else if (!strcmp(cmd, "sanitize") && argc >= 5) {
		int sa = atoi(argv[4]);
		int immed = argc > 5 && !strcmp(argv[5], "immed");
		unsigned char pl[12] = {0x01, 0, 0, 8, 'C', 'A', 'I', 'R',
					'N', '!', '!', '!'};
		struct iscsi_data d = {.size = sizeof(pl), .data = pl};
		t = iscsi_sanitize_sync(iscsi, lun, immed, 0, sa,
					sa == 1 ? (int)sizeof(pl) : 0,
					sa == 1 ? &d : NULL);
		rc = !good(t, iscsi, "sanitize");
	} else if (!strcmp(cmd, "write")) {
		unsigned char blk[4096] = {0x5a};
		t = iscsi_write10_sync(iscsi, lun, 0, blk, 512, 512, 0, 0, 0,
				       0, 0);
		printf("status %d\n", t ? t->status : -1);
		rc = t ? 0 : 1;
	} else {
		fprintf(stderr, "unknown command %s\n", cmd);
		rc = 2;
	}
	if (t)
		scsi_free_scsi_task(t);
	iscsi_logout_sync(iscsi);
	iscsi_destroy_context(iscsi);
	return rc;
}
