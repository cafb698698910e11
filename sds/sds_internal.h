/* Storage engine internals: shared by the sds/ sources, never included from
 * outside.
 * docs/sds.md explains the on-disk format and the commit protocol. */
#ifndef SDS_INTERNAL_H
#define SDS_INTERNAL_H

#include <cairn/sds.h>
#include <liburing.h>
#include <rocksdb/c.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "hmap.h"
#include "util.h"

struct sds_vd;

#define SDS_MAGIC "CAIRNSDS"
#define SDS_FORMAT_VERSION 1u
#define SDS_MAP_CHUNK 512u        /* extent ids per map record */
#define SDS_ALLOC_CHUNK 32768u    /* blocks per allocation bitmap record */
#define SDS_PBA_DISK_SHIFT 48     /* pba = disk << 48 | block */
#define SDS_DEFAULT_COMMIT_MS 50u
#define SDS_DEFAULT_CACHE_EXTENTS 16384u
#define SDS_WORK_STEP 64u         /* extents handled per loop turn in long ops */

static inline unsigned pba_disk(uint64_t pba)
{
	return (unsigned)(pba >> SDS_PBA_DISK_SHIFT);
}
static inline uint64_t pba_block(uint64_t pba)
{
	return pba & ((1ULL << SDS_PBA_DISK_SHIFT) - 1);
}
static inline uint64_t pba_make(unsigned disk, uint64_t block)
{
	return ((uint64_t)disk << SDS_PBA_DISK_SHIFT) | block;
}

/* ---- io_uring (uring.c) ------------------------------------------------ */
struct sds_uring_op {
	void (*cb)(struct sds_uring_op *op, int res); /* res: bytes or -errno */
	TAILQ_ENTRY(sds_uring_op) link; /* waiting for a free SQE */
	int opcode;
	int rw_flags; /* RWF_* for writes */
	int fd;
	void *buf;
	uint32_t len;
	uint64_t off;
};
TAILQ_HEAD(sds_uring_opq, sds_uring_op);

struct sds_uring {
	struct io_uring ring;
	int efd;
	uv_poll_t poll;
	uv_prepare_t prep; /* submits before the loop may block */
	uv_check_t check;  /* submits right after the poll phase */
	unsigned inflight;
	unsigned unsubmitted;
	struct sds_uring_opq backlog;
	bool ready;
};

int sds_uring_init(struct sds_uring *u, uv_loop_t *loop, unsigned entries);
void sds_uring_close(struct sds_uring *u, uv_close_cb cb, void *data);
void sds_uring_read(struct sds_uring *u, struct sds_uring_op *op, int fd,
		    void *buf, uint32_t len, uint64_t off);
/* rw_flags: RWF_* (RWF_DSYNC in log mode) */
void sds_uring_write(struct sds_uring *u, struct sds_uring_op *op, int fd,
		     void *buf, uint32_t len, uint64_t off, int rw_flags);

/* ---- disks and allocation (disk.c, alloc.c) ---------------------------- */
struct sds_disk {
	int fd;
	char *path;
	uint64_t nblocks;
	uint64_t *used;       /* committed-or-to-be-committed allocation */
	uint64_t *busy;       /* used | in-flight writes | not-yet-durable frees */
	uint8_t *dirty;       /* per SDS_ALLOC_CHUNK: `used` changed */
	uint64_t nchunks;
	uint64_t cursor;      /* next-fit search start */
	uint64_t nbusy;
	uint64_t nused;
};

/* Disk label in block 0 of every disk: ties the disk to its pool. */
struct sds_label {
	char magic[8];
	uint8_t uuid[16];
	uint32_t index;
	uint32_t version;
	uint64_t nblocks;
};

int sds_disk_open(struct sds_disk *d, const char *path, char *err,
		  size_t errlen);
void sds_disk_close(struct sds_disk *d);
int sds_disk_label_rw(struct sds_disk *d, struct sds_label *l, bool write);

