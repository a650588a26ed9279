/* ports.c - see ports.h */
#include "deploy/launcher/ports.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/base/err.h"
#include "common/base/netaddr.h"
#include "common/config/run_config.h"

#define PORTS_PICK_MAX 1024

int ports_check_free(const char *addr)
{
    char host[RUN_ADDR_MAX + 1];
    int port_n;
    int rc = netaddr_split(host, sizeof host, &port_n, addr);
    if (rc < 0) {
        return rc;
    }
    if (port_n == 0) {   /* "any free port" cannot be planned: its clients need the port */
        return err_set(-EINVAL, "address '%s': port must be 1..65535", addr);
    }
    rc = netaddr_check_bindable(addr);
    if (rc == -EADDRINUSE) {
        char why[320];
        snprintf(why, sizeof why, "%s", err_msg());   /* err_set overwrites err_msg() */
        return err_set(rc, "%s (another twig run on this machine?)", why);
    }
    return rc;
}

int ports_pick_free(const char *host, int *ports, int n)
{
    if (n < 0 || n > PORTS_PICK_MAX) {
        return err_set(-EINVAL, "ports_pick_free: %d ports, at most %d", n, PORTS_PICK_MAX);
    }
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int g = getaddrinfo(host, NULL, &hints, &res);
    if (g != 0 || !res) {
        return err_set(-EINVAL, "launcher.host '%s' does not resolve to IPv4: %s", host,
                       gai_strerror(g));
    }
    struct sockaddr_in sa;
    memcpy(&sa, res->ai_addr, sizeof sa);
    freeaddrinfo(res);
    sa.sin_port = 0;
    int fds[PORTS_PICK_MAX];
    int rc = 0, k = 0;
    for (; k < n; k++) {
        fds[k] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        socklen_t len = sizeof sa;
        struct sockaddr_in got;
        if (fds[k] < 0 || bind(fds[k], (struct sockaddr *)&sa, sizeof sa) < 0 ||
            getsockname(fds[k], (struct sockaddr *)&got, &len) < 0) {
            rc = err_set(-errno, "launcher.host '%s': no free port: %s", host, strerror(errno));
            if (fds[k] >= 0) {
                close(fds[k]);
            }
            break;
        }
        ports[k] = ntohs(got.sin_port);
    }
    for (int i = 0; i < k; i++) {
        close(fds[i]);
    }
    return rc;
}
