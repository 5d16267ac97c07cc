/* UTF-8 helpers with Python's semantics where sacrebleu depends on them.
 *
 * Validation is strict, like Python's "utf-8" codec: no overlong forms, no
 * surrogates (U+D800..U+DFFF), nothing above U+10FFFF, no truncated sequences.
 * Decoding never fails: a byte that does not start a valid sequence decodes to
 * UTF8_RAW_BYTE(b), a value above U+10FFFF that stands for that one raw byte.
 * It differs from every real code point, is not whitespace, and encodes back to
 * the same byte, so text that is not UTF-8 passes through the metrics unchanged. */
#ifndef MOE_TEXT_UTF8_H
#define MOE_TEXT_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UTF8_MAX_CP 0x10FFFFu
#define UTF8_RAW_BASE 0x110000u
#define UTF8_RAW_BYTE(b) (UTF8_RAW_BASE + (uint32_t)(uint8_t)(b))
#define UTF8_IS_RAW(cp) ((cp) >= UTF8_RAW_BASE && (cp) <= UTF8_RAW_BASE + 0xFFu)

/* -1 if s[0..n) is valid UTF-8, else the byte offset of the first invalid sequence. */
ptrdiff_t utf8_validate(const char *s, size_t n);

/* Decode the code point at s (n > 0 bytes available) into *cp; returns the bytes
 * used (1..4). An invalid or truncated sequence uses 1 byte: *cp = UTF8_RAW_BYTE(s[0]).
 * Returns 0 only when n == 0. */
size_t utf8_decode(const char *s, size_t n, uint32_t *cp);

/* Encode cp into out (4 bytes room); returns the length (1..4). A raw-byte value
 * gives its byte back; a surrogate or a value above U+10FFFF gives 0. */
size_t utf8_encode(uint32_t cp, char out[4]);

/* The 29 code points Python's str.split() and str.isspace() treat as whitespace:
 * U+0009..000D, U+001C..001F, U+0020, U+0085, U+00A0, U+1680, U+2000..200A, U+2028,
 * U+2029, U+202F, U+205F, U+3000 (not U+200B, not U+FEFF). */
bool utf8_is_space(uint32_t cp);

/* Bytes of the Python-whitespace code point that starts s, or 0 if none does. */
size_t utf8_space_len(const char *s, size_t n);

/* Length of s[0..n) after Python's str.rstrip() (trailing Unicode whitespace removed). */
size_t utf8_rstrip_len(const char *s, size_t n);

/* Number of code points in s[0..n); each invalid byte counts as one. */
size_t utf8_count(const char *s, size_t n);

#endif
