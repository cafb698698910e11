#include "http_body.h"

#include <stdlib.h>
#include <string.h>

size_t http_body_write(char *p, size_t size, size_t n, void *body)
{
	struct http_body *b = body;
	size_t add = size * n, max = b->max ? b->max : (size_t)1 << 20;
	if (add > max || b->len > max - add)
		return 0; /* a peer that answers more is broken */
	char *d = realloc(b->data, b->len + add + 1);
	if (!d)
		return 0;
	memcpy(d + b->len, p, add);
	b->data = d;
	b->len += add;
	d[b->len] = 0;
	return add;
}
