/* deploy/k8s, validated offline (no cluster runs in the tests):
 * - deploy/k8s/validate.py, the strict validator over python3-kubernetes' Kubernetes 1.22
 *   models, accepts the tree and refuses copies of it with one edit each: a misspelled
 *   field, wrong types (string for int, bool for int, number for string, map for list), a
 *   bad Quantity, a bad int-or-string, a missing required field, an unknown kind, and a
 *   kustomization naming a missing file, missing a file, or using a key it cannot render,
 *   and what the API server's own checks refuse (a key twice, a selector that does not
 *   select its template, a port name longer than 15);
 *   it accepts the edits the API accepts (a number as Quantity, a numeric targetPort, a
 *   percentage maxUnavailable);
 * - tests/deploy/k8s_check.py accepts the tree, whose every container's command the real
 *   programs accept (--print-config), and refuses copies whose ports, probes, addresses,
 *   process counts or volumes disagree with the config those programs print, or whose run
 *   file is not configs/pendulum.yaml's task. */
#include "tests/procfix.h"

#include <dirent.h>

#define K8S_DIR TWIG_SRC_DIR "/deploy/k8s"
#define VALIDATE TWIG_SRC_DIR "/deploy/k8s/validate.py"
#define CHECK TWIG_SRC_DIR "/tests/deploy/k8s_check.py"
#define OUT_MAX (1 << 16)
#define FILE_MAX (1 << 16)

/* run `/usr/bin/python3 SCRIPT ARGS 2>&1`; its output into out. returns the exit status */
static int run_py(char *out, size_t n, const char *script, const char *args)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 %s %s 2>&1", script,
             args);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "popen %s", cmd);
    size_t len = fread(out, 1, n - 1, p);
    out[len] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static size_t read_file(char *buf, size_t n, const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "open %s: %s", path, strerror(errno));
    size_t len = fread(buf, 1, n - 1, f);
    cr_assert(feof(f), "%s is larger than %zu bytes", path, n - 1);
    fclose(f);
    buf[len] = '\0';
    return len;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "create %s: %s", path, strerror(errno));
    cr_assert_eq(fwrite(text, 1, strlen(text), f), strlen(text));
    cr_assert_eq(fclose(f), 0);
}

/* one edit of a copy of deploy/k8s: in file, the first `from` becomes `to` (to NULL: the
 * file is left out of the copy) */
typedef struct edit {
    const char *file;
    const char *from;
    const char *to;
} edit_t;

/* copy deploy/k8s into the fresh temp dir dir, applying e (may be NULL) */
static void copy_tree(char *dir, size_t n, const edit_t *e)
{
    procfix_tmpdir(dir, n);
    DIR *d = opendir(K8S_DIR);
    cr_assert_not_null(d, "opendir %s", K8S_DIR);
    static char buf[FILE_MAX], edited[FILE_MAX];
    bool applied = e == NULL;
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        size_t nl = strlen(ent->d_name);
        if (nl < 5 || strcmp(ent->d_name + nl - 5, ".yaml") != 0) {
            continue;
        }
        char src[512], dst[512];
        snprintf(src, sizeof src, "%s/%s", K8S_DIR, ent->d_name);
        snprintf(dst, sizeof dst, "%s/%s", dir, ent->d_name);
        read_file(buf, sizeof buf, src);
        if (e && strcmp(e->file, ent->d_name) == 0) {
            applied = true;
            if (e->to == NULL) {
                continue;
            }
            char *at = strstr(buf, e->from);
            cr_assert_not_null(at, "%s has no '%s' to edit", ent->d_name, e->from);
            size_t pre = (size_t)(at - buf);
            size_t need = strlen(buf) - strlen(e->from) + strlen(e->to);
            cr_assert_lt(need, sizeof edited);
            memcpy(edited, buf, pre);
            snprintf(edited + pre, sizeof edited - pre, "%s%s", e->to, at + strlen(e->from));
            write_file(dst, edited);
        } else {
            write_file(dst, buf);
        }
    }
    closedir(d);
    if (e && !applied && e->to) {
        /* a new file */
        char dst[512];
        snprintf(dst, sizeof dst, "%s/%s", dir, e->file);
        write_file(dst, e->to);
        applied = true;
    }
    cr_assert(applied, "no %s in %s", e ? e->file : "", K8S_DIR);
}

