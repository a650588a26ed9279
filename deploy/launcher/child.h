/* child.h - a helper program run to its end (gnuplot, a daemon's --print-config): no shell,
 * no libuv watcher, its wait status described for people */
#ifndef TWIG_DEPLOY_CHILD_H
#define TWIG_DEPLOY_CHILD_H

#include <stdbool.h>
#include <stddef.h>

/* run argv to its end (argv[0] a path, or a name looked up in PATH when search), stdout and
 * stderr into the open files fo and fe (borrowed). Its wait status, or -errno if it could not
 * be forked. Call it where no libuv child watcher competes for the exit */
int child_run(char *const argv[], int fo, int fe, bool search);

/* "exit 2", "killed by signal 11", "could not be run (exit 127)" */
void child_describe_status(char *out, size_t n, int status);

#endif
