/* Three hosts without containers: network namespaces on a bridge this test makes act as
 * three machines (model server + learner on one, the rollout worker on the second, the
 * actor on the third), `twig monitor` watches from the host, and a short Pendulum-v1 run
 * across them reaches the bar. Every peer address is another namespace's, never 127.0.0.1:
 * the processes are checked to hold their connections to those addresses.
 * Needs root, iproute2 and iptables (deploy/install-deps.sh); label deploy, outside the
 * sanitizer build. Everything made here (namespaces, bridge, veths, the FORWARD rule that
 * a running dockerd would otherwise need) is removed by the fini, also after a failure. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/procfix.h"

#define BUDGET 2000
#define EVAL_EVERY 500
#define PENDULUM_BAR -250.0   /* docs/results.md: >= -250 by 6,000 real steps */
#define N_HOSTS 3

static char tmp[PROCFIX_DIR_LEN];
static char bridge[16], ns[N_HOSTS][32], host_ip[N_HOSTS][32], gw_ip[32];
static bool fwd_rule;
static pid_t pids[4];

/* run a command to its end (no shell); its exit code */
static int sh_run(const char *const *argv)
{
    char out[PROCFIX_DIR_LEN + 32];
    snprintf(out, sizeof out, "%s/cmd.out", tmp);
    return procfix_exit_code(procfix_spawn(argv, out), 30000);
}

#define RUN(...)                                                                   \
    do {                                                                           \
        const char *a_[] = {__VA_ARGS__, NULL};                                    \
        cr_assert_eq(sh_run(a_), 0, "failed: %s %s %s %s", a_[0], a_[1], a_[2], a_[3]); \
    } while (0)

static void quiet(const char *const *argv)
{
    (void)sh_run(argv);
}

static void hosts_setup(void)
{
    procfix_tmpdir(tmp, sizeof tmp);
    int tag = (int)(getpid() % 200) + 20;   /* 10.213.<tag>.0/24: ours, by pid */
    snprintf(bridge, sizeof bridge, "twbr%d", tag);
    snprintf(gw_ip, sizeof gw_ip, "10.213.%d.254", tag);
    RUN("/usr/sbin/ip", "link", "add", bridge, "type", "bridge");
    char cidr[48];
    snprintf(cidr, sizeof cidr, "%s/24", gw_ip);
    RUN("/usr/sbin/ip", "addr", "add", cidr, "dev", bridge);
    RUN("/usr/sbin/ip", "link", "set", bridge, "up");
    for (int h = 0; h < N_HOSTS; h++) {
        char veth[16], peer[16];
        snprintf(ns[h], sizeof ns[h], "twig-h%d-%d", h, (int)getpid());
        snprintf(host_ip[h], sizeof host_ip[h], "10.213.%d.%d", tag, h + 1);
        snprintf(veth, sizeof veth, "tw%dh%d", tag, h);
        snprintf(peer, sizeof peer, "tw%dp%d", tag, h);
        RUN("/usr/sbin/ip", "netns", "add", ns[h]);
        RUN("/usr/sbin/ip", "link", "add", veth, "type", "veth", "peer", "name", peer);
        RUN("/usr/sbin/ip", "link", "set", veth, "master", bridge);
        RUN("/usr/sbin/ip", "link", "set", veth, "up");
        RUN("/usr/sbin/ip", "link", "set", peer, "netns", ns[h]);
        snprintf(cidr, sizeof cidr, "%s/24", host_ip[h]);
        RUN("/usr/sbin/ip", "-n", ns[h], "addr", "add", cidr, "dev", peer);
        RUN("/usr/sbin/ip", "-n", ns[h], "link", "set", peer, "up");
        RUN("/usr/sbin/ip", "-n", ns[h], "link", "set", "lo", "up");
    }
    /* while dockerd runs, FORWARD's policy is DROP and bridged traffic goes through it
     * (../shared/deploy-notes.md): let our bridge's own traffic through, for this test only */
    const char *fw[] = {"/usr/sbin/iptables", "-I", "FORWARD", "-i", bridge, "-o", bridge,
                        "-j", "ACCEPT", NULL};
    fwd_rule = sh_run(fw) == 0;
}

