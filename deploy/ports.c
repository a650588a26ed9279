/* ports.c - see ports.h */
#include "deploy/ports.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/err.h"

/* split "host:port" / "[v6]:port" into host and port strings; 0 or -EINVAL */
static int split_addr(char *host, size_t host_n, char *port, size_t port_n, const char *addr)
{
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || colon[1] == '\0') {
        return err_set(-EINVAL, "address '%s' is not HOST:PORT", addr);
    }
    const char *h = addr;
    size_t hl = (size_t)(colon - addr);
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end != '\0' || p < 1 || p > 65535) {
        return err_set(-EINVAL, "address '%s': port must be 1..65535", addr);
    }
    if (hl == 0 || hl >= host_n || strlen(colon + 1) >= port_n) {
        return err_set(-EINVAL, "address '%s' is not HOST:PORT", addr);
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    snprintf(port, port_n, "%s", colon + 1);
    return 0;
}

int ports_check_free(const char *addr)
{
    char host[256], port[8];
    int rc = split_addr(host, sizeof host, port, sizeof port, addr);
    if (rc < 0) {
        return rc;
    }
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
