/* What every tool sets up the same way: logging (--log, --quiet), the
 * backend (--devices, --cpu-threads), SIGTERM/SIGINT handling, build info. */
#ifndef MOE_APP_SESSION_H
#define MOE_APP_SESSION_H

#include "core/options.h"
#include "core/ops.h"

#define MOE_VERSION "0.1.0"

void session_logging(const Config *cfg);
/* The CPU unless --devices names a GPU (or is empty and a GPU is present). */
Backend *session_backend(const Config *cfg);
/* --version / --build-info: print and return 1 (the tool then exits 0). */
int session_info(const Config *cfg, const char *tool);

/* SIGTERM/SIGINT: with save_and_exit, only a flag is set (the loop saves and
 * exits 143); otherwise the process exits 143 at once. */
/* SIGTERM and SIGINT blocked in this thread and those it starts later: call
 * first thing in main. */
void session_block_signals(void);
void session_signals(int save_and_exit);
int session_stop_requested(void);
void session_reset_stop(void); /* tests */

#endif
