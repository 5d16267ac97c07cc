/* Line reading over plain or gzip text, UTF-8 validation and word splitting.
 *
 * A TextReader returns one line at a time from a plain or gzip file (gzip is
 * recognised by its magic bytes 1f 8b, never by the name; concatenated gzip
 * members are read as one stream). Lines may be of any length (the buffer
 * grows) up to an optional maximum; "\r\n" and a last line without "\n" are
 * handled. Nothing here exits: every failure is a return code plus a one-line
 * message "FILE:LINE: ..." that the caller turns into a warning or FATAL.
 *
 * Failures while reading:
 *   TEXTIO_ERR_LONG  the line is longer than the maximum; it has been consumed,
 *                    the next call returns the following line (skip-with-warning).
 *   TEXTIO_ERR_IO    read error, corrupt or truncated gzip ("unexpected end of
 *                    file"), or the file shrank or was deleted while being read
 *                    (checked at end of file). The reader is dead afterwards:
 *                    every further call returns the same error. */
#ifndef MOE_DATA_TEXTIO_H
#define MOE_DATA_TEXTIO_H

#include <stddef.h>
#include <stdint.h>

enum {
    TEXTIO_OK = 0,
    TEXTIO_EOF = 1,
    TEXTIO_ERR_IO = -1,
    TEXTIO_ERR_LONG = -2,
    TEXTIO_ERR_UTF8 = -3
};

typedef struct TextReader TextReader;

/* Open path for reading. max_line: longest accepted line in bytes (without the
 * line ending); 0 = no limit. Returns TEXTIO_OK, or TEXTIO_ERR_IO with
 * "FILE: cannot open: reason" in err. */
int textio_open(TextReader **out, const char *path, size_t max_line, char *err, size_t errlen);

/* Next line: TEXTIO_OK with *line (NUL-terminated, line ending removed, owned
 * by the reader and writable until the next call) and *len; TEXTIO_EOF; or a
 * negative TEXTIO_ERR_* with the message in textio_error(r). */
int textio_next(TextReader *r, char **line, size_t *len);

/* Skip up to n lines without returning them (no length limit applies).
 * Returns the number skipped (< n only at end of file), or TEXTIO_ERR_IO. */
int64_t textio_skip(TextReader *r, int64_t n);

const char *textio_error(const TextReader *r);
const char *textio_path(const TextReader *r);
/* 1-based number of the line last returned (or failed); 0 before the first. */
int64_t textio_line(const TextReader *r);
int textio_is_gzip(const TextReader *r);
/* Bytes of buffers the reader holds (memory accounting). */
size_t textio_mem_bytes(const TextReader *r);
void textio_close(TextReader *r);

/* Offset of the first byte of the first invalid UTF-8 sequence in s[0..n)
 * (overlong forms, surrogates, code points above U+10FFFF and truncated
 * sequences are invalid), or -1 if s is valid UTF-8. */
int64_t textio_utf8_invalid(const char *s, size_t n);

/* TEXTIO_OK, or TEXTIO_ERR_UTF8 with "FILE:LINE: invalid UTF-8 at byte N"
 * (N 0-based within the line) in err, for the line r returned last. */
int textio_check_utf8(const TextReader *r, const char *line, size_t len, char *err, size_t errlen);

/* Words of a line, split on ASCII space and tab only (a UTF-8 no-break space
 * is part of a word). Pointers point into the split line. */
typedef struct {
    char **w;
    uint32_t *len;
    size_t n, cap;
} TextWords;

/* Split line[0..len) in place (line[len] must be NUL, as textio_next gives):
 * separators become NUL, so every word is a C string (a word may still hold
 * NUL bytes of the input: use len). Returns n. */
size_t textio_split(char *line, size_t len, TextWords *words);
void textio_words_free(TextWords *words);

#endif
