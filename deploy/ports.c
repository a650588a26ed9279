/* ports.c - see ports.h */
#include "deploy/ports.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/err.h"
#include "common/run_config.h"

int ports_check_free(const char *addr)
{
    char host[RUN_ADDR_MAX + 1], port[8];
    int port_n;
    int rc = run_addr_split(host, sizeof host, &port_n, addr);
    if (rc < 0) {
        return rc;
    }
    if (port_n == 0) {   /* "any free port" cannot be planned: its clients need the port */
        return err_set(-EINVAL, "address '%s': port must be 1..65535", addr);
    }
    snprintf(port, sizeof port, "%d", port_n);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0) {
        return err_set(-EINVAL, "address '%s': %s", addr, gai_strerror(gai));
    }
    rc = err_set(-EADDRNOTAVAIL, "address '%s' resolves to nothing this machine can bind", addr);
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            continue;
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
            rc = err_set(-EADDRINUSE, "address %s is in use (another twig run on this machine?)",
                         addr);
            break;
        }
        rc = err_set(-e, "address %s cannot be bound here: %s", addr, strerror(e));
    }
    freeaddrinfo(res);
    return rc;
}
