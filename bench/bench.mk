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
$(BENCH_CUDA_BIN): $(BENCH_CUDA_OBJ) $(LIB) $(CUDA_LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) $(BENCH_CUDA_OBJ) $(BENCH_CUDA_LIBS) $(LDLIBS) -o $@
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
