/* Cairn storage engine (sds): local pools, thin vdisks, snapshots and clones.
 *
 * Threading: every function here must be called on the thread that runs the
 * pool's uv_loop_t; completions are delivered on that thread too, never from
 * inside sds_vdisk_submit(). See docs/architecture.md.
 *
 * Errors: synchronous calls return 0 or a negative errno and leave a message
 * in sds_pool_errmsg(); asynchronous IO completes with a status (0 or -errno).
 */
#ifndef CAIRN_SDS_H
#define CAIRN_SDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define SDS_BLOCK_SIZE 4096u    /* unit of allocation and checksum */
#define SDS_EXTENT_BLOCKS 256u  /* blocks per extent (1 MiB) */
#define SDS_EXTENT_SIZE ((uint64_t)SDS_BLOCK_SIZE * SDS_EXTENT_BLOCKS)
#define SDS_NAME_MAX 63         /* vdisk name length, bytes */
#define SDS_MAX_DISKS 64
#define SDS_MAX_IO (32u << 20)  /* largest single READ/WRITE, bytes */

struct sds_pool;
struct sds_vdisk;

struct sds_pool_opts {
	/* Group commit: metadata of acknowledged writes is made durable at
	 * least this often even with no FLUSH (0 = default 50 ms). */
	unsigned commit_interval_ms;
	/* Per-block crc32c. Off only for benchmarks measuring its cost. */
	bool no_checksum;
	/* Extents kept in the in-memory metadata cache (0 = default). */
	size_t cache_extents;
	/* Fault injection for tests: called at named points ("commit", on the
	 * commit worker thread, before the metadata write); a non-zero return
	 * makes that step fail with it as -errno. NULL in production. */
	int (*fault)(void *arg, const char *point);
	void *fault_arg;
	/* Log mode: the pool honours SDS_IO_LOGGED (without it such requests
	 * are treated as SDS_IO_FUA). Every data write then goes to the disks
	 * with RWF_DSYNC, so that its metadata may be written to the WAL
	 * unsynced, and group commits written on the loop, before any
	 * fdatasync: a block's metadata never reaches the WAL before its data
	 * is stable (SDS-NOTES 1), whatever the kernel writes back when.
	 * For front ends whose client outlives this process (vhost-user-blk). */
	bool log;
};

/* Creates a pool in `dir` (RocksDB lives in dir/meta) over `ndisks` disks:
 * block devices or regular files. A file that does not exist is created
 * with sizes[i] bytes (0 = keep the existing size). */
int sds_pool_format(const char *dir, const char *const *disks,
		    const uint64_t *sizes, unsigned ndisks, char *err,
		    size_t errlen);

int sds_pool_open(uv_loop_t *loop, const char *dir,
		  const struct sds_pool_opts *opts, struct sds_pool **out,
		  char *err, size_t errlen);

/* Waits for in-flight IO and background work, commits, closes, frees the
 * pool, then calls cb (if any). Open vdisk handles must be closed first. */
void sds_pool_close(struct sds_pool *p, void (*cb)(void *arg), void *arg);

/* Makes every metadata change and every write completed so far durable,
 * then calls cb with 0 or -errno. */
void sds_pool_flush(struct sds_pool *p, void (*cb)(void *arg, int status),
		    void *arg);

const char *sds_pool_errmsg(const struct sds_pool *p);

/* The pool's identity, random at format and stable for its life (SCSI
 * device identifiers are derived from it). */
void sds_pool_uuid(const struct sds_pool *p, uint8_t out[16]);

struct sds_pool_stats {
	uint64_t total_bytes;   /* data capacity over all disks */
	uint64_t used_bytes;    /* physically allocated data blocks */
	uint64_t free_bytes;
	uint64_t crc_errors;    /* checksum mismatches seen on read */
	uint64_t io_errors;     /* disk IO errors */
	uint64_t commits;       /* metadata group commits */
	uint64_t log_writes;    /* unsynced WAL writes for SDS_IO_LOGGED */
	uint64_t reads, writes; /* completed vdisk IOs */
	unsigned ndisks;
	/* background scrubber */
	uint64_t scrub_passes;  /* complete passes over every extent */
	uint64_t scrub_blocks;  /* blocks read and verified */
	uint64_t scrub_errors;  /* checksum mismatches or read errors found */
};
void sds_pool_stats(const struct sds_pool *p, struct sds_pool_stats *out);

/* Background scrubber: reads every referenced block at most
 * blocks_per_sec, verifies its crc32c and counts and logs what fails
 * (repair needs a replica: replication/ will add it). 0 stops it. */
void sds_pool_scrub(struct sds_pool *p, unsigned blocks_per_sec);

/* Consistency check of an idle pool (fsck); deep also reads every
 * referenced block and verifies its checksum. Returns 0 when the check ran
 * (look at errors), or -errno when it could not. */
struct sds_check_report {
	uint64_t vdisks, extents;
	uint64_t blocks_referenced, blocks_used, blocks_leaked;
	uint64_t blocks_verified;
	uint64_t errors;
	char first_error[256];
};
int sds_pool_check(struct sds_pool *p, bool deep,
		   struct sds_check_report *report);

/* ---- vdisks -------------------------------------------------------------
 * Metadata operations take effect at once in memory and become durable at
 * the next commit (sds_pool_flush to wait for it). Names are 1..63 bytes of
 * [A-Za-z0-9._-]. */

struct sds_vdisk_info {
	uint64_t id;
	char name[SDS_NAME_MAX + 1];
	uint64_t size;          /* bytes */
	uint32_t sector_size;   /* 512 or 4096 */
	bool snapshot;          /* read-only point-in-time image */
	uint64_t parent_id;     /* snapshot's origin, or clone's source; 0 */
	int64_t created;        /* unix seconds */
	/* Space: allocated = exclusive + shared. Exclusive bytes are freed when
	 * this vdisk is deleted; shared bytes are also referenced elsewhere. */
	uint64_t allocated_bytes;
	uint64_t exclusive_bytes;
	uint64_t shared_bytes;
};

