/* deploy/launcher/ports.c: the launcher's check that a run's listen addresses are free */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/base/err.h"
#include "deploy/launcher/ports.h"

/* a listening socket on 127.0.0.1 at a port the kernel picked; its port in *port */
static int listen_any(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(fd, 1), 0);
    socklen_t len = sizeof a;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

Test(ports, a_listened_port_is_in_use_and_free_once_closed)
{
    int port;
    int fd = listen_any(&port);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    cr_expect_eq(ports_check_free(addr), -EADDRINUSE);
    cr_expect(strstr(err_msg(), addr) != NULL, "the error names the address: %s", err_msg());
    close(fd);
    cr_expect_eq(ports_check_free(addr), 0, "%s", err_msg());
    snprintf(addr, sizeof addr, "localhost:%d", port);
    cr_expect_eq(ports_check_free(addr), 0, "%s", err_msg());
}

Test(ports, malformed_or_foreign_addresses_are_refused_by_name)
{
    static const char *const bad[] = {"127.0.0.1", "127.0.0.1:", ":7101", "127.0.0.1:0",
                                      "127.0.0.1:65536", "127.0.0.1:7x", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_expect_eq(ports_check_free(bad[i]), -EINVAL, "'%s' accepted", bad[i]);
    }
    /* TEST-NET-1 (RFC 5737) is never an address of this machine */
    cr_expect_eq(ports_check_free("192.0.2.1:7101"), -EADDRNOTAVAIL, "%s", err_msg());
    cr_expect(strstr(err_msg(), "192.0.2.1:7101") != NULL, "%s", err_msg());
}

Test(ports, picked_ports_are_distinct_and_free)
{
    enum { N = 40 };
    int ports[N];
    cr_assert_eq(ports_pick_free("127.0.0.1", ports, N), 0, "%s", err_msg());
    for (int i = 0; i < N; i++) {
        cr_expect(ports[i] > 0 && ports[i] < 65536, "port %d", ports[i]);
        for (int j = 0; j < i; j++) {
            cr_expect_neq(ports[i], ports[j], "port %d picked twice", ports[i]);
        }
        char addr[64];
        snprintf(addr, sizeof addr, "127.0.0.1:%d", ports[i]);
        cr_expect_eq(ports_check_free(addr), 0, "%s", err_msg());
    }
    cr_expect_eq(ports_pick_free("no-such-host.invalid", ports, 1), -EINVAL);
    cr_expect(strstr(err_msg(), "launcher.host") != NULL, "%s", err_msg());
}
