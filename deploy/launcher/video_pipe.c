/* video_pipe.c - frames piped to ffmpeg (video_pipe.h) */
#include "deploy/launcher/video_pipe.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/base/err.h"

extern char **environ;

/* path's extension (".mp4"), or "" */
static const char *video_ext(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(path, '.');
    return dot != NULL && (slash == NULL || dot > slash + 1) ? dot : "";
}

int video_pipe_open(video_pipe *v, const char *path, int width, int height, int fps)
{
    *v = (video_pipe){.fd = -1, .path = path};
    if (width <= 0 || height <= 0 || width % 2 != 0 || height % 2 != 0 || fps <= 0) {
        return err_set(-EINVAL, "video %dx%d at %d fps: sizes must be even and positive",
                       width, height, fps);
    }
    int n = snprintf(v->tmp, sizeof v->tmp, "%s.tmp-%d%s", path, (int)getpid(),
                     video_ext(path));
    if (n < 0 || (size_t)n >= sizeof v->tmp) {
        return err_set(-ENAMETOOLONG, "video path %s is too long", path);
    }
    /* make the file ourselves first, so a bad path is named before any frame is rendered */
    int tfd = open(v->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (tfd < 0) {
        int e = errno;
        return err_set(-e, "cannot write %s: %s", path, strerror(e));
    }
    close(tfd);

    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) {
        int e = errno;
        unlink(v->tmp);
        return err_set(-e, "pipe: %s", strerror(e));
    }
    char size[32], rate[16];
    snprintf(size, sizeof size, "%dx%d", width, height);
    snprintf(rate, sizeof rate, "%d", fps);
    char *argv[] = {"ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", size, "-r", rate, "-i", "-",
                    "-pix_fmt", "yuv420p", v->tmp, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[0], STDIN_FILENO);   /* clears O_CLOEXEC */
    int rc = posix_spawnp(&v->pid, "ffmpeg", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[0]);
    if (rc != 0) {
        close(fds[1]);
        unlink(v->tmp);
        v->pid = 0;
        if (rc == ENOENT) {
            return err_set(-ENOENT, "ffmpeg is not on PATH (Debian package ffmpeg): cannot "
                                    "encode %s", path);
        }
        return err_set(-rc, "cannot start ffmpeg: %s", strerror(rc));
    }
    v->fd = fds[1];
    v->frame_bytes = (size_t)width * height * 3;
    struct sigaction ign = {.sa_handler = SIG_IGN};
    sigemptyset(&ign.sa_mask);
    sigaction(SIGPIPE, &ign, &v->old_pipe);
    return 0;
}

/* wait for ffmpeg; its exit status, or -1 if it did not exit normally */
static int video_wait(video_pipe *v)
{
    int st = 0;
    while (waitpid(v->pid, &st, 0) < 0 && errno == EINTR) {
    }
    v->pid = 0;
    sigaction(SIGPIPE, &v->old_pipe, NULL);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ffmpeg has ended, with status (video_wait's): remove its file and say how it ended */
static int video_ended(video_pipe *v, int status)
{
    unlink(v->tmp);
    v->tmp[0] = '\0';
    if (status < 0) {
        return err_set(TWIG_EINTERNAL, "ffmpeg was killed after %ld frames: %s is not written",
                       v->frames, v->path);
    }
    return err_set(TWIG_EINTERNAL, "ffmpeg exited with status %d after %ld frames: %s is not "
                                   "written", status, v->frames, v->path);
}

int video_pipe_write(video_pipe *v, const unsigned char *rgb)
{
    size_t done = 0;
    while (done < v->frame_bytes) {
        ssize_t w = write(v->fd, rgb + done, v->frame_bytes - done);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            int e = errno;
            if (e == EPIPE) {   /* ffmpeg is gone: its exit status says more than EPIPE */
                close(v->fd);
                v->fd = -1;
                return video_ended(v, video_wait(v));
            }
            return err_set(-e, "writing frame %ld to ffmpeg: %s", v->frames, strerror(e));
        }
        done += (size_t)w;
    }
    v->frames++;
    return 0;
}

int video_pipe_close(video_pipe *v)
{
    close(v->fd);
    v->fd = -1;
    int status = video_wait(v);
    if (status != 0) {
        return video_ended(v, status);
    }
    if (rename(v->tmp, v->path) < 0) {
        int e = errno;
        unlink(v->tmp);
        v->tmp[0] = '\0';
        return err_set(-e, "rename to %s: %s", v->path, strerror(e));
    }
    v->tmp[0] = '\0';
    return 0;
}

void video_pipe_abort(video_pipe *v)
{
    if (v->pid > 0) {   /* running: the pipe is open too */
        close(v->fd);
        v->fd = -1;
        kill(v->pid, SIGKILL);
        video_wait(v);
    }
    if (v->tmp[0] != '\0') {
        unlink(v->tmp);
        v->tmp[0] = '\0';
    }
}
