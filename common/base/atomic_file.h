/* atomic_file.h - whole files written atomically and read back with a size cap.
 *
 * A writer replaces path through path.tmp: write it all, fsync it, rename(2) it over path,
 * fsync the directory. A reader (or a process restarted after a crash) sees the old file or
 * the new one, never a part; a failed write leaves the old file as it was and removes the
 * temporary one. Files written here have mode 0644 (less the umask).
 *
 *     int rc = atomic_file_write(path, buf, n);
 *     uint8_t *data;
 *     size_t len;
 *     rc = atomic_file_read(&data, &len, path, MY_FORMAT_MAX);   // free(data) after
 *
 * Both return 0 or a negative code (-errno, or TWIG_ETOOBIG when the file is over the cap),
 * with err_msg() naming the path and what failed. */
#ifndef TWIG_ATOMIC_FILE_H
#define TWIG_ATOMIC_FILE_H

#include <stddef.h>
#include <stdint.h>

/* replace path with buf(n): path.tmp, fsync, rename, fsync the directory */
int atomic_file_write(const char *path, const void *buf, size_t n);

/* the whole of path into *data (owned by the caller, free; never NULL on success, even for
 * an empty file) and its length into *n; a file over max bytes is refused unread */
int atomic_file_read(uint8_t **data, size_t *n, const char *path, size_t max);

/* fsync a directory, making the renames and creations in it durable (also for callers that
 * build a directory of files and rename it whole, like common/base/ckpt.c) */
int atomic_file_sync_dir(const char *dir);

#endif