/* Allocates one run of up to `want` physically contiguous free blocks on
 * one disk. Returns the count (>=1) and the first pba, or -ENOSPC. The
 * blocks are busy but not yet `used`: sds_alloc_commit_block() marks them
 * used once their data is written; sds_alloc_abort() returns them. */
int sds_alloc_run(struct sds_pool *p, unsigned want, uint64_t *pba);
void sds_alloc_commit_block(struct sds_pool *p, uint64_t pba);
void sds_alloc_abort(struct sds_pool *p, uint64_t pba, unsigned n);
/* Drops a block: no longer used, but stays busy (unallocatable) until the
 * commit that records the drop is durable. */
void sds_alloc_release(struct sds_pool *p, uint64_t pba);
/* Called when a commit became durable: frees what it carried. */
void sds_alloc_durable(struct sds_pool *p, uint64_t *pbas, size_t n);
int sds_alloc_load(struct sds_pool *p);
/* Recomputes `used` from every block table on record (after a crash in
 * log mode); marks every chunk dirty. */
int sds_alloc_rebuild(struct sds_pool *p);

/* ---- metadata store (meta.c) ------------------------------------------ */
/* Key prefixes; integers are big-endian so keys sort numerically. */
#define SDS_K_SUPER 'S'   /* S: superblock */
#define SDS_K_DISK 'D'    /* D be32 disk: path + nblocks */
#define SDS_K_VDISK 'V'   /* V be64 id: vdisk record */
#define SDS_K_MAP 'M'     /* M be64 vdisk be32 chunk: 512 extent ids */
#define SDS_K_EXTENT 'E'  /* E be64 extent u8 shard: version + 16 entries */
#define SDS_K_EXTRC 'C'   /* C be64 extent: refcount when > 1 */
#define SDS_K_PBARC 'R'   /* R be64 pba: references when > 1 */
#define SDS_K_ALLOC 'A'   /* A be32 disk be32 chunk: allocation bitmap */
#define SDS_K_LOGGED 'L'  /* L: log batches may be newer than the A records */
#define SDS_K_ATTR 'X'    /* X be64 vdisk name: attribute (attr.c) */

struct sds_meta {
	rocksdb_t *db;
	rocksdb_options_t *opts;
	rocksdb_cache_t *cache;
	rocksdb_readoptions_t *ropts;
	rocksdb_writeoptions_t *wopts_sync;
	rocksdb_writeoptions_t *wopts_nosync;
	rocksdb_flushoptions_t *fopts; /* inplace: no wait */
	bool inplace;        /* values updated in place in the memtable */
	uint64_t wal_bytes;  /* inplace: written since the last flush */
};

/* inplace: only for a pool whose every RocksDB write and read runs on the
 * loop thread (log mode); meta.c explains. */
int sds_meta_open(struct sds_meta *m, const char *path, bool create,
		  bool inplace, char *err, size_t errlen);
void sds_meta_close(struct sds_meta *m);
/* Returns the value (malloc'd, *len set), or NULL when absent or on error
 * (*len = 0 absent, *len = SIZE_MAX error). */
void *sds_meta_get(struct sds_meta *m, const uint8_t *key, size_t klen,
		   size_t *len);
/* sync=false: survives a crash of the process, not of the machine. */
int sds_meta_write(struct sds_meta *m, rocksdb_writebatch_t *b, bool sync,
		   char *err, size_t errlen);
int sds_meta_sync_wal(struct sds_meta *m, char *err, size_t errlen);
/* Calls fn for every key starting with `prefix`; stops on non-zero. */
int sds_meta_scan(struct sds_meta *m, const uint8_t *prefix, size_t plen,
		  int (*fn)(void *arg, const uint8_t *k, size_t kl,
			    const uint8_t *v, size_t vl),
		  void *arg);

