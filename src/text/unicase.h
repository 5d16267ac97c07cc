/* Unicode lowercasing equal to Python's str.lower() (what sacrebleu's -lc uses).
 *
 * The tables are generated from CPython's unicodedata by tests/tools/gen_unicase.py
 * (UNICASE_UNICODE_VERSION says which Unicode). Python's str.lower() is the
 * simple per-code-point mapping except in two places, both handled here:
 *   - U+0130 (LATIN CAPITAL LETTER I WITH DOT ABOVE) becomes two code points,
 *     U+0069 U+0307, as in SpecialCasing.txt;
 *   - U+03A3 (GREEK CAPITAL SIGMA) becomes U+03C2 (final sigma) when it ends a
 *     word: preceded by a cased letter and not followed by one, skipping
 *     case-ignorable code points both ways (CPython's handle_capital_sigma),
 *     otherwise U+03C3. The context is the whole string given.
 * Raw bytes of invalid UTF-8 (see utf8.h) are copied unchanged. */
#ifndef MOE_TEXT_UNICASE_H
#define MOE_TEXT_UNICASE_H

#include <stddef.h>
#include <stdint.h>

/* The Unicode version the tables were made from, e.g. "14.0.0". */
const char *unicase_unicode_version(void);

/* Lowercase of one code point without context (U+03A3 -> U+03C3): writes 1..3
 * code points to out and returns how many. */
int unicase_lower_cp(uint32_t cp, uint32_t out[3]);

/* Python's s.lower() of the UTF-8 string s[0..n): the result goes to *buf (grown
 * with xrealloc as needed, *cap its size), NUL-terminated; returns its length.
 * *buf may be NULL with *cap 0 at first. */
size_t unicase_lower(const char *s, size_t n, char **buf, size_t *cap);

/* ASCII-only lowercasing (A-Z), what Perl's lc does on bytes in multi-bleu.perl. */
size_t unicase_lower_ascii(const char *s, size_t n, char **buf, size_t *cap);

#endif
