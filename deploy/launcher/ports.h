/* ports.h - the launcher's check that the addresses a run will listen on are free.
 *
 * Two runs on one machine with the same ports would not just fail: a process that cannot
 * bind is restarted, and meanwhile the monitor, actors and workers talk to the other run's
 * servers. `twig run` therefore binds every planned address once before starting anything
 * and refuses to start, naming the address and the option that set it, when one is taken.
 */
#ifndef TWIG_PORTS_H
#define TWIG_PORTS_H

/* addr is "host:port" (host a name or IPv4 literal, or "[v6]:port"): 0 when a listener could
 * bind it now (SO_REUSEADDR, as gRPC's listeners), else -EADDRINUSE, -EADDRNOTAVAIL (not an
 * address of this machine) or -EINVAL (unparsable), with err_msg naming addr */
int ports_check_free(const char *addr);

/* n distinct ports (n <= 1024) free on host (an IPv4 literal or name) now, into ports[0..n):
 * each bound at port 0 and held until all are picked, then released for their processes
 * (another program may take one in between: the process then fails to bind, and says so).
 * 0, or a negative code with err_msg naming host */
int ports_pick_free(const char *host, int *ports, int n);

#endif
