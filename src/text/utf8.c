#include "text/utf8.h"

/* Decode one strict sequence; returns its length or 0 if invalid/truncated. */
static size_t decode_strict(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2, v = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, v = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0; /* continuation byte, C0/C1 overlong lead, or F5..FF */
    }
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > UTF8_MAX_CP || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

ptrdiff_t utf8_validate(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        size_t k = decode_strict(u + i, n - i, &cp);
        if (!k) return (ptrdiff_t)i;
        i += k;
    }
    return -1;
}

size_t utf8_decode(const char *s, size_t n, uint32_t *cp) {
    if (n == 0) return 0;
    size_t k = decode_strict((const unsigned char *)s, n, cp);
    if (k) return k;
    *cp = UTF8_RAW_BYTE(s[0]);
    return 1;
}

size_t utf8_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    if (cp <= UTF8_MAX_CP) {
        out[0] = (char)(0xF0 | (cp >> 18));
        out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[3] = (char)(0x80 | (cp & 0x3F));
        return 4;
    }
    if (UTF8_IS_RAW(cp)) {
        out[0] = (char)(cp - UTF8_RAW_BASE);
        return 1;
    }
    return 0;
}

bool utf8_is_space(uint32_t cp) {
    if (cp <= 0x20) return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20);
    if (cp < 0x85) return false;
    if (cp <= 0xA0) return cp == 0x85 || cp == 0xA0;
    if (cp < 0x1680) return false;
    if (cp == 0x1680) return true;
    if (cp >= 0x2000 && cp <= 0x200A) return true;
    return cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

size_t utf8_space_len(const char *s, size_t n) {
    if (n == 0) return 0;
    unsigned char c = (unsigned char)s[0];
    if (c < 0x80) return utf8_is_space(c) ? 1 : 0;
    /* every non-ASCII whitespace starts with C2 (U+0085, U+00A0), E1, E2 or E3 */
    if (c != 0xC2 && (c < 0xE1 || c > 0xE3)) return 0;
    uint32_t cp;
    size_t k = utf8_decode(s, n, &cp);
    return utf8_is_space(cp) ? k : 0;
}

size_t utf8_rstrip_len(const char *s, size_t n) {
    size_t i = 0, end = 0;
    while (i < n) {
        size_t k = utf8_space_len(s + i, n - i);
        if (k) {
            i += k;
            continue;
        }
        uint32_t cp;
        i += utf8_decode(s + i, n - i, &cp);
        end = i;
    }
    return end;
}

size_t utf8_count(const char *s, size_t n) {
    size_t i = 0, count = 0;
    while (i < n) {
        uint32_t cp;
        i += utf8_decode(s + i, n - i, &cp);
        count++;
    }
    return count;
}
