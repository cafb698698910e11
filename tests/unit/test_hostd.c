/* cairn-hostd's pure parts (hypervisor/hostd/): definitions and their
 * validation, the state machine and its persistence, the QEMU command line,
 * MAC generation, QMP framing, cgroup files on a fake tree. No QEMU, no
 * socket. */
#include <cairn/hostd.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../hypervisor/hostd/hostd_internal.h"
#include "check.h"
#include "util.h"

int failures;

static char tmpdir[64];
static char kernel[128];

static json_t *def_json(const char *extra)
{
	char buf[2048];
	snprintf(
	    buf, sizeof(buf),
	    "{\"name\": \"vm1\", \"vcpus\": 2, \"memory_mib\": 512, "
	    "\"boot\": {\"kernel\": \"%s\", \"cmdline\": \"console=ttyS0\"}"
	    "%s%s}",
	    kernel, extra[0] ? ", " : "", extra);
	json_error_t je;
	json_t *j = json_loads(buf, 0, &je);
	if (!j)
		fprintf(stderr, "bad test JSON: %s: %s\n", buf, je.text);
	return j;
}

/* Parses + validates; returns the error code and leaves the message. */
static int parse(const char *extra, struct vm_def *d, char *err)
{
	static const struct vm_host_limits host = {.cpus = 2,
						   .memory_mib = 4096};
	json_t *j = def_json(extra);
	int rc = vm_def_from_json(j, d, err, 256);
	json_decref(j);
	if (rc == 0)
		rc = vm_def_validate(d, &host, true, err, 256);
	return rc;
}

static int parse_err(const char *extra, const char *want)
{
	struct vm_def d;
	char err[256] = "";
	int rc = parse(extra, &d, err);
	vm_def_free(&d);
	if (rc != -EINVAL || !strstr(err, want)) {
		fprintf(stderr, "  %s -> rc %d, '%s' (wanted '%s')\n", extra,
			rc, err, want);
		return 0;
	}
	return 1;
}

static void test_def_parse(void)
{
	struct vm_def d;
	char err[256] = "";
	CHECK_EQ(parse("\"uuid\": \"0F8FAD5B-D9CB-469F-A165-70867728950E\", "
		       "\"disks\": [{\"file\": \"/dev/null\"}, "
		       "{\"vhost_socket\": \"/run/x.sock\"}], "
		       "\"nics\": [{\"bridge\": \"br9\"}, {\"mac\": "
		       "\"52:54:00:aa:bb:cc\"}], \"restart\": \"on-crash\", "
		       "\"limits\": {\"cpu_pct\": 150, \"memory_mib\": 700}",
		       &d, err),
		 -EINVAL); /* /dev/null is not a file, the socket is absent */
	CHECK(strstr(err, "disks[0]") != NULL);
	vm_def_free(&d);

	CHECK_EQ(parse("\"uuid\": \"0F8FAD5B-D9CB-469F-A165-70867728950E\", "
		       "\"nics\": [{\"bridge\": \"br9\"}, {\"mac\": "
		       "\"52:54:00:aa:bb:cc\"}], \"restart\": \"on-crash\", "
		       "\"limits\": {\"cpu_pct\": 150, \"memory_mib\": 700}",
		       &d, err),
		 0);
	CHECK(!strcmp(d.name, "vm1"));
	CHECK(!strcmp(d.uuid, "0f8fad5b-d9cb-469f-a165-70867728950e"));
	CHECK_EQ(d.vcpus, 2);
	CHECK_EQ(d.memory_mib, 512);
	CHECK_EQ(d.boot, VM_BOOT_KERNEL);
	CHECK_EQ(d.n_nics, 2);
	CHECK(!strcmp(d.nics[0].bridge, "br9"));
	CHECK(!d.nics[0].mac_given);
	CHECK(d.nics[1].mac_given);
	CHECK_EQ(d.nics[1].mac[5], 0xcc);
	CHECK_EQ(d.restart, VM_RESTART_ON_CRASH);
	CHECK_EQ(d.cpu_limit_pct, 150);
	CHECK_EQ(d.memory_limit_mib, 700);
	/* Round trip through JSON keeps everything, generated MAC included. */
	json_t *j = vm_def_to_json(&d);
	struct vm_def d2;
	CHECK_EQ(vm_def_from_json(j, &d2, err, sizeof(err)), 0);
	CHECK(!memcmp(d.nics[0].mac, d2.nics[0].mac, 6));
	CHECK(!strcmp(d2.kernel, d.kernel));
	CHECK(!strcmp(d2.cmdline, "console=ttyS0"));
	CHECK_EQ(d2.memory_limit_mib, 700);
	json_decref(j);
	vm_def_free(&d2);
	vm_def_free(&d);
}

/* {"vdisk": NAME}: kept by name in the definition, resolved to the socket
 * cairnd serves it on only when the agent has a --vhost-dir. */
