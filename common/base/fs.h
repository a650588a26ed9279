/* fs.h - directories as every twig program makes them (data dirs, checkpoint dirs, run
 * dirs): one `mkdir -p` and one `rm -r`.
 */
#ifndef TWIG_FS_H
#define TWIG_FS_H

#define FS_PATH_MAX 4096   /* the longest path fs_mkdir_p takes */

/* make dir and every missing parent (mode 0755); an existing directory is fine. 0, or with
 * err_msg naming the path: -ENAMETOOLONG, -ENOTDIR (it, or a parent, exists and is not a
 * directory), or the -errno of mkdir (-EACCES, -EROFS, -ENOSPC, ...) */
int fs_mkdir_p(const char *dir);

/* remove dir and everything below it (symbolic links are removed, never followed); a dir
 * that does not exist is fine. 0, or with err_msg naming the first path that could not be
 * removed: -ENAMETOOLONG or the -errno of opendir/unlink/rmdir. Goes on past a failure, so
 * as much as can go is gone */
int fs_remove_tree(const char *dir);

#endif
