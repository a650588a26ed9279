/* ports.c - see ports.h */
#include "deploy/launcher/ports.h"

#include <errno.h>
#include <stdio.h>

#include "common/base/err.h"
#include "common/base/netaddr.h"
#include "common/config/run_config.h"

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