static void test_def_vdisk(void)
{
	struct vm_def d;
	char err[256] = "";
	json_t *j = def_json("\"disks\": [{\"vdisk\": \"vm0\"}]");
	CHECK_EQ(vm_def_from_json(j, &d, err, sizeof(err)), 0);
	json_decref(j);
	CHECK(d.disks[0].vdisk && !strcmp(d.disks[0].vdisk, "vm0"));
	CHECK_EQ(vm_def_resolve_vdisks(&d, NULL, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "no --vhost-dir") != NULL);
	static const struct vm_host_limits host = {.cpus = 2,
						   .memory_mib = 4096};
	CHECK_EQ(vm_def_validate(&d, &host, true, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "not resolved") != NULL);
	CHECK_EQ(vm_def_resolve_vdisks(&d, "/run/cairn/vhost", err,
				       sizeof(err)), 0);
	CHECK(!strcmp(d.disks[0].vhost_socket, "/run/cairn/vhost/vm0.sock"));
	/* The stored definition names the vdisk, not today's socket. */
	j = vm_def_to_json(&d);
	json_t *disk = json_array_get(json_object_get(j, "disks"), 0);
	CHECK(!strcmp(json_string_value(json_object_get(disk, "vdisk")),
		      "vm0"));
	CHECK(json_object_get(disk, "vhost_socket") == NULL);
	json_decref(j);
	vm_def_free(&d);
	CHECK(parse_err("\"disks\": [{\"vdisk\": \"../x\"}]",
			"bad vdisk name"));
	CHECK(parse_err("\"disks\": [{\"vdisk\": \".hidden\"}]",
			"bad vdisk name"));
	CHECK(parse_err("\"disks\": [{\"vdisk\": \"a\", \"file\": "
			"\"/b\"}]",
			"exactly one of"));
}

static void test_def_refused(void)
{
	/* Impossible resources. */
	CHECK(parse_err("\"vcpus\": 0", "vcpus must be at least 1"));
	CHECK(parse_err("\"vcpus\": 9", "more than 4x the host's 2 CPUs"));
	CHECK(parse_err("\"vcpus\": -1", "non-negative"));
	CHECK(parse_err("\"memory_mib\": 0", "memory_mib must be at least 1"));
	CHECK(parse_err("\"memory_mib\": 4097", "more than the host's 4096"));
	CHECK(parse_err("\"limits\": {\"memory_mib\": 100}",
			"below the VM's memory"));
	CHECK(parse_err("\"limits\": {\"cpu_pct\": 0}", "cpu_pct"));
	/* Shape errors. */
	CHECK(parse_err("\"name\": \"../etc\"", "name must be"));
	CHECK(parse_err("\"name\": \"\"", "name must be"));
	CHECK(parse_err("\"uuid\": \"nope\"", "uuid must"));
	CHECK(parse_err("\"restart\": \"sometimes\"", "restart must"));
	CHECK(parse_err("\"disks\": [{}]", "exactly one of"));
	CHECK(parse_err("\"disks\": [{\"file\": \"/a\", \"vhost_socket\": "
			"\"/b\"}]",
			"exactly one of"));
	CHECK(parse_err("\"disks\": [{\"file\": \"/nonexistent/x\"}]",
			"No such file"));
	CHECK(parse_err("\"nics\": [{\"mac\": \"01:00:00:00:00:01\"}]",
			"unicast"));
	CHECK(parse_err("\"nics\": [{\"bridge\": \"a-very-long-bridge-name\"}]",
			"interface name"));
	CHECK(parse_err("\"colour\": \"red\"", "unknown field 'colour'"));

	struct vm_def d;
	char err[256];
	static const struct vm_host_limits host = {.cpus = 2,
						   .memory_mib = 4096};
	json_t *j = json_loads("{\"name\": \"x\", \"memory_mib\": 64, "
			       "\"boot\": {\"kernel\": \"/nonexistent/k\"}}",
			       0, NULL);
	CHECK_EQ(vm_def_from_json(j, &d, err, sizeof(err)), 0);
	CHECK_EQ(vm_def_validate(&d, &host, true, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "kernel /nonexistent/k") != NULL);
	CHECK_EQ(vm_def_validate(&d, &host, false, err, sizeof(err)), 0);
	vm_def_free(&d);
	json_decref(j);
	j = json_loads("{\"name\": \"x\", \"memory_mib\": 64, \"boot\": "
		       "{\"firmware\": \"ovmf\"}}",
		       0, NULL);
	CHECK_EQ(vm_def_from_json(j, &d, err, sizeof(err)), 0);
	CHECK_EQ(d.boot, VM_BOOT_DISK);
	CHECK_EQ(d.firmware, VM_FW_OVMF);
	CHECK_EQ(vm_def_validate(&d, &host, false, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "needs a disk") != NULL);
	vm_def_free(&d);
	json_decref(j);
	CHECK_EQ(vm_def_from_json(NULL, &d, err, sizeof(err)), -EINVAL);
	vm_def_free(&d);
}

static void test_mac(void)
{
	const char *u1 = "0f8fad5b-d9cb-469f-a165-70867728950e";
	const char *u2 = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
	uint8_t a[6], b[6], c[6], e[6];
	vm_mac_generate(u1, 0, a);
	vm_mac_generate(u1, 0, b);
	vm_mac_generate(u1, 1, c);
	vm_mac_generate(u2, 0, e);
	CHECK(!memcmp(a, b, 6)); /* stable */
	CHECK(memcmp(a, c, 6));	 /* per NIC */
	CHECK(memcmp(a, e, 6));	 /* per VM */
	CHECK_EQ(a[0], 0x52);
	CHECK_EQ(a[1], 0x54);
	CHECK_EQ(a[2], 0x00);
	CHECK(a[0] & 0x02);    /* locally administered */
	CHECK(!(a[0] & 0x01)); /* unicast */
	char s[18];
	vm_mac_format(a, s);
	CHECK_EQ(strlen(s), 17);
	CHECK(!strncmp(s, "52:54:00:", 9));
	/* Pinned: a MAC must never change across releases. */
	uint8_t pinned[6];
	vm_mac_generate("00000000-0000-0000-0000-000000000000", 0, pinned);
	vm_mac_format(pinned, s);
	CHECK(!strcmp(s, "52:54:00:bb:64:94"));
}

