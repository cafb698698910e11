/* A libcurl response body gathered in memory (CURLOPT_WRITEFUNCTION =
 * http_body_write, CURLOPT_WRITEDATA = a struct http_body). */
#ifndef CAIRN_HTTP_BODY_H
#define CAIRN_HTTP_BODY_H

#include <stddef.h>

struct http_body {
	char *data;  /* malloc'd, NUL-terminated; NULL until a byte came */
	size_t len;
	size_t max;  /* refuse a body longer than this (0: 1 MiB) */
};

/* libcurl's write callback: returns less than asked (curl then fails the
 * transfer with CURLE_WRITE_ERROR) past `max` or out of memory. */
size_t http_body_write(char *p, size_t size, size_t n, void *body);

#endif