static void hosts_teardown(void)
{
    for (int i = 0; i < 4; i++) {
        if (pids[i] > 0 && kill(pids[i], 0) == 0) {
            kill(pids[i], SIGKILL);
            procfix_exit_code(pids[i], 10000);
        }
    }
    if (fwd_rule) {
        const char *fw[] = {"/usr/sbin/iptables", "-D", "FORWARD", "-i", bridge, "-o", bridge,
                            "-j", "ACCEPT", NULL};
        quiet(fw);
    }
    for (int h = 0; h < N_HOSTS; h++) {
        if (ns[h][0]) {
            const char *del[] = {"/usr/sbin/ip", "netns", "del", ns[h], NULL};
            quiet(del);   /* takes its end of the veth, and so the pair, with it */
        }
    }
    const char *del[] = {"/usr/sbin/ip", "link", "del", bridge, NULL};
    quiet(del);
    procfix_tmpdir_done(tmp);
}

/* `ip netns exec NS bin --config run.yaml --set ...` (ip execs the binary: same pid) */
static pid_t start_in(int h, const char *name, const char *bin, const char *const *sets)
{
    char cfg[PROCFIX_DIR_LEN + 16], log[PROCFIX_DIR_LEN + 64];
    snprintf(cfg, sizeof cfg, "%s/run.yaml", tmp);
    snprintf(log, sizeof log, "%s/%s.log", tmp, name);
    const char *argv[32] = {"/usr/sbin/ip", "netns", "exec", ns[h], bin, "--config", cfg};
    int k = 7;
    for (int i = 0; sets[i]; i++) {
        argv[k++] = "--set";
        argv[k++] = sets[i];
    }
    argv[k] = NULL;
    pid_t p = procfix_spawn(argv, log);
    cr_assert_gt(p, 0);
    return p;
}

/* the remote IPv4 addresses pid holds established TCP connections to, from /proc/PID/net/tcp
 * and tcp6 of its namespace (gRPC dials from dual-stack sockets: v4-mapped ::ffff:a.b.c.d), as
 * "a.b.c.d " strings */
static void peers_of(pid_t pid, char *out, size_t n)
{
    out[0] = '\0';
    size_t used = 0;
    for (int v6 = 0; v6 < 2; v6++) {
        char path[64], line[512], rem[40];
        snprintf(path, sizeof path, "/proc/%d/net/tcp%s", (int)pid, v6 ? "6" : "");
        FILE *f = fopen(path, "r");
        if (!f) {
            continue;
        }
        while (fgets(line, sizeof line, f) && used + 20 < n) {
            unsigned st = 0;
            if (sscanf(line, " %*d: %*[0-9A-Fa-f]:%*x %39[0-9A-Fa-f]:%*x %x", rem, &st) != 2 ||
                st != 1) {
                continue;   /* the header, or not ESTABLISHED */
            }
            /* the IPv4 address is the last 8 hex digits (of a v4-mapped one in tcp6), in
             * the kernel's byte order */
            size_t len = strlen(rem);
            if (len < 8 || (v6 && strncmp(rem, "0000000000000000FFFF0000", 24) != 0)) {
                continue;
            }
            unsigned a = (unsigned)strtoul(rem + len - 8, NULL, 16);
            used += (size_t)snprintf(out + used, n - used, "%u.%u.%u.%u ", a & 255,
                                     (a >> 8) & 255, (a >> 16) & 255, a >> 24);
        }
        fclose(f);
    }
}