static void test_state_machine(void)
{
	CHECK(vm_state_transition_ok(VM_DEFINED, VM_STARTING));
	CHECK(vm_state_transition_ok(VM_STARTING, VM_RUNNING));
	CHECK(vm_state_transition_ok(VM_RUNNING, VM_STOPPING));
	CHECK(vm_state_transition_ok(VM_STOPPING, VM_STOPPED));
	CHECK(vm_state_transition_ok(VM_STOPPED, VM_STARTING));
	CHECK(vm_state_transition_ok(VM_RUNNING, VM_CRASHED));
	CHECK(vm_state_transition_ok(VM_CRASHED, VM_STARTING));
	CHECK(vm_state_transition_ok(VM_RUNNING, VM_PAUSED));
	CHECK(vm_state_transition_ok(VM_PAUSED, VM_RUNNING));
	CHECK(vm_state_transition_ok(VM_RUNNING, VM_STOPPED)); /* guest off */
	CHECK(vm_state_transition_ok(VM_STARTING, VM_CRASHED));
	CHECK(!vm_state_transition_ok(VM_DEFINED, VM_RUNNING));
	CHECK(!vm_state_transition_ok(VM_STOPPED, VM_RUNNING));
	CHECK(!vm_state_transition_ok(VM_STOPPED, VM_CRASHED));
	CHECK(!vm_state_transition_ok(VM_STOPPING, VM_RUNNING));
	CHECK(!vm_state_transition_ok(VM_CRASHED, VM_RUNNING));
	CHECK(!vm_state_transition_ok(VM_DEFINED, VM_STOPPED));
	CHECK(!vm_state_transition_ok(VM_STATE_COUNT, VM_DEFINED));
	CHECK(!vm_state_transition_ok(VM_DEFINED, (enum vm_state) - 1));
	for (int s = 0; s < VM_STATE_COUNT; s++) {
		CHECK_EQ(vm_state_from_name(vm_state_name((enum vm_state)s)),
			 s);
		CHECK(!vm_state_transition_ok((enum vm_state)s, VM_DEFINED));
	}
	CHECK_EQ(vm_state_from_name("bogus"), -EINVAL);
	CHECK(vm_state_has_process(VM_RUNNING));
	CHECK(vm_state_has_process(VM_STOPPING));
	CHECK(!vm_state_has_process(VM_CRASHED));
	CHECK(!vm_state_has_process(VM_DEFINED));
}

static void test_record(void)
{
	char dir[128], err[256];
	snprintf(dir, sizeof(dir), "%s/state", tmpdir);
	mkdir(dir, 0755);
	char vms[160];
	snprintf(vms, sizeof(vms), "%s/vms", dir);
	mkdir(vms, 0755);
	struct vm_record r = {0}, l;
	CHECK_EQ(parse("\"uuid\": \"0f8fad5b-d9cb-469f-a165-70867728950e\", "
		       "\"nics\": [{}]",
		       &r.def, err),
		 0);
	r.state = VM_RUNNING;
	r.pid = 4242;
	r.restarts = 3;
	snprintf(r.reason, sizeof(r.reason), "QEMU running");
	CHECK_EQ(vm_record_save(dir, &r), 0);
	char path[256];
	snprintf(path, sizeof(path), "%s/vm1.json", vms);
	CHECK_EQ(vm_record_load(path, &l, err, sizeof(err)), 0);
	CHECK_EQ(l.state, VM_RUNNING);
	CHECK_EQ(l.pid, 4242);
	CHECK_EQ(l.restarts, 3);
	CHECK(!strcmp(l.reason, "QEMU running"));
	CHECK(!strcmp(l.def.uuid, r.def.uuid));
	CHECK(!memcmp(l.def.nics[0].mac, r.def.nics[0].mac, 6));
	vm_def_free(&l.def);
	/* No temp file left behind. */
	char tmp[300];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	CHECK(access(tmp, F_OK) != 0);
	/* A torn or foreign file is refused, not trusted. */
	FILE *f = fopen(path, "w");
	fputs("{\"def\": {\"name\": \"vm1\"", f);
	fclose(f);
	CHECK_EQ(vm_record_load(path, &l, err, sizeof(err)), -EINVAL);
	f = fopen(path, "w");
	fputs("{\"def\": {\"name\": \"vm1\", \"memory_mib\": 1, \"boot\": "
	      "{\"kernel\": \"/k\"}}, \"state\": \"flying\"}",
	      f);
	fclose(f);
	CHECK_EQ(vm_record_load(path, &l, err, sizeof(err)), -EINVAL);
	CHECK_EQ(vm_record_remove(dir, "vm1"), 0);
	CHECK(access(path, F_OK) != 0);
	CHECK_EQ(vm_record_remove(dir, "vm1"), 0);
	vm_def_free(&r.def);
}

static int argv_has(char **argv, const char *opt, const char *val)
{
	for (char **p = argv; *p && p[1]; p++)
		if (!strcmp(p[0], opt) && strstr(p[1], val))
			return 1;
	fprintf(stderr, "  argv lacks %s %s\n", opt, val);
	return 0;
}