/* run script on a copy of deploy/k8s with edit e; its exit status, output in out */
static int run_on_edit(char *out, size_t n, const char *script, const char *extra, const edit_t *e)
{
    char dir[PROCFIX_DIR_LEN], args[512];
    copy_tree(dir, sizeof dir, e);
    snprintf(args, sizeof args, "%s %s", extra, dir);
    int rc = run_py(out, n, script, args);
    procfix_tmpdir_done(dir);
    return rc;
}

typedef struct refusal {
    edit_t e;
    const char *says; /* what the output must contain */
} refusal_t;

static void expect_refusals(const char *script, const char *extra, const refusal_t *cases,
                            int n_cases)
{
    static char out[OUT_MAX];
    for (int i = 0; i < n_cases; i++) {
        const refusal_t *c = &cases[i];
        int rc = run_on_edit(out, sizeof out, script, extra, &c->e);
        cr_expect_eq(rc, 1, "%s: '%s' -> '%s' should be refused (exit 1), got %d:\n%s", c->e.file,
                     c->e.from, c->e.to ? c->e.to : "(removed)", rc, out);
        cr_expect_not_null(strstr(out, c->says), "%s: '%s' -> '%s': expected '%s' in:\n%s",
                           c->e.file, c->e.from, c->e.to ? c->e.to : "(removed)", c->says, out);
        cr_expect_null(strstr(out, "Traceback"), "%s: '%s': a crash, not a refusal:\n%s", c->e.file,
                       c->e.from, out);
    }
}

Test(k8s, manifests_valid_against_the_1_22_api, .timeout = 60)
{
    static char out[OUT_MAX];
    int rc = run_py(out, sizeof out, VALIDATE, K8S_DIR);
    cr_assert_eq(rc, 0, "validate.py refused deploy/k8s:\n%s", out);
    cr_expect_not_null(strstr(out, "9 documents valid against the Kubernetes 1.22 API"), "%s", out);
    cr_expect_not_null(strstr(out, "ConfigMap 1, Deployment 1, Job 1, Service 4, StatefulSet 2"),
                       "%s", out);
}

Test(k8s, render_sets_the_one_image_everywhere, .timeout = 60)
{
    static char out[OUT_MAX];
    char args[512];
    snprintf(args, sizeof args, "--render %s", K8S_DIR);
    cr_assert_eq(run_py(out, sizeof out, VALIDATE, args), 0, "%s", out);
    int n_image = 0, n_bare = 0;
    for (const char *s = out; (s = strstr(s, "image: ")) != NULL; s += 7) {
        n_image++;
        n_bare += strncmp(s + 7, "twig:latest\n", 12) != 0;
    }
    cr_expect_eq(n_image, 4, "4 containers (modelserver, learner, rollout, actor):\n%s", out);
    cr_expect_eq(n_bare, 0, "every image is twig:latest after rendering:\n%s", out);
    cr_expect_eq(strstr(out, "kind: Kustomization") == NULL, true);
}

Test(k8s, misspelled_field_refused, .timeout = 120)
{
    const refusal_t cases[] = {
        {{"modelserver.yaml", "containerPort: 7101", "contianerPort: 7101"},
         "spec.template.spec.containers[0].ports[0].contianerPort: unknown field "
         "'contianerPort' in V1ContainerPort"},
        {{"learner.yaml", "readinessProbe:", "readynessProbe:"},
         "unknown field 'readynessProbe' in V1Container"},
        {{"actor.yaml", "restartPolicy: OnFailure", "restartpolicy: OnFailure"},
         "unknown field 'restartpolicy' in V1PodSpec (did you mean 'restartPolicy'?)"},
        {{"rollout.yaml", "  replicas: 2", "  replica: 2"},
         "spec.replica: unknown field 'replica' in V1DeploymentSpec"},
        /* the native gRPC probe came after 1.22 (alpha in 1.23): not in this schema */
        {{"modelserver.yaml",
          "exec:\n              command: [\"twig\", \"health\", \"127.0.0.1:7101\", \"--service\", "
          "\"liveness\",\n                        \"--tls-from\", \"/etc/twig/run.yaml\"]\n"
          "            periodSeconds: 10",
          "grpc:\n              port: 7101\n            periodSeconds: 10"},
         "livenessProbe.grpc: unknown field 'grpc' in V1Probe"},
    };
    expect_refusals(VALIDATE, "", cases, (int)(sizeof cases / sizeof cases[0]));
}

