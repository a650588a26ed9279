/* procspawn.h - start the project's real binaries, wait for them and stop them: the core
 * that tests/procfix.h (Criterion fixtures) and the benchmarks (bench_rpc, bench_fault_kill9)
 * share. Test and bench tooling, not part of any daemon. Every wait has a deadline; failures
 * are returned (err_msg() says what happened), never asserted.
 *
 *     pid_t pid = procspawn_start(argv, log_file, log_file);     // stdout, stderr appended
 *     int port, st;
 *     rc = procspawn_read_port(&port, &st, port_file, pid, 20000, 5);
 *     snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
 *     rc = procspawn_wait_health(&st, addr, RPC_HEALTH_READINESS, pid, 20000, 10);
 *     ...
 *     rc = procspawn_stop(&st, pid, 60000);                     // SIGTERM, SIGKILL after grace
 *
 * A wait that sees the process exit reaps it, returns PROCSPAWN_EXITED and leaves its wait
 * status in *st.
 */
#ifndef TWIG_TESTS_PROCSPAWN_H
#define TWIG_TESTS_PROCSPAWN_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PROCSPAWN_EXITED (-ECHILD)   /* the process exited first (reaped; status in *st) */

int64_t procspawn_now_ms(void);

/* a pause between two looks at a condition that has a deadline: never a wait for a server */
void procspawn_pause_ms(int ms);

/* "exit status N", "signal N" or "wait status N" for a wait status */
void procspawn_status_text(char *out, size_t n, int st);

/* fork + exec argv (NULL-terminated, argv[0] a path) with stdout appended to out_file and
 * stderr to err_file (NULL or "": inherited); the child dies with the calling process
 * (PR_SET_PDEATHSIG, so spawn from a thread that lives as long as the child should).
 * Its pid, or -errno when fork fails */
pid_t procspawn_start(const char *const *argv, const char *out_file, const char *err_file);

/* wait up to ms for pid to exit: true and its wait status in *st, or false (still running) */
bool procspawn_poll_exit(int *st, pid_t pid, int ms);

/* the port pid writes to port_file (a positive decimal), looked at every poll_ms within ms:
 * 0 and *port, PROCSPAWN_EXITED, or TWIG_EDEADLINE */
int procspawn_read_port(int *port, int *st, const char *port_file, pid_t pid, int ms,
                        int poll_ms);

/* probe addr's service (rpc_health_check) every poll_ms until SERVING, within ms: 0,
 * PROCSPAWN_EXITED, or TWIG_EDEADLINE (err_msg() has the last answer) */
int procspawn_wait_health(int *st, const char *addr, const char *service, pid_t pid, int ms,
                          int poll_ms);

/* send sig to pid and reap it within ms: 0 and its wait status, or TWIG_EDEADLINE (still
 * running, not reaped), or -errno from kill */
int procspawn_signal_reap(int *st, pid_t pid, int sig, int ms);

/* SIGTERM, and SIGKILL if pid still runs grace_ms later: 0 and its wait status once reaped
 * (1 if SIGKILL was needed), or -errno from kill */
int procspawn_stop(int *st, pid_t pid, int grace_ms);

#endif