static void test_qemu_argv(void)
{
	struct vm_def d;
	struct vm_paths p;
	char err[256], **argv = NULL;
	CHECK_EQ(parse("\"uuid\": \"0f8fad5b-d9cb-469f-a165-70867728950e\", "
		       "\"nics\": [{\"bridge\": \"br0\", \"mac\": "
		       "\"52:54:00:12:34:56\"}]",
		       &d, err),
		 0);
	/* Validation checks files; add the disks after it. */
	d.disks[0].vhost_socket = strdup("/run/cairn/vd,0.sock");
	d.disks[1].file = strdup("/var/lib/x.img");
	d.n_disks = 2;
	CHECK_EQ(vm_paths_init(&p, "/var/lib/cairn", "vm1"), 0);
	CHECK(!strcmp(p.qmp, "/var/lib/cairn/run/vm1/qmp.sock"));
	struct qemu_host tcg = {.accel = HOSTD_ACCEL_TCG};
	CHECK_EQ(qemu_build_argv(&d, &p, &tcg, &argv), 0);
	CHECK(!strcmp(argv[0], "qemu-system-x86_64"));
	CHECK(argv_has(argv, "-name", "vm1"));
	CHECK(argv_has(argv, "-uuid", "0f8fad5b-d9cb-469f-a165-70867728950e"));
	CHECK(argv_has(argv, "-machine", "q35,memory-backend=cairn-mem"));
	CHECK(argv_has(argv, "-accel", "tcg"));
	CHECK(argv_has(argv, "-smp", "2"));
	CHECK(argv_has(argv, "-m", "512M"));
	CHECK(argv_has(argv, "-object",
		       "memory-backend-memfd,id=cairn-mem,size=512M,share=on"));
	CHECK(argv_has(argv, "-kernel", kernel));
	CHECK(argv_has(argv, "-append", "console=ttyS0"));
	/* The comma in the socket path is doubled for QEMU's parser. */
	CHECK(argv_has(argv, "-chardev",
		       "socket,id=vhost0,path=/run/cairn/vd,,0.sock"));
	CHECK(argv_has(argv, "-device",
		       "vhost-user-blk-pci,id=disk0,chardev=vhost0"));
	CHECK(argv_has(argv, "-blockdev", "filename=/var/lib/x.img"));
	CHECK(argv_has(argv, "-device", "virtio-blk-pci,id=vblk1,drive=disk1"));
	CHECK(argv_has(argv, "-netdev",
		       "tap,id=net0,ifname=ct0f8fad5bn0,"
		       "script=no,downscript=no"));
	CHECK(argv_has(argv, "-device",
		       "virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56"));
	CHECK(argv_has(argv, "-chardev",
		       "path=/var/lib/cairn/run/vm1/serial.sock,server=on,"
		       "wait=off,logfile=/var/lib/cairn/run/vm1/console.log"));
	CHECK(argv_has(argv, "-serial", "chardev:serial0"));
	CHECK(argv_has(argv, "-chardev",
		       "path=/var/lib/cairn/run/vm1/qmp.sock,server=on"));
	CHECK(argv_has(argv, "-mon", "mode=control"));
	CHECK(argv_has(argv, "-pidfile", "/var/lib/cairn/run/vm1/qemu.pid"));
	size_t n = 0;
	for (char **a = argv; *a; a++) {
		CHECK(strcmp(*a, "-daemonize"));
		n++;
	}
	CHECK(n > 30);
	qemu_argv_free(argv);
	struct qemu_host kvm = {.accel = HOSTD_ACCEL_KVM, .qemu_bin = "/opt/q"};
	CHECK_EQ(qemu_build_argv(&d, &p, &kvm, &argv), 0);
	CHECK(!strcmp(argv[0], "/opt/q"));
	CHECK(argv_has(argv, "-accel", "kvm"));
	CHECK(argv_has(argv, "-cpu", "host"));
	qemu_argv_free(argv);
	vm_def_free(&d);

	/* Firmware boot: OVMF flash, boot index on the first disk. */
	json_t *j = json_loads("{\"name\": \"fw\", \"memory_mib\": 64, "
			       "\"uuid\": \"7c9e6679-7425-40de-944b-"
			       "e07fc1f90ae7\", \"boot\": {\"firmware\": "
			       "\"ovmf\"}, \"disks\": [{\"file\": \"/d\"}]}",
			       0, NULL);
	CHECK_EQ(vm_def_from_json(j, &d, err, sizeof(err)), 0);
	json_decref(j);
	CHECK_EQ(qemu_build_argv(&d, &p, &tcg, &argv), 0);
	CHECK(argv_has(argv, "-drive",
		       "if=pflash,unit=0,format=raw,readonly=on,"
		       "file=" HOSTD_OVMF_CODE));
	/* The VM's own variable store, writable, beside its definition. */
	CHECK(!strcmp(p.nvram, "/var/lib/cairn/vms/vm1.nvram.fd"));
	CHECK(argv_has(argv, "-drive",
		       "if=pflash,unit=1,format=raw,"
		       "file=/var/lib/cairn/vms/vm1.nvram.fd"));
	CHECK(argv_has(argv, "-device", "bootindex=0"));
	qemu_argv_free(argv);
	struct qemu_host other = {.accel = HOSTD_ACCEL_TCG,
				  .ovmf_code = "/opt/ovmf,4m/CODE.fd"};
	CHECK_EQ(qemu_build_argv(&d, &p, &other, &argv), 0);
	CHECK(
	    argv_has(argv, "-drive", "readonly=on,file=/opt/ovmf,,4m/CODE.fd"));
	qemu_argv_free(argv);
	/* SeaBIOS is QEMU's default: no flash at all. */
	d.firmware = VM_FW_SEABIOS;
	CHECK_EQ(qemu_build_argv(&d, &p, &tcg, &argv), 0);
	for (char **a = argv; *a; a++)
		CHECK(!strstr(*a, "pflash"));
	qemu_argv_free(argv);
	vm_def_free(&d);

	/* Socket paths must fit sun_path. */
	char longdir[200];
	memset(longdir, 'a', sizeof(longdir) - 1);
	longdir[0] = '/';
	longdir[sizeof(longdir) - 1] = '\0';
	CHECK_EQ(vm_paths_init(&p, longdir, "vm1"), -ENAMETOOLONG);
}

