/* One gathered write of a connection's output: see srv.h. */
#include "srv.h"

int srv_write(uv_stream_t *s, uv_write_t *wr, uv_buf_t *bufs, unsigned nb,
	      bool try, uv_write_cb cb)
{
	unsigned first = 0;
	if (try) {
		size_t total = 0;
		for (unsigned i = 0; i < nb; i++)
			total += bufs[i].len;
		int rc = uv_try_write(s, bufs, nb);
		if (rc >= 0 && (size_t)rc == total)
			return 1;
		if (rc < 0 && rc != UV_EAGAIN)
			return rc;
		/* Partly written: queue the rest, in order. */
		size_t n = rc > 0 ? (size_t)rc : 0;
		while (first < nb && n >= bufs[first].len)
			n -= bufs[first++].len;
		if (first < nb) {
			bufs[first].base += n;
			bufs[first].len -= n;
		}
	}
	int rc = uv_write(wr, s, bufs + first, nb - first, cb);
	return rc < 0 ? rc : 0;
}
