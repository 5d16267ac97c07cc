# moe: sparsely-gated Mixture-of-Experts LSTM toolkit.
#
#   make            build the library, the tools and the tests (and cuda/ when nvcc is found)
#   make test       install missing Debian packages (as root), build, run every CPU test
#   make bench      CPU benchmarks (throughput, GFLOP/s), then ours against PyTorch (make bench-torch-cpu)
#   make demo       train a small MoE language model on real text, evaluate it, plot it
#   make cuda       only the CUDA backend;  make test-cuda  GPU parity tests (exit 77 without a GPU)
#   make gpu-check  the first check of a GPU, under 8 minutes: builds what it needs, parity per
#                   section, gpu_e2e.sh, a short fp32/bf16 benchmark; $(O)/gpu-check/summary.txt
#   make install    PREFIX=/usr/local
#
# Switches: NATIVE=0 (no -march=native), CUDA=0 (skip nvcc), DNNL=0 (OpenBLAS products), CUDA_ARCH=90a, NCCL=0 (no NCCL),
#           NCCL_HOME=dir (include/nccl.h, lib/libnccl.so), SANITIZE=address,undefined

SHELL := /bin/bash
comma := ,
.DEFAULT_GOAL := all
CC ?= gcc
CXX ?= g++
# a sanitizer build (SANITIZE=...) gets its own tree, tools included: it never clobbers the normal one
O ?= $(if $(SANITIZE),build-san,build)
BIN ?= $(if $(SANITIZE),$(O)/bin,bin)
PREFIX ?= /usr/local
CUDA_ARCH ?= 90a