Test(k8s, wrong_types_refused, .timeout = 120)
{
    const refusal_t cases[] = {
        {{"modelserver.yaml", "periodSeconds: 10", "periodSeconds: \"10\""},
         "livenessProbe.periodSeconds: expected an int, got a string '10'"},
        {{"actor.yaml", "completions: 2", "completions: true"},
         "spec.completions: expected an int, got a bool True"},
        {{"rollout.yaml", "fieldPath: metadata.name", "fieldPath: 7"},
         "fieldRef.fieldPath: expected a string, got an int 7"},
        {{"learner.yaml", "accessModes: [\"ReadWriteOnce\"]", "accessModes: ReadWriteOnce"},
         "accessModes: expected a list, got a string"},
        {{"learner.yaml", "args: [\"--config\", \"/etc/twig/run.yaml\"]", "args: {config: x}"},
         "containers[0].args: expected a list, got a map"},
        {{"modelserver.yaml", "memory: 4Gi", "memory: 4 Gi"}, "'4 Gi' is not a Quantity"},
        {{"learner.yaml", "storage: 10Gi", "storage: 10GB"}, "'10GB' is not a Quantity"},
        {{"rollout.yaml", "memory: 512Mi", "memory: [512Mi]"},
         "a Quantity is a string or a number, not a list"},
        {{"actor.yaml", "targetPort: grpc", "targetPort: true"}, "int-or-string, not a bool"},
        {{"actor.yaml", "targetPort: grpc", "targetPort: 70000"}, "port 70000 is outside"},
        {{"actor.yaml", "targetPort: grpc", "targetPort: Grpc_Port"},
         "'Grpc_Port' is not a port name"},
        {{"rollout.yaml", "maxSurge: 0", "maxSurge: [0]"}, "maxSurge: int-or-string, not a list"},
    };
    expect_refusals(VALIDATE, "", cases, (int)(sizeof cases / sizeof cases[0]));
}

Test(k8s, missing_required_and_unknown_kind_refused, .timeout = 120)
{
    const refusal_t cases[] = {
        {{"modelserver.yaml", "serviceName: twig-modelserver", "podManagementPolicy: Parallel"},
         "spec.serviceName: required field missing in V1StatefulSetSpec"},
        {{"actor.yaml", "- name: actor\n", "- tty: false\n"},
         "containers[0].name: required field missing in V1Container"},
        {{"rollout.yaml", "apiVersion: apps/v1", "apiVersion: apps/v1beta1"},
         "apiVersion: 'apps/v1beta1' is not one of"},
        {{"actor.yaml", "kind: Job", "kind: Jobs"}, "kind: 'Jobs' is not a kind of batch/v1"},
        {{"learner.yaml", "  name: twig-learner\n  labels", "  name: Twig_Learner\n  labels"},
         "metadata.name: 'Twig_Learner' is not a DNS-1123 name"},
    };
    expect_refusals(VALIDATE, "", cases, (int)(sizeof cases / sizeof cases[0]));
}

Test(k8s, what_the_api_server_refuses_is_refused, .timeout = 120)
{
    const refusal_t cases[] = {
        {{"modelserver.yaml", "      terminationGracePeriodSeconds: 30\n",
          "      terminationGracePeriodSeconds: 30\n      terminationGracePeriodSeconds: 5\n"},
         "duplicate key 'terminationGracePeriodSeconds'"},
        {{"rollout.yaml",
          "        prometheus.io/path: /metrics\n      labels:\n        app.kubernetes.io/name: twig-rollout",
          "        prometheus.io/path: /metrics\n      labels:\n        app.kubernetes.io/name: twig-rollouts"},
         "spec.selector.matchLabels.app.kubernetes.io/name: 'twig-rollout' does not match the "
         "template's label 'twig-rollouts'"},
        {{"actor.yaml", "            - name: grpc\n",
          "            - name: grpc-health-and-stats\n"},
         "'grpc-health-and-stats' is not a port name"},
    };
    expect_refusals(VALIDATE, "", cases, (int)(sizeof cases / sizeof cases[0]));
}

Test(k8s, malformed_documents_refused_not_crashed, .timeout = 120)
{
    const refusal_t cases[] = {
        {{"modelserver.yaml",
          "  template:\n    metadata:", "  template: 7\n  tmpl:\n    metadata:"},
         "spec.template: expected a map (V1PodTemplateSpec), got an int"},
        {{"learner.yaml",
          "  template:\n    metadata:", "  template:\n    metadata: [1, 2]\n    meta:"},
         "spec.template.metadata: expected a map (V1ObjectMeta), got a list"},
        {{"rollout.yaml", "            sizeLimit: 64Mi\n",
          "            sizeLimit: 64Mi\n---\njust a string\n"},
         "rollout.yaml: doc 3: (document): a manifest is a map, not a string"},
        {{"actor.yaml", "  completions: 2", "  completions: [2"},
         "actor.yaml: (document): not YAML"},
    };
    expect_refusals(VALIDATE, "", cases, (int)(sizeof cases / sizeof cases[0]));
}

