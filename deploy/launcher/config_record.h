/* config_record.h - the run's config.yaml as run: the input file with the `--set` overrides
 * applied, each value kept as the user wrote it (the file's text, or the text after '='),
 * so the run directory says what the run used, not what it started from.
 *
 *     config_record_write(f, yaml, len, "cfg.yaml", overrides, n);   // 0, or -EINVAL
 *
 * The input is what config_load_file accepts: top-level scalars and mappings of scalars
 * (one per process section). Comments are not kept; a header comment names the source file
 * and the overrides.
 */
#ifndef TWIG_CONFIG_RECORD_H
#define TWIG_CONFIG_RECORD_H

#include <stddef.h>
#include <stdio.h>

/* write yaml (len bytes, name for messages) with overrides ("key=value" or
 * "section.key=value", as given to --set; borrowed) applied: a key the file has gets the new
 * text in its place, a new one goes after the last key of its section or of the top level
 * (a new section at the end).
 * 0, or -EINVAL with err_msg when the input is not a config file of that shape */
int config_record_write(FILE *out, const char *yaml, size_t len, const char *name,
                        const char *const *overrides, int n_overrides);

#endif
