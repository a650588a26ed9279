/* video_pipe.h - a video file written by ffmpeg from raw RGB24 frames piped to it.
 *
 *     video_pipe v = {0};
 *     if (video_pipe_open(&v, "out.mp4", 640, 480, 25) < 0) { ... err_msg() ... }
 *     video_pipe_write(&v, rgb);           // width * height * 3 bytes, top row first
 *     rc = video_pipe_close(&v);           // waits for ffmpeg; the file appears only now
 *
 * ffmpeg (found on PATH) runs as `ffmpeg -f rawvideo -pix_fmt rgb24 -s WxH -r F -i -
 * -pix_fmt yuv420p TMP`, TMP a file beside the output with the output's extension (which
 * picks the container); close renames TMP to the output if ffmpeg exits 0, and every failure
 * (ffmpeg missing, a write refused, a non-zero exit) removes TMP: no partial file is left.
 * ffmpeg's own messages (at -loglevel error) go to our stderr. SIGPIPE is ignored while a
 * pipe is open, so a dead ffmpeg is a write error, not a dead twig. */
#ifndef TWIG_LAUNCHER_VIDEO_PIPE_H
#define TWIG_LAUNCHER_VIDEO_PIPE_H

#include <signal.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct video_pipe {
    pid_t pid;                  /* ffmpeg, 0 when not running */
    int fd;                     /* write end of its stdin, open while pid > 0 */
    size_t frame_bytes;         /* width * height * 3 */
    long frames;                /* written so far */
    const char *path;           /* the output, borrowed */
    char tmp[4096];             /* where ffmpeg writes until close */
    struct sigaction old_pipe;  /* SIGPIPE's disposition before open */
} video_pipe;

/* start ffmpeg writing width x height frames at fps to path (borrowed until close). 0, or
 * -ENOENT naming ffmpeg if it is not on PATH, -errno naming the file if it cannot be written,
 * -EINVAL for an odd or non-positive size (yuv420p needs even sizes). Nothing is left behind
 * on failure */
int video_pipe_open(video_pipe *v, const char *path, int width, int height, int fps);

/* one frame; 0 or a negative code. If ffmpeg has gone, it is waited for, its file removed
 * and its exit status named in err_msg (as close does) */
int video_pipe_write(video_pipe *v, const unsigned char *rgb);

/* end the stream, wait for ffmpeg and move the file into place. 0, or a negative code with
 * ffmpeg's exit status in err_msg (the temporary file is removed) */
int video_pipe_close(video_pipe *v);

/* stop ffmpeg and remove the temporary file; safe after close and on a zeroed v */
void video_pipe_abort(video_pipe *v);

#endif
