#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The one process-wide setting: logging is configured from the environment
 * and has no context to carry. */
static enum log_level log_threshold = LOG_INFO;

void log_init(void)
{
	const char *e = getenv("CAIRN_LOG");
	if (!e)
		return;
	if (!strcmp(e, "error"))
		log_threshold = LOG_ERROR;
	else if (!strcmp(e, "warn"))
		log_threshold = LOG_WARN;
	else if (!strcmp(e, "debug"))
		log_threshold = LOG_DEBUG;
	else
		log_threshold = LOG_INFO;
}

void log_msg(enum log_level lvl, const char *sub, const char *fmt, ...)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};
	if (lvl > log_threshold)
		return;
	char line[1024];
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(line, sizeof(line), "%02d:%02d:%02d.%03ld %s %s: ",
			 tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
			 names[lvl], sub);
	va_list ap;
	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof(line))
		vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s\n", line);
}
