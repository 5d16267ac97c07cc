/* The benchmark's output: a fixed-width table on stdout and the same
 * figures as JSON (--json FILE; bench/README.md describes every field).
 * bench/torch_ref.py prints the same columns. */
#ifndef MOE_BENCH_REPORT_H
#define MOE_BENCH_REPORT_H

#include <stdio.h>

#include "bench_run.h"

typedef struct BenchReport {
    const char *program, *backend, *timing;
    const char *precision; /* of the matrix products: fp32, tf32 or bf16 (NULL: fp32) */
    const BenchCeilings *ceil;
    const BenchResult *res;
    int n;
} BenchReport;

void bench_print_ceilings(FILE *f, const BenchCeilings *c);
void bench_print_header(FILE *f);
void bench_print_row(FILE *f, const BenchResult *r);
/* Writes path atomically enough for a report (temp file + rename); 0 or -1. */
int bench_write_json(const char *path, const BenchReport *rep, char *err, size_t n);

#endif
