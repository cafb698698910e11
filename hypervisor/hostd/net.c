/* VM networking: one Linux bridge per node, one tap per NIC, enslaved to
 * the NIC's bridge. Done with `ip` (iproute2) run synchronously on the
 * loop: each command takes a few milliseconds and happens only at VM start
 * and stop. Netlink from C would remove the fork; it is a later step.
 *
 * The tap is created by the agent (not by QEMU's ifup script) so that it
 * exists, persistent, with the right master before QEMU opens it by name,
 * and is removed once QEMU has exited. */
#include <cairn/hostd.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"

#define NET_LOG "net"

extern char **environ;

/* Runs ip ARGS..., stdout/stderr to /dev/null; returns 0 or -EIO. */
static int net__ip(const char *const *args)
{
	char *argv[16];
	size_t n = 0;
	argv[n++] = "ip";
	for (; args[n - 1] && n < 15; n++)
		argv[n] = (char *)args[n - 1];
	argv[n] = NULL;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	pid_t pid;
	int rc = posix_spawnp(&pid, "ip", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc) {
		log_warn(NET_LOG, "cannot run ip: %s", strerror(rc));
		return -rc;
	}
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}

static bool net__exists(const char *ifname)
{
	return if_nametoindex(ifname) != 0;
}

int net_bridge_ensure(const char *bridge)
{
	if (!net__exists(bridge)) {
		const char *add[] = {"link", "add",    "name", bridge,
				     "type", "bridge", NULL};
		if (net__ip(add) < 0 && !net__exists(bridge)) {
			log_error(NET_LOG, "cannot create bridge %s", bridge);
			return -EIO;
		}
		log_info(NET_LOG, "created bridge %s", bridge);
	}
	const char *up[] = {"link", "set", bridge, "up", NULL};
	return net__ip(up);
}

int net_tap_create(const char *tap, const char *bridge)
{
	if (net__exists(tap))
		net_tap_remove(tap); /* left over by an agent that died */
	const char *add[] = {"tuntap", "add", "dev", tap, "mode", "tap", NULL};
	const char *master[] = {"link", "set", tap, "master", bridge, NULL};
	const char *up[] = {"link", "set", tap, "up", NULL};
	int rc;
	if ((rc = net__ip(add)) < 0) {
		log_error(NET_LOG, "cannot create tap %s", tap);
		return rc;
	}
	if ((rc = net__ip(master)) < 0 || (rc = net__ip(up)) < 0) {
		log_error(NET_LOG, "cannot attach tap %s to %s", tap, bridge);
		net_tap_remove(tap);
		return rc;
	}
	return 0;
}

int net_tap_remove(const char *tap)
{
	if (!net__exists(tap))
		return 0;
	const char *del[] = {"tuntap", "del", "dev", tap, "mode", "tap", NULL};
	int rc = net__ip(del);
	if (rc < 0 && net__exists(tap)) {
		const char *del2[] = {"link", "del", tap, NULL};
		rc = net__ip(del2);
	}
	return rc;
}
