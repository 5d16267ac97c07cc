/* sacrebleu's "13a" tokenizer (mteval-v13a.pl), byte for byte, and the "none"
 * tokenizer, plus the whitespace splits BLEU and chrF count n-grams over.
 *
 * 13a, in order (sacrebleu tokenizer_13a.py + tokenizer_re.py):
 *   1. delete "<skipped>", delete "-\n", "\n" -> " " (each a full str.replace pass);
 *   2. "&quot;" -> '"', "&amp;" -> '&', "&lt;" -> '<', "&gt;" -> '>' (in that order,
 *      so "&amp;lt;" ends up as "<");
 *   3. one space added at each end;
 *   4. spaces around each of  { | } ~ [ \ ] ^ _ ` space ! " # $ % & ( ) * + : ; < = > ? @ /
 *   5. ([^0-9])([.,])  -> "\1 \2 "
 *   6. ([.,])([^0-9])  -> " \1 \2"
 *   7. ([0-9])(-)      -> "\1 \2 "
 *   8. split on Python whitespace (utf8_is_space) and join with single spaces.
 * Rules 5-7 are Python re.sub passes: left to right, matches never overlap. The
 * patterns are ASCII, so running them on UTF-8 bytes gives Python's result.
 *
 * Invalid UTF-8 is defined behaviour, not an error: invalid bytes are kept as
 * they are and never split on (only the 29 whitespace code points split), so the
 * output is the input's bytes re-spaced. sacrebleu itself cannot read such
 * input (UnicodeDecodeError); callers that want its behaviour reject it first
 * with utf8_validate(). */
#ifndef MOE_TEXT_TOK13A_H
#define MOE_TEXT_TOK13A_H

#include <stddef.h>

/* Output of the tokenizers; zero-initialize, reuse across calls, free once. */
typedef struct {
    char *s;  /* the tokenized text, NUL-terminated */
    size_t len;
    size_t cap;
    char *work; /* scratch for the rewrite passes */
    size_t work_cap;
} tok13a_buf;

void tok13a_buf_free(tok13a_buf *b);

/* 13a-tokenize s[0..n) into out->s: tokens joined by one ASCII space, no space at
 * either end (empty for an empty or all-whitespace line). Returns out->len.
 * s must not point into out's buffers. */
size_t tok13a_tokenize(const char *s, size_t n, tok13a_buf *out);

/* The "none" tokenizer: sacrebleu leaves the text alone and str.split()s it when
 * counting n-grams; this gives those tokens joined by single spaces (s must not
 * point into out's buffers). */
size_t tok13a_none(const char *s, size_t n, tok13a_buf *out);

/* A token: a span of the text it was split from. */
typedef struct {
    const char *s;
    size_t len;
} tok13a_span;

/* Python's str.split(): tokens of s[0..n) between runs of the 29 whitespace code
 * points. Spans go to *spans (grown with xrealloc, *cap its capacity in spans).
 * Returns the number of tokens. */
size_t tok13a_split(const char *s, size_t n, tok13a_span **spans, size_t *cap);

/* Perl's split(' ', $line) on bytes, as multi-bleu.perl does: only ASCII
 * whitespace (\t \n \v \f \r and space) separates tokens. */
size_t tok13a_split_ascii(const char *s, size_t n, tok13a_span **spans, size_t *cap);

#endif