PKGS := openblas sentencepiece yaml-0.1 zlib cmocka
# OpenBLAS's OpenMP build shares one thread pool with our OpenMP loops; the
# pthread build's threads and OpenMP's spinning workers fight over the cores
# (measured: 1244 vs 2013 tokens/s on 2 cores). Prefer it, and bake its path in.
OPENBLAS_OMP_PC := $(firstword $(wildcard /usr/lib/*/openblas-openmp/pkgconfig))
ifneq ($(OPENBLAS_OMP_PC),)
# (make 4.3 does not pass exported variables to $(shell): set it per call)
PKGCONF := PKG_CONFIG_PATH=$(OPENBLAS_OMP_PC)$(if $(PKG_CONFIG_PATH),:$(PKG_CONFIG_PATH)) pkg-config
BLAS_RPATH := -Wl,-rpath,$(patsubst %/pkgconfig,%,$(OPENBLAS_OMP_PC))
else
PKGCONF := pkg-config
endif
HAVE_PKGCONFIG := $(shell command -v pkg-config >/dev/null 2>&1 && echo yes)
pc_has = $(if $(HAVE_PKGCONFIG),$(shell $(PKGCONF) --exists $(1) 2>/dev/null && echo yes))
MISSING := $(foreach p,$(PKGS),$(if $(call pc_has,$(p)),,$(p)))
# OpenMPI (optional): multi-process training on the CPU (src/comm/comm_mpi.c)
HAVE_MPI := $(if $(filter 0,$(MPI)),,$(call pc_has,ompi-c))
MPI_CFLAGS := $(if $(HAVE_MPI),-DMOE_HAVE_MPI $(shell $(PKGCONF) --cflags ompi-c 2>/dev/null))
MPI_LIBS := $(if $(HAVE_MPI),$(shell $(PKGCONF) --libs ompi-c 2>/dev/null))

# oneDNN (optional, DNNL=0 to leave out): the CPU backend's f32 products go through its
# sgemm, whose AVX-512 JIT kernels measured twice OpenBLAS's rate here (README, "GEMM library")
HAVE_DNNL := $(if $(filter 0,$(DNNL)),,$(shell printf '\043include <oneapi/dnnl/dnnl.h>\nint main(void){return dnnl_sgemm(0,0,0,0,0,0,0,0,0,0,0,0,0);}' | $(CC) -x c - -ldnnl -o /dev/null 2>/dev/null && echo yes))
DNNL_CFLAGS := $(if $(HAVE_DNNL),-DMOE_HAVE_DNNL)
DNNL_LIBS := $(if $(HAVE_DNNL),-ldnnl)
# SLEEF (optional, SLEEF=0 to leave out): vector double exp/log/erfc for the gating's per
# (token, expert) functions (src/cpu/vecmath.c; libm per element without it)
HAVE_SLEEF := $(if $(filter 0,$(SLEEF)),,$(call pc_has,sleef))
SLEEF_CFLAGS := $(if $(HAVE_SLEEF),-DMOE_HAVE_SLEEF $(shell $(PKGCONF) --cflags sleef 2>/dev/null))
SLEEF_LIBS := $(if $(HAVE_SLEEF),$(shell $(PKGCONF) --libs sleef 2>/dev/null))

NVCC ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
ifeq ($(CUDA),0)
NVCC :=
endif
CUDA_SRC := $(wildcard cuda/*.cu)
BUILD_CUDA := $(if $(and $(NVCC),$(CUDA_SRC)),yes)
# NCCL (optional): several GPUs (cuda/comm_nccl.cu). NCCL_HOME holds include/nccl.h
# and lib64/ or lib/ with libnccl.so; found beside nvcc or under /usr unless given.
NCCL_HOME ?= $(firstword $(patsubst %/include/nccl.h,%,$(wildcard $(patsubst %/bin/nvcc,%,$(NVCC))/include/nccl.h /usr/include/nccl.h)))
NCCL_LIBDIR := $(if $(filter 0,$(NCCL)),,$(patsubst %/libnccl.so,%,$(firstword $(wildcard $(NCCL_HOME)/lib64/libnccl.so $(NCCL_HOME)/lib/libnccl.so $(if $(filter /usr,$(NCCL_HOME)),/usr/lib/x86_64-linux-gnu/libnccl.so)))))
HAVE_NCCL := $(if $(and $(BUILD_CUDA),$(NCCL_LIBDIR),$(wildcard $(NCCL_HOME)/include/nccl.h)),yes)
ifneq ($(HAVE_NCCL),yes)
CUDA_SRC := $(filter-out cuda/comm_nccl.cu,$(CUDA_SRC))
endif

ifeq ($(MAKELEVEL),0)
ifeq ($(filter clean distclean deps,$(MAKECMDGOALS)),)
$(foreach p,$(PKGS),$(info $(if $(call pc_has,$(p)),✓,✗) $(p)$(if $(call pc_has,$(p)), $(shell $(PKGCONF) --modversion $(p) 2>/dev/null))$(if $(filter openblas,$(p)),$(if $(OPENBLAS_OMP_PC), (OpenMP build), (pthread build: install libopenblas-openmp-dev for speed)))))
$(info $(if $(HAVE_DNNL),✓ onednn $(shell sed -n 's/^.define DNNL_VERSION_\(MAJOR\|MINOR\|PATCH\) //p' /usr/include/oneapi/dnnl/dnnl_config.h /usr/include/oneapi/dnnl/dnnl_version.h 2>/dev/null | paste -sd.): CPU products on its sgemm,✗ onednn: CPU products on OpenBLAS (install libdnnl-dev for speed)))
$(info $(if $(HAVE_SLEEF),✓ sleef $(shell $(PKGCONF) --modversion sleef 2>/dev/null): vector math in the gating,✗ sleef: gating math through libm (install libsleef-dev for speed)))
$(info $(if $(HAVE_MPI),✓ mpi $(shell $(PKGCONF) --modversion ompi-c 2>/dev/null): multi-process training,✗ mpi: single-process training only (install libopenmpi-dev)))
$(info $(if $(NVCC),✓ nvcc $(shell $(NVCC) --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p')$(if $(CUDA_SRC),: building cuda/ for sm_$(CUDA_ARCH),: no cuda/ sources yet),✗ nvcc: CUDA backend not built))
$(if $(BUILD_CUDA),$(info $(if $(HAVE_NCCL),✓ nccl in $(NCCL_HOME): several GPUs,✗ nccl: one GPU per process only (set NCCL_HOME to a folder with include/nccl.h and lib/libnccl.so))))
endif
endif

NATIVE_FLAG := $(if $(filter 0,$(NATIVE)),,$(shell echo 'int main(void){return 0;}' | $(CC) -march=native -x c - -o /dev/null 2>/dev/null && echo -march=native))
SAN_FLAGS := $(if $(SANITIZE),-fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
PC_CFLAGS := $(if $(HAVE_PKGCONFIG),$(shell $(PKGCONF) --cflags $(filter-out cmocka,$(PKGS)) 2>/dev/null)) $(MPI_CFLAGS) $(DNNL_CFLAGS) $(SLEEF_CFLAGS)
PC_LIBS := $(if $(HAVE_PKGCONFIG),$(shell $(PKGCONF) --libs $(filter-out cmocka,$(PKGS)) 2>/dev/null))
CMOCKA_LIBS := $(if $(HAVE_PKGCONFIG),$(shell $(PKGCONF) --libs cmocka 2>/dev/null))

WARN := -Wall -Wextra -Wno-unused-parameter
CFLAGS ?= -O2 -g
CXXFLAGS ?= -O2 -g
# -fno-math-errno: nothing reads errno after a math function, and without it sqrt stops
# the vectoriser (the optimizer loops)
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) -fopenmp -fno-math-errno $(NATIVE_FLAG) $(SAN_FLAGS) -Isrc -Itests/lib $(PC_CFLAGS) -MMD -MP $(CFLAGS)
ALL_CXXFLAGS := -std=c++17 $(WARN) $(SAN_FLAGS) -Isrc $(PC_CFLAGS) -MMD -MP $(CXXFLAGS)
LDLIBS := $(PC_LIBS) $(MPI_LIBS) $(DNNL_LIBS) $(SLEEF_LIBS) -lstdc++ -lpthread -lm
LDFLAGS_ALL := -fopenmp $(SAN_FLAGS) $(BLAS_RPATH) $(LDFLAGS)

# ---- sources ---------------------------------------------------------------
LIB_C := $(shell find src -name '*.c' -not -path 'src/tools/*' | sort)
LIB_CC := $(shell find src -name '*.cc' | sort)
TOOLS := $(patsubst src/tools/%.c,$(BIN)/%,$(wildcard src/tools/moe-*.c))
TESTLIB_C := $(wildcard tests/lib/*.c)
UNIT_TESTS := $(patsubst tests/unit/%.c,$(O)/tests/unit/%,$(wildcard tests/unit/*_test.c))
GRAD_TESTS := $(patsubst tests/grad/%.c,$(O)/tests/grad/%,$(wildcard tests/grad/*_test.c))
BENCH_C := $(wildcard bench/*.c)
BENCHES := $(patsubst bench/%.c,$(O)/bench/%,$(BENCH_C))

LIB := $(O)/libmoe.a
LIB64 := $(O)/libmoe64.a
OBJ := $(patsubst %.c,$(O)/f32/%.o,$(LIB_C)) $(patsubst %.cc,$(O)/f32/%.o,$(LIB_CC))
OBJ64 := $(patsubst %.c,$(O)/f64/%.o,$(LIB_C)) $(patsubst %.cc,$(O)/f32/%.o,$(LIB_CC))
TESTLIB := $(patsubst %.c,$(O)/f32/%.o,$(TESTLIB_C))
TESTLIB64 := $(patsubst %.c,$(O)/f64/%.o,$(TESTLIB_C))

ifeq ($(BUILD_CUDA),yes)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_OBJ := $(patsubst cuda/%.cu,$(O)/cuda/%.o,$(CUDA_SRC))
CUDA_LIB := $(O)/libmoe_cuda.a
NVCCFLAGS ?= -O3
# -fmad=false: no multiply-add contraction, as gcc -std=c11 on the CPU side,
# so elementwise kernels reproduce the CPU reference to the last bit.
ALL_NVCCFLAGS := -std=c++17 -gencode arch=compute_$(CUDA_ARCH),code=sm_$(CUDA_ARCH) \
  -gencode arch=compute_$(CUDA_ARCH),code=compute_$(CUDA_ARCH) -fmad=false -MMD -MP -Isrc -Icuda $(if $(HAVE_NCCL),-I$(NCCL_HOME)/include) \
  -Xcompiler -Wall,-Wextra,-Wno-unused-parameter,-fopenmp $(NVCCFLAGS)
CUDA_LIBS := $(if $(HAVE_NCCL),-L$(NCCL_LIBDIR) -Wl$(comma)-rpath$(comma)$(NCCL_LIBDIR) -lnccl) -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcudart
# after $(REG_OBJ), which refers to the CUDA library, which refers to libmoe.a again
TOOL_LIBS := $(CUDA_LIB) $(LIB) $(CUDA_LIBS)
CUDA_TESTS := $(patsubst tests/cuda/%.c,$(O)/tests/cuda/%,$(wildcard tests/cuda/*.c))
endif

# The backends a program has (src/tools/backends.c): core names none, and this one
# object registers those the build has, so it is compiled per flavour and linked
# as an object into the tools, the GPU parity test and the GPU benchmark.
REG_FLAVOUR := $(if $(BUILD_CUDA),cuda$(if $(HAVE_NCCL),-nccl),cpu)
REG_OBJ := $(O)/backends-$(REG_FLAVOUR)/backends.o
$(REG_OBJ): src/tools/backends.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(if $(BUILD_CUDA),-DMOE_WITH_CUDA) $(if $(HAVE_NCCL),-DMOE_WITH_NCCL) -c $< -o $@

# ---- build -----------------------------------------------------------------
.PHONY: all lib tools tests cuda test test-run test-cuda bench demo deps install clean
all: tools tests $(BENCHES)
lib: $(LIB)
tools: $(TOOLS)
tests: $(UNIT_TESTS) $(GRAD_TESTS)

$(O)/f32/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c $< -o $@
$(O)/f64/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -DMOE_REAL_DOUBLE -c $< -o $@
$(O)/f32/%.o: %.cc
	@mkdir -p $(@D)
	$(CXX) $(ALL_CXXFLAGS) -c $< -o $@

$(LIB): $(OBJ)
	@rm -f $@
	ar rcs $@ $^
$(LIB64): $(OBJ64)
	@rm -f $@
	ar rcs $@ $^

$(BIN)/%: $(O)/f32/src/tools/%.o $(REG_OBJ) $(LIB) $(CUDA_LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) $< $(REG_OBJ) $(LIB) $(TOOL_LIBS) $(LDLIBS) -o $@

$(O)/tests/unit/%: $(O)/f32/tests/unit/%.o $(TESTLIB) $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) $< $(TESTLIB) $(LIB) $(LDLIBS) $(CMOCKA_LIBS) -o $@
$(O)/tests/grad/%: $(O)/f64/tests/grad/%.o $(TESTLIB64) $(LIB64)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) $< $(TESTLIB64) $(LIB64) $(LDLIBS) $(CMOCKA_LIBS) -o $@
$(O)/bench/%: $(O)/f32/bench/%.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) $< $(LIB) $(LDLIBS) -o $@

ifeq ($(BUILD_CUDA),yes)
cuda: $(CUDA_LIB)
$(O)/cuda/%.o: cuda/%.cu
	@mkdir -p $(@D)
	$(NVCC) $(ALL_NVCCFLAGS) -c $< -o $@
$(CUDA_LIB): $(CUDA_OBJ)
	@rm -f $@
	ar rcs $@ $^
# GPU parity tests (tests/cuda/*.c): the CPU backend against the CUDA backend
$(O)/tests/cuda/%: $(O)/f32/tests/cuda/%.o $(REG_OBJ) $(LIB) $(CUDA_LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) $< $(REG_OBJ) $(TOOL_LIBS) $(LDLIBS) -o $@
all: $(CUDA_LIB) $(CUDA_TESTS)
else
cuda:
	@echo "cuda: nothing to build ($(if $(NVCC),no cuda/ sources,nvcc not found))"
endif

# ---- test ------------------------------------------------------------------
# `make test` first makes sure the Debian packages are there, then re-reads
# this Makefile (so detection sees them) and runs the suite.
deps:
	@bash tests/deps.sh
test: deps
	@$(MAKE) --no-print-directory test-run
test-run: all
	@bash tests/run.sh $(O)

# Exits 77 (skipped) without a GPU or without a CUDA build; make itself then
# reports "Error 77". Run build/tests/cuda/parity directly for the bare code.
test-cuda: $(CUDA_TESTS)
	@if [ "$(BUILD_CUDA)" = yes ] && [ -x $(O)/tests/cuda/parity ]; then $(O)/tests/cuda/parity; rc=$$?; \
	  if [ $$rc -eq 77 ]; then echo "test-cuda: skipped (no usable GPU)"; exit 77; fi; \
	  $(MAKE) --no-print-directory tools && bash tests/cuda/gpu_e2e.sh; e2e=$$?; \
	  echo "test-cuda: parity exit $$rc, gpu_e2e exit $$e2e"; if [ $$rc -ne 0 ]; then exit $$rc; fi; exit $$e2e; \
	else echo "test-cuda: no CUDA backend in this build (nvcc not found, or CUDA=0)"; exit 77; fi

# `make gpu-check` (tests/cuda/gpu_check.sh): one time-boxed command for anyone with a GPU.
# It builds gpu-check-build (only the CUDA library, the tools, the parity test and the GPU
# benchmark, with -k), runs every parity section in its own process, tests/cuda/gpu_e2e.sh
# and a short fp32 and bf16 benchmark, and writes $(O)/gpu-check/summary.txt (printed at
# the end). Exit 0 pass, 1 a stage failed, 77 no GPU or no CUDA build. With the Debian kit
# (cuda/README.md) it sources .devkit/setup.sh itself when the -dev packages are missing.
.PHONY: gpu-check gpu-check-build
gpu-check:
	@O=$(O) BIN=$(BIN) CUDA=$(CUDA) bash tests/cuda/gpu_check.sh
ifeq ($(BUILD_CUDA),yes)
gpu-check-build: $(CUDA_LIB) $(TOOLS) $(O)/tests/cuda/parity $(O)/bench/bench_cuda
else
gpu-check-build:
	@echo "gpu-check-build: nothing to build ($(if $(NVCC),no cuda/ sources,nvcc not found or CUDA=0))"
endif

# The demo: a small MoE LM on the King James Bible (Debian package bible-kjv), trained
# for a few minutes, evaluated on held-out verses and drawn (moe-plot: the training
# curves and the expert-load heatmap). Starts afresh each time.
demo: deps tools
	@bash data/prepare-demo.sh
	@rm -f build/demo/model.bin build/demo/model.bin.state build/demo/train.log build/demo/model.load
	$(BIN)/moe-train -c recipes/demo.yml
	$(BIN)/moe-eval -m build/demo/model.bin --text build/demo/data/test.txt
	$(BIN)/moe-plot -o build/demo/plots build/demo/train.log build/demo/model.load
	@echo "demo: figures in build/demo/plots: training.png (curves), moe-layer0.png (balance), load-lm.moe0.png (expert load)"

bench: $(BENCHES) tools
	@for b in $(BENCHES); do echo "== $$b"; $$b || exit 1; done
	@$(MAKE) --no-print-directory bench-torch-cpu

install: tools
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5
	install -m 755 $(TOOLS) $(DESTDIR)$(PREFIX)/bin/
	-install -m 644 man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	-install -m 644 man/*.5 $(DESTDIR)$(PREFIX)/share/man/man5/

clean:
	rm -rf $(O) $(BIN)

# ---- sanitizers and fuzzing (tests/fuzz/README.md) ---------------------------
# `make test SANITIZE=address,undefined` builds and tests in build-san/ (tools in
# build-san/bin, handed to the e2e tests as MOE_BIN); `make test-san` runs only the
# unit and gradient tests that way (CI). LSan suppressions: tests/lsan.supp.
ifneq ($(SANITIZE),)
export MOE_BIN := $(abspath $(BIN))
# whole malloc stacks, so that tests/lsan.supp can name the library that leaked; exit
# 86 on a finding, so that no test expecting exit 1 (a runtime error) mistakes one for it
export ASAN_OPTIONS ?= detect_leaks=1:fast_unwind_on_malloc=0:exitcode=86
export LSAN_OPTIONS ?= suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0
export UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1:exitcode=86
endif
.PHONY: test-san san-unit fuzz fuzz-build
# (no MPI there: the fast malloc unwinder will do, which makes spm_test 4x faster)
test-san:
	@$(if $(ASAN_OPTIONS),,ASAN_OPTIONS=detect_leaks=1:exitcode=86) \
	  $(MAKE) --no-print-directory SANITIZE=address,undefined O=build-san san-unit
san-unit: $(UNIT_TESTS) $(GRAD_TESTS)
	@bash tests/run.sh $(O) _test

# `make fuzz FUZZ_SECONDS=N`: every libFuzzer target of tests/fuzz/*.c, built with clang,
# ASan and UBSan against the library compiled the same way (its own tree, $(O)/fuzz; no
# OpenMP pragmas there, libomp only serves the omp_* calls), runs N seconds on a scratch
# copy of its seeds, FUZZ_JOBS at a time; any crash, leak, timeout or OOM fails.
FUZZ_SECONDS ?= 60
FUZZ_JOBS ?= $(shell nproc 2>/dev/null || echo 1)
FUZZ_CC ?= clang
FUZZ_CXX ?= clang++
FZ := $(O)/fuzz
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) -Wno-source-uses-openmp -O1 -g $(FUZZ_SAN) -fsanitize=fuzzer-no-link \
  -Isrc $(PC_CFLAGS) -MMD -MP
FUZZ_CXXFLAGS := -std=c++17 $(WARN) -O1 -g $(FUZZ_SAN) -fsanitize=fuzzer-no-link -Isrc $(PC_CFLAGS) -MMD -MP
FUZZ_OBJ := $(patsubst %.c,$(FZ)/obj/%.o,$(LIB_C)) $(patsubst %.cc,$(FZ)/obj/%.o,$(LIB_CC))
FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(FZ)/bin/%,$(wildcard tests/fuzz/*.c))
$(FZ)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@
$(FZ)/obj/%.o: %.cc
	@mkdir -p $(@D)
	$(FUZZ_CXX) $(FUZZ_CXXFLAGS) -c $< -o $@
$(FZ)/libmoe.a: $(FUZZ_OBJ)
	@rm -f $@
	ar rcs $@ $^
$(FZ)/bin/%: $(FZ)/obj/tests/fuzz/%.o $(FZ)/libmoe.a
	@mkdir -p $(@D)
	$(FUZZ_CXX) -fsanitize=fuzzer $(FUZZ_SAN) -fopenmp $< $(FZ)/libmoe.a $(LDLIBS) -o $@
fuzz-build: $(FUZZ_BINS)
fuzz: fuzz-build
	@bash tests/fuzz/run.sh $(FZ)/bin $(FUZZ_SECONDS) $(FUZZ_JOBS)

-include $(shell find $(O) -name '*.d' 2>/dev/null)

# GPU benchmarks (make bench-cuda): rules in bench/bench.mk
-include bench/bench.mk
