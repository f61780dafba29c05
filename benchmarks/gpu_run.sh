#!/usr/bin/env bash
# The device-machine side of benchmarks/GPU.md: one command, results under $OUT (or ./gpu_out).
# Uses the harness built and carried from the build machine; if it does not load on this
# image, compiles it here with nvcc (needs the ORT headers carried in build/ort-include).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export ICL_ONNX_CUDA_HARNESS="${ICL_ONNX_CUDA_HARNESS:-$PWD/build/cuda/libicl_cuda_harness.so}"
export ICL_ONNX_LIBRARY="${ICL_ONNX_LIBRARY:-$PWD/build/cuda/libicl_ops.so}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/env.txt"

if ! python3 -c "import ctypes,sys; ctypes.CDLL(sys.argv[1])" "$ICL_ONNX_CUDA_HARNESS"; then
  echo "carried harness does not load here; compiling it with nvcc" | tee -a "$OUT/env.txt"
  mkdir -p build/gpu
  nvcc -O3 -std=c++17 -shared -Xcompiler=-fPIC,-fvisibility=hidden -cudart static \
    -gencode arch=compute_90,code=sm_90 -Icustom_ops -Ibuild/ort-include -DORT_API_MANUAL_INIT \
    custom_ops/cuda/*.cu custom_ops/cuda/cublas.cc custom_ops/cuda/harness/*.cc \
    -ldl -o build/gpu/libicl_cuda_harness.so 2>&1 | tee -a "$OUT/env.txt"
  export ICL_ONNX_CUDA_HARNESS="$PWD/build/gpu/libicl_cuda_harness.so"
fi

timeout 420 python3 -m benchmarks.gpu_check --out "$OUT" 2>&1 | tee "$OUT/gpu_check.log"
check_rc=${PIPESTATUS[0]}
timeout 90 python3 -m pytest -q -p no:cacheprovider tests/test_ops_cuda.py \
  -k "matmul_kernel or gather_kernel or loaded_kernels or harness or ort_cuda" 2>&1 \
  | tail -n 40 | tee "$OUT/pytest.log"
test_rc=${PIPESTATUS[0]}
echo "gpu_check rc=$check_rc pytest rc=$test_rc" | tee -a "$OUT/env.txt"
exit $(( check_rc != 0 || test_rc != 0 ))