struct frames {
	int n, bad;
	enum qmp_msg_kind kinds[16];
};

static int on_frame(void *arg, json_t *m)
{
	struct frames *f = arg;
	if (!m)
		f->bad++;
	else if (f->n < 16)
		f->kinds[f->n++] = qmp_msg_classify(m);
	return 0;
}

static void test_qmp_framing(void)
{
	struct qmp_framer fr;
	struct frames f = {0};
	qmp_framer_init(&fr, 1024);
	const char *greeting = "{\"QMP\": {\"version\": {}, \"capabilities\": "
			       "[\"oob\"]}}\r\n";
	/* Byte by byte: nothing until the newline. */
	for (size_t i = 0; i < strlen(greeting); i++)
		CHECK_EQ(qmp_framer_feed(&fr, greeting + i, 1, on_frame, &f),
			 i + 1 == strlen(greeting) ? 1 : 0);
	CHECK_EQ(f.n, 1);
	CHECK_EQ(f.kinds[0], QMP_MSG_GREETING);
	/* Several in one read, the last one split. */
	const char *many =
	    "{\"return\": {}, \"id\": 1}\r\n"
	    "{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": "
	    "true}, \"timestamp\": {}}\r\n"
	    "{\"error\": {\"class\": \"GenericError\", \"desc\": "
	    "\"x\"}, \"id\": 2}\r\n"
	    "{\"return\": {\"status\": \"run";
	CHECK_EQ(qmp_framer_feed(&fr, many, strlen(many), on_frame, &f), 3);
	CHECK_EQ(f.n, 4);
	CHECK_EQ(f.kinds[1], QMP_MSG_RETURN);
	CHECK_EQ(f.kinds[2], QMP_MSG_EVENT);
	CHECK_EQ(f.kinds[3], QMP_MSG_ERROR);
	CHECK_EQ(
	    qmp_framer_feed(&fr, "ning\"}, \"id\": 3}\n", 17, on_frame, &f), 1);
	CHECK_EQ(f.kinds[4], QMP_MSG_RETURN);
	/* Garbage lines are reported and skipped; blank lines ignored. */
	CHECK_EQ(
	    qmp_framer_feed(&fr, "\r\n{not json\n[1,2]\n", 18, on_frame, &f),
	    2);
	CHECK_EQ(f.bad, 1);
	CHECK_EQ(f.kinds[5], QMP_MSG_UNKNOWN);
	/* An over-long line is a protocol error, split or not. */
	char big[1500];
	memset(big, 'x', sizeof(big));
	CHECK_EQ(qmp_framer_feed(&fr, big, sizeof(big), on_frame, &f), -EPROTO);
	qmp_framer_free(&fr);
	qmp_framer_init(&fr, 1024);
	big[sizeof(big) - 1] = '\n';
	CHECK_EQ(qmp_framer_feed(&fr, big, sizeof(big), on_frame, &f), -EPROTO);
	qmp_framer_free(&fr);
	CHECK_EQ(qmp_msg_classify(NULL), QMP_MSG_UNKNOWN);
}

static int read_file(const char *path, char *buf, size_t n)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t k = fread(buf, 1, n - 1, f);
	buf[k] = '\0';
	fclose(f);
	return 0;
}

static void test_cgroup(void)
{
	char root[128], p[256], buf[64], err[256];
	struct cgroup_ctx c;
	/* v1: separate cpu and memory hierarchies. */
	snprintf(root, sizeof(root), "%s/cg1", tmpdir);
	mkdir(root, 0755);
	snprintf(p, sizeof(p), "%s/cpu", root);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/memory", root);
	mkdir(p, 0755);
	cgroup_detect(&c, root);
	CHECK_EQ(c.version, CGROUP_V1);
	struct cgroup_join j;
	CHECK_EQ(cgroup_vm_setup(&c, "vm1", 150, 768, &j, err, sizeof(err)),
		 0);
	CHECK_EQ(j.n, 2u); /* cpu and memory */
	CHECK_EQ(cgroup_join(&j, 1234, err, sizeof(err)), 0);
	snprintf(p, sizeof(p), "%s/cpu/cairn/vm1/cpu.cfs_quota_us", root);
	CHECK_EQ(read_file(p, buf, sizeof(buf)), 0);
	CHECK(!strcmp(buf, "150000"));
	snprintf(p, sizeof(p), "%s/cpu/cairn/vm1/cpu.cfs_period_us", root);
	CHECK_EQ(read_file(p, buf, sizeof(buf)), 0);
	CHECK(!strcmp(buf, "100000"));
	snprintf(p, sizeof(p), "%s/memory/cairn/vm1/memory.limit_in_bytes",
		 root);
	CHECK_EQ(read_file(p, buf, sizeof(buf)), 0);
	CHECK(!strcmp(buf, "805306368"));
	snprintf(p, sizeof(p), "%s/memory/cairn/vm1/cgroup.procs", root);
	CHECK_EQ(read_file(p, buf, sizeof(buf)), 0);
	CHECK(!strcmp(buf, "1234"));
	/* v2: one unified tree. */
	snprintf(root, sizeof(root), "%s/cg2", tmpdir);
	mkdir(root, 0755);
	snprintf(p, sizeof(p), "%s/cgroup.controllers", root);
	FILE *f = fopen(p, "w");
	fputs("cpu memory\n", f);
	fclose(f);
	cgroup_detect(&c, root);
	CHECK_EQ(c.version, CGROUP_V2);
	CHECK_EQ(cgroup_vm_setup(&c, "vm1", 50, 0, &j, err, sizeof(err)), 0);
	CHECK_EQ(j.n, 1u);
	CHECK_EQ(cgroup_join(&j, 99, err, sizeof(err)), 0);
	snprintf(p, sizeof(p), "%s/cairn/vm1/cgroup.procs", root);
	CHECK_EQ(read_file(p, buf, sizeof(buf)), 0);
	CHECK(!strcmp(buf, "99"));
	snprintf(p, sizeof(p), "%s/cairn/vm1/cpu.max", root);
	CHECK_EQ(read_file(p, buf, sizeof(buf)), 0);
	CHECK(!strcmp(buf, "50000 100000"));
	snprintf(p, sizeof(p), "%s/cairn/vm1/memory.max", root);
	CHECK(access(p, F_OK) != 0); /* no memory limit asked */
	snprintf(p, sizeof(p), "%s/cairn/cgroup.subtree_control", root);
	CHECK_EQ(read_file(p, buf, sizeof(buf)), 0);
	CHECK(!strcmp(buf, "+cpu +memory"));
	/* Neither: limits cannot be enforced, and we say so. */
	snprintf(root, sizeof(root), "%s/cg0", tmpdir);
	mkdir(root, 0755);
	cgroup_detect(&c, root);
	CHECK_EQ(c.version, CGROUP_NONE);
	CHECK_EQ(cgroup_vm_setup(&c, "vm1", 0, 0, &j, err, sizeof(err)), 0);
	CHECK_EQ(j.n, 0u); /* no limits: no group, QEMU runs directly */
	CHECK(cgroup_vm_setup(&c, "vm1", 10, 0, &j, err, sizeof(err)) < 0);
	CHECK(strstr(err, "no cgroup hierarchy") != NULL);
}