Test(k8s, kustomization_files_checked, .timeout = 120)
{
    const refusal_t cases[] = {
        {{"kustomization.yaml", "  - actor.yaml\n", "  - actors.yaml\n"},
         "resources[4]: 'actors.yaml' is not a file beside kustomization.yaml"},
        {{"actor.yaml", "", NULL}, "resources[4]: 'actor.yaml' is not a file"},
        {{"extra.yaml", "", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n"},
         "extra.yaml is in"},
        {{"kustomization.yaml", "images:", "patchesStrategicMerge: [x.yaml]\nimages:"},
         "field 'patchesStrategicMerge' is not one validate.py renders"},
        {{"kustomization.yaml", "newTag: latest", "newTag: 3"}, "images[0].newTag"},
    };
    expect_refusals(VALIDATE, "", cases, (int)(sizeof cases / sizeof cases[0]));
}

Test(k8s, what_the_api_accepts_is_accepted, .timeout = 120)
{
    /* a number as Quantity, a numeric targetPort, a percentage, a decimal-exponent and a
     * milli Quantity: all valid in 1.22 */
    const edit_t cases[] = {
        {"modelserver.yaml", "cpu: \"1\"", "cpu: 1"},
        {"modelserver.yaml", "targetPort: grpc", "targetPort: 7101"},
        {"rollout.yaml", "maxUnavailable: 1", "maxUnavailable: \"50%\""},
        {"learner.yaml", "memory: 1Gi", "memory: 1e9"},
        {"actor.yaml", "cpu: 250m", "cpu: 0.25"},
    };
    static char out[OUT_MAX];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = run_on_edit(out, sizeof out, VALIDATE, "", &cases[i]);
        cr_expect_eq(rc, 0, "%s: '%s' -> '%s' is valid, got %d:\n%s", cases[i].file, cases[i].from,
                     cases[i].to, rc, out);
    }
}

Test(k8s, ports_probes_and_commands_agree_with_the_config_table, .timeout = 120)
{
    static char out[OUT_MAX];
    char args[1024];
    snprintf(args, sizeof args, "%s %s", TWIG_BIN_DIR, K8S_DIR);
    int rc = run_py(out, sizeof out, CHECK, args);
    cr_assert_eq(rc, 0, "k8s_check.py refused deploy/k8s:\n%s", out);
    cr_expect_not_null(strstr(out, "4 roles, 4 services agree with the config table"), "%s", out);
}

