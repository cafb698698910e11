/* Free lists: see freelist.h. The next pointer of a free object lives in
 * its first bytes. */
#include "freelist.h"

#include "util.h"

#include <stdlib.h>
#include <string.h>

/* Under ASan a free object stays poisoned (but for its link), so a use
 * after free is still caught. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define FL_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define FL_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define FL_POISON(p, n) ((void)(p), (void)(n))
#define FL_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* Pops the head of a non-empty list. */
static void *fl_pop(struct freelist *f)
{
	void *p = f->head;
	memcpy(&f->head, p, sizeof(void *));
	f->n--;
	FL_UNPOISON(p, f->size);
	return p;
}

void freelist_init(struct freelist *f, size_t size, unsigned max)
{
	f->head = NULL;
	f->n = 0;
	f->max = max;
	f->size = size < sizeof(void *) ? sizeof(void *) : size;
}

void *freelist_get(struct freelist *f)
{
	return f->head ? fl_pop(f) : malloc(f->size);
}

void *freelist_zget(struct freelist *f)
{
	void *p = freelist_get(f);
	if (p)
		memset(p, 0, f->size);
	return p;
}

void freelist_put(struct freelist *f, void *p)
{
	if (!p)
		return;
	if (f->n >= f->max) {
		free(p);
		return;
	}
	memcpy(p, &f->head, sizeof(void *));
	f->head = p;
	f->n++;
	FL_POISON((char *)p + sizeof(void *), f->size - sizeof(void *));
}

void freelist_drain(struct freelist *f)
{
	while (f->head)
		free(fl_pop(f));
}

void bufpool_init(struct bufpool *b, size_t align, unsigned max_per_class)
{
	b->align = align;
	/* The same bytes per class: fewer large buffers. */
	for (unsigned i = 0; i < FREELIST_BUF_CLASSES; i++)
		freelist_init(&b->cls[i], (size_t)FREELIST_BUF_MIN << i,
			      MAX(max_per_class >> i, 1u));
}

/* The class holding len bytes, or -1 when len is above the largest. */
static int bufpool_class(size_t len)
{
	for (int i = 0; i < FREELIST_BUF_CLASSES; i++)
		if (len <= (size_t)FREELIST_BUF_MIN << i)
			return i;
	return -1;
}

static void *bufpool_alloc(const struct bufpool *b, size_t len)
{
	void *p = NULL;
	if (posix_memalign(&p, b->align, len ? len : 1))
		return NULL;
	return p;
}

void *bufpool_get(struct bufpool *b, size_t len)
{
	int c = bufpool_class(len);
	if (c < 0)
		return bufpool_alloc(b, len);
	struct freelist *f = &b->cls[c];
	return f->head ? fl_pop(f) : bufpool_alloc(b, f->size);
}

void bufpool_put(struct bufpool *b, void *p, size_t len)
{
	int c = bufpool_class(len);
	if (c < 0)
		free(p);
	else
		freelist_put(&b->cls[c], p);
}

void bufpool_drain(struct bufpool *b)
{
	for (unsigned i = 0; i < FREELIST_BUF_CLASSES; i++)
		freelist_drain(&b->cls[i]);
}
