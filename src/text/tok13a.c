#include "text/tok13a.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "text/utf8.h"

void tok13a_buf_free(tok13a_buf *b) {
    free(b->s);
    free(b->work);
    memset(b, 0, sizeof *b);
}

static void reserve(char **p, size_t *cap, size_t need) {
    if (need <= *cap) return;
    size_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    *p = xrealloc(*p, c, "tokenizer buffer");
    *cap = c;
}

/* Python str.replace(pat, rep) of in[0..n) into *out; returns the new length. */
static size_t replace_all(const char *in, size_t n, const char *pat, const char *rep, char **out,
                          size_t *cap) {
    size_t lp = strlen(pat), lr = strlen(rep);
    reserve(out, cap, n + 1); /* every replacement here shrinks or keeps the length */
    size_t len = 0, i = 0;
    while (i < n) {
        const char *hit = memmem(in + i, n - i, pat, lp);
        size_t upto = hit ? (size_t)(hit - in) : n;
        memcpy(*out + len, in + i, upto - i);
        len += upto - i;
        if (!hit) break;
        memcpy(*out + len, rep, lr);
        len += lr;
        i = upto + lp;
    }
    return len;
}

/* Swap the two buffers of b so the last pass's output becomes the next input. */
static void swap(tok13a_buf *b) {
    char *p = b->s;
    size_t c = b->cap;
    b->s = b->work, b->cap = b->work_cap;
    b->work = p, b->work_cap = c;
}

/* Rules 1-3: the str.replace passes and the added spaces; result in b->s. */
static size_t normalize(const char *s, size_t n, tok13a_buf *b) {
    static const char *const pass[][2] = {
        {"<skipped>", ""}, {"-\n", ""}, {"\n", " "}, /* language-independent part */
        {"&quot;", "\""}, {"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"},
    };
    reserve(&b->s, &b->cap, n + 3);
    memcpy(b->s + 1, s, n);
    size_t len = n;
    for (size_t k = 0; k < sizeof pass / sizeof pass[0]; k++) {
        if (k == 3 && !memchr(b->s + 1, '&', len)) break;
        if (!memmem(b->s + 1, len, pass[k][0], strlen(pass[k][0]))) continue;
        reserve(&b->work, &b->work_cap, len + 3);
        len = replace_all(b->s + 1, len, pass[k][0], pass[k][1], &b->work, &b->work_cap);
        reserve(&b->s, &b->cap, len + 3);
        memcpy(b->s + 1, b->work, len);
    }
    b->s[0] = ' ';
    b->s[len + 1] = ' ';
    return len + 2;
}

/* Rule 4's character class: {-~ [-` space-& (-+ :-@ / */
static bool is_rule4(unsigned char c) {
    return (c >= '{' && c <= '~') || (c >= '[' && c <= '`') || (c >= ' ' && c <= '&') ||
           (c >= '(' && c <= '+') || (c >= ':' && c <= '@') || c == '/';
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_pc(char c) { return c == '.' || c == ','; }

/* One re.sub pass from b->s[0..n) into b->work; rule is 4, 5, 6 or 7. */
static size_t rewrite(tok13a_buf *b, size_t n, int rule) {
    reserve(&b->work, &b->work_cap, 3 * n + 1);
    const char *in = b->s;
    char *o = b->work;
    size_t len = 0, i = 0;
    while (i < n) {
        char c = in[i];
        bool two = i + 1 < n;
        if (rule == 4 && is_rule4((unsigned char)c)) {
            o[len++] = ' ', o[len++] = c, o[len++] = ' ';
            i++;
        } else if (rule == 5 && two && !is_digit(c) && is_pc(in[i + 1])) {
            o[len++] = c, o[len++] = ' ', o[len++] = in[i + 1], o[len++] = ' ';
            i += 2;
        } else if (rule == 6 && two && is_pc(c) && !is_digit(in[i + 1])) {
            o[len++] = ' ', o[len++] = c, o[len++] = ' ', o[len++] = in[i + 1];
            i += 2;
        } else if (rule == 7 && two && is_digit(c) && in[i + 1] == '-') {
            o[len++] = c, o[len++] = ' ', o[len++] = '-', o[len++] = ' ';
            i += 2;
        } else {
            o[len++] = c;
            i++;
        }
    }
    swap(b);
    return len;
}

/* Split s[0..n) on Python whitespace and join with single spaces into *out. */
static size_t split_join(const char *s, size_t n, char **out, size_t *cap) {
    reserve(out, cap, n + 1);
    size_t len = 0, i = 0;
    while (i < n) {
        size_t k = utf8_space_len(s + i, n - i);
        if (k) {
            i += k;
            continue;
        }
        if (len) (*out)[len++] = ' ';
        while (i < n && !utf8_space_len(s + i, n - i)) (*out)[len++] = s[i++];
    }
    (*out)[len] = '\0';
    return len;
}

size_t tok13a_tokenize(const char *s, size_t n, tok13a_buf *out) {
    size_t len = normalize(s, n, out);
    for (int rule = 4; rule <= 7; rule++) len = rewrite(out, len, rule);
    out->len = split_join(out->s, len, &out->work, &out->work_cap);
    swap(out);
    return out->len;
}

size_t tok13a_none(const char *s, size_t n, tok13a_buf *out) {
    out->len = split_join(s, n, &out->s, &out->cap);
    return out->len;
}

static size_t split_with(const char *s, size_t n, tok13a_span **spans, size_t *cap, bool ascii) {
    size_t count = 0, i = 0;
    while (i < n) {
        size_t k = ascii ? ((s[i] >= '\t' && s[i] <= '\r') || s[i] == ' ') : utf8_space_len(s + i, n - i);
        if (k) {
            i += k;
            continue;
        }
        size_t start = i;
        while (i < n) {
            k = ascii ? ((s[i] >= '\t' && s[i] <= '\r') || s[i] == ' ') : utf8_space_len(s + i, n - i);
            if (k) break;
            i++;
        }
        if (count == *cap) {
            *cap = *cap ? 2 * *cap : 64;
            *spans = xrealloc(*spans, *cap * sizeof **spans, "token list");
        }
        (*spans)[count].s = s + start;
        (*spans)[count].len = i - start;
        count++;
    }
    return count;
}

size_t tok13a_split(const char *s, size_t n, tok13a_span **spans, size_t *cap) {
    return split_with(s, n, spans, cap, false);
}

size_t tok13a_split_ascii(const char *s, size_t n, tok13a_span **spans, size_t *cap) {
    return split_with(s, n, spans, cap, true);
}
