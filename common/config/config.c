/* config.c - option tables: defaults, YAML (libyaml events), overrides, help, dump */
#include "common/config/config.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "common/base/err.h"
#include "common/base/netaddr.h"
#include "common/base/mem.h"

#define CONFIG_KEY_MAX 128

static const char *const config_type_names[] = {"int",  "u64",    "float", "double",
                                                "bool", "string", "enum",  "addr"};

/* find the option named key ("name" or "section.name") */
static const config_opt *config_find(const config_table *t, int n_tables, const char *key,
                                     const config_table **owner)
{
    const char *dot = strchr(key, '.');
    for (int i = 0; i < n_tables; i++) {
        const char *name = key;
        if (t[i].section) {
            size_t sl = strlen(t[i].section);
            if (!dot || (size_t)(dot - key) != sl || strncmp(key, t[i].section, sl) != 0) {
                continue;
            }
            name = dot + 1;
        } else if (dot) {
            continue;
        }
        for (int j = 0; j < t[i].n_opts; j++) {
            if (strcmp(t[i].opts[j].name, name) == 0) {
                *owner = &t[i];
                return &t[i].opts[j];
            }
        }
    }
    return NULL;
}

static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -EINVAL;
}

/* strtod over the whole string, finite only */
static int parse_number(const char *s, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno == ERANGE || !isfinite(v)) {
        return -EINVAL;
    }
    *out = v;
    return 0;
}

/* a u64 written as plain digits, exactly (a double holds integers only up to 2^53) */
static int config_apply_u64_digits(const config_opt *o, uint64_t *field, const char *key,
                                   const char *value)
{
    errno = 0;
    char *end = NULL;
    unsigned long long u = strtoull(value, &end, 10);
    if (errno == ERANGE || *end != '\0' || (double)u < o->min || (double)u > o->max) {
        return err_set(-EINVAL, "%s: %s is out of range [%g, %g]", key, value, o->min, o->max);
    }
    *field = (uint64_t)u;
    return 0;
}

static int config_apply(const config_opt *o, void *base, const char *key, const char *value)
{
    char *field = (char *)base + o->offset;
    double v = 0;
    switch (o->type) {
    case CFG_INT:
    case CFG_U64:
    case CFG_FLOAT:
    case CFG_DOUBLE:
        if (o->type == CFG_U64 && value[0] >= '0' && value[0] <= '9' &&
            strspn(value, "0123456789") == strlen(value)) {
            return config_apply_u64_digits(o, (uint64_t *)field, key, value);
        }
        if (parse_number(value, &v) < 0) {
            return err_set(-EINVAL, "%s: '%s' is not a number", key, value);
        }
        if ((o->type == CFG_INT || o->type == CFG_U64) && v != floor(v)) {
            return err_set(-EINVAL, "%s: '%s' is not a whole number", key, value);
        }
        if (v < o->min || v > o->max || (o->type == CFG_U64 && v >= 0x1p64)) {
            return err_set(-EINVAL, "%s: %s is out of range [%g, %g]", key, value, o->min,
                           o->max);
        }
        if (o->type == CFG_INT) {
            *(int *)field = (int)v;
        } else if (o->type == CFG_U64) {
            *(uint64_t *)field = (uint64_t)v;
        } else if (o->type == CFG_FLOAT) {
            *(float *)field = (float)v;
        } else {
            *(double *)field = v;
        }
        return 0;
    case CFG_BOOL: {
        bool b;
        if (parse_bool(value, &b) < 0) {
            return err_set(-EINVAL, "%s: '%s' is not a boolean (true/false)", key, value);
        }
        *(bool *)field = b;
        return 0;
    }
    case CFG_STRING:
    case CFG_ADDR: {
        size_t len = strlen(value);
        if ((double)len < o->min || (double)len > o->max) {
            return err_set(-EINVAL, "%s: length %zu is out of range [%g, %g]", key, len, o->min,
                           o->max);
        }
        if (o->type == CFG_ADDR && len > 0) {
            char host[256];
            int port;
            if (netaddr_split(host, sizeof host, &port, value) < 0) {
                char detail[CONFIG_KEY_MAX * 2];
                snprintf(detail, sizeof detail, "%s", err_msg());
                return err_set(-EINVAL, "%s: %s", key, detail);
            }
        }
        memcpy(field, value, len + 1);
        return 0;
    }
    case CFG_ENUM:
        for (int i = 0; o->choices && o->choices[i]; i++) {
            if (strcmp(value, o->choices[i]) == 0) {
                *(int *)field = i;
                return 0;
            }
        }
        {
            char list[256] = "";
            size_t at = 0;
            for (int i = 0; o->choices && o->choices[i] && at < sizeof list; i++) {
                at += (size_t)snprintf(list + at, sizeof list - at, "%s%s", i ? ", " : "",
                                       o->choices[i]);
            }
            return err_set(-EINVAL, "%s: '%s' is not one of %s", key, value, list);
        }
    }
    return err_set(-EINVAL, "%s: unknown option type", key);
}

