/* How the tools' threads wait: OpenMP (and with it OpenBLAS's OpenMP build
 * and oneDNN, which share its thread pool) spins at every barrier by
 * default (libgomp: 300,000 spins). Beside another busy process that costs
 * a core's time slice at every parallel region: a 2-core machine shared
 * with one busy loop ran `make demo` 13 times slower. Sleeping at once
 * (OMP_WAIT_POLICY=passive) fixes that but pays a wake-up at each of the
 * hundreds of small regions of an update (the LSTM's steps): C1 ran 20%
 * slower alone than with a short spin. So the tools spin THREADS_SPIN times
 * (a few microseconds), then sleep: as fast as spinning alone, as good as
 * passive beside a busy loop (README, "Sharing the machine"). A policy or
 * spin count the user set is left alone. */
#ifndef MOE_THREADS_H
#define MOE_THREADS_H

#define THREADS_SPIN "300"

/* First thing in a tool's main: when neither OMP_WAIT_POLICY nor
 * GOMP_SPINCOUNT is set, set GOMP_SPINCOUNT=THREADS_SPIN (with GCC's
 * libgomp; OMP_WAIT_POLICY=passive with another runtime) and restart the
 * program with the same arguments (the OpenMP runtime reads its environment
 * when it loads, before main). Returns only when nothing had to change, or
 * when the restart failed (then the program goes on with the runtime's
 * default). */
void threads_wait_policy(char **argv);

#endif
