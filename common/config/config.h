/* config.h - option tables: one table describes every option of a process.
 *
 * A table drives defaults, YAML file parsing, --set overrides, validation (type, bounds,
 * choices), --help and the effective-config dump. Options live in a plain struct of the
 * process; the table gives each its offset:
 *
 *     typedef struct learner_cfg { int batch_size; float lr_actor; char env[64]; } learner_cfg;
 *     static const config_opt learner_opts[] = {
 *         {"batch_size", CFG_INT, offsetof(learner_cfg, batch_size), "256", 1, 65536, "minibatch"},
 *         {"lr_actor", CFG_FLOAT, offsetof(learner_cfg, lr_actor), "3e-4", 0, 1, "actor lr"},
 *         {"env", CFG_STRING, offsetof(learner_cfg, env), "Pendulum-v1", 0, 63, "env id"},
 *     };
 *     config_table t = {"learner", learner_opts, 3, &cfg};
 *     config_set_defaults(&t, 1);
 *     if (config_load_file(&t, 1, path) < 0) { ...err_msg() names file, line, key... }
 *
 * A run's YAML file has top-level keys (shared by all processes) and one mapping per process:
 *
 *     env: Pendulum-v1        # top level: the table whose section is NULL
 *     learner:                # section "learner"
 *       batch_size: 256
 *
 * A process passes the tables it owns; a mapping whose name is in `known_sections` but owned
 * by no table is skipped (it belongs to another process, whose own start-up checks it).
 * Every other unknown key is an error naming the key, the file and the line.
 */
#ifndef TWIG_CONFIG_H
#define TWIG_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum config_type {
    CFG_INT,      /* int; bounds min..max */
    CFG_U64,      /* uint64_t; bounds min..max (as doubles); plain digits parse exactly */
    CFG_FLOAT,    /* float; bounds min..max */
    CFG_DOUBLE,   /* double; bounds min..max */
    CFG_BOOL,     /* bool: true/false/yes/no/on/off/1/0 */
    CFG_STRING,   /* char[max + 1] inside the struct; max is the longest accepted length */
    CFG_ENUM,     /* int index into choices (a NULL-terminated list) */
    CFG_ADDR,     /* "HOST:PORT" or "[V6]:PORT" in char[max + 1], as CFG_STRING; the empty
                   * string only when min is 0 (netaddr_split checks the rest) */
} config_type;

typedef struct config_opt {
    const char *name;
    config_type type;
    size_t offset;                /* offsetof(struct, field) */
    const char *def;              /* default, as text (parsed like any value) */
    double min;                   /* bounds; for CFG_STRING: min length */
    double max;                   /* for CFG_STRING: max length (buffer holds max + 1) */
    const char *help;
    const char *const *choices;   /* CFG_ENUM only */
} config_opt;

typedef struct config_table {
    const char *section;          /* NULL: top-level keys */
    const config_opt *opts;
    int n_opts;
    void *base;                   /* the struct the offsets point into; borrowed */
    /* the checks between options that bounds cannot express (elites <= ensemble_size), run
     * by config_check once every option is applied: base is this table's struct, top the
     * top-level table's (NULL when there is none). 0, or -EINVAL with err_msg naming the
     * options and their values. NULL: none */
    int (*check)(const void *base, const void *top);
} config_table;

/* write every default; returns 0 or -EINVAL (a bad default is a bug, reported by name) */
int config_set_defaults(const config_table *t, int n_tables);

/* set one option from text; key is "name" for top-level or "section.name".
 * returns 0, -ENOENT for an unknown key, -EINVAL for a bad value (err_msg names both) */
int config_set(const config_table *t, int n_tables, const char *key, const char *value);

/* parse "key=value" (as given to --set) and apply it */
int config_set_assignment(const config_table *t, int n_tables, const char *assignment);

/* every table's check (in table order); 0 or the first failure's code */
int config_check(const config_table *t, int n_tables);

/* load a YAML file of scalars, one level of sections; known_sections lists the mapping names
 * that may appear (NULL-terminated, may be NULL). A key given twice in one mapping (a section
 * too) is an error naming the file, both lines and the key. returns 0 or a negative code */
int config_load_file(const config_table *t, int n_tables, const char *path,
                     const char *const *known_sections);

/* the same, from a string (tests, embedded defaults); name is used in error messages */
int config_load_string(const config_table *t, int n_tables, const char *yaml, size_t len,
                       const char *name, const char *const *known_sections);

/* effective config as YAML that config_load_file accepts */
void config_write_yaml(FILE *f, const config_table *t, int n_tables);

/* one line per option: name, type, default, bounds, help */
void config_write_help(FILE *f, const config_table *t, int n_tables);

/* current value of an option as text into buf; returns 0 or -ENOENT */
int config_get_text(const config_table *t, int n_tables, const char *key, char *buf, size_t n);

/* the option name (as "name" or "section.name") nearest to key, for "did you mean": at most
 * two edits (a swap of neighbours is one) and fewer than half of key's length, or else a name
 * of which key is the part before a '_' (learner.batch: learner.batch_size). 1 with the name
 * in out, or 0 when none is near */
int config_nearest(const config_table *t, int n_tables, const char *key, char *out, size_t n);

/* the same over a NULL-terminated list of words (env ids, choices); 1 or 0 */
int config_nearest_word(const char *const *words, const char *key, char *out, size_t n);

#endif