int config_set(const config_table *t, int n_tables, const char *key, const char *value)
{
    const config_table *owner = NULL;
    const config_opt *o = config_find(t, n_tables, key, &owner);
    if (!o) {
        char near[CONFIG_KEY_MAX];
        if (config_nearest(t, n_tables, key, near, sizeof near)) {
            return err_set(-ENOENT, "unknown option '%s' (did you mean '%s'?)", key, near);
        }
        return err_set(-ENOENT, "unknown option '%s'", key);
    }
    return config_apply(o, owner->base, key, value);
}

int config_check(const config_table *t, int n_tables)
{
    const void *top = NULL;
    for (int i = 0; i < n_tables && !top; i++) {
        top = t[i].section ? NULL : t[i].base;
    }
    for (int i = 0; i < n_tables; i++) {
        int rc = t[i].check ? t[i].check(t[i].base, top) : 0;
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

/* edits from a to b: insert, delete, replace, or swap two neighbours (optimal string
 * alignment), over at most CONFIG_KEY_MAX characters of each */
static int edit_distance(const char *a, const char *b)
{
    int la = (int)strnlen(a, CONFIG_KEY_MAX), lb = (int)strnlen(b, CONFIG_KEY_MAX);
    int rows[3][CONFIG_KEY_MAX + 1];
    int *two = rows[0], *one = rows[1], *cur = rows[2];
    for (int j = 0; j <= lb; j++) {
        one[j] = j;
    }
    for (int i = 1; i <= la; i++) {
        cur[0] = i;
        for (int j = 1; j <= lb; j++) {
            int cost = a[i - 1] != b[j - 1];
            int v = one[j] + 1;
            v = cur[j - 1] + 1 < v ? cur[j - 1] + 1 : v;
            v = one[j - 1] + cost < v ? one[j - 1] + cost : v;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                two[j - 2] + 1 < v) {
                v = two[j - 2] + 1;
            }
            cur[j] = v;
        }
        int *t = two;
        two = one;
        one = cur;
        cur = t;
    }
    return one[lb];
}

/* how near key is to name: edits (at most two, fewer than half of key's length), or 3 for a
 * key that is name cut at a '_' (batch for batch_size), or -1 when it is not near at all */
static int nearness(const char *key, const char *name)
{
    int len = (int)strlen(key);
    int d = edit_distance(key, name);
    if (d < 3 && 2 * d < len) {
        return d;
    }
    size_t kl = strlen(key);
    if (kl >= 4 && strncmp(name, key, kl) == 0 && name[kl] == '_') {
        return 3;
    }
    return -1;
}

int config_nearest(const config_table *t, int n_tables, const char *key, char *out, size_t n)
{
    int best = 4;
    for (int i = 0; i < n_tables; i++) {
        for (int j = 0; j < t[i].n_opts; j++) {
            char name[CONFIG_KEY_MAX];
            snprintf(name, sizeof name, "%s%s%s", t[i].section ? t[i].section : "",
                     t[i].section ? "." : "", t[i].opts[j].name);
            int d = nearness(key, name);
            if (d >= 0 && d < best) {
                best = d;
                snprintf(out, n, "%s", name);
            }
        }
    }
    return best < 4;
}

int config_nearest_word(const char *const *words, const char *key, char *out, size_t n)
{
    int best = 4;
    for (int i = 0; words[i] != NULL; i++) {
        int d = nearness(key, words[i]);
        if (d >= 0 && d < best) {
            best = d;
            snprintf(out, n, "%s", words[i]);
        }
    }
    return best < 4;
}

int config_set_assignment(const config_table *t, int n_tables, const char *assignment)
{
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment) {
        return err_set(-EINVAL, "'%s' is not of the form key=value", assignment);
    }
    char key[CONFIG_KEY_MAX];
    size_t kl = (size_t)(eq - assignment);
    if (kl >= sizeof key) {
        return err_set(-EINVAL, "key in '%s' is too long", assignment);
    }
    memcpy(key, assignment, kl);
    key[kl] = '\0';
    return config_set(t, n_tables, key, eq + 1);
}

