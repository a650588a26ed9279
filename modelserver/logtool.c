/* logtool.c - twig-modelserver log check|repair (usage and exit codes in logtool.h) */
#include "modelserver/logtool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base/err.h"
#include "common/base/fs.h"
#include "modelserver/reallog.h"

#define LOGTOOL_COPY_CHUNK (1u << 16)

static const char logtool_usage[] =
    "usage: twig-modelserver log check DIR [--json]\n"
    "       twig-modelserver log repair DIR --backup BACKUP_DIR [--json]\n"
    "\n"
    "check: verify the real-transition log in the model server's data dir DIR (the dir must\n"
    "  not be in use: it is locked like the server locks it; nothing is written) with the\n"
    "  checks the server runs at start, and report the first damage, the log offset it\n"
    "  affects and the acknowledged transitions and records a repair would drop.\n"
    "repair: copy DIR to BACKUP_DIR (must not exist; fsync'ed), then cut the log at the last\n"
    "  good record before the damage: truncate that segment, remove later ones and move the\n"
    "  recovery point (DIR/durable_end) back to the cut. A clean log is left unchanged.\n"
    "--json: also print the report as one JSON line (last line of the output)\n"
    "\n"
    "exit status: 0 clean (repair: clean or repaired), 1 damaged (repair: failed),\n"
    "  2 bad usage, not a log dir, or in use\n";

typedef struct logtool_args {
    int repair;
    int json;
    const char *dir;
    const char *backup;
} logtool_args;

static int logtool_bad(FILE *err, const char *fmt, const char *arg)
{
    fputs("twig-modelserver log: ", err);
    fprintf(err, fmt, arg);
    fputs("\n(see twig-modelserver log --help)\n", err);
    return LOGTOOL_EXIT_USAGE;
}

/* 0 with a filled, 1 after --help, or LOGTOOL_EXIT_USAGE (said on err) */
static int logtool_parse(logtool_args *a, int argc, char **argv, FILE *out, FILE *err)
{
    memset(a, 0, sizeof *a);
    if (argc < 2) {
        return logtool_bad(err, "%sa command is required: check or repair", "");
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(logtool_usage, out);
        return 1;
    }
    if (strcmp(argv[1], "repair") == 0) {
        a->repair = 1;
    } else if (strcmp(argv[1], "check") != 0) {
        return logtool_bad(err, "unknown command '%s' (want check or repair)", argv[1]);
    }
    for (int i = 2; i < argc; i++) {
        const char *s = argv[i];
        if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
            fputs(logtool_usage, out);
            return 1;
        } else if (strcmp(s, "--json") == 0) {
            a->json = 1;
        } else if (strcmp(s, "--backup") == 0) {
            if (!a->repair) {
                return logtool_bad(err, "%s--backup is for repair only (check writes nothing)",
                                   "");
            }
            if (i + 1 >= argc || !argv[i + 1][0]) {
                return logtool_bad(err, "%s--backup needs a directory", "");
            }
            if (a->backup) {
                return logtool_bad(err, "%s--backup is given twice", "");
            }
            a->backup = argv[++i];
        } else if (s[0] == '-') {
            return logtool_bad(err, "unknown flag '%s'", s);
        } else if (a->dir) {
            return logtool_bad(err, "one data dir only: '%s' is extra", s);
        } else {
            a->dir = s;
        }
    }
    if (!a->dir || !a->dir[0]) {
        return logtool_bad(err, "%sthe data dir (DIR) is required", "");
    }
    if (a->repair && !a->backup) {
        return logtool_bad(err, "%srepair needs --backup BACKUP_DIR: it copies the data dir"
                           " there before it cuts anything", "");
    }
    return 0;
}

/* ---- the backup ---- */

static int logtool_copy_file(int src_dir, int dst_dir, const char *name, mode_t mode,
                             const char *dir, const char *backup)
{
    int in = openat(src_dir, name, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        return err_set(-errno, "open %s/%s: %s", dir, name, strerror(errno));
    }
    int out = openat(dst_dir, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode & 0777);
    if (out < 0) {
        int rc = err_set(-errno, "create %s/%s: %s", backup, name, strerror(errno));
        close(in);
        return rc;
    }
    char buf[LOGTOOL_COPY_CHUNK];
    int rc = 0;
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            rc = n < 0 ? err_set(-errno, "read %s/%s: %s", dir, name, strerror(errno)) : 0;
            break;
        }
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR) {
                continue;
            }
            if (w < 0) {
                rc = err_set(-errno, "write %s/%s: %s", backup, name, strerror(errno));
                break;
            }
            off += w;
        }
        if (rc < 0) {
            break;
        }
    }
    if (rc == 0 && fsync(out) < 0) {
        rc = err_set(-errno, "fsync %s/%s: %s", backup, name, strerror(errno));
    }
    close(in);
    close(out);
    return rc;
}

