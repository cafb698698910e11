/* INQUIRY vital product data pages: SPC-5 7.7 (00h, 80h, 83h, 8Fh) and
 * SBC-4 6.6 (B0h, B1h, B2h). */
#include <string.h>

#include "scsi_internal.h"

static const uint8_t vpd_pages[] = {0x00, 0x80, 0x83, 0x8f,
				    0xb0, 0xb1, 0xb2};

size_t vpd_designator_naa(const struct scsi_lu *lu, uint8_t *p)
{
	p[0] = 0x01; /* CODE SET binary */
	p[1] = 0x03; /* ASSOCIATION LU, DESIGNATOR TYPE NAA */
	p[2] = 0;
	p[3] = 16;
	memcpy(p + 4, lu->naa, 16);
	return 20;
}

/* SPC-5 7.7.6: device identification */
static size_t vpd_83(struct scsi_task *tk, uint8_t *d)
{
	const struct scsi_lu *lu = tk->lu;
	const struct scsi_nexus *n = tk->c->nexus;
	size_t pos = 4;
	pos += vpd_designator_naa(lu, d + pos);
	/* T10 vendor ID based (7.7.6.6.4): vendor, then the unit serial */
	uint8_t *p = d + pos;
	size_t sl = strlen(lu->serial);
	p[0] = 0x02; /* ASCII */
	p[1] = 0x01; /* LU, T10 vendor ID */
	p[3] = (uint8_t)(8 + sl);
	memcpy(p + 4, "CAIRN   ", 8);
	memcpy(p + 12, lu->serial, sl);
	pos += 4 + 8 + sl;
	if (n) {
		/* Relative target port identifier (7.7.6.6.6) */
		p = d + pos;
		p[0] = 0x51; /* PROTOCOL IDENTIFIER iSCSI, binary */
		p[1] = 0x94; /* PIV, target port, relative target port */
		p[3] = 4;
		put_be16(p + 6, n->rel_target_port_id);
		pos += 8;
		/* SCSI name string of the target port (7.7.6.6.9): UTF-8,
		 * null terminated, padded to a multiple of 4. */
		size_t tl = strnlen(n->target_port, sizeof(n->target_port) - 1);
		if (tl) {
			size_t padded = (tl + 1 + 3) & ~(size_t)3;
			if (padded > 252)
				padded = 252, tl = 251;
			p = d + pos;
			memset(p, 0, 4 + padded);
			p[0] = 0x53; /* iSCSI, UTF-8 */
			p[1] = 0x98; /* PIV, target port, SCSI name string */
			p[3] = (uint8_t)padded;
			memcpy(p + 4, n->target_port, tl);
			pos += 4 + padded;
		}
	}
	return pos;
}

/* SPC-5 7.7.18: third-party copy, the LID1 EXTENDED COPY descriptors. */
static size_t vpd_8f(uint8_t *d)
{
	size_t pos = 4;
	uint8_t *p;
	/* Supported commands (7.7.18.3) */
	p = d + pos;
	put_be16(p, 0x0001);
	static const uint8_t cmds[] = {0x83, 1, 0x00, 0x84, 2, 0x00, 0x03};
	p[4] = sizeof(cmds);
	memcpy(p + 5, cmds, sizeof(cmds));
	size_t len = (1 + sizeof(cmds) + 3) & ~3u;
	put_be16(p + 2, (uint16_t)len);
	pos += 4 + len;
	/* Parameter data (7.7.18.4) */
	p = d + pos;
	memset(p, 0, 32);
	put_be16(p, 0x0008);
	put_be16(p + 2, 0x1c);
	put_be16(p + 8, XCOPY_MAX_TARGET_DESC);
	put_be16(p + 10, XCOPY_MAX_SEGMENT_DESC);
	put_be32(p + 12, 16 + XCOPY_MAX_TARGET_DESC * 32 +
				 XCOPY_MAX_SEGMENT_DESC * 28);
	put_be32(p + 16, XCOPY_MAX_INLINE);
	pos += 32;
	/* Supported descriptors (7.7.18.5): block->block, identification */
	p = d + pos;
	memset(p, 0, 8);
	put_be16(p, 0x0009);
	put_be16(p + 2, 4);
	p[4] = 2;
	p[5] = 0x02;
	p[6] = 0xe4;
	pos += 8;
	/* Supported CSCD descriptor IDs (7.7.18.6): none beyond the
	 * descriptors themselves. */
	p = d + pos;
	memset(p, 0, 8);
	put_be16(p, 0x000c);
	put_be16(p + 2, 4);
	pos += 8;
	/* General copy operations (7.7.18.8) */
	p = d + pos;
	memset(p, 0, 36);
	put_be16(p, 0x8001);
	put_be16(p + 2, 0x20);
	put_be32(p + 4, 1);  /* TOTAL CONCURRENT COPIES */
	put_be32(p + 8, 1);  /* MAXIMUM IDENTIFIED CONCURRENT COPIES */
	put_be32(p + 12, XCOPY_MAX_SEGMENT_BYTES);
	p[16] = 9;           /* DATA SEGMENT GRANULARITY (log2) */
	p[17] = 9;           /* INLINE DATA GRANULARITY */
	pos += 36;
	return pos;
}

