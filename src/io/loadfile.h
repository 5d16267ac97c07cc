/* The expert-load log (moe-train --moe-load-log, read by moe-plot): every N
 * updates, each MoE layer's dispatch counts of that update. The format is
 * documented in moe-files(5); all integers are little-endian.
 *
 *   header   "MOELOAD\0", version 1, header size, layer count, record size,
 *            header CRC32, then per layer: name, experts, groups, top-k, gating
 *   records  update number; per layer: rows gated, the group counts
 *            (hierarchical), the expert counts; CRC32 of the record
 *
 * Records have a fixed size, so a file cut in the middle of a record (a
 * kill during a write, a full disk) shows as a partial tail, and a damaged
 * one fails its CRC. The file is append-only: moe-train writes each record
 * with one write(2) and fdatasync as it is made; a resumed run keeps the records up to the
 * update it resumes from and drops the rest (records written after the last
 * checkpoint, a truncated or corrupt tail), so the file continues without a
 * duplicate or a gap. Functions that can fail return 0, or -1 with one line
 * naming the file in err. */
#ifndef MOE_IO_LOADFILE_H
#define MOE_IO_LOADFILE_H

#include <stddef.h>
#include <stdint.h>

#define LOADFILE_VERSION 1
#define LOADFILE_NAME_LEN 48 /* layer names, NUL included */
#define LOADFILE_MAX_LAYERS 4096

/* Gating codes stored in the header (the order of nn/moe.h MoeGating). */
enum { LOADFILE_NOISY_TOPK = 0, LOADFILE_BATCHWISE = 1, LOADFILE_SOFTMAX = 2, LOADFILE_NONE = 3 };

typedef struct LoadLayer {
    char name[LOADFILE_NAME_LEN];
    int experts; /* all groups together */
    int groups;  /* 0: flat */
    int k;       /* top-k per level */
    int gating;
} LoadLayer;

/* Values per layer in a record (and in loadfile_append's counts): rows,
 * groups, experts. */
int64_t loadfile_layer_values(const LoadLayer *l);
size_t loadfile_header_bytes(int layers);
size_t loadfile_record_bytes(const LoadLayer *layers, int n);
const char *loadfile_gating_name(int gating);

/* ---- writing ---- */

typedef struct LoadFile {
    int fd;
    char *path;
    int layers;
    LoadLayer *layer;
    size_t record_bytes;
    uint8_t *buf;      /* one record */
    int64_t last_step; /* of the last record in the file; -1 if none */
} LoadFile;

/* Open path for appending records of these layers. resume_step < 0: a new
 * file (an existing one is replaced). Else the file continues a run resumed
 * at update resume_step: its header must describe the same layers; records
 * after resume_step, and a truncated or corrupt tail, are cut off. A missing
 * file is created. info gets one line on what was found (kept, dropped). */
int loadfile_open(LoadFile *f, const char *path, const LoadLayer *layers, int n, int64_t resume_step, char *info,
                  size_t ninfo, char *err, size_t nerr);
/* counts: per layer in order, rows, then its group counts, then its expert
 * counts (loadfile_layer_values each). step must exceed the last record's. */
int loadfile_append(LoadFile *f, int64_t step, const int64_t *counts, char *err, size_t nerr);
void loadfile_close(LoadFile *f);

/* ---- reading ---- */

typedef struct LoadData {
    int layers;
    LoadLayer *layer;
    int64_t records;
    int64_t *step;    /* [records] */
    int64_t *rows;    /* [records x layers] */
    uint32_t **count; /* per layer: [records x (groups + experts)], group counts then expert counts */
    size_t tail_bytes;/* bytes of a truncated last record, left out */
} LoadData;

/* The whole file. A truncated last record is not an error (tail_bytes says
 * so); an empty file, a bad header, a corrupt record or updates that do not
 * increase are. */
int loadfile_read(const char *path, LoadData *d, char *err, size_t nerr);
void loadfile_data_free(LoadData *d);
/* 1 when the first bytes of path are the magic of a load log. */
int loadfile_sniff(const char *path);

#endif