Test(hosts, a_run_across_three_namespace_hosts_reaches_the_bar, .init = hosts_setup,
     .fini = hosts_teardown, .timeout = 600)
{
    char ms[64], ln[64], ro[64], ac[64];
    snprintf(ms, sizeof ms, "%s:7101", host_ip[0]);
    snprintf(ln, sizeof ln, "%s:7102", host_ip[0]);
    snprintf(ro, sizeof ro, "%s:7140", host_ip[1]);
    snprintf(ac, sizeof ac, "%s:7110", host_ip[2]);
    char path[PROCFIX_DIR_LEN + 32];
    snprintf(path, sizeof path, "%s/run.yaml", tmp);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    /* configs/pendulum.yaml's settings, a shorter budget; every address another host's */
    fprintf(f,
            "env: Pendulum-v1\nseed: 1\nreal_steps: %d\ninit_steps: 500\nutd: 10\n"
            "model_train_freq: 250\nrollouts_per_step: 100\nepoch_length: 1000\n"
            "eval_every: %d\neval_episodes: 5\nn_actors: 1\nn_rollout: 1\n"
            "modelserver_addr: %s\nlearner_addr: %s\n"
            "actor:\n  exit_when_done: true\n",
            BUDGET, EVAL_EVERY, ms, ln);
    cr_assert_eq(fclose(f), 0);
    char ms_listen[96], ms_data[PROCFIX_DIR_LEN + 48], ln_listen[96],
        ln_ckpt[PROCFIX_DIR_LEN + 48], ro_listen[96], ac_listen[96];
    snprintf(ms_listen, sizeof ms_listen, "modelserver.listen=%s", ms);
    snprintf(ms_data, sizeof ms_data, "modelserver.data_dir=%s/log", tmp);
    snprintf(ln_listen, sizeof ln_listen, "learner.listen=%s", ln);
    snprintf(ln_ckpt, sizeof ln_ckpt, "learner.checkpoint_dir=%s/ckpt", tmp);
    snprintf(ro_listen, sizeof ro_listen, "rollout.listen=%s", ro);
    snprintf(ac_listen, sizeof ac_listen, "actor.listen=%s", ac);
    const char *s_ms[] = {ms_listen, ms_data, NULL}, *s_ln[] = {ln_listen, ln_ckpt, NULL},
               *s_ro[] = {ro_listen, NULL}, *s_ac[] = {ac_listen, NULL};
    pids[0] = start_in(0, "modelserver", TWIG_BIN_DIR "/modelserver/twig-modelserver", s_ms);
    pids[1] = start_in(0, "learner", TWIG_BIN_DIR "/learner/twig-learner", s_ln);
    pids[2] = start_in(1, "rollout", TWIG_BIN_DIR "/modelserver/twig-rollout", s_ro);
    pids[3] = start_in(2, "actor", TWIG_BIN_DIR "/actor/twig-actor", s_ac);

    /* the monitor on the host, across the bridge */
    char out_dir[PROCFIX_DIR_LEN + 16], mon_log[PROCFIX_DIR_LEN + 32];
    snprintf(out_dir, sizeof out_dir, "%s/watch", tmp);
    snprintf(mon_log, sizeof mon_log, "%s/monitor.out", tmp);
    const char *mon[] = {TWIG_BIN_DIR "/deploy/twig", "monitor", ln, ms, "--out", out_dir,
                         "--final-eval-timeout-ms", "120000", NULL};
    pid_t mp = procfix_spawn(mon, mon_log);

    /* mid-run: each process's connections go to the other hosts, never to 127.0.0.1 */
    char peers[4096];
    for (int64_t t0 = procfix_now_ms(); procfix_now_ms() - t0 < 60000;) {
        peers_of(pids[3], peers, sizeof peers);
        if (strstr(peers, host_ip[0])) {
            break;
        }
        procfix_pause_ms(200);
    }
    cr_expect(strstr(peers, host_ip[0]) != NULL, "actor's peers: %s", peers);
    peers_of(pids[2], peers, sizeof peers);
    cr_expect(strstr(peers, host_ip[0]) != NULL, "rollout worker's peers: %s", peers);
    for (int i = 0; i < 4; i++) {
        peers_of(pids[i], peers, sizeof peers);
        cr_expect(strstr(peers, "127.0.0.1") == NULL, "process %d talks to 127.0.0.1: %s", i,
                  peers);
    }

    int code = procfix_exit_code(mp, 500000);
    FILE *mf = fopen(mon_log, "r");
    static char text[1 << 16];
    size_t got = mf ? fread(text, 1, sizeof text - 1, mf) : 0;
    text[got] = '\0';
    if (mf) {
        fclose(mf);
    }
    cr_assert_eq(code, 0, "twig monitor exited %d:\n%s", code, text);
    /* the final evaluation, from metrics.csv's last row */
    snprintf(path, sizeof path, "%s/metrics.csv", out_dir);
    f = fopen(path, "r");
    cr_assert_not_null(f);
    char line[1024], last[1024] = "";
    while (fgets(line, sizeof line, f)) {
        memcpy(last, line, sizeof last);
    }
    fclose(f);
    char *p = last;
    unsigned long long at = strtoull(p, &p, 10);
    strtod(p + 1, &p);
    double ret = strtod(p + 1, &p);
    cr_expect_eq(at, (unsigned long long)BUDGET, "last row: %s", last);
    cr_expect_geq(ret, PENDULUM_BAR, "final evaluation %.1f below the bar: %s", ret, last);
    /* the actor left by itself at its share; the servers stop on SIGTERM, cleanly */
    cr_expect_eq(procfix_exit_code(pids[3], 60000), 0, "actor");
    pids[3] = 0;
    for (int i = 2; i >= 0; i--) {
        kill(pids[i], SIGTERM);
        cr_expect_eq(procfix_exit_code(pids[i], 30000), 0, "process %d did not end cleanly", i);
        pids[i] = 0;
    }
}
