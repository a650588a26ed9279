/* config_record.c - config.yaml of the run directory, overrides applied, values as written */
#include "deploy/launcher/config_record.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "common/base/err.h"
#include "common/base/mem.h"

/* one key of the file in its order; key "" marks a section header with no keys yet */
typedef struct record_entry {
    char *section;   /* "" at the top level; owned */
    char *key;       /* owned */
    char *value;     /* the text to write after "key: "; owned */
} record_entry;

typedef struct record {
    record_entry *v;   /* owned */
    int n, cap;
} record;

static void record_insert(record *r, int at, const char *section, const char *key, char *value)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 32;
        r->v = xrealloc(r->v, (size_t)r->cap * sizeof *r->v);
    }
    memmove(&r->v[at + 1], &r->v[at], (size_t)(r->n - at) * sizeof *r->v);
    r->v[at] = (record_entry){xstrdup(section), xstrdup(key), value};
    r->n++;
}

static void record_free(record *r)
{
    for (int i = 0; i < r->n; i++) {
        free(r->v[i].section);
        free(r->v[i].key);
        free(r->v[i].value);
    }
    free(r->v);
}

static char *dup_n(const char *s, size_t len)
{
    char *d = xmalloc(len + 1);
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

/* text a YAML reader takes back as s: s itself when it is a plain scalar of the usual
 * characters, else double-quoted */
static char *yaml_text(const char *s, size_t len)
{
    bool plain = len > 0;
    for (size_t i = 0; i < len && plain; i++) {
        plain = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                (s[i] >= '0' && s[i] <= '9') || strchr("_.:/+-@", s[i]) != NULL;
    }
    plain = plain && s[len - 1] != ':';
    if (plain) {
        return dup_n(s, len);
    }
    char *out = xmalloc(2 * len + 3), *o = out;
    *o++ = '"';
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '"' || s[i] == '\\') {
            *o++ = '\\';
        }
        *o++ = s[i] == '\n' ? ' ' : s[i];
    }
    *o++ = '"';
    *o = '\0';
    return out;
}

/* a scalar's text as the file has it (quotes included); re-quoted when it spans lines */
static char *source_text(const char *yaml, const yaml_event_t *ev)
{
    const char *s = yaml + ev->start_mark.index;
    size_t len = ev->end_mark.index - ev->start_mark.index;
    if (memchr(s, '\n', len) || len == 0) {
        return yaml_text((const char *)ev->data.scalar.value, ev->data.scalar.length);
    }
    return dup_n(s, len);
}

static int parse(record *r, const char *yaml, size_t len, const char *name)
{
    yaml_parser_t p;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_string(&p, (const unsigned char *)yaml, len);
    char section[128] = "", key[128] = "";
    int depth = 0;   /* mappings open */
    bool want_key = true;
    int rc = 0;
    for (bool done = false; !done && rc == 0;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            rc = err_set(-EINVAL, "%s:%zu: YAML syntax error", name, p.problem_mark.line + 1);
            break;
        }
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        case YAML_STREAM_START_EVENT:
        case YAML_DOCUMENT_START_EVENT:
        case YAML_DOCUMENT_END_EVENT:
            break;
        case YAML_MAPPING_START_EVENT:
            if (depth == 1 && !want_key) {   /* a section */
                snprintf(section, sizeof section, "%s", key);
                record_insert(r, r->n, section, "", NULL);
                want_key = true;
            } else if (depth != 0) {
                rc = err_set(-EINVAL, "%s:%zu: nested mapping", name, ev.start_mark.line + 1);
            }
            depth++;
            break;
        case YAML_MAPPING_END_EVENT:
            depth--;
            section[0] = '\0';
            break;
        case YAML_SCALAR_EVENT:
            if (want_key) {
                snprintf(key, sizeof key, "%s", (const char *)ev.data.scalar.value);
            } else {
                record_insert(r, r->n, section, key, source_text(yaml, &ev));
            }
            want_key = !want_key;
            break;
        default:
            rc = err_set(-EINVAL, "%s:%zu: only scalars and sections of scalars", name,
                         ev.start_mark.line + 1);
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    return rc;
}

/* "section.key=value" or "key=value" into the record */
static void apply(record *r, const char *o)
{
    const char *eq = strchr(o, '=');
    if (!eq) {
        return;   /* refused by whoever owns the key */
    }
    const char *dot = memchr(o, '.', (size_t)(eq - o));
    char section[128] = "", key[128];
    if (dot) {
        snprintf(section, sizeof section, "%.*s", (int)(dot - o), o);
    }
    const char *k = dot ? dot + 1 : o;
    snprintf(key, sizeof key, "%.*s", (int)(eq - k), k);
    char *value = yaml_text(eq + 1, strlen(eq + 1));
    int last = -1;   /* the last entry of the section */
    for (int i = 0; i < r->n; i++) {
        if (strcmp(r->v[i].section, section) != 0) {
            continue;
        }
        if (strcmp(r->v[i].key, key) == 0) {
            free(r->v[i].value);
            r->v[i].value = value;
            return;
        }
        last = i;
    }
    if (last < 0 && section[0]) {
        /* a new section; a top-level "learner:" with no value would be given twice */
        for (int i = 0; i < r->n; i++) {
            if (!r->v[i].section[0] && strcmp(r->v[i].key, section) == 0) {
                free(r->v[i].section);
                free(r->v[i].key);
                free(r->v[i].value);
                memmove(&r->v[i], &r->v[i + 1], (size_t)(r->n - i - 1) * sizeof *r->v);
                r->n--;
                break;
            }
        }
        record_insert(r, r->n, section, "", NULL);
        last = r->n - 1;
    }
    record_insert(r, last < 0 ? r->n : last + 1, section, key, value);
}

int config_record_write(FILE *out, const char *yaml, size_t len, const char *name,
                        const char *const *overrides, int n_overrides)
{
    record r = {0};
    int rc = parse(&r, yaml, len, name);
    if (rc < 0) {
        record_free(&r);
        return rc;
    }
    for (int i = 0; i < n_overrides; i++) {
        apply(&r, overrides[i]);
    }
    fprintf(out, "# the config of this run: %s", name);
    for (int i = 0; i < n_overrides; i++) {
        fprintf(out, "%s--set %s", i == 0 ? " with " : " ", overrides[i]);
    }
    fputc('\n', out);
    for (int i = 0; i < r.n; i++) {
        const record_entry *e = &r.v[i];
        if (!e->key[0]) {   /* a section's header: its keys follow */
            bool empty = i + 1 == r.n || strcmp(r.v[i + 1].section, e->section) != 0;
            fprintf(out, "%s:%s\n", e->section, empty ? " {}" : "");
        } else {
            fprintf(out, "%s%s: %s\n", e->section[0] ? "  " : "", e->key, e->value);
        }
    }
    record_free(&r);
    return 0;
}
