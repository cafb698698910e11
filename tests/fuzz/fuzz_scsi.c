/* libFuzzer target over the SCSI target core: whole commands (CDB, data-out,
 * data-in buffer size, LUN, nexus) through scsi_cmd_submit against a real
 * sds pool, so every handler's parsing (parameter lists of UNMAP, MODE
 * SELECT, PERSISTENT RESERVE OUT, EXTENDED COPY) and its engine requests
 * run under ASan/UBSan.
 *
 *   make MODE=fuzz fuzzers && build/fuzz/fuzz_scsi -runs=50000 -seed=1
 *
 * Input: byte 0 picks the nexus (bit 0) and the LUN (bits 1-3), byte 1 the
 * data-in buffer size (x 256 bytes), bytes 2-17 the CDB, the rest is the
 * data-out buffer. The pool lives in a temporary directory for the whole
 * run (small vdisks keep every in-range command fast). */
#include <cairn/scsi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct {
	bool ready;
	uv_loop_t loop;
	char base[64];
	struct sds_pool *pool;
	struct scsi_target *t;
	struct scsi_lu *lu[4];
	struct scsi_lun_map map[2];
	struct scsi_lun_map_entry ents[2][4];
	struct scsi_nexus nexus[2];
	uint8_t *in;
} F;

static void cleanup(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", F.base);
	if (system(cmd) != 0)
		fprintf(stderr, "fuzz_scsi: cleanup failed\n");
}

static void setup(void)
{
	char err[256], dir[128], disk[128];
	uv_loop_init(&F.loop);
	snprintf(F.base, sizeof(F.base), "/tmp/cairn-fuzz-scsi-XXXXXX");
	if (!mkdtemp(F.base))
		abort();
	atexit(cleanup);
	snprintf(dir, sizeof(dir), "%s/pool", F.base);
	snprintf(disk, sizeof(disk), "%s/d0.img", F.base);
	const char *disks[] = {disk};
	uint64_t sizes[] = {128 << 20};
	if (sds_pool_format(dir, disks, sizes, 1, err, sizeof(err)) ||
	    sds_pool_open(&F.loop, dir, NULL, &F.pool, err, sizeof(err))) {
		fprintf(stderr, "fuzz_scsi: %s\n", err);
		abort();
	}
	if (sds_vdisk_create(F.pool, "a", 4 << 20, 512) ||
	    sds_vdisk_create(F.pool, "b", 4 << 20, 4096) ||
	    sds_vdisk_create(F.pool, "c", 4 << 20, 512) ||
	    sds_vdisk_snapshot(F.pool, "a", "s") ||
	    scsi_target_create(&F.loop, F.pool, &F.t))
		abort();
	const char *names[] = {"a", "b", "s", "c"};
	for (int i = 0; i < 4; i++)
		if (scsi_lu_create(F.t, names[i], &F.lu[i]))
			abort();
	/* nexus 0 sees a, b, s; nexus 1 sees a and c: XCOPY between them
	 * must never reach the other's LU */
	for (int i = 0; i < 3; i++)
		F.ents[0][i] = (struct scsi_lun_map_entry){(uint64_t)i, F.lu[i]};
	F.ents[1][0] = (struct scsi_lun_map_entry){0, F.lu[0]};
	F.ents[1][1] = (struct scsi_lun_map_entry){5, F.lu[3]};
	F.map[0] = (struct scsi_lun_map){3, F.ents[0]};
	F.map[1] = (struct scsi_lun_map){2, F.ents[1]};
	for (int i = 0; i < 2; i++) {
		snprintf(F.nexus[i].initiator_port,
			 sizeof(F.nexus[i].initiator_port),
			 "iqn.2026-11.fuzz:%d,i,0x00000000000%d", i, i);
		snprintf(F.nexus[i].target_port,
			 sizeof(F.nexus[i].target_port),
			 "iqn.2026-11.fuzz:t,t,0x0001");
		F.nexus[i].rel_target_port_id = 1;
		F.nexus[i].map = &F.map[i];
		scsi_nexus_register(F.t, &F.nexus[i]);
	}
	if (posix_memalign((void **)&F.in, 4096, 65536))
		abort();
	F.ready = true;
}

static void done_cb(struct scsi_cmd *c)
{
	*(bool *)c->priv = true;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	if (!F.ready)
		setup();
	if (n < 18)
		return 0;
	struct scsi_cmd c;
	memset(&c, 0, sizeof(c));
	c.nexus = &F.nexus[d[0] & 1];
	static const uint64_t luns[8] = {0, 1, 2, 5, 3, 9, 300, 0};
	c.lun = luns[(d[0] >> 1) & 7];
	memcpy(c.cdb, d + 2, 16);
	c.cdb_len = 16;
	c.tag = n;
	size_t olen = n - 18;
	uint8_t *out = NULL;
	if (olen) {
		out = malloc(olen);
		if (!out)
			return 0;
		memcpy(out, d + 18, olen);
	}
	c.data_out = out;
	c.data_out_len = (uint32_t)olen;
	c.data_in = F.in;
	c.data_in_cap = (uint32_t)d[1] * 256u;
	bool done = false;
	c.priv = &done;
	c.done = done_cb;
	scsi_cmd_submit(F.t, &c);
	while (!done)
		uv_run(&F.loop, UV_RUN_ONCE);
	if (c.data_in_len > c.data_in_cap || c.sense_len > SCSI_SENSE_MAX)
		abort();
	free(out);
	return 0;
}
