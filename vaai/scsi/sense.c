/* Sense data (SPC-5 4.4): fixed format (4.4.3) always; the descriptor
 * format is produced only by REQUEST SENSE with DESC=1 (spc.c). */
#include <string.h>

#include "scsi_internal.h"

/* SPC-5 4.4.3, table 48: fixed format sense data, 18 bytes. */
static uint8_t *sense_fixed(struct scsi_cmd *c, uint8_t key, uint16_t asc)
{
	uint8_t *s = c->sense;
	memset(s, 0, 18);
	s[0] = 0x70; /* current error, fixed format */
	s[2] = key & 0x0f;
	s[7] = 10; /* additional sense length */
	s[12] = (uint8_t)(asc >> 8);
	s[13] = (uint8_t)asc;
	c->sense_len = 18;
	c->status = SCSI_STATUS_CHECK_CONDITION;
	return s;
}

void scsi_sense(struct scsi_cmd *c, uint8_t key, uint16_t asc)
{
	sense_fixed(c, key, asc);
}

/* SPC-5 4.4.3: the INFORMATION field, VALID bit set. */
void scsi_sense_info(struct scsi_cmd *c, uint8_t key, uint16_t asc,
		     uint64_t information)
{
	uint8_t *s = sense_fixed(c, key, asc);
	s[0] |= 0x80;
	/* A fixed-format INFORMATION field is 4 bytes; a larger value
	 * cannot be told (the descriptor format would carry 8). */
	put_be32(s + 3, information > UINT32_MAX ? UINT32_MAX
						 : (uint32_t)information);
}

/* SPC-5 4.4.2.4.2, table 46: field pointer sense-key specific data. */
void scsi_sense_field(struct scsi_cmd *c, bool in_cdb, uint16_t byte, int bit)
{
	uint8_t *s = sense_fixed(c, SK_ILLEGAL_REQUEST,
				 in_cdb ? ASC_INVALID_FIELD_IN_CDB
					: ASC_INVALID_FIELD_IN_PARAM);
	s[15] = 0x80; /* SKSV */
	if (in_cdb)
		s[15] |= 0x40; /* C/D */
	if (bit >= 0 && bit < 8)
		s[15] |= 0x08 | (uint8_t)bit; /* BPV, BIT POINTER */
	put_be16(s + 16, byte);
}

void scsi_task_check(struct scsi_task *tk, uint8_t key, uint16_t asc)
{
	scsi_sense(tk->c, key, asc);
	scsi_task_done(tk);
}

void scsi_task_bad_cdb(struct scsi_task *tk, uint16_t byte, int bit)
{
	scsi_sense_field(tk->c, true, byte, bit);
	scsi_task_done(tk);
}

void scsi_task_bad_param(struct scsi_task *tk, uint16_t byte, int bit)
{
	scsi_sense_field(tk->c, false, byte, bit);
	scsi_task_done(tk);
}

void scsi_task_good(struct scsi_task *tk)
{
	tk->c->status = SCSI_STATUS_GOOD;
	tk->c->sense_len = 0;
	scsi_task_done(tk);
}

void scsi_task_conflict(struct scsi_task *tk)
{
	tk->c->status = SCSI_STATUS_RESERVATION_CONFLICT;
	tk->c->sense_len = 0;
	tk->c->data_in_len = 0;
	scsi_task_done(tk);
}

/* Engine status -> sense (sds.h's error list). */
void scsi_task_errno(struct scsi_task *tk, int status, bool write)
{
	switch (status) {
	case 0:
		scsi_task_good(tk);
		return;
	case -EROFS:
		scsi_task_check(tk, SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
		return;
	case -ENOSPC: /* SBC-4 4.7.3.6: thin provisioning threshold hit */
		scsi_task_check(tk, SK_DATA_PROTECT, ASC_SPACE_ALLOC_FAILED_WP);
		return;
	case -EINVAL:
		scsi_task_check(tk, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
		return;
	case -ENOMEM:
		/* Transient: the initiator retries a BUSY. */
		tk->c->status = SCSI_STATUS_BUSY;
		tk->c->sense_len = 0;
		scsi_task_done(tk);
		return;
	case -EIO:
	default:
		if (write)
			scsi_task_check(tk, SK_HARDWARE_ERROR, ASC_WRITE_ERROR);
		else
			scsi_task_check(tk, SK_MEDIUM_ERROR,
					ASC_UNRECOVERED_READ_ERROR);
		return;
	}
}

void scsi_task_data_in(struct scsi_task *tk, const void *data, size_t produced,
		       uint32_t alloc_len)
{
	struct scsi_cmd *c = tk->c;
	size_t n = produced;
	if (n > alloc_len)
		n = alloc_len;
	if (n > c->data_in_cap)
		n = c->data_in_cap;
	if (n && c->data_in && data != c->data_in)
		memmove(c->data_in, data, n);
	c->data_in_len = c->data_in ? (uint32_t)n : 0;
	c->xfer_len = alloc_len;
}
