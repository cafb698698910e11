/* Free lists for the per-command objects of a single-threaded server loop
 * (iSCSI tasks and PDUs, SCSI tasks, 4 KiB-aligned data buffers), so that
 * the IO path does not go through malloc for each command: glibc
 * consolidates its fast bins on every allocation of a large-bin size
 * (>= 1 KiB), which a 4 KiB aligned buffer per command is (bench/iscsi.sh
 * profile). Not thread-safe: one owner (a server, a target) per loop.
 *
 * A freelist holds objects of one size; a bufpool holds aligned buffers in
 * power-of-two classes from FREELIST_BUF_MIN to FREELIST_BUF_MAX bytes
 * (larger ones are allocated and freed directly). Both keep at most `max`
 * free objects per list, so an idle server returns to its usual size. */
#ifndef CAIRN_FREELIST_H
#define CAIRN_FREELIST_H

#include <stddef.h>

struct freelist {
	void *head;
	unsigned n, max;
	size_t size;
};

/* size >= sizeof(void *); max free objects kept. */
void freelist_init(struct freelist *f, size_t size, unsigned max);
/* Uninitialised memory of f->size bytes, or NULL. */
void *freelist_get(struct freelist *f);
/* Zeroed, like calloc. */
void *freelist_zget(struct freelist *f);
void freelist_put(struct freelist *f, void *p);
void freelist_drain(struct freelist *f);

#define FREELIST_BUF_MIN 4096u
#define FREELIST_BUF_CLASSES 6 /* 4 KiB .. 128 KiB */
#define FREELIST_BUF_MAX (FREELIST_BUF_MIN << (FREELIST_BUF_CLASSES - 1))

struct bufpool {
	struct freelist cls[FREELIST_BUF_CLASSES];
	size_t align;
};

/* Keeps max_per_class 4 KiB buffers, half as many 8 KiB ones, and so on:
 * at most max_per_class * 4 KiB per class. */
void bufpool_init(struct bufpool *b, size_t align, unsigned max_per_class);
/* A buffer of at least len bytes aligned to b->align, or NULL; give it
 * back with the same len. */
void *bufpool_get(struct bufpool *b, size_t len);
void bufpool_put(struct bufpool *b, void *p, size_t len);
void bufpool_drain(struct bufpool *b);

#endif
