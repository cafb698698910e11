/* iSCSI PDU codec (RFC 7143 § 11): the Basic Header Segment, the
 * Additional Header Segments, data segment padding and CRC32C digests.
 * Pure: bytes in, fields out. */
#include <errno.h>
#include <string.h>

#include <isa-l/crc.h>

#include "crc32c.h"
#include "iscsi_proto.h"
#include "util.h"

int iscsi_pdu_decode_bhs(const uint8_t bhs[ISCSI_BHS_SIZE], struct iscsi_bhs *h)
{
	memset(h, 0, sizeof(*h));
	h->raw = bhs;
	h->opcode = bhs[0] & 0x3f;
	h->immediate = (bhs[0] & ISCSI_FLAG_IMMEDIATE) != 0;
	h->flags = bhs[1];
	h->ahs_len = bhs[4];
	h->dlen = ((uint32_t)bhs[5] << 16) | ((uint32_t)bhs[6] << 8) | bhs[7];
	memcpy(h->lun_raw, bhs + 8, 8);
	h->itt = get_be32(bhs + 16);
	/* § 11.2.1.2: bit 7 of byte 0 is reserved (0). */
	if (bhs[0] & 0x80)
		return -EINVAL;
	switch (h->opcode) {
	case ISCSI_OP_NOP_OUT:
	case ISCSI_OP_SCSI_CMD:
	case ISCSI_OP_TMF_REQ:
	case ISCSI_OP_LOGIN_REQ:
	case ISCSI_OP_TEXT_REQ:
	case ISCSI_OP_DATA_OUT:
	case ISCSI_OP_LOGOUT_REQ:
	case ISCSI_OP_SNACK:
		return 0;
	default:
		return -EINVAL;
	}
}

uint64_t iscsi_pdu_rest_len(const struct iscsi_bhs *h, bool hdigest,
			    bool ddigest)
{
	uint64_t n = (uint64_t)h->ahs_len * 4;
	if (hdigest)
		n += ISCSI_DIGEST_SIZE;
	if (h->dlen) {
		n += h->dlen + iscsi_pad4(h->dlen);
		if (ddigest)
			n += ISCSI_DIGEST_SIZE;
	}
	return n;
}

/* § 11.2.1.5: each AHS is AHSLength (2 bytes), AHSType, one type-specific
 * byte, then AHSLength bytes padded to 4. */
int iscsi_pdu_parse_ahs(const uint8_t *ahs, size_t len, const uint8_t **cdb_ext,
			size_t *cdb_ext_len, uint32_t *bidi_len)
{
	*cdb_ext = NULL;
	*cdb_ext_len = 0;
	*bidi_len = 0;
	size_t pos = 0;
	while (pos < len) {
		if (len - pos < 4)
			return -EINVAL;
		uint16_t alen = get_be16(ahs + pos);
		uint8_t type = ahs[pos + 2];
		/* AHSLength excludes itself and AHSType: 3 + AHSLength
		 * bytes, padded to a multiple of 4. */
		size_t total = (3 + (size_t)alen + 3) & ~(size_t)3;
		if (alen == 0 || total > len - pos)
			return -EINVAL;
		const uint8_t *data = ahs + pos + 4;
		switch (type) {
		case ISCSI_AHS_EXT_CDB:
			/* § 11.3.1.3: AHSLength counts the reserved byte
			 * too: CDB bytes = AHSLength - 1. */
			if (*cdb_ext || alen < 2)
				return -EINVAL;
			*cdb_ext = data;
			*cdb_ext_len = (size_t)alen - 1;
			break;
		case ISCSI_AHS_BIDI_LEN:
			if (alen != 5)
				return -EINVAL;
			*bidi_len = get_be32(data);
			break;
		default:
			return -EINVAL;
		}
		pos += total;
	}
	return 0;
}

int iscsi_pdu_cdb(const uint8_t *bhs, const uint8_t *ahs, size_t ahs_len,
		  uint8_t *cdb, size_t cap)
{
	const uint8_t *ext;
	size_t ext_len;
	uint32_t bidi;
	if (iscsi_pdu_parse_ahs(ahs, ahs_len, &ext, &ext_len, &bidi) < 0)
		return -EINVAL;
	if (16 + ext_len > cap)
		return -EINVAL;
	memcpy(cdb, bhs + 32, 16);
	if (ext_len)
		memcpy(cdb + 16, ext, ext_len);
	return (int)(16 + ext_len);
}

/* SAM-5 4.7: byte 0 bits 7-6 are the address method. */
uint64_t iscsi_pdu_lun_decode(const uint8_t raw[8])
{
	for (int i = 2; i < 8; i++)
		if (raw[i])
			return UINT64_MAX;
	switch (raw[0] >> 6) {
	case 0: /* peripheral device addressing, bus 0 */
		if (raw[0] & 0x3f)
			return UINT64_MAX;
		return raw[1];
	case 1: /* flat space addressing */
		return ((uint64_t)(raw[0] & 0x3f) << 8) | raw[1];
	default:
		return UINT64_MAX;
	}
}

void iscsi_pdu_lun_encode(uint64_t lun, uint8_t raw[8])
{
	memset(raw, 0, 8);
	if (lun < 256) {
		raw[1] = (uint8_t)lun;
	} else {
		raw[0] = (uint8_t)(0x40 | ((lun >> 8) & 0x3f));
		raw[1] = (uint8_t)lun;
	}
}

void iscsi_pdu_init(uint8_t bhs[ISCSI_BHS_SIZE], uint8_t opcode, uint8_t flags,
		    uint32_t dlen)
{
	memset(bhs, 0, ISCSI_BHS_SIZE);
	bhs[0] = opcode;
	bhs[1] = flags;
	bhs[5] = (uint8_t)(dlen >> 16);
	bhs[6] = (uint8_t)(dlen >> 8);
	bhs[7] = (uint8_t)dlen;
}

/* lib/crc32c.h gives the standard CRC for one buffer; a digest over two
 * (header and AHS, data and padding) chains isa-l's raw CRC, whose
 * running value is the uncomplemented register. */
uint32_t iscsi_digest(const void *buf, size_t len)
{
	return crc32c(buf, len);
}

uint32_t iscsi_digest2(const void *a, size_t alen, const void *b, size_t blen)
{
	uint32_t crc = 0xffffffffu;
	if (alen)
		crc = crc32_iscsi((unsigned char *)a, (int)alen, crc);
	if (blen)
		crc = crc32_iscsi((unsigned char *)b, (int)blen, crc);
	return ~crc;
}

void iscsi_digest_put(uint8_t out[4], uint32_t crc)
{
	out[0] = (uint8_t)crc;
	out[1] = (uint8_t)(crc >> 8);
	out[2] = (uint8_t)(crc >> 16);
	out[3] = (uint8_t)(crc >> 24);
}

uint32_t iscsi_digest_get(const uint8_t in[4])
{
	return (uint32_t)in[0] | ((uint32_t)in[1] << 8) |
	       ((uint32_t)in[2] << 16) | ((uint32_t)in[3] << 24);
}
