/* netaddr.c - see netaddr.h */
#include "common/base/netaddr.h"

#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/base/err.h"

int netaddr_split(char *host, size_t host_n, int *port, const char *addr)
{
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr) {
        return err_set(-EINVAL, "address '%s' is not HOST:PORT", addr);
    }
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || errno || p < 0 || p > 65535) {
        return err_set(-EINVAL, "address '%s': the port must be a number 0..65535", addr);
    }
    const char *h = addr;
    size_t hl = (size_t)(colon - addr);
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl == 0 || hl >= host_n) {
        return err_set(-EINVAL, "address '%s': the host is empty or too long", addr);
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (int)p;
    return 0;
}

int netaddr_check_bindable(const char *addr)
{
    char host[NETADDR_MAX + 1], port[8];
    int port_n;
    int rc = netaddr_split(host, sizeof host, &port_n, addr);
    if (rc < 0) {
        return rc;
    }
    snprintf(port, sizeof port, "%d", port_n);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0) {
        return err_set(-EINVAL, "address '%s': host '%s' does not resolve (%s)", addr, host,
                       gai_strerror(gai));
    }
    rc = err_set(-EADDRNOTAVAIL, "address '%s' resolves to nothing this machine can bind", addr);
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            continue;   /* e.g. no IPv6 here: gRPC skips that address too */
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        int b = bind(fd, ai->ai_addr, ai->ai_addrlen);
        int e = errno;
        close(fd);
        if (b == 0) {
            rc = 0;
            break;
        }
        if (e == EADDRINUSE) {
            rc = err_set(-EADDRINUSE, "address %s: port %d is in use", addr, port_n);
            break;
        }
        if (e == EADDRNOTAVAIL) {
            rc = err_set(-EADDRNOTAVAIL, "address %s: '%s' is not an address of this machine",
                         addr, host);
        } else if (e == EACCES) {
            rc = err_set(-EACCES, "address %s: port %d needs privileges", addr, port_n);
        } else {
            rc = err_set(-e, "address %s cannot be bound here: %s", addr, strerror(e));
        }
    }
    freeaddrinfo(res);
    return rc;
}

int netaddr_check_peer(const char *addr)
{
    char host[NETADDR_MAX + 1];
    int port;
    int rc = netaddr_split(host, sizeof host, &port, addr);
    if (rc < 0) {
        return rc;
    }
    if (port == 0) {
        return err_set(-EINVAL, "address '%s': port 0 cannot be dialed", addr);
    }
    bool v6 = addr[0] == '[';
    for (const char *c = host; *c; c++) {
        bool ok = isalnum((unsigned char)*c) || *c == '.' ||
                  (v6 ? *c == ':' || *c == '%' : *c == '-' || *c == '_');
        if (!ok) {
            return err_set(-EINVAL, "address '%s': '%c' cannot be in a host %s", addr, *c,
                           v6 ? "([v6] literal)" : "name");
        }
    }
    return 0;
}