static void test_accel_forced(void)
{
	struct hostd_accel_choice c;
	hostd_accel_choose(HOSTD_ACCEL_TCG, NULL, &c);
	CHECK_EQ(c.accel, HOSTD_ACCEL_TCG);
	CHECK(strstr(c.reason, "forced") != NULL);
	hostd_accel_choose(HOSTD_ACCEL_KVM, NULL, &c);
	CHECK_EQ(c.accel, HOSTD_ACCEL_KVM);
}

/* The API dispatch on a real agent (no QEMU is started). */
static json_t *api(struct hostd *h, const char *req)
{
	json_t *j = json_loads(req, 0, NULL);
	json_t *r = hostd_api_handle(h, j);
	json_decref(j);
	return r;
}

static int api_ok(struct hostd *h, const char *req)
{
	json_t *r = api(h, req);
	int ok = json_is_true(json_object_get(r, "ok"));
	if (!ok)
		fprintf(stderr, "  %s -> %s\n", req,
			json_string_value(json_object_get(r, "error")));
	json_decref(r);
	return ok;
}

static int api_err(struct hostd *h, const char *req, const char *want,
		   const char *errno_name)
{
	json_t *r = api(h, req);
	const char *e = json_string_value(json_object_get(r, "error"));
	const char *n = json_string_value(json_object_get(r, "errno"));
	int ok = json_is_false(json_object_get(r, "ok")) && e &&
		 strstr(e, want) && n && !strcmp(n, errno_name);
	if (!ok)
		fprintf(stderr, "  %s -> %s (%s)\n", req, e ? e : "?",
			n ? n : "?");
	json_decref(r);
	return ok;
}

static void closed(void *arg)
{
	*(int *)arg = 1;
}

/* An agent of a test: its own state dir and socket under tmpdir, TCG, a
 * cgroup root that does not exist. */
struct test_agent {
	char state[128], sock[128], cg[128];
	struct hostd_config cfg;
};

static void test_agent_init(struct test_agent *a, const char *tag)
{
	snprintf(a->state, sizeof(a->state), "%s/%s", tmpdir, tag);
	snprintf(a->sock, sizeof(a->sock), "%s/%s.sock", tmpdir, tag);
	snprintf(a->cg, sizeof(a->cg), "%s/no-cgroups", tmpdir);
	a->cfg = (struct hostd_config){.state_dir = a->state,
				       .socket_path = a->sock,
				       .accel = HOSTD_ACCEL_TCG,
				       .cgroup_root = a->cg};
}

static void test_agent_stop(uv_loop_t *loop, struct hostd *h)
{
	int done = 0;
	hostd_shutdown(h, closed, &done);
	uv_run(loop, UV_RUN_DEFAULT);
	CHECK(done);
	hostd_free(h);
}