int config_set_defaults(const config_table *t, int n_tables)
{
    for (int i = 0; i < n_tables; i++) {
        for (int j = 0; j < t[i].n_opts; j++) {
            int rc = config_apply(&t[i].opts[j], t[i].base, t[i].opts[j].name, t[i].opts[j].def);
            if (rc < 0) {
                return rc;
            }
        }
    }
    return 0;
}

static bool section_owned(const config_table *t, int n_tables, const char *name)
{
    for (int i = 0; i < n_tables; i++) {
        if (t[i].section && strcmp(t[i].section, name) == 0) {
            return true;
        }
    }
    return false;
}

static bool section_known(const char *const *known, const char *name)
{
    for (int i = 0; known && known[i]; i++) {
        if (strcmp(known[i], name) == 0) {
            return true;
        }
    }
    return false;
}

/* the keys of one mapping so far, with their lines: a key given twice is refused (YAML
 * says keys are unique; libyaml would let the last one win silently) */
typedef struct seen_key {
    char name[CONFIG_KEY_MAX];
    size_t line;
} seen_key;

typedef struct seen_keys {
    seen_key *v;   /* owned */
    int n, cap;
} seen_keys;

/* parser state: depth 0 is the document's mapping, depth 1 a section's mapping */
typedef struct yaml_walk {
    yaml_parser_t parser;
    const char *name;
    const config_table *t;
    int n_tables;
    const char *const *known;
} yaml_walk;

static int walk_error(yaml_walk *w, const yaml_event_t *ev, int code, const char *what)
{
    return err_set(code, "%s:%zu: %s", w->name, ev->start_mark.line + 1, what);
}

static int walk_next(yaml_walk *w, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&w->parser, ev)) {
        return err_set(-EINVAL, "%s:%zu: YAML syntax error: %s", w->name,
                       w->parser.problem_mark.line + 1,
                       w->parser.problem ? w->parser.problem : "unknown");
    }
    return 0;
}

/* skip one node (scalar, or a whole mapping/sequence) whose first event is ev */
static int walk_skip(yaml_walk *w, yaml_event_t *ev)
{
    int depth = 0;
    for (;;) {
        if (ev->type == YAML_MAPPING_START_EVENT || ev->type == YAML_SEQUENCE_START_EVENT) {
            depth++;
        } else if (ev->type == YAML_MAPPING_END_EVENT || ev->type == YAML_SEQUENCE_END_EVENT) {
            depth--;
        }
        yaml_event_delete(ev);
        if (depth == 0) {
            return 0;
        }
        int rc = walk_next(w, ev);
        if (rc < 0) {
            return rc;
        }
    }
}

/* remember name (at key's line); -EINVAL naming both lines when it was seen before */
static int seen_add(seen_keys *s, yaml_walk *w, const yaml_event_t *key, const char *name)
{
    for (int i = 0; i < s->n; i++) {
        if (strcmp(s->v[i].name, name) == 0) {
            char what[CONFIG_KEY_MAX + 64];
            snprintf(what, sizeof what, "'%s' is given twice (first at line %zu)", name,
                     s->v[i].line);
            return walk_error(w, key, -EINVAL, what);
        }
    }
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 16;
        s->v = xrealloc(s->v, (size_t)s->cap * sizeof *s->v);
    }
    snprintf(s->v[s->n].name, sizeof s->v[s->n].name, "%s", name);
    s->v[s->n].line = key->start_mark.line + 1;
    s->n++;
    return 0;
}

static int walk_mapping_keys(yaml_walk *w, const char *section, seen_keys *seen);

/* read key: value pairs until the mapping ends; section is NULL at the top level */
static int walk_mapping(yaml_walk *w, const char *section)
{
    seen_keys seen = {0};
    int rc = walk_mapping_keys(w, section, &seen);
    free(seen.v);
    return rc;
}