/* copy every file of dir (dir_fd) into the new directory backup, each fsync'ed, then the
 * backup dir and its parent; the log's files are all regular, anything else is refused */
static int logtool_backup(int dir_fd, const char *dir, const char *backup)
{
    struct stat st;
    if (lstat(backup, &st) == 0) {
        return err_set(-EEXIST, "backup dir %s exists already: give a path that does not",
                       backup);
    }
    char parent[PATH_MAX];
    if (snprintf(parent, sizeof parent, "%s", backup) >= (int)sizeof parent) {
        return err_set(-ENAMETOOLONG, "backup dir path is too long");
    }
    char *slash = strrchr(parent, '/');
    if (slash == parent) {
        slash[1] = '\0';
    } else if (slash) {
        *slash = '\0';
    } else {
        snprintf(parent, sizeof parent, ".");
    }
    /* never inside the data dir: its nearest existing ancestor must lie outside it */
    char real_dir[PATH_MAX], anc[PATH_MAX], real_anc[PATH_MAX];
    snprintf(anc, sizeof anc, "%s", parent);
    while (!realpath(anc, real_anc)) {
        char *cut = strrchr(anc, '/');
        if (!cut || cut == anc) {
            snprintf(anc, sizeof anc, "%s", cut == anc ? "/" : ".");
        } else {
            *cut = '\0';
            continue;
        }
        if (!realpath(anc, real_anc)) {
            return err_set(-errno, "backup dir %s: %s", backup, strerror(errno));
        }
        break;
    }
    size_t dl = realpath(dir, real_dir) ? strlen(real_dir) : 0;
    if (dl > 0 && strncmp(real_anc, real_dir, dl) == 0 &&
        (real_anc[dl] == '\0' || real_anc[dl] == '/')) {
        return err_set(-EINVAL, "backup dir %s is inside the data dir %s", backup, dir);
    }
    int rc = fs_mkdir_p(parent);
    if (rc < 0) {
        return rc;
    }
    if (mkdir(backup, 0755) < 0) {
        return err_set(-errno, "create backup dir %s: %s", backup, strerror(errno));
    }
    int bfd = open(backup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct stat bst;
    if (bfd < 0 || fstat(bfd, &bst) < 0) {
        rc = err_set(-errno, "open backup dir %s: %s", backup, strerror(errno));
        if (bfd >= 0) {
            close(bfd);
        }
        return rc;
    }
    int lfd = dup(dir_fd);
    DIR *d = lfd >= 0 ? fdopendir(lfd) : NULL;
    if (!d) {
        rc = err_set(-errno, "opendir %s: %s", dir, strerror(errno));
        if (lfd >= 0) {
            close(lfd);
        }
        close(bfd);
        return rc;
    }
    rewinddir(d);
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        if (fstatat(dir_fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            rc = err_set(-errno, "stat %s/%s: %s", dir, e->d_name, strerror(errno));
        } else if (st.st_dev == bst.st_dev && st.st_ino == bst.st_ino) {
            rc = err_set(-EINVAL, "backup dir %s is inside the data dir %s", backup, dir);
        } else if (!S_ISREG(st.st_mode)) {
            rc = err_set(-EINVAL, "%s/%s is not a regular file: a log dir holds only files",
                         dir, e->d_name);
        } else {
            rc = logtool_copy_file(dir_fd, bfd, e->d_name, st.st_mode, dir, backup);
        }
    }
    closedir(d);
    if (rc == 0 && fsync(bfd) < 0) {
        rc = err_set(-errno, "fsync backup dir %s: %s", backup, strerror(errno));
    }
    close(bfd);
    int pfd = rc == 0 ? open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (rc == 0 && (pfd < 0 || fsync(pfd) < 0)) {
        rc = err_set(-errno, "fsync %s: %s", parent, strerror(errno));
    }
    if (pfd >= 0) {
        close(pfd);
    }
    return rc;
}

/* ---- the report ---- */

static void logtool_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            fprintf(f, "\\%c", *p);
        } else if (*p < 0x20) {
            fprintf(f, "\\u%04x", *p);
        } else {
            fputc(*p, f);
        }
    }
    fputc('"', f);
}

