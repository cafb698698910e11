/* A pool disk: a block device or a regular file, opened O_DIRECT. Block 0
 * holds a label tying it to its pool; data blocks start at 1, so pba 0 is
 * never data and serves as "hole". */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sds_internal.h"
#include "util.h"

int sds_disk_open(struct sds_disk *d, const char *path, char *err,
		  size_t errlen)
{
	memset(d, 0, sizeof(*d));
	d->fd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
	if (d->fd < 0) {
		int rc = -errno;
		snprintf(err, errlen, "open %s: %s", path, strerror(errno));
		return rc;
	}
	struct stat st;
	uint64_t bytes = 0;
	if (fstat(d->fd, &st) == 0 && S_ISBLK(st.st_mode)) {
		if (ioctl(d->fd, BLKGETSIZE64, &bytes) < 0)
			bytes = 0;
	} else {
		bytes = (uint64_t)st.st_size;
	}
	d->nblocks = bytes / SDS_BLOCK_SIZE;
	if (d->nblocks < 2) {
		snprintf(err, errlen, "%s: too small (%llu bytes)", path,
			 (unsigned long long)bytes);
		close(d->fd);
		d->fd = -1;
		return -EINVAL;
	}
	d->path = strdup(path);
	return d->path ? 0 : -ENOMEM;
}

void sds_disk_close(struct sds_disk *d)
{
	if (d->fd >= 0)
		close(d->fd);
	free(d->path);
	free(d->used);
	free(d->busy);
	free(d->dirty);
	memset(d, 0, sizeof(*d));
	d->fd = -1;
}

int sds_disk_label_rw(struct sds_disk *d, struct sds_label *l, bool write)
{
	void *buf;
	if (posix_memalign(&buf, SDS_BLOCK_SIZE, SDS_BLOCK_SIZE))
		return -ENOMEM;
	memset(buf, 0, SDS_BLOCK_SIZE);
	uint8_t *b = buf;
	ssize_t n;
	if (write) {
		memcpy(b, l->magic, 8);
		memcpy(b + 8, l->uuid, 16);
		put_be32(b + 24, l->index);
		put_be32(b + 28, l->version);
		put_be64(b + 32, l->nblocks);
		put_be32(b + 40, sds_crc(b, 40));
		n = pwrite(d->fd, buf, SDS_BLOCK_SIZE, 0);
		if (n == SDS_BLOCK_SIZE && fdatasync(d->fd) != 0)
			n = -1;
	} else {
		n = pread(d->fd, buf, SDS_BLOCK_SIZE, 0);
		if (n == SDS_BLOCK_SIZE) {
			memcpy(l->magic, b, 8);
			memcpy(l->uuid, b + 8, 16);
			l->index = get_be32(b + 24);
			l->version = get_be32(b + 28);
			l->nblocks = get_be64(b + 32);
			if (get_be32(b + 40) != sds_crc(b, 40) ||
			    memcmp(l->magic, SDS_MAGIC, 8) != 0)
				n = -2;
		}
	}
	free(buf);
	if (n == -2)
		return -EINVAL;
	return n == SDS_BLOCK_SIZE ? 0 : -EIO;
}
