/* How the tools' threads wait: OpenMP (and with it OpenBLAS's OpenMP build
 * and oneDNN, which share its thread pool) spins at every barrier by
 * default. Beside another busy process that costs a core's time slice at
 * every parallel region: a 2-core machine shared with one busy loop ran
 * `make demo` 13 times slower. The tools sleep at barriers instead
 * (OMP_WAIT_POLICY=passive) unless the user chose a policy. */
#ifndef MOE_THREADS_H
#define MOE_THREADS_H

/* First thing in a tool's main: when neither OMP_WAIT_POLICY nor
 * GOMP_SPINCOUNT is set, set OMP_WAIT_POLICY=passive and restart the program
 * with the same arguments (the OpenMP runtime reads its environment when it
 * loads, before main). Returns only when nothing had to change, or when the
 * restart failed (then the program goes on with the runtime's default). */
void threads_wait_policy(char **argv);

#endif
