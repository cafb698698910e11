/* The tools' checks: see lib_check.h. */
#include "lib_check.h"

#include <stdarg.h>
#include <stdio.h>

void tool_check(int *failures, bool ok, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("%s - ", ok ? "ok  " : "FAIL");
	vprintf(fmt, ap);
	printf("\n");
	fflush(stdout);
	va_end(ap);
	if (!ok)
		(*failures)++;
}