static int walk_mapping_keys(yaml_walk *w, const char *section, seen_keys *seen)
{
    yaml_event_t key, val;
    for (;;) {
        int rc = walk_next(w, &key);
        if (rc < 0) {
            return rc;
        }
        if (key.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&key);
            return 0;
        }
        if (key.type != YAML_SCALAR_EVENT) {
            rc = walk_error(w, &key, -EINVAL, "expected a key");
            yaml_event_delete(&key);
            return rc;
        }
        char name[CONFIG_KEY_MAX];
        snprintf(name, sizeof name, "%s%s%s", section ? section : "", section ? "." : "",
                 (const char *)key.data.scalar.value);
        rc = seen_add(seen, w, &key, name);
        if (rc < 0) {
            yaml_event_delete(&key);
            return rc;
        }
        rc = walk_next(w, &val);
        if (rc < 0) {
            yaml_event_delete(&key);
            return rc;
        }
        if (val.type == YAML_MAPPING_START_EVENT && !section) {
            const char *sec = (const char *)key.data.scalar.value;
            if (section_owned(w->t, w->n_tables, sec)) {
                yaml_event_delete(&val);
                rc = walk_mapping(w, sec);
            } else if (section_known(w->known, sec)) {
                rc = walk_skip(w, &val);
            } else {
                char what[CONFIG_KEY_MAX + 32];
                snprintf(what, sizeof what, "unknown section '%s'", sec);
                rc = walk_error(w, &key, -ENOENT, what);
                yaml_event_delete(&val);
            }
        } else if (val.type == YAML_SCALAR_EVENT) {
            rc = config_set(w->t, w->n_tables, name, (const char *)val.data.scalar.value);
            if (rc < 0) {
                char what[600];
                snprintf(what, sizeof what, "%s", err_msg());
                rc = walk_error(w, &key, rc, what);
            }
            yaml_event_delete(&val);
        } else {
            char what[CONFIG_KEY_MAX + 32];
            snprintf(what, sizeof what, "'%s' must be a single value", name);
            rc = walk_error(w, &val, -EINVAL, what);
            yaml_event_delete(&val);
        }
        yaml_event_delete(&key);
        if (rc < 0) {
            return rc;
        }
    }
}

static int walk_document(yaml_walk *w)
{
    yaml_event_t ev;
    int rc = 0;
    bool mapped = false;
    for (;;) {
        rc = walk_next(w, &ev);
        if (rc < 0) {
            return rc;
        }
        yaml_event_type_t type = ev.type;
        if (type == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            return 0;
        }
        if (type == YAML_MAPPING_START_EVENT) {
            if (mapped) {
                rc = walk_error(w, &ev, -EINVAL, "only one document is allowed");
                yaml_event_delete(&ev);
                return rc;
            }
            mapped = true;
            yaml_event_delete(&ev);
            rc = walk_mapping(w, NULL);
            if (rc < 0) {
                return rc;
            }
            continue;
        }
        if (type == YAML_SCALAR_EVENT || type == YAML_SEQUENCE_START_EVENT) {
            /* an empty document parses as an empty scalar: accept it */
            bool empty = type == YAML_SCALAR_EVENT && ev.data.scalar.length == 0;
            if (!empty) {
                rc = walk_error(w, &ev, -EINVAL, "the top level must be a mapping of keys");
                yaml_event_delete(&ev);
                return rc;
            }
        }
        yaml_event_delete(&ev);
    }
}

int config_load_string(const config_table *t, int n_tables, const char *yaml, size_t len,
                       const char *name, const char *const *known_sections)
{
    yaml_walk w = {.name = name, .t = t, .n_tables = n_tables, .known = known_sections};
    if (!yaml_parser_initialize(&w.parser)) {
        return err_set(-ENOMEM, "%s: cannot start the YAML parser", name);
    }
    yaml_parser_set_input_string(&w.parser, (const unsigned char *)yaml, len);
    int rc = walk_document(&w);
    yaml_parser_delete(&w.parser);
    return rc;
}

int config_load_file(const config_table *t, int n_tables, const char *path,
                     const char *const *known_sections)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        return err_set(-e, "%s: %s", path, strerror(e));
    }
    yaml_walk w = {.name = path, .t = t, .n_tables = n_tables, .known = known_sections};
    if (!yaml_parser_initialize(&w.parser)) {
        fclose(f);
        return err_set(-ENOMEM, "%s: cannot start the YAML parser", path);
    }
    yaml_parser_set_input_file(&w.parser, f);
    int rc = walk_document(&w);
    yaml_parser_delete(&w.parser);
    fclose(f);
    return rc;
}