size_t sds_key_u64(uint8_t *k, char tag, uint64_t a);
size_t sds_key_u64_u32(uint8_t *k, char tag, uint64_t a, uint32_t b);
size_t sds_key_alloc(uint8_t *k, unsigned disk, uint32_t chunk);
/* attr.c: drops every attribute of a vdisk (it is being deleted). */
void sds_attr_drop_all(struct sds_pool *p, uint64_t vdisk_id);

/* ---- extents (extent.c) ------------------------------------------------ */
#define SDS_BLK_SHARED 1u /* the pba may be referenced elsewhere: see R */

struct sds_blkent {
	uint64_t pba; /* 0: hole (reads as zeroes) */
	uint32_t crc;
	uint32_t flags;
};

/* An extent's table is stored in shards of 16 entries, so that a small
 * write rewrites 264 bytes of metadata, not 4 KiB. */
#define SDS_SHARD_BLOCKS 16u
#define SDS_EXTENT_SHARDS (SDS_EXTENT_BLOCKS / SDS_SHARD_BLOCKS)
#define SDS_SHARD_VALUE_LEN (8 + SDS_SHARD_BLOCKS * 16)
#define SDS_SHARDS_ALL ((uint16_t)0xffff)
_Static_assert(SDS_EXTENT_SHARDS == 16, "dirty mask is 16 bits");

struct sds_extent {
	uint64_t id;
	uint64_t version;    /* bumped by every change: replication's order */
	uint64_t saved_gen;  /* commit generation that carries the last change */
	uint16_t dirty;      /* shards changed since the last commit */
	TAILQ_ENTRY(sds_extent) lru;
	TAILQ_ENTRY(sds_extent) dirty_link; /* on pool->ext_dirty iff dirty */
	struct sds_blkent blk[SDS_EXTENT_BLOCKS];
};
TAILQ_HEAD(sds_extentq, sds_extent);


/* Returns the cached extent (loading it), or NULL with -errno in *rc. */
struct sds_extent *sds_extent_get(struct sds_pool *p, uint64_t id, int *rc);
struct sds_extent *sds_extent_new(struct sds_pool *p);
/* Marks the shard holding block idx changed (SDS_EXTENT_BLOCKS: all). */
void sds_extent_mark_dirty(struct sds_pool *p, struct sds_extent *e,
			   unsigned idx);
uint32_t sds_extent_refs(struct sds_pool *p, uint64_t id);
void sds_extent_ref(struct sds_pool *p, uint64_t id);
/* Drops one reference; the last one frees every block and the extent. */
int sds_extent_unref(struct sds_pool *p, uint64_t id);
/* Makes the extent behind map slot `vb` of `vd` private to it (copy on
 * write of the block table when shared), creating it when absent. */
struct sds_extent *sds_extent_for_write(struct sds_pool *p,
					struct sds_vd *vd, uint64_t vb,
					int *rc);
/* Sets one block's entry, releasing what it pointed to. */
void sds_extent_set(struct sds_pool *p, struct sds_extent *e, unsigned idx,
		    uint64_t pba, uint32_t crc, uint32_t flags);
void sds_pba_ref(struct sds_pool *p, uint64_t pba);
void sds_pba_unref(struct sds_pool *p, const struct sds_blkent *b);
void sds_extent_encode_shard(const struct sds_extent *e, unsigned shard,
			     uint8_t *v);
size_t sds_key_shard(uint8_t *k, uint64_t extent, unsigned shard);
void sds_extent_cache_trim(struct sds_pool *p);
void sds_extent_cache_free(struct sds_pool *p);

/* ---- vdisks (vdisk.c) --------------------------------------------------- */
#define SDS_VD_SNAPSHOT 1u
#define SDS_VD_DELETING 2u

struct sds_req;
TAILQ_HEAD(sds_reqq, sds_req);

