/* portfile.h - tell a parent process which port a server bound.
 *
 * A server started on port 0 writes the port it got to a file given on its command line;
 * the writer goes through atomic_file_write (temporary file, fsync, rename), so a reader
 * polling the path sees either nothing or the whole number, never a partial write. Tests and
 * launchers read it instead of guessing a free port. */
#ifndef TWIG_PORTFILE_H
#define TWIG_PORTFILE_H

/* write "<port>\n" to path atomically; 0 or a negative code with err_msg() naming the file */
int portfile_write(const char *path, int port);

#endif
