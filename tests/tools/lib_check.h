/* The tools' checks: one "ok   - ..." or "FAIL - ..." line on stdout per
 * check, counted in the caller's *failures (the tool exits non-zero if any
 * failed). Unlike tests/unit/check.h, which reports only failures, a tool's
 * log shows every check, so the integration log tells what was covered. */
#ifndef CAIRN_TEST_TOOL_CHECK_H
#define CAIRN_TEST_TOOL_CHECK_H

#include <stdbool.h>

void tool_check(int *failures, bool ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
