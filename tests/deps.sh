#!/usr/bin/env bash
# Make sure the Debian packages the build and the tests need are installed.
# As root: installs what is missing. Otherwise: prints the apt-get line, exits 2.
set -u
need=()
have_pc() { command -v pkg-config >/dev/null 2>&1 && pkg-config --exists "$1"; }
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v gcc >/dev/null 2>&1 || need+=(gcc)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)
have_pc openblas || need+=(libopenblas-dev)
# the OpenMP build of OpenBLAS (see the Makefile)
ls /usr/lib/*/openblas-openmp/pkgconfig/openblas.pc >/dev/null 2>&1 || need+=(libopenblas-openmp-dev)
# oneDNN: the CPU backend's sgemm (AVX-512 JIT kernels; README "GEMM library")
[ -f /usr/include/oneapi/dnnl/dnnl.h ] || need+=(libdnnl-dev)
# SLEEF: vector double math in the gating (src/cpu/vecmath.c)
have_pc sleef || need+=(libsleef-dev)
have_pc sentencepiece || need+=(libsentencepiece-dev)
command -v spm_encode >/dev/null 2>&1 || need+=(sentencepiece)
have_pc yaml-0.1 || need+=(libyaml-dev)
have_pc zlib || need+=(zlib1g-dev)
have_pc cmocka || need+=(libcmocka-dev)
# OpenMPI: multi-process training and its tests (mpirun -np 2)
have_pc ompi-c || need+=(libopenmpi-dev)
command -v mpirun >/dev/null 2>&1 || need+=(openmpi-bin)
# groff renders the man pages for tests/unit/man_test.c
command -v groff >/dev/null 2>&1 || need+=(groff-base)
# moe-plot draws with gnuplot (pngcairo and svg terminals); the plot test checks SVG with xmllint
command -v gnuplot >/dev/null 2>&1 || need+=(gnuplot-nox)
command -v xmllint >/dev/null 2>&1 || need+=(libxml2-utils)
[ ${#need[@]} -eq 0 ] && exit 0

line="apt-get install -y ${need[*]}"
if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages; run as root:" >&2
    echo "  $line" >&2
    exit 2
fi
echo "installing: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q "${need[@]}" >/tmp/moe-apt.log 2>&1; then
    apt-get update -q >>/tmp/moe-apt.log 2>&1
    if ! apt-get install -y -q "${need[@]}" >>/tmp/moe-apt.log 2>&1; then
        tail -n 20 /tmp/moe-apt.log >&2
        echo "error: could not install: ${need[*]} (see /tmp/moe-apt.log)" >&2
        exit 2
    fi
fi
echo "installed: ${need[*]}"
