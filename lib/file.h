/* Small file helpers shared by the daemons and tools. */
#ifndef CAIRN_FILE_H
#define CAIRN_FILE_H

#include <stddef.h>

/* Writes path atomically and durably: path.tmp with the given mode (the
 * umask does not apply), fsync, rename over path, fsync of the directory.
 * Returns 0 or -errno (the temp file is then removed). */
int file_write_atomic(const char *path, const void *buf, size_t len,
		      unsigned mode);

#endif
