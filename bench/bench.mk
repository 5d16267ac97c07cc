# GPU benchmark rules, included by the Makefile (bench/README.md).
#
#   make bench-cuda    our engine on the GPU: ceilings, then G1-G5 (exit 77 without a GPU);
#                      table on stdout, JSON in $(BENCH_JSON); BENCH_ARGS adds options
#   make bench-torch   the PyTorch peer (bench/torch_ref.py) on the same configurations,
#                      JSON in $(TORCH_JSON), with our tokens/s beside its own when
#                      $(BENCH_JSON) exists; TORCH_ARGS adds options
#   make bench-check   the correctness gate on the CPU: bench_cuda --cpu --dump-check, then
#                      torch_ref.py --check (tests/e2e/bench_check.sh; exit 77 without torch)
#
# bench/cuda/*.c build $(O)/bench/bench_cuda (outside the bench/*.c wildcard of the CPU
# benchmarks). With CUDA it links the CUDA backend and cuBLAS (the ceilings call
# cublasGemmEx directly); without, the same program runs only on the CPU (--cpu,
# --dump-check) and its GPU run exits 77.
BENCH_CUDA_C := $(wildcard bench/cuda/*.c)
BENCH_CUDA_BIN := $(O)/bench/bench_cuda
BENCH_FLAVOUR := $(if $(filter yes,$(BUILD_CUDA)),gpu,cpu)
BENCH_CUDA_OBJ := $(patsubst %.c,$(O)/bench-cuda/$(BENCH_FLAVOUR)/%.o,$(BENCH_CUDA_C))
ifeq ($(BUILD_CUDA),yes)
BENCH_CUDA_CFLAGS := -DMOE_BENCH_CUDA -I$(CUDA_HOME)/include
BENCH_CUDA_LIBS := $(TOOL_LIBS) -lcublasLt
else
BENCH_CUDA_CFLAGS :=
BENCH_CUDA_LIBS := $(LIB)
endif
BENCH_JSON ?= $(O)/bench/bench-cuda.json
TORCH_JSON ?= $(O)/bench/bench-torch.json
BENCH_ARGS ?=
TORCH_ARGS ?=

$(O)/bench-cuda/$(BENCH_FLAVOUR)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(BENCH_CUDA_CFLAGS) -c $< -o $@
$(BENCH_CUDA_BIN): $(BENCH_CUDA_OBJ) $(REG_OBJ) $(LIB) $(CUDA_LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) $(BENCH_CUDA_OBJ) $(REG_OBJ) $(BENCH_CUDA_LIBS) $(LDLIBS) -o $@
all: $(BENCH_CUDA_BIN)

.PHONY: bench-cuda bench-torch bench-check
bench-cuda: $(BENCH_CUDA_BIN)
	@$(BENCH_CUDA_BIN) --json $(BENCH_JSON) $(BENCH_ARGS); rc=$$?; \
	  if [ $$rc -eq 77 ]; then echo "bench-cuda: skipped (no usable GPU)"; fi; exit $$rc
bench-torch:
	@mkdir -p $(dir $(TORCH_JSON))
	python3 bench/torch_ref.py --json $(TORCH_JSON) --ours $(BENCH_JSON) $(TORCH_ARGS)
bench-check: $(BENCH_CUDA_BIN)
	@O=$(O) bash tests/e2e/bench_check.sh

# ---- CPU: our engine against PyTorch (bench/cpu_vs_torch.py, issue 17) -------------------
#   make bench-torch-cpu            C1, C2, C3: moe-train and bench/torch_ref.py side by side
#   make bench-torch-cpu BUSY=1     also each run beside a one-core busy loop
#   CPU_BENCH_ARGS="--configs C1 --steps 20" adds options; TORCH_PY=python with torch
#   uses that Python; otherwise PyTorch and numpy go from PyPI into $(VENV) (an ignored
#   folder, made once; TORCH_PIP_ARGS adds pip options, e.g. another index for the
#   smaller CPU-only wheel). Without PyTorch (no network) it runs ours alone.
#   make bench-gemm-libs            which GEMM library: OpenBLAS, BLIS, oneDNN, LIBXSMM
VENV ?= $(O)/venv
TORCH_PY ?= $(VENV)/bin/python
TORCH_PIP_ARGS ?=
CPU_BENCH_ARGS ?=
.PHONY: bench-torch-cpu bench-gemm-libs torch-venv
torch-venv:
	@if [ -x "$(TORCH_PY)" ] && "$(TORCH_PY)" -c 'import torch, numpy' 2>/dev/null; then :; \
	elif [ "$(TORCH_PY)" != "$(VENV)/bin/python" ]; then echo "bench-torch-cpu: $(TORCH_PY) has no torch"; \
	else echo "bench-torch-cpu: installing PyTorch and numpy from PyPI into $(VENV) (once)"; \
	  { python3 -m venv $(VENV) && $(VENV)/bin/pip install -q $(TORCH_PIP_ARGS) torch numpy; } || \
	  echo "bench-torch-cpu: could not install PyTorch: our engine only"; fi
bench-torch-cpu: tools torch-venv
	python3 bench/cpu_vs_torch.py --torch-python $(TORCH_PY) $(if $(filter 1,$(BUSY)),--busy) $(CPU_BENCH_ARGS)

GEMM_LIBS_DEFS := $(if $(wildcard /usr/include/x86_64-linux-gnu/blis-openmp/blis.h),-DHAVE_BLIS -I/usr/include/x86_64-linux-gnu/blis-openmp) \
  $(if $(HAVE_DNNL),-DHAVE_DNNL) $(if $(wildcard /usr/include/libxsmm.h),-DHAVE_XSMM)
GEMM_LIBS_LIBS := $(if $(wildcard /usr/include/libxsmm.h),-lxsmm) $(PC_LIBS) \
  $(if $(wildcard /usr/include/x86_64-linux-gnu/blis-openmp/blis.h),-lblis) $(DNNL_LIBS) -lpthread -lrt -ldl -lm
$(O)/bench/gemm_libs: bench/gemm/gemm_libs.c
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O2 $(NATIVE_FLAG) -fopenmp $(PC_CFLAGS) $(GEMM_LIBS_DEFS) $< -o $@ $(BLAS_RPATH) $(GEMM_LIBS_LIBS)
bench-gemm-libs: $(O)/bench/gemm_libs
	$(O)/bench/gemm_libs --threads 1
	$(O)/bench/gemm_libs --threads 2
