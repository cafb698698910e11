/* cairn-vm: the command line for cairn-hostd's API socket.
 *
 *   cairn-vm [--socket PATH] define FILE.json
 *   cairn-vm [--socket PATH] start|stop|force-stop NAME [--no-wait]
 *                                                [--timeout S]
 *   cairn-vm [--socket PATH] reboot|delete NAME
 *   cairn-vm [--socket PATH] pause|resume NAME [--no-wait] [--timeout S]
 *   cairn-vm [--socket PATH] list [--json]
 *   cairn-vm [--socket PATH] status NAME [--json]
 *   cairn-vm [--socket PATH] host [--json]
 *   cairn-vm [--socket PATH] console NAME     (Ctrl-] leaves)
 *
 * start waits until the VM is running, stop and force-stop until it is
 * stopped (polling vm.status), unless --no-wait. Exit status 0 on success,
 * 1 when the agent refused or the wait timed out, 2 on bad usage. */
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define CLI_DEFAULT_SOCKET "/run/cairn/hostd.sock"

static void cli_usage(FILE *f)
{
	fprintf(f,
		"usage: cairn-vm [--socket PATH] COMMAND ...\n"
		"  define FILE.json\n"
		"  start NAME [--no-wait] [--timeout S]\n"
		"  stop NAME [--no-wait] [--timeout S] [--grace-ms N]\n"
		"  force-stop NAME [--no-wait] [--timeout S]\n"
		"  reboot NAME\n"
		"  pause|resume NAME [--no-wait] [--timeout S]\n"
		"  delete NAME\n"
		"  list [--json]\n"
		"  status NAME [--json]\n"
		"  host [--json]\n"
		"  console NAME        (Ctrl-] to leave)\n"
		"The socket defaults to $CAIRN_HOSTD_SOCKET, then %s.\n",
		CLI_DEFAULT_SOCKET);
}

static int cli_connect(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "cairn-vm: socket path too long\n");
		return -1;
	}
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "cairn-vm: %s: %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* Sends one request, returns the reply (NULL on a transport error). */
static json_t *cli_call(const char *sock, json_t *req)
{
	int fd = cli_connect(sock);
	if (fd < 0)
		return NULL;
	char *s = json_dumps(req, JSON_COMPACT);
	json_t *r = NULL;
	if (!s)
		goto out;
	size_t n = strlen(s);
	s[n] = '\0';
	if (write(fd, s, n) != (ssize_t)n || write(fd, "\n", 1) != 1) {
		fprintf(stderr, "cairn-vm: write: %s\n", strerror(errno));
		goto out;
	}
	char buf[65536];
	size_t len = 0;
	for (;;) {
		ssize_t k = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (k <= 0)
			break;
		len += (size_t)k;
		if (memchr(buf, '\n', len) || len == sizeof(buf) - 1)
			break;
	}
	buf[len] = '\0';
	json_error_t je;
	r = json_loads(buf, JSON_DISABLE_EOF_CHECK, &je);
	if (!r)
		fprintf(stderr, "cairn-vm: bad reply from the agent: %s\n",
			je.text);
out:
	free(s);
	close(fd);
	return r;
}

static bool cli_ok(json_t *r)
{
	if (!r)
		return false;
	if (json_is_true(json_object_get(r, "ok")))
		return true;
	fprintf(stderr, "cairn-vm: %s\n",
		json_string_value(json_object_get(r, "error")));
	return false;
}

static json_t *cli_op(const char *sock, const char *op, const char *name)
{
	json_t *req = json_pack("{s:s}", "op", op);
	if (name)
		json_object_set_new(req, "name", json_string(name));
	json_t *r = cli_call(sock, req);
	json_decref(req);
	return r;
}

