/* netaddr.h - can this process listen on "HOST:PORT"? One check for the rpc server (which
 * names the mistake before gRPC core hides it behind "No address added out of total 1
 * resolved") and for the launcher's plan of a run's ports (deploy/launcher/ports.h).
 */
#ifndef TWIG_NETADDR_H
#define TWIG_NETADDR_H

#include <stddef.h>

#define NETADDR_MAX 127   /* the longest "HOST:PORT" twig accepts */

/* "HOST:PORT" or "[V6]:PORT" (how every address is written): the host, brackets removed,
 * into host[host_n] and the port (0..65535) into *port; 0, or -EINVAL with err_msg naming
 * addr */
int netaddr_split(char *host, size_t host_n, int *port, const char *addr);

/* addr is "host:port" (host a name or IPv4 literal, or "[v6]:port"). Resolves the host and,
 * for a port other than 0, binds each address it resolves to once (SO_REUSEADDR, as gRPC's
 * listeners) until one binds. 0, or with err_msg naming addr: -EINVAL (not HOST:PORT, or the
 * host does not resolve), -EADDRINUSE (the port is taken), -EADDRNOTAVAIL (the host is not
 * an address of this machine), -EACCES (a privileged port), another -errno of bind */
int netaddr_check_bindable(const char *addr);

/* is addr a peer address one can dial: "host:port" with port 1..65535 and host a name of
 * letters, digits, '-', '.' and '_' (or an IPv4 literal), or "[v6]:port"? Syntax only: a
 * name that does not resolve (yet) is an unreachable peer, not a malformed one. 0, or
 * -EINVAL with err_msg naming addr and what is wrong with it */
int netaddr_check_peer(const char *addr);

#endif