static void test_api(void)
{
	uv_loop_t loop;
	struct hostd *h;
	struct test_agent ag;
	char req[512];
	test_agent_init(&ag, "agent");
	uv_loop_init(&loop);
	CHECK_EQ(hostd_new(&loop, &ag.cfg, &h), 0);
	snprintf(req, sizeof(req),
		 "{\"op\": \"vm.define\", \"id\": 7, \"def\": {\"name\": "
		 "\"a\", \"memory_mib\": 64, \"boot\": {\"kernel\": "
		 "\"%s\"}, \"nics\": [{}]}}",
		 kernel);
	json_t *r = api(h, req);
	CHECK(json_is_true(json_object_get(r, "ok")));
	CHECK_EQ(json_integer_value(json_object_get(r, "id")), 7);
	CHECK(
	    !strcmp(json_string_value(json_object_get(r, "state")), "defined"));
	CHECK(vm_uuid_valid(json_string_value(json_object_get(r, "uuid"))));
	json_decref(r);
	CHECK(api_err(h, req, "exists already", "EEXIST"));
	CHECK(api_ok(h, "{\"op\": \"vm.status\", \"name\": \"a\"}"));
	r = api(h, "{\"op\": \"vm.list\"}");
	CHECK_EQ(json_array_size(json_object_get(r, "vms")), 1);
	json_t *st = json_array_get(json_object_get(r, "vms"), 0);
	CHECK(!strcmp(json_string_value(json_object_get(st, "accel")), "tcg"));
	CHECK(strstr(json_string_value(json_object_get(st, "accel_reason")),
		     "forced") != NULL);
	json_decref(r);
	r = api(h, "{\"op\": \"host.status\"}");
	CHECK(!strcmp(json_string_value(json_object_get(r, "cgroup")), "none"));
	json_decref(r);
	CHECK(api_err(h, "{\"op\": \"vm.stop\", \"name\": \"a\"}",
		      "nothing to stop", "EINVAL"));
	CHECK(api_err(h, "{\"op\": \"vm.reboot\", \"name\": \"a\"}",
		      "not running", "EINVAL"));
	CHECK(api_err(h, "{\"op\": \"vm.start\", \"name\": \"zz\"}",
		      "no VM named zz", "ENOENT"));
	CHECK(
	    api_err(h, "{\"op\": \"vm.start\"}", "name is required", "EINVAL"));
	CHECK(api_err(h, "{\"op\": \"nope\"}", "unknown op", "EINVAL"));
	CHECK(api_err(h, "[]", "JSON object", "EINVAL"));
	CHECK(api_err(h,
		      "{\"op\": \"vm.stop\", \"name\": \"a\", "
		      "\"timeout_ms\": -1}",
		      "timeout_ms", "EINVAL"));
	CHECK(api_err(h,
		      "{\"op\": \"vm.define\", \"def\": {\"name\": "
		      "\"b\", \"vcpus\": 100000, \"memory_mib\": 1, "
		      "\"boot\": {\"kernel\": \"/k\"}}}",
		      "too many", "EINVAL"));
	/* The definition survives an agent restart. */
	test_agent_stop(&loop, h);
	CHECK_EQ(hostd_new(&loop, &ag.cfg, &h), 0);
	r = api(h, "{\"op\": \"vm.definition\", \"name\": \"a\"}");
	CHECK(json_is_true(json_object_get(r, "ok")));
	json_t *mac = json_object_get(
	    json_array_get(json_object_get(json_object_get(r, "def"), "nics"),
			   0),
	    "mac");
	CHECK(json_is_string(mac) &&
	      !strncmp(json_string_value(mac), "52:54:00:", 9));
	json_decref(r);
	CHECK(api_ok(h, "{\"op\": \"vm.delete\", \"name\": \"a\"}"));
	CHECK(api_err(h, "{\"op\": \"vm.status\", \"name\": \"a\"}", "no VM",
		      "ENOENT"));
	test_agent_stop(&loop, h);
	CHECK_EQ(uv_loop_close(&loop), 0);
}

static void write_file(const char *path, size_t n, int byte)
{
	FILE *f = fopen(path, "w");
	for (size_t i = 0; i < n; i++)
		fputc(byte, f);
	fclose(f);
}

static off_t file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) < 0 ? -1 : st.st_size;
}

/* Fake OVMF files: a 2 MiB "build" (code + vars). */
static void fake_ovmf(char *code, char *vars, size_t n)
{
	snprintf(code, n, "%s/CODE.fd", tmpdir);
	snprintf(vars, n, "%s/VARS.fd", tmpdir);
	write_file(code, (2u << 20) - 128 * 1024, 0xc0);
	write_file(vars, 128 * 1024, 0x5a);
}

static void test_ovmf(void)
{
	char code[128], vars[128], nvram[128], other[128], err[256];
	fake_ovmf(code, vars, sizeof(code));
	snprintf(nvram, sizeof(nvram), "%s/vm.nvram.fd", tmpdir);
	snprintf(other, sizeof(other), "%s/VARS_4M.fd", tmpdir);
	struct ovmf_files fw = {.code = code, .vars = vars};
	CHECK_EQ(ovmf_check(&fw, err, sizeof(err)), 0);

	/* A missing store is made from the template, mode 0600. */
	CHECK_EQ(ovmf_nvram_prepare(&fw, nvram, err, sizeof(err)), 1);
	struct stat st;
	CHECK_EQ(stat(nvram, &st), 0);
	CHECK_EQ(st.st_mode & 0777, 0600);
	CHECK_EQ(st.st_size, 128 * 1024);
	/* An existing one is the VM's: kept as it is. */
	FILE *f = fopen(nvram, "r+");
	fputs("boot entries", f);
	fclose(f);
	CHECK_EQ(ovmf_nvram_prepare(&fw, nvram, err, sizeof(err)), 0);
	f = fopen(nvram, "r");
	char head[13] = {0};
	CHECK_EQ(fread(head, 1, 12, f), 12);
	fclose(f);
	CHECK(!strcmp(head, "boot entries"));
	/* create starts over. */
	CHECK_EQ(ovmf_nvram_create(&fw, nvram, err, sizeof(err)), 0);
	f = fopen(nvram, "r");
	CHECK_EQ(fgetc(f), 0x5a);
	fclose(f);

	/* A store of another build's size is refused, not overwritten. */
	write_file(nvram, 540672, 0);
	CHECK_EQ(ovmf_nvram_prepare(&fw, nvram, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "another OVMF build") != NULL);
	CHECK_EQ(file_size(nvram), 540672);

	/* CODE and VARS of different builds. */
	write_file(other, 540672, 0);
	struct ovmf_files mixed = {.code = code, .vars = other};
	CHECK_EQ(ovmf_check(&mixed, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "not one build's pair") != NULL);
	CHECK_EQ(ovmf_nvram_prepare(&mixed, nvram, err, sizeof(err)), -EINVAL);

	/* Missing files name themselves. */
	struct ovmf_files gone = {.code = code, .vars = "/nonexistent/VARS.fd"};
	CHECK_EQ(ovmf_check(&gone, err, sizeof(err)), -ENOENT);
	CHECK(strstr(err, "template /nonexistent/VARS.fd") != NULL);
	CHECK_EQ(ovmf_nvram_create(&gone, nvram, err, sizeof(err)), -ENOENT);
	gone.code = "/nonexistent/CODE.fd";
	gone.vars = vars;
	CHECK_EQ(ovmf_check(&gone, err, sizeof(err)), -ENOENT);
	CHECK(strstr(err, "OVMF firmware /nonexistent/CODE.fd") != NULL);
	struct ovmf_files dir = {.code = code, .vars = tmpdir};
	CHECK_EQ(ovmf_check(&dir, err, sizeof(err)), -EINVAL);
	CHECK_EQ(ovmf_nvram_create(&dir, nvram, err, sizeof(err)), -EINVAL);
	unlink(nvram);
	unlink(other);
}