struct sds_vd {
	uint64_t id;
	char name[SDS_NAME_MAX + 1];
	uint64_t size;
	uint32_t sector_size;
	uint32_t flags;
	uint64_t parent_id;
	int64_t created;
	uint64_t nvb;        /* map slots (1 MiB each) */
	uint64_t *map;       /* extent id per slot, 0 = unwritten */
	uint8_t *map_dirty;  /* per SDS_MAP_CHUNK slots */
	bool maps_dirty;     /* some map_dirty[] set: a batch scans them */
	uint64_t map_chunks_on_disk; /* chunks written before: deleted on shrink */
	bool rec_dirty;
	bool removed;        /* fully released: delete its records */
	unsigned opens;
	uint64_t gc_cursor;  /* deleting: next slot to release */
	TAILQ_ENTRY(sds_vd) link;
};
TAILQ_HEAD(sds_vdq, sds_vd);

struct sds_vdisk {
	struct sds_pool *pool;
	struct sds_vd *vd;
};

struct sds_vd *sds_vd_find(struct sds_pool *p, const char *name);
void sds_vd_map_set(struct sds_pool *p, struct sds_vd *vd, uint64_t vb,
		    uint64_t eid);
/* Unmaps blocks [b0, b1): whole slots drop their extent reference. */
int sds_vd_release(struct sds_pool *p, struct sds_vd *vd, uint64_t b0,
		   uint64_t b1);
/* Makes dst blocks [db, db+n) share src blocks [sb, sb+n): whole aligned
 * slots share the extent, other blocks share physical blocks. */
int sds_vd_share(struct sds_pool *p, struct sds_vd *dst, uint64_t db,
		 struct sds_vd *src, uint64_t sb, uint64_t n);
int sds_vd_load_all(struct sds_pool *p);
void sds_vd_free_all(struct sds_pool *p);
void sds_vd_encode(const struct sds_vd *vd, uint8_t *v);
size_t sds_vd_rec_len(void);
void sds_gc_kick(struct sds_pool *p);

/* ---- requests (io.c, lock.c) ------------------------------------------- */
struct sds_range {
	struct sds_vd *vd; /* NULL: unused */
	uint64_t b0, b1;   /* blocks [b0, b1) */
	bool excl;
};

struct sds_sub {
	struct sds_uring_op op;
	struct sds_req *req;
	uint64_t blk;   /* first vdisk block of this sub-IO */
	unsigned n;     /* blocks */
	uint64_t pba;
};

struct sds_req {
	struct sds_pool *pool;
	struct sds_io *io;
	struct sds_vd *vd;
	int phase;
	int status;
	unsigned pending;   /* sub-IOs in flight */
	struct sds_range lk[2];
	bool locked;
	TAILQ_ENTRY(sds_req) link;  /* runq, lock waiters or commit queues */
	TAILQ_ENTRY(sds_req) lock_link; /* pool->locked */
	/* The piece in progress, in blocks of r->pvd. */
	struct sds_vd *pvd;
	uint64_t b0, nblk;
	uint8_t *data;     /* nblk blocks: bounce or the caller's buffer */
	uint8_t *bounce;   /* owned buffers */
	uint8_t *rbuf;     /* COPY_RANGE: source data */
	uint32_t *crc;     /* per block: expected (read) or computed (write) */
	uint64_t *pba;     /* per block: source (read) or new (write) */
	struct sds_sub *subs;
	uint64_t cap;      /* capacity of pba/crc/subs, blocks */
	unsigned nsubs;
	uint32_t head;     /* write piece: byte offset in the first block */
	uint64_t wlen;     /* write piece: bytes */
	const uint8_t *wsrc; /* write piece: source bytes, NULL = zeroes */
	int after_write;   /* phase that follows the write piece */
	uint64_t cursor;   /* long operations: bytes done */
	uint64_t target_gen; /* FLUSH / FUA: generation to wait for */
};

/* Block range locks, pool-wide: 0 when acquired, -EAGAIN when queued (the
 * request is continued once granted). Waiters are served in order, so a
 * stream of readers cannot starve a writer. */