static void logtool_print_human(FILE *f, const char *dir, const reallog_report *r)
{
    fprintf(f, "log %s\n", dir);
    if (r->has_meta) {
        fprintf(f, "  env %s, obs_dim %u, act_dim %u\n", r->env_id, r->obs_dim, r->act_dim);
    } else {
        fprintf(f, "  no meta file (no schema fixed yet)\n");
    }
    fprintf(f, "  segments %u, bytes %" PRIu64 ", records %" PRIu64 ", transitions %" PRIu64
            " (verified in order%s)\n", r->segments, r->bytes, r->records, r->transitions,
            r->kind ? ", up to the damage" : "");
    if (r->has_rp) {
        char seg[32];
        snprintf(seg, sizeof seg, "%020" PRIu64 ".seg", r->rp_seg_first);
        fprintf(f, "  recovery point: end offset %" PRIu64 ", segment %s byte %" PRIu64
                ", gen %" PRIu64 ", fsync %s\n", r->rp_end, seg, r->rp_seg_bytes, r->rp_gen,
                reallog_sync_name(r->rp_sync));
    } else {
        fprintf(f, "  recovery point: none (durable_end missing: a log from before it existed;"
                   " what was acknowledged is unknown)\n");
    }
    if (r->kind == REALLOG_DAMAGE_NONE) {
        if (r->torn_bytes > 0) {
            fprintf(f, "clean, %" PRIu64 " unacknowledged bytes would be truncated at open\n",
                    r->torn_bytes);
        } else {
            fprintf(f, "clean\n");
        }
        return;
    }
    fprintf(f, "damaged: %s in %s at byte %" PRIu64 ", first offset affected %" PRIu64 " (%s)\n",
            reallog_damage_name(r->kind), r->file, r->at_byte, r->cut_offset,
            r->acknowledged ? "acknowledged" : "past the recovery point");
    fprintf(f, "  %s\n", r->detail);
    if (r->cut_file[0]) {
        fprintf(f, "  a cut there keeps %s up to byte %" PRIu64, r->cut_file, r->cut_bytes);
    } else {
        fprintf(f, "  a cut there keeps no segment");
    }
    fprintf(f, ", removes %u segment file(s) and drops %" PRIu64 " acknowledged transitions:"
            " %" PRIu64 " in %" PRIu64 " records that still verify, %" PRIu64 " in damaged or"
            " missing bytes\n", r->removed_segments, r->dropped_transitions,
            r->dropped_transitions - r->dropped_unreadable, r->dropped_records,
            r->dropped_unreadable);
}

static void logtool_print_json(FILE *f, const char *tool, const char *dir, const char *status,
                               const reallog_report *r, const char *backup)
{
    fprintf(f, "{\"tool\":\"%s\",\"dir\":", tool);
    logtool_json_str(f, dir);
    fprintf(f, ",\"status\":\"%s\",\"env_id\":", status);
    logtool_json_str(f, r->env_id);
    fprintf(f, ",\"obs_dim\":%u,\"act_dim\":%u,\"segments\":%u,\"bytes\":%" PRIu64
            ",\"records\":%" PRIu64 ",\"transitions\":%" PRIu64 ",\"torn_bytes\":%" PRIu64,
            r->obs_dim, r->act_dim, r->segments, r->bytes, r->records, r->transitions,
            r->torn_bytes);
    if (r->has_rp) {
        fprintf(f, ",\"recovery_point\":{\"end_offset\":%" PRIu64 ",\"segment\":\"%020" PRIu64
                ".seg\",\"bytes\":%" PRIu64 ",\"gen\":%" PRIu64 ",\"fsync\":\"%s\"}", r->rp_end,
                r->rp_seg_first, r->rp_seg_bytes, r->rp_gen, reallog_sync_name(r->rp_sync));
    } else {
        fputs(",\"recovery_point\":null", f);
    }
    if (r->kind) {
        fprintf(f, ",\"damage\":{\"kind\":\"%s\",\"file\":\"%s\",\"byte\":%" PRIu64
                ",\"first_offset\":%" PRIu64 ",\"acknowledged\":%s,\"cut_file\":\"%s\","
                "\"cut_bytes\":%" PRIu64 ",\"removed_segments\":%u,\"dropped_transitions\":%"
                PRIu64 ",\"dropped_records\":%" PRIu64 ",\"dropped_unreadable\":%" PRIu64
                ",\"detail\":",
                reallog_damage_name(r->kind), r->file, r->at_byte, r->cut_offset,
                r->acknowledged ? "true" : "false", r->cut_file, r->cut_bytes,
                r->removed_segments, r->dropped_transitions, r->dropped_records,
                r->dropped_unreadable);
        logtool_json_str(f, r->detail);
        fputc('}', f);
    } else {
        fputs(",\"damage\":null", f);
    }
    if (backup) {
        fputs(",\"backup\":", f);
        logtool_json_str(f, backup);
    }
    fputs("}\n", f);
}