static double cli_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Polls vm.status until the state is `want` (or, for a start, crashed). */
static int cli_wait(const char *sock, const char *name, const char *want,
		    double timeout)
{
	double end = cli_now() + timeout;
	for (;;) {
		json_t *r = cli_op(sock, "vm.status", name);
		if (!cli_ok(r)) {
			json_decref(r);
			return 1;
		}
		const char *st = json_string_value(json_object_get(r, "state"));
		if (st && !strcmp(st, want)) {
			printf("%s: %s\n", name, st);
			json_decref(r);
			return 0;
		}
		if (st && !strcmp(want, "running") &&
		    (!strcmp(st, "crashed") || !strcmp(st, "stopped"))) {
			fprintf(
			    stderr, "cairn-vm: %s: %s (%s)\n", name, st,
			    json_string_value(json_object_get(r, "reason")));
			json_decref(r);
			return 1;
		}
		json_decref(r);
		if (cli_now() > end) {
			fprintf(stderr, "cairn-vm: %s: not %s after %.0f s\n",
				name, want, timeout);
			return 1;
		}
		usleep(100 * 1000);
	}
}

static void cli_print_status(json_t *s)
{
	const char *k;
	json_t *v;
	json_object_foreach(s, k, v)
	{
		if (!strcmp(k, "ok") || !strcmp(k, "id"))
			continue;
		if (json_is_string(v))
			printf("%-15s %s\n", k, json_string_value(v));
		else {
			char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
			printf("%-15s %s\n", k, t ? t : "?");
			free(t);
		}
	}
}

/* Relays stdin <-> the serial socket until Ctrl-] or EOF. */
static int cli_console(const char *path, const char *name)
{
	int fd = cli_connect(path);
	if (fd < 0)
		return 1;
	struct termios old, raw;
	bool tty = isatty(0) && tcgetattr(0, &old) == 0;
	if (tty) {
		raw = old;
		cfmakeraw(&raw);
		tcsetattr(0, TCSANOW, &raw);
		fprintf(stderr, "[connected to %s; Ctrl-] to leave]\r\n", name);
	}
	struct pollfd p[2] = {{.fd = 0, .events = POLLIN},
			      {.fd = fd, .events = POLLIN}};
	char buf[4096];
	int rc = 0;
	bool stdin_open = true;
	for (;;) {
		p[0].fd = stdin_open ? 0 : -1;
		int pr = poll(p, 2, stdin_open ? -1 : 500);
		if (pr == 0)
			break;
		if (pr < 0) {
			if (errno == EINTR)
				continue;
			rc = 1;
			break;
		}
		if (p[1].revents) {
			ssize_t n = read(fd, buf, sizeof(buf));
			if (n <= 0)
				break;
			if (write(1, buf, (size_t)n) < 0)
				break;
		}
		if (p[0].revents) {
			ssize_t n = read(0, buf, sizeof(buf));
			if (n <= 0) {
				/* stdin closed (a script piping in): print
				 * what the guest still sends for half a
				 * second, then leave. */
				if (tty)
					break;
				stdin_open = false;
				continue;
			}
			char *esc = memchr(buf, 0x1d, (size_t)n);
			size_t len = esc ? (size_t)(esc - buf) : (size_t)n;
			if (len && write(fd, buf, len) < 0)
				break;
			if (esc)
				break;
		}
	}
	if (tty) {
		tcsetattr(0, TCSANOW, &old);
		fprintf(stderr, "\n[detached]\n");
	}
	close(fd);
	return rc;
}

