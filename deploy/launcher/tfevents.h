/* tfevents.h - TensorBoard event files (scalars only).
 *
 * The file is a sequence of TFRecord frames: uint64 length (little-endian), uint32 masked
 * CRC-32C of those 8 bytes, the Event protobuf, uint32 masked CRC-32C of it. The first event
 * carries file_version "brain.Event:2". `tensorboard --logdir runs` finds files named
 * events.out.tfevents.<unix time>.<host>.
 *
 *     tfevents_t tf = {0};
 *     tfevents_open(&tf, run_dir);                          // creates the file
 *     tfevents_write_scalar(&tf, "eval/return", step, wall, -180.5f);
 *     tfevents_close(&tf);
 */
#ifndef TWIG_TFEVENTS_H
#define TWIG_TFEVENTS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct tfevents {
    FILE *f;              /* owned */
    char path[512];
} tfevents_t;

/* create dir/events.out.tfevents.<time>.<host>; returns 0 or -errno (err_msg has the path) */
int tfevents_open(tfevents_t *t, const char *dir);
/* append one scalar and flush; the value is always written, 0 included; returns 0 or -errno */
int tfevents_write_scalar(tfevents_t *t, const char *tag, int64_t step, double wall_time,
                          float value);
void tfevents_close(tfevents_t *t);

/* the wall time of an event: seconds since the epoch with sub-second precision, as
 * TensorFlow writes it (a whole-second time(NULL) stacks a second's points on one x) */
double tfevents_wall_now(void);

/* frame one record into out (len + 16 bytes); exposed for tests */
void tfevents_frame(uint8_t *out, const uint8_t *data, size_t len);

/* read the next record of a file into buf (grown as needed); returns its length, 0 at a
 * clean end, or TWIG_ECORRUPT when a length or CRC does not match */
long tfevents_read_record(FILE *f, uint8_t **buf, size_t *cap);

#endif