/* the exit status of a failed open or scan: 2 when the dir is not usable as a log dir */
static int logtool_fail(FILE *err, const char *what, int rc)
{
    fprintf(err, "twig-modelserver log: %s: %s\n", what, err_msg());
    return rc == -EBUSY || rc == -ENOENT || rc == -ENOTDIR || rc == -EINVAL || rc == -EACCES
               ? LOGTOOL_EXIT_USAGE
               : LOGTOOL_EXIT_DAMAGED;
}

static int logtool_check(const logtool_args *a, FILE *out, FILE *err)
{
    reallog_inspect_t in;
    int rc = reallog_inspect_open(&in, a->dir, 0);
    if (rc < 0) {
        return logtool_fail(err, "check", rc);
    }
    reallog_report r;
    rc = reallog_inspect_scan(&in, &r);
    reallog_inspect_close(&in);
    if (rc < 0) {
        return logtool_fail(err, "check", rc);
    }
    logtool_print_human(out, a->dir, &r);
    if (a->json) {
        logtool_print_json(out, "log check", a->dir, r.kind ? "damaged" : "clean", &r, NULL);
    }
    return r.kind ? LOGTOOL_EXIT_DAMAGED : LOGTOOL_EXIT_CLEAN;
}

static int logtool_repair(const logtool_args *a, FILE *out, FILE *err)
{
    reallog_inspect_t in;
    int rc = reallog_inspect_open(&in, a->dir, 1);
    if (rc < 0) {
        return logtool_fail(err, "repair", rc);
    }
    reallog_report r;
    if ((rc = reallog_inspect_scan(&in, &r)) < 0) {
        reallog_inspect_close(&in);
        return logtool_fail(err, "repair (nothing changed)", rc);
    }
    logtool_print_human(out, a->dir, &r);
    if (r.kind == REALLOG_DAMAGE_NONE) {
        reallog_inspect_close(&in);
        fprintf(out, "nothing to repair: the log is unchanged and no backup was made\n");
        if (a->json) {
            logtool_print_json(out, "log repair", a->dir, "clean", &r, NULL);
        }
        return LOGTOOL_EXIT_CLEAN;
    }
    /* the lock is held from the scan to the cut: nobody appends in between */
    if ((rc = logtool_backup(in.dir_fd, a->dir, a->backup)) < 0) {
        reallog_inspect_close(&in);
        return logtool_fail(err, "repair: no backup, the log is unchanged",
                            rc == -EEXIST || rc == -EINVAL ? -EINVAL : TWIG_EINTERNAL);
    }
    fprintf(out, "backup: %s (every file copied and fsync'ed)\n", a->backup);
    if ((rc = reallog_inspect_cut(&in)) < 0) {
        reallog_inspect_close(&in);
        fprintf(err, "twig-modelserver log: repair: the cut failed: %s (the backup in %s holds"
                     " the log as it was)\n", err_msg(), a->backup);
        return LOGTOOL_EXIT_DAMAGED;
    }
    /* what the server will see: the log verifies now */
    reallog_report after;
    rc = reallog_inspect_scan(&in, &after);
    reallog_inspect_close(&in);
    if (rc < 0 || after.kind != REALLOG_DAMAGE_NONE) {
        fprintf(err, "twig-modelserver log: repair: the log still does not verify after the"
                     " cut: %s (backup in %s)\n", rc < 0 ? err_msg() : after.detail, a->backup);
        return LOGTOOL_EXIT_DAMAGED;
    }
    fprintf(out, "repaired: cut at offset %" PRIu64 ", dropped %" PRIu64 " acknowledged"
            " transitions (%" PRIu64 " records that still verified, %" PRIu64 " transitions in"
            " damaged or missing bytes); the log now holds %" PRIu64 " transitions in %" PRIu64
            " records\n", r.cut_offset, r.dropped_transitions, r.dropped_records,
            r.dropped_unreadable, after.transitions, after.records);
    if (a->json) {
        logtool_print_json(out, "log repair", a->dir, "repaired", &r, a->backup);
    }
    return LOGTOOL_EXIT_CLEAN;
}

int logtool_main(int argc, char **argv, FILE *out, FILE *err)
{
    logtool_args a;
    int rc = logtool_parse(&a, argc, argv, out, err);
    if (rc != 0) {
        return rc == 1 ? LOGTOOL_EXIT_CLEAN : rc;
    }
    return a.repair ? logtool_repair(&a, out, err) : logtool_check(&a, out, err);
}