int main(int argc, char **argv)
{
	const char *sock = getenv("CAIRN_HOSTD_SOCKET");
	bool json = false, wait = true;
	double timeout = 120;
	long grace = 0;
	char *pos[3];
	int npos = 0;
	if (!sock)
		sock = CLI_DEFAULT_SOCKET;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--socket") && i + 1 < argc)
			sock = argv[++i];
		else if (!strcmp(argv[i], "--json"))
			json = true;
		else if (!strcmp(argv[i], "--no-wait"))
			wait = false;
		else if (!strcmp(argv[i], "--timeout") && i + 1 < argc)
			timeout = atof(argv[++i]);
		else if (!strcmp(argv[i], "--grace-ms") && i + 1 < argc)
			grace = atol(argv[++i]);
		else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			cli_usage(stdout);
			return 0;
		} else if (argv[i][0] == '-' || npos == 3) {
			cli_usage(stderr);
			return 2;
		} else
			pos[npos++] = argv[i];
	}
	if (npos < 1) {
		cli_usage(stderr);
		return 2;
	}
	const char *cmd = pos[0], *arg = npos > 1 ? pos[1] : NULL;
	static const struct {
		const char *cmd, *op, *wait_for;
		bool needs_arg;
	} cmds[] = {
	    {"define", "vm.define", NULL, true},
	    {"start", "vm.start", "running", true},
	    {"stop", "vm.stop", "stopped", true},
	    {"force-stop", "vm.force_stop", "stopped", true},
	    {"reboot", "vm.reboot", NULL, true},
	    {"pause", "vm.pause", "paused", true},
	    {"resume", "vm.resume", "running", true},
	    {"delete", "vm.delete", NULL, true},
	    {"list", "vm.list", NULL, false},
	    {"status", "vm.status", NULL, true},
	    {"host", "host.status", NULL, false},
	    {"console", "vm.console", NULL, true},
	};
	size_t c;
	for (c = 0; c < sizeof(cmds) / sizeof(cmds[0]); c++)
		if (!strcmp(cmd, cmds[c].cmd))
			break;
	if (c == sizeof(cmds) / sizeof(cmds[0]) ||
	    (cmds[c].needs_arg != (arg != NULL))) {
		cli_usage(stderr);
		return 2;
	}
	json_t *req = json_pack("{s:s}", "op", cmds[c].op);
	if (!strcmp(cmd, "define")) {
		json_error_t je;
		json_t *def = json_load_file(arg, 0, &je);
		if (!def) {
			fprintf(stderr, "cairn-vm: %s:%d: %s\n", arg, je.line,
				je.text);
			json_decref(req);
			return 1;
		}
		json_object_set_new(req, "def", def);
	} else if (arg) {
		json_object_set_new(req, "name", json_string(arg));
	}
	if (!strcmp(cmd, "stop") && grace > 0)
		json_object_set_new(req, "timeout_ms", json_integer(grace));
	json_t *r = cli_call(sock, req);
	json_decref(req);
	if (!cli_ok(r)) {
		json_decref(r);
		return 1;
	}
	int rc = 0;
	if (json) {
		json_object_del(r, "ok");
		char *s = json_dumps(r, JSON_INDENT(2) | JSON_SORT_KEYS);
		printf("%s\n", s ? s : "{}");
		free(s);
	} else if (!strcmp(cmd, "list")) {
		size_t i;
		json_t *v;
		printf("%-20s %-9s %-7s %5s %8s\n", "NAME", "STATE", "PID",
		       "VCPUS", "MEM_MIB");
		json_array_foreach(json_object_get(r, "vms"), i, v) printf(
		    "%-20s %-9s %-7lld %5lld %8lld\n",
		    json_string_value(json_object_get(v, "name")),
		    json_string_value(json_object_get(v, "state")),
		    json_integer_value(json_object_get(v, "pid")),
		    json_integer_value(json_object_get(v, "vcpus")),
		    json_integer_value(json_object_get(v, "memory_mib")));
	} else if (!strcmp(cmd, "status") || !strcmp(cmd, "host")) {
		cli_print_status(r);
	} else if (!strcmp(cmd, "console")) {
		const char *path =
		    json_string_value(json_object_get(r, "socket"));
		rc = path ? cli_console(path, arg) : 1;
	} else if (cmds[c].wait_for && wait) {
		rc = cli_wait(sock, arg, cmds[c].wait_for, timeout);
	} else {
		printf("%s: %s\n",
		       json_string_value(json_object_get(r, "name")),
		       json_string_value(json_object_get(r, "state")));
	}
	json_decref(r);
	return rc;
}
