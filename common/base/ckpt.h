/* ckpt.h - checkpoint directories written atomically, listed, pruned (the files in them are
 * encoded with common/base/bytes.h).
 *
 * A checkpoint is a directory DIR/ckpt-<id> (id: 20 digits, the update count) holding any
 * files. It is written as DIR/.tmp-ckpt-<id>, each file fsynced, the directory fsynced,
 * renamed to its final name, and DIR fsynced: a reader sees a whole checkpoint or none.
 *
 *     char tmp[CKPT_PATH_MAX];
 *     ckpt_begin(tmp, sizeof tmp, dir, id);             // creates the temp directory
 *     ckpt_write_file(tmp, "state.bin", buf, n);         // or any writer into tmp/...
 *     ckpt_commit(dir, id);                              // rename + fsyncs
 *     ckpt_prune(dir, keep);                             // newest `keep` stay
 */
#ifndef TWIG_BASE_CKPT_H
#define TWIG_BASE_CKPT_H

#include <stddef.h>
#include <stdint.h>

#define CKPT_PATH_MAX 4096

/* create dir (and parents) if missing; remove leftover temp directories of a crash.
 * 0 or -errno */
int ckpt_dir_prepare(const char *dir);

/* ids of the complete checkpoints in dir, ascending; *ids owned by the caller (free) */
int ckpt_list(const char *dir, uint64_t **ids, size_t *n);

/* dir/ckpt-<id>/file (file may be NULL: the directory) into out; -ENAMETOOLONG if too long */
int ckpt_path(char *out, size_t n, const char *dir, uint64_t id, const char *file);

/* create the temp directory for checkpoint id (replacing a stale one); its path into tmp */
int ckpt_begin(char *tmp, size_t n, const char *dir, uint64_t id);

/* write dir/file with data through common/atomic_file (tmp, fsync, rename). 0 or -errno */
int ckpt_write_file(const char *dir, const char *file, const void *data, size_t n);

/* whole file into *data (owned, free) of *n bytes (common/atomic_file). 0 or -errno */
int ckpt_read_file(const char *path, uint8_t **data, size_t *n);

/* fsync the temp directory, rename it to ckpt-<id> (replacing an older one of that id),
 * fsync dir. 0 or -errno */
int ckpt_commit(const char *dir, uint64_t id);

/* remove all but the newest keep checkpoints; returns how many were removed or -errno */
int ckpt_prune(const char *dir, int keep);

/* remove one checkpoint directory and its files */
int ckpt_remove(const char *dir, uint64_t id);

#endif
