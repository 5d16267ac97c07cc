/* The options' value parsers: integers with K/M/G, floats, switches, --after,
 * dropout rates (declared in core/options.h). */
#include "core/options.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/check.h"

int options_parse_int(const char *s, int64_t *out) {
    const char *p = s;
    int neg = 0;
    if (*p == '+' || *p == '-') neg = *p++ == '-';
    if (!isdigit((unsigned char)*p)) return -1;
    uint64_t ip = 0, frac = 0, pow10 = 1;
    for (; isdigit((unsigned char)*p); p++) {
        if (ip > (UINT64_MAX - 9) / 10) return -1;
        ip = ip * 10 + (uint64_t)(*p - '0');
    }
    int fdig = 0;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p)) return -1;
        for (; isdigit((unsigned char)*p); p++) {
            if (fdig < 9) {
                frac = frac * 10 + (uint64_t)(*p - '0');
                pow10 *= 10;
                fdig++;
            } else if (*p != '0') {
                return -1; /* more than 9 fractional digits cannot be integral */
            }
        }
    }
    uint64_t mul = 1;
    switch (*p) {
    case 'k':
    case 'K':
        mul = 1000;
        p++;
        break;
    case 'm':
    case 'M':
        mul = 1000000;
        p++;
        break;
    case 'g':
    case 'G':
        mul = 1000000000;
        p++;
        break;
    default: break;
    }
    if (*p) return -1;
    if (fdig && mul == 1) return -1; /* "1.5" is not an integer; "1.5k" is */
    if ((frac * mul) % pow10) return -1;
    if (ip > (uint64_t)INT64_MAX / mul) return -1;
    uint64_t v = ip * mul + frac * mul / pow10;
    if (v > (uint64_t)INT64_MAX) return -1;
    *out = neg ? -(int64_t)v : (int64_t)v;
    return 0;
}

int options_parse_float(const char *s, double *out) {
    if (!*s || isspace((unsigned char)*s)) return -1;
    char *end;
    double v = strtod(s, &end);
    if (*end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

int options_parse_bool(const char *s, int *out) {
    static const char *yes[] = {"true", "yes", "on", "1"}, *no[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) return *out = 1, 0;
        if (strcasecmp(s, no[i]) == 0) return *out = 0, 0;
    }
    return -1;
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = 0;
    return s;
}

int options_parse_after(const char *s, After *out, char *err, size_t errlen) {
    static const char *units = "e epochs, u updates, t target tokens; e.g. 10e, 27000u, 100Gt, 10e,27ku";
    After a = {0, 0, 0};
    int seen[3] = {0, 0, 0};
    char buf[256];
    if (strlen(s) >= sizeof buf) return errf(err, errlen, "'%.40s...' is too long", s);
    strcpy(buf, s);
    if (!*trim(buf)) return errf(err, errlen, "empty value (units: %s)", units);
    for (char *tok = buf; tok;) {
        char *comma = strchr(tok, ',');
        if (comma) *comma = 0;
        char *item = trim(tok);
        tok = comma ? comma + 1 : NULL;
        size_t n = strlen(item);
        if (n == 0) return errf(err, errlen, "empty item in '%s'", s);
        char u = (char)tolower((unsigned char)item[n - 1]);
        int k = u == 'e' ? 0 : u == 'u' ? 1 : u == 't' ? 2 : -1;
        if (k < 0 || n == 1) return errf(err, errlen, "'%s' needs a number and a unit (%s)", item, units);
        item[n - 1] = 0;
        int64_t v;
        if (options_parse_int(item, &v) || v < 0)
            return errf(err, errlen, "bad count '%s' in '%s' (%s)", item, s, units);
        if (seen[k]) return errf(err, errlen, "unit '%c' given twice in '%s'", u, s);
        seen[k] = 1;
        if (k == 0)
            a.epochs = v;
        else if (k == 1)
            a.updates = v;
        else
            a.tokens = v;
    }
    *out = a;
    return 0;
}

int options_check_after(const char *s, char *err, size_t errlen) {
    After a;
    return options_parse_after(s, &a, err, errlen);
}

int options_parse_rate(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    while (*end == ' ' || *end == '\t') end++;
    if (end == s || *end || errno || !(v >= 0 && v < 1)) return -1;
    *out = v;
    return 0;
}

int options_check_rate(const char *s, char *err, size_t errlen) {
    double v;
    if (!*s || !options_parse_rate(s, &v)) return 0;
    return errf(err, errlen, "'%.40s' is not a probability in [0, 1) (or empty: as --dropout)", s);
}