Test(k8s, disagreements_with_the_config_table_refused, .timeout = 300)
{
    const refusal_t cases[] = {
        {{"learner.yaml", "containerPort: 7102", "containerPort: 7103"},
         "containerPort grpc 7103, but learner.listen is 0.0.0.0:7102"},
        {{"run-config.yaml", "listen: \"0.0.0.0:7101\"", "listen: \"0.0.0.0:7105\""},
         "containerPort grpc 7101, but modelserver.listen is 0.0.0.0:7105"},
        {{"actor.yaml", "\"127.0.0.1:7110\", \"--service\", \"readiness\"",
          "\"127.0.0.1:7111\", \"--service\", \"readiness\""},
         "readinessProbe runs ['twig', 'health', '127.0.0.1:7111'"},
        {{"rollout.yaml", "\"liveness\",\n                        \"--tls-from\", \"/etc/twig/run.yaml\"]\n"
                          "            periodSeconds: 10",
          "\"readiness\",\n                        \"--tls-from\", \"/etc/twig/run.yaml\"]\n"
          "            periodSeconds: 10"},
         "livenessProbe runs"},
        {{"actor.yaml", "\"readiness\",\n                        \"--tls-from\", \"/etc/twig/run.yaml\"]",
          "\"readiness\"]"},
         "readinessProbe runs ['twig', 'health', '127.0.0.1:7110', '--service', 'readiness']"},
        {{"run-config.yaml", "metrics_listen: \"0.0.0.0:9102\"", "metrics_listen: \"127.0.0.1:9102\""},
         "learner.metrics_listen '127.0.0.1:9102' does not serve /metrics on the pod's address"},
        {{"learner.yaml", "containerPort: 9102", "containerPort: 9103"},
         "containerPort metrics 9103, but learner.metrics_listen is 0.0.0.0:9102"},
        {{"rollout.yaml", "prometheus.io/port: \"9140\"", "prometheus.io/port: \"9141\""},
         "pod annotations prometheus.io/scrape 'true', prometheus.io/port '9141'"},
        {{"modelserver.yaml", "      port: 9101", "      port: 9100"},
         "port metrics 9100 -> targetPort 'metrics' (container port 9101), but "
         "modelserver.metrics_listen is 0.0.0.0:9101"},
        {{"modelserver.yaml", "      port: 7101", "      port: 7100"},
         "modelserver_addr is twig-modelserver:7101, but the Service is twig-modelserver:7100"},
        {{"run-config.yaml", "twig-learner:7102", "twig-learner:7109"},
         "learner_addr is twig-learner:7109, but the Service is twig-learner:7102"},
        {{"run-config.yaml", "n_rollout: 2", "n_rollout: 3"}, "n_rollout is 3 but replicas is 2"},
        {{"run-config.yaml", "real_steps: 6000", "real_steps: 7000"},
         "real_steps is 7000, but configs/pendulum.yaml has 6000"},
        {{"run-config.yaml", "model_hidden: 100", "model_hidden: 200"},
         "modelserver.model_hidden is 200, but configs/pendulum.yaml has 100"},
        {{"actor.yaml", "completions: 2", "completions: 1"},
         "n_actors is 2: expected a Job with completions and parallelism 2"},
        {{"run-config.yaml", "exit_when_done: true", "exit_when_done: false"},
         "actor.exit_when_done is not true"},
        {{"run-config.yaml", "data_dir: /var/lib/twig/modelserver/log",
          "data_dir: /var/lib/twig/log"},
         "modelserver.data_dir /var/lib/twig/log is not on a writable mount of a volume claim"},
        {{"rollout.yaml", "rollout.id=$(POD_NAME)", "rollout.idd=$(POD_NAME)"},
         "twig-rollout refuses its arguments (exit 2)"},
        {{"actor.yaml", "\"--set\", \"actor.id=$(POD_NAME)\"", "\"--set\", \"actor.index=0\""},
         "actor.id is '', not the pod's name"},
        {{"learner.yaml", "terminationGracePeriodSeconds: 60", "terminationGracePeriodSeconds: 2"},
         "terminationGracePeriodSeconds 2 is not above learner's grace 2000 ms"},
        {{"modelserver.yaml", "command: [\"twig-modelserver\"]", "command: [\"twig-modelserve\"]"},
         "command ['twig-modelserve'] is not one of"},
        {{"learner.yaml", "args: [\"--config\", \"/etc/twig/run.yaml\"]",
          "args: [\"--config\", \"/etc/run.yaml\"]"},
         "--config /etc/run.yaml is not the mounted twig-run ConfigMap"},
    };
    char extra[512];
    snprintf(extra, sizeof extra, "%s", TWIG_BIN_DIR);
    expect_refusals(CHECK, extra, cases, (int)(sizeof cases / sizeof cases[0]));
}

Test(k8s, unreadable_input_exits_2, .timeout = 60)
{
    static char out[OUT_MAX];
    char dir[PROCFIX_DIR_LEN], args[PROCFIX_DIR_LEN + 32];
    procfix_tmpdir(dir, sizeof dir);
    int rc = run_py(out, sizeof out, VALIDATE, dir);
    cr_expect_eq(rc, 2, "a directory without kustomization.yaml: exit 2, got %d:\n%s", rc, out);
    cr_expect_not_null(strstr(out, "no kustomization.yaml"), "%s", out);
    snprintf(args, sizeof args, "%s/none.yaml", dir);
    rc = run_py(out, sizeof out, VALIDATE, args);
    cr_expect_eq(rc, 2, "a missing file: exit 2, got %d:\n%s", rc, out);
    cr_expect_not_null(strstr(out, "none.yaml: no such file or directory"), "%s", out);
    rc = run_py(out, sizeof out, VALIDATE, "--strict " K8S_DIR);
    cr_expect_eq(rc, 2, "an unknown flag: exit 2, got %d:\n%s", rc, out);
    cr_expect_not_null(strstr(out, "usage: validate.py"), "%s", out);
    procfix_tmpdir_done(dir);
}
