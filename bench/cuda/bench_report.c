/* Table and JSON output (see bench_report.h). */
#include "bench_report.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void bench_print_ceilings(FILE *f, const BenchCeilings *c) {
    fprintf(f, "device    %s\n", c->device);
    fprintf(f, "versions  %s\n", c->versions);
    fprintf(f, "ceilings  bf16 %.1f TFLOP/s | tf32 %.1f TFLOP/s | fp32 %.2f TFLOP/s | copy %.0f GB/s%s\n", c->bf16,
            c->tf32, c->fp32, c->copy_gbs, c->bf16 > 0 ? "" : " (0 = not measured)");
    fprintf(f, "          (%s)\n", c->method);
}

void bench_print_header(FILE *f) {
    fprintf(f, "%-4s %8s %9s %10s %7s %6s %6s |", "cfg", "tok/step", "step ms", "tok/s", "TFLOP/s", "MFU16", "MFU32");
    for (int i = 0; i < BENCH_NCOMP; i++) fprintf(f, " %8s", bench_comp_names[i]);
    fprintf(f, "  (components: ms per step)\n");
}

static void ms_col(FILE *f, double v) {
    if (isnan(v))
        fprintf(f, " %8s", "-");
    else
        fprintf(f, " %8.1f", v);
}

static void pct_col(FILE *f, double v) {
    if (isnan(v))
        fprintf(f, " %6s", "-");
    else
        fprintf(f, " %5.1f%%", 100 * v);
}

void bench_print_row(FILE *f, const BenchResult *r) {
    if (!r->ran) {
        fprintf(f, "%-4s %8lld  %s\n", r->id, (long long)r->tokens_step, r->note);
        return;
    }
    fprintf(f, "%-4s %8lld %9.1f %10.0f %7.2f", r->id, (long long)r->tokens_step, r->step_ms, r->tok_s, r->tflops);
    pct_col(f, r->mfu_bf16);
    pct_col(f, r->mfu_fp32);
    fprintf(f, " |");
    for (int i = 0; i < BENCH_NCOMP; i++) ms_col(f, r->comp_ms[i]);
    if (r->note[0]) fprintf(f, "  [%s]", r->note);
    fprintf(f, "\n");
}

static void jstr(FILE *f, const char *s) {
    fputc('"', f);
    for (; s && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static void jnum(FILE *f, double v) {
    if (isnan(v) || isinf(v))
        fprintf(f, "null");
    else
        fprintf(f, "%.6g", v);
}

/* ", \"name\": value" */
static void jfield(FILE *f, const char *name, double v) {
    fprintf(f, ", \"%s\": ", name);
    jnum(f, v);
}

static void json_result(FILE *f, const BenchResult *r) {
    fprintf(f, "    {\"id\": ");
    jstr(f, r->id);
    fprintf(f, ", \"desc\": ");
    jstr(f, r->desc);
    fprintf(f, ", \"ran\": %s, \"note\": ", r->ran ? "true" : "false");
    jstr(f, r->note);
    fprintf(f, ",\n     \"tokens_per_step\": %lld, \"micro_batches\": %d, \"steps_timed\": %d", (long long)r->tokens_step,
            r->micro, r->steps_timed);
    jfield(f, "params", r->params);
    jfield(f, "macs_per_token", r->macs_token);
    jfield(f, "flop_per_token", 6 * r->macs_token);
    if (r->ran) {
        fprintf(f, "\n    ");
        jfield(f, "step_ms", r->step_ms);
        jfield(f, "step_ms_min", r->step_min_ms);
        jfield(f, "step_ms_max", r->step_max_ms);
        jfield(f, "fwd_bwd_ms", r->fb_ms);
        jfield(f, "tokens_per_s", r->tok_s);
        jfield(f, "fwd_bwd_tokens_per_s", (double)r->tokens_step / (r->fb_ms * 1e-3));
        fprintf(f, "\n    ");
        jfield(f, "tflops", r->tflops);
        jfield(f, "mfu_bf16", r->mfu_bf16);
        jfield(f, "mfu_fp32", r->mfu_fp32);
        jfield(f, "loss_first", r->loss_first);
        jfield(f, "loss_last", r->loss_last);
        jfield(f, "peak_gib", r->peak_gib);
        fprintf(f, ",\n     \"components_ms\": {");
        for (int i = 0; i < BENCH_NCOMP; i++) {
            fprintf(f, "%s\"%s\": ", i ? ", " : "", bench_comp_names[i]);
            jnum(f, r->comp_ms[i]);
        }
        fprintf(f, "}");
    }
    fprintf(f, "}");
}

int bench_write_json(const char *path, const BenchReport *rep, char *err, size_t n) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        snprintf(err, n, "cannot write %s: %s", tmp, strerror(errno));
        return -1;
    }
    const BenchCeilings *c = rep->ceil;
    fprintf(f, "{\"program\": ");
    jstr(f, rep->program);
    fprintf(f, ", \"backend\": ");
    jstr(f, rep->backend);
    fprintf(f, ", \"precision\": ");
    jstr(f, rep->precision ? rep->precision : "fp32");
    fprintf(f, ",\n \"device\": ");
    jstr(f, c->device);
    fprintf(f, ", \"versions\": ");
    jstr(f, c->versions);
    fprintf(f, ",\n \"timing\": ");
    jstr(f, rep->timing);
    fprintf(f, ",\n \"flop_model\": ");
    jstr(f, "6 x forward multiply-adds per target token: layers (gating included), softmax as computed "
            "(d x (S+1) sampled, d x V full), translation attention S x (n_att + d); MFU = model FLOP/s / ceiling");
    fprintf(f, ",\n \"ceilings\": {\"bf16_tflops\": ");
    jnum(f, c->bf16);
    jfield(f, "tf32_tflops", c->tf32);
    jfield(f, "fp32_tflops", c->fp32);
    jfield(f, "copy_gbs", c->copy_gbs);
    fprintf(f, ", \"method\": ");
    jstr(f, c->method);
    fprintf(f, "},\n \"configs\": [\n");
    for (int i = 0; i < rep->n; i++) {
        json_result(f, &rep->res[i]);
        fprintf(f, "%s\n", i + 1 < rep->n ? "," : "");
    }
    fprintf(f, " ]}\n");
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        snprintf(err, n, "cannot write %s: %s", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        snprintf(err, n, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}
