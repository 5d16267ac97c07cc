#!/usr/bin/env bash
# The tools spin briefly, then sleep, at OpenMP barriers (core/threads.h): started
# without an OpenMP wait policy they restart themselves with GOMP_SPINCOUNT=300
# (GCC's libgomp); a policy or a spin count the user set is left alone.
# --build-info reports what is in force.
. "$(dirname "$0")/common.bash"
for tool in moe-train moe-eval moe-translate; do
    got=$(env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT "$BIN/$tool" --build-info | sed -n 's/^OpenMP wait policy: //p')
    [ "$got" = "spin, then sleep, GOMP_SPINCOUNT 300" ] ||
        fail "$tool without a policy runs with '$got', expected a spin count of 300"
    got=$(env -u GOMP_SPINCOUNT OMP_WAIT_POLICY=active "$BIN/$tool" --build-info | sed -n 's/^OpenMP wait policy: //p')
    [ "$got" = active ] || fail "$tool with OMP_WAIT_POLICY=active runs with '$got'"
    got=$(env -u OMP_WAIT_POLICY GOMP_SPINCOUNT=1000 "$BIN/$tool" --build-info | sed -n 's/^OpenMP wait policy: //p')
    [ "$got" = "spin, then sleep, GOMP_SPINCOUNT 1000" ] || fail "$tool with GOMP_SPINCOUNT=1000 runs with '$got'"
    got=$(env -u GOMP_SPINCOUNT OMP_WAIT_POLICY=passive "$BIN/$tool" --build-info | sed -n 's/^OpenMP wait policy: //p')
    [ "$got" = passive ] || fail "$tool with OMP_WAIT_POLICY=passive runs with '$got'"
done
# the restart keeps the arguments: an option error still names the option
expect 2 "unknown option '--dim-embb'" env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT "$BIN/moe-train" --dim-embb 3
echo "wait policy: ok"