static void format_value(const config_opt *o, const void *base, char *buf, size_t n)
{
    const char *field = (const char *)base + o->offset;
    switch (o->type) {
    case CFG_INT:
        snprintf(buf, n, "%d", *(const int *)field);
        break;
    case CFG_U64:
        snprintf(buf, n, "%llu", (unsigned long long)*(const uint64_t *)field);
        break;
    case CFG_FLOAT:
        snprintf(buf, n, "%.9g", (double)*(const float *)field);
        break;
    case CFG_DOUBLE:
        snprintf(buf, n, "%.17g", *(const double *)field);
        break;
    case CFG_BOOL:
        snprintf(buf, n, "%s", *(const bool *)field ? "true" : "false");
        break;
    case CFG_STRING:
    case CFG_ADDR:
        snprintf(buf, n, "%s", field);
        break;
    case CFG_ENUM:
        snprintf(buf, n, "%s", o->choices[*(const int *)field]);
        break;
    }
}

int config_get_text(const config_table *t, int n_tables, const char *key, char *buf, size_t n)
{
    const config_table *owner = NULL;
    const config_opt *o = config_find(t, n_tables, key, &owner);
    if (!o) {
        return err_set(-ENOENT, "unknown option '%s'", key);
    }
    format_value(o, owner->base, buf, n);
    return 0;
}

/* strings are written double-quoted so values like "yes" or "1e3" stay strings */
static void write_scalar(FILE *f, const config_opt *o, const char *text)
{
    if (o->type != CFG_STRING && o->type != CFG_ADDR) {
        fputs(text, f);
        return;
    }
    fputc('"', f);
    for (const char *p = text; *p; p++) {
        if (*p == '"' || *p == '\\') {
            fputc('\\', f);
        }
        fputc(*p, f);
    }
    fputc('"', f);
}

/* one table's options as "indent name: value" lines */
static void config_write_opts(FILE *f, const config_table *t, const char *indent, char *buf,
                              size_t n)
{
    for (int j = 0; j < t->n_opts; j++) {
        format_value(&t->opts[j], t->base, buf, n);
        fprintf(f, "%s%s: ", indent, t->opts[j].name);
        write_scalar(f, &t->opts[j], buf);
        fputc('\n', f);
    }
}

void config_write_yaml(FILE *f, const config_table *t, int n_tables)
{
    char buf[512];
    /* top-level keys first: YAML cannot return to the top level after a section's keys */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < n_tables; i++) {
            if ((pass == 0) != (t[i].section == NULL)) {
                continue;
            }
            const char *indent = t[i].section ? "  " : "";
            /* several tables may share a section (the model server's own keys and its model
             * options): one header, at the section's first table, which prints them all */
            bool later = false;
            for (int k = 0; k < i && t[i].section && !later; k++) {
                later = t[k].section && strcmp(t[k].section, t[i].section) == 0;
            }
            if (later) {
                continue;
            }
            if (t[i].section) {
                fprintf(f, "%s:\n", t[i].section);
            }
            config_write_opts(f, &t[i], indent, buf, sizeof buf);
            for (int k = i + 1; k < n_tables && t[i].section; k++) {
                if (t[k].section && strcmp(t[k].section, t[i].section) == 0) {
                    config_write_opts(f, &t[k], indent, buf, sizeof buf);
                }
            }
        }
    }
}

void config_write_help(FILE *f, const config_table *t, int n_tables)
{
    for (int i = 0; i < n_tables; i++) {
        for (int j = 0; j < t[i].n_opts; j++) {
            const config_opt *o = &t[i].opts[j];
            char key[CONFIG_KEY_MAX];
            snprintf(key, sizeof key, "%s%s%s", t[i].section ? t[i].section : "",
                     t[i].section ? "." : "", o->name);
            fprintf(f, "  %-28s %-6s default %-14s %s", key, config_type_names[o->type], o->def,
                    o->help);
            if (o->type == CFG_ENUM) {
                fputs(" (", f);
                for (int k = 0; o->choices[k]; k++) {
                    fprintf(f, "%s%s", k ? "|" : "", o->choices[k]);
                }
                fputc(')', f);
            } else if (o->type != CFG_BOOL && o->type != CFG_STRING && o->type != CFG_ADDR) {
                fprintf(f, " [%g, %g]", o->min, o->max);
            }
            fputc('\n', f);
        }
    }
}