/* The agent: an OVMF VM gets its store at define, loses it at delete; a
 * start without the firmware files fails with the reason recorded. */
static void test_api_ovmf(void)
{
	uv_loop_t loop;
	struct hostd *h;
	struct test_agent ag;
	char req[512], code[128], vars[128], nvram[192];
	fake_ovmf(code, vars, sizeof(code));
	test_agent_init(&ag, "agent-ovmf");
	ag.cfg.ovmf_code = code;
	ag.cfg.ovmf_vars = vars;
	snprintf(nvram, sizeof(nvram), "%s/vms/u1.nvram.fd", ag.state);
	uv_loop_init(&loop);
	CHECK_EQ(hostd_new(&loop, &ag.cfg, &h), 0);
	snprintf(req, sizeof(req),
		 "{\"op\": \"vm.define\", \"def\": {\"name\": \"u1\", "
		 "\"memory_mib\": 64, \"boot\": {\"firmware\": \"ovmf\"}, "
		 "\"disks\": [{\"file\": \"%s\"}]}}",
		 kernel);
	CHECK(api_ok(h, req));
	struct stat st;
	CHECK_EQ(stat(nvram, &st), 0);
	CHECK_EQ(st.st_mode & 0777, 0600);
	CHECK_EQ(st.st_size, 128 * 1024);
	json_t *r = api(h, "{\"op\": \"vm.status\", \"name\": \"u1\"}");
	CHECK(!strcmp(json_string_value(json_object_get(r, "nvram")), nvram));
	json_decref(r);

	/* The firmware gone: start refused, nothing run, reason kept. */
	unlink(vars);
	unlink(nvram);
	CHECK(api_err(h, "{\"op\": \"vm.start\", \"name\": \"u1\"}",
		      "OVMF variable store template", "ENOENT"));
	r = api(h, "{\"op\": \"vm.status\", \"name\": \"u1\"}");
	CHECK(
	    !strcmp(json_string_value(json_object_get(r, "state")), "defined"));
	CHECK(strstr(json_string_value(json_object_get(r, "reason")),
		     "start failed: OVMF variable store template") != NULL);
	CHECK_EQ(json_integer_value(json_object_get(r, "pid")), 0);
	json_decref(r);
	/* Nor can another OVMF VM be defined. */
	snprintf(req, sizeof(req),
		 "{\"op\": \"vm.define\", \"def\": {\"name\": \"u2\", "
		 "\"memory_mib\": 64, \"boot\": {\"firmware\": \"ovmf\"}, "
		 "\"disks\": [{\"file\": \"%s\"}]}}",
		 kernel);
	CHECK(api_err(h, req, "OVMF variable store template", "ENOENT"));
	CHECK(api_err(h, "{\"op\": \"vm.status\", \"name\": \"u2\"}", "no VM",
		      "ENOENT"));

	/* Delete takes the store with it. */
	fake_ovmf(code, vars, sizeof(code));
	char err[256];
	struct ovmf_files fw = {.code = code, .vars = vars};
	CHECK_EQ(ovmf_nvram_create(&fw, nvram, err, sizeof(err)), 0);
	CHECK(api_ok(h, "{\"op\": \"vm.delete\", \"name\": \"u1\"}"));
	CHECK(access(nvram, F_OK) != 0);
	test_agent_stop(&loop, h);
	CHECK_EQ(uv_loop_close(&loop), 0);
}

int main(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/cairn-test-hostd.XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(kernel, sizeof(kernel), "%s/vmlinuz", tmpdir);
	FILE *f = fopen(kernel, "w");
	fputs("not a kernel", f);
	fclose(f);

	test_def_parse();
	test_def_refused();
	test_def_vdisk();
	test_mac();
	test_state_machine();
	test_record();
	test_qemu_argv();
	test_qmp_framing();
	test_cgroup();
	test_accel_forced();
	test_api();
	test_ovmf();
	test_api_ovmf();

	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
	if (failures) {
		fprintf(stderr, "%d check(s) failed\n", failures);
		return 1;
	}
	printf("test_hostd: all checks passed\n");
	return 0;
}
