/* tfevents.c - TFRecord framing of Event protobufs for TensorBoard */
#include "deploy/launcher/tfevents.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/base/bytes.h"
#include "common/base/crc32c.h"
#include "common/base/err.h"
#include "common/base/mem.h"
#include "proto/tfevent.pb-c.h"

void tfevents_frame(uint8_t *out, const uint8_t *data, size_t len)
{
    le64_put(out, len);
    le32_put(out + 8, crc32c_masked(crc32c(out, 8)));
    memcpy(out + 12, data, len);
    le32_put(out + 12 + len, crc32c_masked(crc32c(data, len)));
}

static int write_event(tfevents_t *t, const Twig__Tfevent__Event *ev)
{
    size_t len = twig__tfevent__event__get_packed_size(ev);
    uint8_t *msg = xmalloc(len);
    uint8_t *rec = xmalloc(len + 16);
    twig__tfevent__event__pack(ev, msg);
    tfevents_frame(rec, msg, len);
    size_t w = fwrite(rec, 1, len + 16, t->f);
    free(msg);
    free(rec);
    if (w != len + 16 || fflush(t->f) != 0) {
        int e = errno ? errno : EIO;
        return err_set(-e, "%s: write failed: %s", t->path, strerror(e));
    }
    return 0;
}

int tfevents_open(tfevents_t *t, const char *dir)
{
    char host[64] = "localhost";
    gethostname(host, sizeof host - 1);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(t->path, sizeof t->path, "%s/events.out.tfevents.%lld.%s", dir,
             (long long)ts.tv_sec, host);
    t->f = fopen(t->path, "wb");
    if (!t->f) {
        int e = errno;
        return err_set(-e, "%s: %s", t->path, strerror(e));
    }
    Twig__Tfevent__Event ev = TWIG__TFEVENT__EVENT__INIT;
    ev.wall_time = (double)ts.tv_sec + ts.tv_nsec * 1e-9;
    ev.what_case = TWIG__TFEVENT__EVENT__WHAT_FILE_VERSION;
    ev.file_version = (char *)"brain.Event:2";
    int rc = write_event(t, &ev);
    if (rc < 0) {
        tfevents_close(t);
    }
    return rc;
}

int tfevents_write_scalar(tfevents_t *t, const char *tag, int64_t step, double wall_time,
                          float value)
{
    Twig__Tfevent__SummaryValue v = TWIG__TFEVENT__SUMMARY_VALUE__INIT;
    v.tag = (char *)tag;
    v.value_case = TWIG__TFEVENT__SUMMARY_VALUE__VALUE_SIMPLE_VALUE;   /* written even when 0 */
    v.simple_value = value;
    Twig__Tfevent__SummaryValue *vals[1] = {&v};
    Twig__Tfevent__Summary s = TWIG__TFEVENT__SUMMARY__INIT;
    s.n_value = 1;
    s.value = vals;
    Twig__Tfevent__Event ev = TWIG__TFEVENT__EVENT__INIT;
    ev.wall_time = wall_time;
    ev.step = step;
    ev.what_case = TWIG__TFEVENT__EVENT__WHAT_SUMMARY;
    ev.summary = &s;
    return write_event(t, &ev);
}

double tfevents_wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void tfevents_close(tfevents_t *t)
{
    if (t->f) {
        fclose(t->f);
        t->f = NULL;
    }
}

long tfevents_read_record(FILE *f, uint8_t **buf, size_t *cap)
{
    uint8_t head[12], tail[4];
    size_t got = fread(head, 1, sizeof head, f);
    if (got == 0) {
        return 0;
    }
    if (got != sizeof head) {
        return err_set(TWIG_ECORRUPT, "truncated record header (%zu bytes)", got);
    }
    if (le32_get(head + 8) != crc32c_masked(crc32c(head, 8))) {
        return err_set(TWIG_ECORRUPT, "length CRC mismatch");
    }
    uint64_t len = le64_get(head);
    if (len > (64u << 20)) {
        return err_set(TWIG_ECORRUPT, "record length %llu too large", (unsigned long long)len);
    }
    if (len > *cap) {
        *buf = xrealloc(*buf, len);
        *cap = len;
    }
    if (fread(*buf, 1, len, f) != len || fread(tail, 1, 4, f) != 4) {
        return err_set(TWIG_ECORRUPT, "truncated record body");
    }
    if (le32_get(tail) != crc32c_masked(crc32c(*buf, len))) {
        return err_set(TWIG_ECORRUPT, "data CRC mismatch");
    }
    return (long)len;
}
