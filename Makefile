# Set-up and entry points. `make demo` and `make test` each do all the set-up they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
BUILD_DEPS := "scikit-build-core>=0.10" "cmake>=3.24" ninja
STAMP := $(VENV)/.icl-installed

.PHONY: all venv build demo test sanitize lint bench clean

all: build

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Installs the package editable (Python sources live here), compiling the op library.
$(STAMP): $(VENV)/bin/python pyproject.toml $(shell find custom_ops -type f 2>/dev/null)
	$(PIP) install -q $(BUILD_DEPS)
	$(PIP) install -q --no-build-isolation -e ".[test,export,bench]"
	touch $(STAMP)

venv build: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/icl-onnx demo

test: $(STAMP)
	$(PY) -m pytest -q

# The op library built with AddressSanitizer and UndefinedBehaviorSanitizer (CPU kernels, in
# build/sanitize, beside the normal build), then the kernel tests against it: any finding stops
# the run with a report. Python is not instrumented, so the shared sanitizer runtimes are
# preloaded into it (and into the tests' child processes).
CMAKE := $(firstword $(wildcard $(VENV)/bin/cmake) cmake)
SANITIZE_BUILD := build/sanitize
SANITIZE_TESTS := tests/test_ops_cpu.py tests/test_low_rank_ops.py \
	tests/test_gather_block_quantized.py tests/test_untrusted_ops.py $(wildcard tests/test_fuzz_ops.py)
sanitize: $(STAMP)
	@mkdir -p $(SANITIZE_BUILD)
	$(CMAKE) -S custom_ops -B $(SANITIZE_BUILD) -DCMAKE_BUILD_TYPE=Release -DICL_SANITIZE=ON \
		-DICL_ENABLE_CUDA=OFF > $(SANITIZE_BUILD).log
	$(CMAKE) --build $(SANITIZE_BUILD) --parallel >> $(SANITIZE_BUILD).log
	ICL_ONNX_LIBRARY=$(abspath $(SANITIZE_BUILD))/libicl_ops.so \
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:alloc_dealloc_mismatch=0:abort_on_error=1 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		$(PY) -m pytest -q -p no:cacheprovider $(SANITIZE_TESTS)

lint: $(STAMP)
	$(VENV)/bin/ruff check icl_onnx tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/bench_matmul.py

clean:
	rm -rf build $(VENV)