int sds_vdisk_create(struct sds_pool *p, const char *name, uint64_t size,
		     uint32_t sector_size);
/* Deleting releases space in the background; -EBUSY while open. */
int sds_vdisk_delete(struct sds_pool *p, const char *name);
/* Growing adds unwritten (zero) space; shrinking releases what lies beyond.
 * Size must be a multiple of the sector size. -EBUSY while open. */
int sds_vdisk_resize(struct sds_pool *p, const char *name, uint64_t size);
/* Read-only point-in-time copy of `src`; metadata only. */
int sds_vdisk_snapshot(struct sds_pool *p, const char *src,
		       const char *snap_name);
/* Writable child of `src` (a snapshot or a vdisk); metadata only. */
int sds_vdisk_clone(struct sds_pool *p, const char *src,
		    const char *clone_name);
int sds_vdisk_stat(struct sds_pool *p, const char *name,
		   struct sds_vdisk_info *out);
/* *out is malloc'd; free() it. Deleted vdisks are not listed. */
int sds_vdisk_list(struct sds_pool *p, struct sds_vdisk_info **out,
		   size_t *count);

/* Handles are cheap; opening the same vdisk twice gives two handles that
 * share state. */
int sds_vdisk_open(struct sds_pool *p, const char *name,
		   struct sds_vdisk **out);
void sds_vdisk_close(struct sds_vdisk *v);
uint64_t sds_vdisk_size(const struct sds_vdisk *v);
uint32_t sds_vdisk_sector_size(const struct sds_vdisk *v);
bool sds_vdisk_readonly(const struct sds_vdisk *v);
const char *sds_vdisk_name(const struct sds_vdisk *v);

/* Allocation status (SBC-4 GET LBA STATUS, NBD block status): whether the
 * bytes at `offset` are mapped, and how many bytes from there (up to
 * max_len) share that status. Metadata only, synchronous. */
int sds_vdisk_lba_status(struct sds_vdisk *v, uint64_t offset,
			 uint64_t max_len, bool *mapped, uint64_t *len);

/* Attributes (sds/attr.c): small named values a front end keeps with a
 * vdisk (SCSI persistent reservations with APTPL). Not copied to
 * snapshots or clones; dropped when the vdisk is deleted. Snapshots may
 * have them too (they are not data). Synchronous. */
#define SDS_ATTR_NAME_MAX 64
#define SDS_ATTR_VALUE_MAX (1u << 20)
/* Durable on return (a synced metadata write of its own, outside the
 * group commit). len 0 deletes. 0, or -EINVAL (name or size), -EIO. */
int sds_vdisk_attr_set(struct sds_vdisk *v, const char *name,
		       const void *val, size_t len);
/* *val: malloc'd copy, *len its size. 0, -ENOENT, or -EIO. */
int sds_vdisk_attr_get(struct sds_vdisk *v, const char *name, void **val,
		       size_t *len);

/* ---- IO -------------------------------------------------------------------
 * offset and len are bytes, multiples of the vdisk's sector size, inside
 * the vdisk. Writes are acknowledged when their data is on disk and the
 * metadata pointing to it is in memory; the pool behaves like a disk with a
 * volatile write cache: a FLUSH (or SDS_IO_FUA) makes every write
 * acknowledged before it durable. */
enum sds_op {
	SDS_OP_READ,
	SDS_OP_WRITE,
	SDS_OP_FLUSH,
	SDS_OP_WRITE_ZEROES, /* reads back zeroes; releases space */
	SDS_OP_UNMAP,        /* releases space; reads back zeroes */
	SDS_OP_COMPARE_AND_WRITE,
	SDS_OP_COPY_RANGE,   /* from (src, src_offset) to (this vdisk, offset) */
};

#define SDS_IO_FUA (1u << 0)      /* durable on acknowledgement */
#define SDS_IO_NO_UNMAP (1u << 1) /* WRITE_ZEROES: keep space allocated */
/* Changes (WRITE, WRITE_ZEROES, UNMAP, COMPARE_AND_WRITE, COPY_RANGE):
 * acknowledged only once the change survives a crash of this process
 * (kill -9), not a power loss: its metadata is in RocksDB's WAL, written
 * without sync and shared by every such request of one loop turn. A FLUSH
 * still makes it durable. For front ends whose client outlives the server
 * process (a VM whose back end restarts). Needs a pool opened with
 * opts.log; in any other pool it means SDS_IO_FUA. */
#define SDS_IO_LOGGED (1u << 2)

struct sds_io {
	enum sds_op op;
	uint32_t flags;
	uint64_t offset;
	uint64_t len;
	/* READ: filled; WRITE: data. COMPARE_AND_WRITE: len bytes to compare
	 * followed by len bytes to write. 4096-byte alignment avoids a copy. */
	void *buf;
	struct sds_vdisk *src; /* COPY_RANGE source, same pool */
	uint64_t src_offset;
	/* Completion: status 0, or -errno: -EINVAL (bad range or alignment),
	 * -EIO (disk error or checksum mismatch), -ENOSPC, -EROFS (snapshot),
	 * -EILSEQ (COMPARE_AND_WRITE miscompare; see miscompare_offset). */
	void (*cb)(struct sds_io *io, int status);
	void *priv;
	uint64_t miscompare_offset; /* out: byte offset of the first difference */
};

void sds_vdisk_submit(struct sds_vdisk *v, struct sds_io *io);

#endif