int sds_lock_try(struct sds_req *r);
void sds_lock_release(struct sds_req *r);

void sds_req_continue(struct sds_req *r); /* next phase, via the idle queue */
void sds_req_complete(struct sds_req *r, int status);
void sds_io_start(struct sds_req *r);

/* ---- commit (commit.c) --------------------------------------------------- */
void sds_commit_request(struct sds_pool *p);
void sds_commit_wait(struct sds_pool *p, struct sds_req *r);
/* SDS_IO_LOGGED: continues r once its metadata is in the WAL (unsynced). */
void sds_commit_log_wait(struct sds_pool *p, struct sds_req *r);
int sds_commit_init(struct sds_pool *p);
void sds_commit_mark(struct sds_pool *p); /* something became dirty */

/* ---- the pool (pool.c) ------------------------------------------------- */
struct sds_pool {
	uv_loop_t *loop;
	char *dir;
	struct sds_pool_opts opts;
	struct sds_meta meta;
	struct sds_uring uring;
	uint8_t uuid[16];
	unsigned ndisks;
	struct sds_disk disks[SDS_MAX_DISKS];
	unsigned alloc_next_disk;
	uint64_t next_vdisk_id, next_extent_id;
	bool super_dirty;

	struct sds_vdq vds;
	struct hmap ext_cache;  /* id -> struct sds_extent * */
	struct sds_extentq lru;
	/* Extents with dirty shards: a batch walks these, never the cache. */
	struct sds_extentq ext_dirty;
	size_t ncached;
	struct hmap ext_rc;     /* id -> refcount, only when > 1 */
	struct hmap ext_rc_dirty;
	struct hmap ext_dead;   /* extents to delete at next commit */
	struct hmap pba_rc;     /* pba -> references, only when > 1 */
	struct hmap pba_rc_dirty;

	/* Group commit. Generation cur_gen collects changes; a commit carries
	 * one generation to disk and advances durable_gen. */
	uint64_t cur_gen, durable_gen;
	bool dirty, committing, commit_again;
	uv_timer_t commit_timer;
	uv_work_t commit_work;
	rocksdb_writebatch_t *commit_batch; /* on the worker (strict mode) */
	int commit_status;
	uint64_t *free_cur, *free_committing; /* released pbas per generation */
	size_t nfree_cur, cap_free_cur, nfree_committing;
	struct sds_reqq commit_waiters;  /* FLUSH/FUA */
	struct sds_reqq space_waiters;   /* ENOSPC until frees are durable */
	struct sds_reqq log_waiters;     /* SDS_IO_LOGGED */
	uv_check_t log_check;            /* writes the log after the poll */
	bool logged; /* unsynced log batches: the next commit must sync */
	bool log_marked; /* the L key is on record (commit.c) */
	char commit_err[256];

	struct sds_reqq locked;       /* requests holding range locks */
	struct sds_reqq lock_waiters;
	/* Continuations run on the next loop turn (never re-entrantly). */
	struct sds_reqq runq;
	uv_idle_t runq_idle;
	uv_timer_t gc_timer;
	struct sds_scrub *scrub; /* scrub.c; NULL when never started */

	unsigned inflight;  /* requests not yet completed */
	unsigned in_submit; /* inside sds_vdisk_submit: defer completions */
	bool closing;
	bool failed;        /* a commit failed: refuse IO until reopened */
	void (*close_cb)(void *);
	void *close_arg;
	unsigned handles_open;   /* vdisk handles */
	unsigned closing_handles; /* libuv handles being closed */

	struct sds_pool_stats st;
	char errmsg[256];
};

void sds_pool_set_err(struct sds_pool *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void sds_pool_maybe_closed(struct sds_pool *p);

uint32_t sds_crc(const void *buf, size_t len);
bool sds_scrub_close(struct sds_pool *p); /* true when gone */

#endif