/* SBC-4 6.6.4: block limits */
static size_t vpd_b0(const struct scsi_lu *lu, uint8_t *d)
{
	uint32_t bs = lu->bs;
	memset(d + 4, 0, 0x3c);
	/* WSNZ=0: WRITE SAME with NUMBER OF LOGICAL BLOCKS 0 is allowed */
	d[5] = SBC_MAX_CAW_BLOCKS;
	put_be16(d + 6, (uint16_t)(SDS_BLOCK_SIZE / bs));
	put_be32(d + 8, SBC_MAX_XFER_BYTES / bs);
	put_be32(d + 12, (uint32_t)(SDS_EXTENT_SIZE / bs));
	put_be32(d + 20, SBC_MAX_UNMAP_BLOCKS);
	put_be32(d + 24, SBC_MAX_UNMAP_DESC);
	put_be32(d + 28, SDS_BLOCK_SIZE / bs); /* OPTIMAL UNMAP GRANULARITY */
	put_be32(d + 32, 0x80000000u);         /* UGAVALID, alignment 0 */
	put_be64(d + 36, SBC_MAX_WS_BLOCKS);
	/* WRITE ATOMIC(16): one extent, any alignment, no boundaries */
	put_be32(d + 44, (uint32_t)(SBC_MAX_ATOMIC_BYTES / bs));
	put_be32(d + 48, 0); /* ATOMIC ALIGNMENT */
	put_be32(d + 52, 0); /* ATOMIC TRANSFER LENGTH GRANULARITY */
	return 4 + 0x3c;
}

/* SBC-4 6.6.2: block device characteristics */
static size_t vpd_b1(uint8_t *d)
{
	memset(d + 4, 0, 0x3c);
	put_be16(d + 4, 0x0001); /* MEDIUM ROTATION RATE: non-rotating */
	/* WABEREQ 01b: reads after a SANITIZE BLOCK ERASE succeed (zeroes);
	 * WACEREQ 00b: no CRYPTOGRAPHIC ERASE (sanitize.c). */
	d[7] = 0x40;
	return 4 + 0x3c;
}

/* SBC-4 6.6.5: logical block provisioning */
static size_t vpd_b2(uint8_t *d)
{
	memset(d + 4, 0, 4);
	d[5] = 0x80 | 0x40 | 0x20 | 0x04; /* LBPU LBPWS LBPWS10 LBPRZ=001b */
	d[6] = 0x02;                      /* PROVISIONING TYPE: thin */
	return 8;
}

void vpd_inquiry(struct scsi_task *tk, uint8_t page, uint32_t alloc_len)
{
	struct scsi_lu *lu = tk->lu;
	uint8_t d[1024];
	memset(d, 0, sizeof(d));
	size_t n;
	switch (page) {
	case 0x00: /* SPC-5 7.7.16 */
		memcpy(d + 4, vpd_pages, sizeof(vpd_pages));
		n = 4 + sizeof(vpd_pages);
		break;
	case 0x80: /* SPC-5 7.7.19 */
		n = strlen(lu->serial);
		memcpy(d + 4, lu->serial, n);
		n += 4;
		break;
	case 0x83:
		n = vpd_83(tk, d);
		break;
	case 0x8f:
		n = vpd_8f(d);
		break;
	case 0xb0:
		n = vpd_b0(lu, d);
		break;
	case 0xb1:
		n = vpd_b1(d);
		break;
	case 0xb2:
		n = vpd_b2(d);
		break;
	default:
		scsi_task_bad_cdb(tk, 2, 7);
		return;
	}
	d[0] = 0x00; /* peripheral qualifier 0, type 0: direct access */
	d[1] = page;
	put_be16(d + 2, (uint16_t)(n - 4));
	scsi_task_data_in(tk, d, n, alloc_len);
	scsi_task_done(tk);
}
