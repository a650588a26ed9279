/* tests of common/launcher_link: the TWIG_LAUNCHER_PID check */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "common/base/err.h"
#include "common/base/launcher_link.h"

static int pdeathsig(void)
{
    int sig = -1;
    cr_assert_eq(prctl(PR_GET_PDEATHSIG, &sig), 0);
    return sig;
}

Test(launcher_link, without_the_variable_nothing_changes)
{
    unsetenv(LAUNCHER_PID_ENV);
    int before = pdeathsig(); /* Criterion may set its own on its workers */
    cr_expect_eq(launcher_link_from_env(), 0);
    cr_expect_eq(pdeathsig(), before);
}

Test(launcher_link, the_parent_pid_links_with_sigterm)
{
    char v[32];
    snprintf(v, sizeof v, "%ld", (long)getppid());
    setenv(LAUNCHER_PID_ENV, v, 1);
    cr_expect_eq(launcher_link_from_env(), 0, "%s", err_msg());
    cr_expect_eq(pdeathsig(), SIGTERM);
}

Test(launcher_link, garbage_is_refused_naming_the_variable)
{
    const char *bad[] = {"", "abc", "12x", "1", "0", "-5", " 7", "99999999999999999999"};
    int before = pdeathsig();
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        setenv(LAUNCHER_PID_ENV, bad[i], 1);
        cr_expect_eq(launcher_link_from_env(), -EINVAL, "'%s'", bad[i]);
        cr_expect(strstr(err_msg(), LAUNCHER_PID_ENV) != NULL, "%s", err_msg());
    }
    cr_expect_eq(pdeathsig(), before);
}

Test(launcher_link, a_pid_that_is_not_the_parent_means_the_launcher_is_gone)
{
    char v[32];
    snprintf(v, sizeof v, "%ld", (long)getpid());
    setenv(LAUNCHER_PID_ENV, v, 1);
    cr_expect_eq(launcher_link_from_env(), -ESRCH);
    cr_expect(strstr(err_msg(), "gone") != NULL, "%s", err_msg());
}

Test(launcher_link, after_shutdown_began_further_stop_signals_are_ignored)
{
    launcher_link_ignore_stop_signals();
    cr_assert_eq(raise(SIGTERM), 0);
    cr_assert_eq(raise(SIGINT), 0);
    struct sigaction sa;
    cr_assert_eq(sigaction(SIGTERM, NULL, &sa), 0);
    cr_expect(sa.sa_handler == SIG_IGN);
    /* still here */
}
