/* launcher_link.h - a process started by `twig run` ends with its launcher.
 *
 * The launcher puts TWIG_LAUNCHER_PID=<its pid> into the environment of every process it
 * starts. Each process calls launcher_link_from_env() once at start: from then on the kernel
 * sends it SIGTERM (its clean shutdown) when the launcher exits for any reason, kill -9
 * included, so no process of a run outlives `twig run` and keeps its ports and data dirs.
 * Without the variable (a process started by hand, by Docker or by Kubernetes) nothing
 * changes. Linux only (prctl PR_SET_PDEATHSIG).
 *
 *     if (launcher_link_from_env() < 0) { ... err_msg() names the problem; exit ... }
 */
#ifndef TWIG_LAUNCHER_LINK_H
#define TWIG_LAUNCHER_LINK_H

#define LAUNCHER_PID_ENV "TWIG_LAUNCHER_PID"

/* 0 (linked, or no launcher); -EINVAL when the variable is not a pid (err_msg names it);
 * -ESRCH when the parent is not that pid any more (the launcher is already gone) */
int launcher_link_from_env(void);

/* once a process has begun its clean shutdown and closed its SIGTERM/SIGINT handlers, it
 * ignores both from then on, so that its shutdown finishes: the parent-death signal comes
 * once for every thread of a dying (multi-threaded) launcher that the process is handed to
 * on its way to a new parent, and libuv restores the default action (die) when a signal's
 * last handle closes. SIGKILL still ends a shutdown that hangs. */
void launcher_link_ignore_stop_signals(void);

#endif
