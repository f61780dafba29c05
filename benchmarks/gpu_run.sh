#!/usr/bin/env bash
# The device-machine side of benchmarks/GPU.md: results under $OUT (or ./gpu_out).
#
#   bash benchmarks/gpu_run.sh [STAGE]    STAGE: harness | bench | ort | genai | stash | all
#                                         (all, the default: harness, bench and ort)
#
#   harness  build facts and every kernel x dtype x view case through the ctypes harness
#            (gpu_check without the throughput table), then tests/test_ops_cuda.py
#   bench    the throughput table (IclMatMul against torch.matmul), then the harness tests
#            under compute-sanitizer memcheck
#   ort      onnxruntime-gpu from the carried wheel parts: gpu_check's ORT session check, the
#            tests that run an ORT CUDA session (-k cuda), and `icl-onnx check --providers cuda`
#            on the exports carried in out/gpu/ (made on the build machine: GPU.md), then on
#            the demo's default BERT (`icl-onnx demo` here)
#   genai    onnxruntime-gpu as for ort, and onnxruntime-genai-cuda from its carried wheel:
#            `benchmarks/gpu_genai.py run` on the GenAI CUDA folders carried in out/gpu-genai/
#            (built on the build machine: `python -m benchmarks.gpu_genai prepare`) and on a
#            large one built here
#   stash    only keep the carried wheel parts (a call that brings one more part)
#
# Every stage first copies what was carried in .whl/ to /tmp/icl-whl/, which lasts while the
# machine stays warm: onnxruntime-gpu (255 MB) travels as parts under 60 MB, one per call.
# Uses the harness built and carried from the build machine; if it does not load on this
# image, compiles it here with nvcc (needs the ORT headers carried in build/ort-include).
set -uo pipefail
cd "$(dirname "$0")/.."
STAGE="${1:-all}"
OUT="${OUT:-$PWD/gpu_out}"
mkdir -p "$OUT" /tmp/icl-whl /tmp/icl-site
export PYTHONUNBUFFERED=1
export ICL_ONNX_CUDA_HARNESS="${ICL_ONNX_CUDA_HARNESS:-$PWD/build/cuda/libicl_cuda_harness.so}"
export ICL_ONNX_LIBRARY="${ICL_ONNX_LIBRARY:-$PWD/build/cuda/libicl_ops.so}"
export PYTHONPATH="/tmp/icl-site:$PWD"
log() { echo "$*" | tee -a "$OUT/env.txt"; }

[ -d .whl ] && cp -n .whl/* /tmp/icl-whl/ 2>/dev/null
log "stage $STAGE; wheel parts kept: $(cd /tmp/icl-whl && ls | tr '\n' ' ')"
[ "$STAGE" = stash ] && exit 0

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee -a "$OUT/env.txt"
# The image's onnx-ir may be older than the package needs: install the carried one.
for whl in /tmp/icl-whl/onnx_ir-*.whl; do
  [ -f "$whl" ] && python3 -m pip install -q --no-index --no-deps --no-compile --upgrade \
    --target /tmp/icl-site "$whl" 2>&1 | tail -n 2
done

if ! python3 -c "import ctypes,sys; ctypes.CDLL(sys.argv[1])" "$ICL_ONNX_CUDA_HARNESS"; then
  log "carried harness does not load here; compiling it with nvcc"
  mkdir -p build/gpu
  nvcc -O3 -std=c++17 -shared -Xcompiler=-fPIC,-fvisibility=hidden -cudart static \
    -gencode arch=compute_90,code=sm_90 -Icustom_ops -Ibuild/ort-include -DORT_API_MANUAL_INIT \
    custom_ops/cuda/*.cu custom_ops/cuda/*_impl.cc custom_ops/cuda/cublas.cc \
    custom_ops/cuda/harness/*.cc -ldl -o build/gpu/libicl_cuda_harness.so 2>&1 \
    | tee -a "$OUT/env.txt"
  export ICL_ONNX_CUDA_HARNESS="$PWD/build/gpu/libicl_cuda_harness.so"
fi

PYTEST=(python3 -m pytest -q -rs -p no:cacheprovider)
rc=0
step() {  # step NAME TIMEOUT COMMAND...: runs it, logs to $OUT/NAME.log, records its status
  local name=$1 limit=$2
  shift 2
  local started=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local status=$?
  tail -n 25 "$OUT/$name.log"
  log "$name rc=$status ($((SECONDS - started)) s)"
  [ "$status" -ne 0 ] && rc=1
}

if [ "$STAGE" = harness ] || [ "$STAGE" = all ]; then
  step gpu_check_correctness 240 python3 -m benchmarks.gpu_check --out "$OUT" \
    --name gpu_h200_correctness --skip-benchmark --skip-ort
  step pytest_harness 150 "${PYTEST[@]}" tests/test_ops_cuda.py
fi

if [ "$STAGE" = bench ] || [ "$STAGE" = all ]; then
  step gpu_check_bench 300 python3 -m benchmarks.gpu_check --out "$OUT" \
    --name gpu_h200_throughput --skip-correctness --skip-ort
  # memcheck reports an out-of-bounds access by any kernel as an error (exit status 1).
  step memcheck 200 compute-sanitizer --tool memcheck --error-exitcode 1 \
    "${PYTEST[@]}" tests/test_ops_cuda.py -k "kernel and not ort"
fi

install_ort() {  # onnxruntime-gpu from the carried parts, and the CUDA libraries it needs
  local wheel=/tmp/icl-whl/onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl
  if [ ! -f "$wheel" ]; then
    cat /tmp/icl-whl/ort.part* >"$wheel"
  fi
  (cd /tmp/icl-whl && sha256sum -c ort.sha256) 2>&1 | tee -a "$OUT/env.txt"
  python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/icl-site \
    "$wheel" 2>&1 | tail -n 2
  # The CUDA EP's libraries (cuBLAS, cuDNN, cuFFT, ...) from the image's nvidia packages.
  local site nvlibs
  site=$(python3 -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  nvlibs=$(find "$site/nvidia" -name 'lib*.so*' -printf '%h\n' 2>/dev/null | sort -u | paste -sd:)
  export LD_LIBRARY_PATH="${nvlibs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  python3 -c "import onnxruntime as o; print(o.__version__, o.__file__, o.get_available_providers())" \
    2>&1 | tee -a "$OUT/env.txt"
}

if [ "$STAGE" = ort ] || [ "$STAGE" = all ]; then
  install_ort
  step gpu_check_ort 180 python3 -m benchmarks.gpu_check --out "$OUT" --name gpu_h200_ort \
    --skip-correctness --skip-benchmark
  step pytest_ort 240 "${PYTEST[@]}" tests/test_ops_cuda.py tests/test_check.py \
    tests/test_gather_block_quantized.py tests/test_low_rank_ops.py tests/test_variant_rows_op.py \
    tests/test_variant_generation.py tests/test_untrusted_ops.py -k cuda
  for original in out/gpu/*.onnx; do
    case $original in *.icl.onnx | *'*'*) continue ;; esac
    name=$(basename "$original" .onnx)
    step "check_$name" 120 python3 -m icl_onnx.cli.main check "$original" \
      "${original%.onnx}.icl.onnx" --providers cuda,cpu --json -q
  done
  # The demo's default model (BERT, hidden 768, vocab 30000): exported, optimized and checked
  # on the CPU by `icl-onnx demo` here, then checked on the GPU.
  step default_demo 300 python3 -m icl_onnx.cli.main demo --out-dir /tmp/icl-default
  step check_default_bert 150 python3 -m icl_onnx.cli.main check \
    /tmp/icl-default/bert-torchscript.onnx /tmp/icl-default/bert-torchscript.icl.onnx \
    --providers cuda,cpu --json -q
fi

if [ "$STAGE" = genai ]; then
  install_ort
  python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/icl-site \
    /tmp/icl-whl/onnxruntime_genai_cuda-*.whl 2>&1 | tail -n 2
  python3 -c "import onnxruntime_genai as og; print('onnxruntime-genai', og.__version__, og.__file__)" \
    2>&1 | tee -a "$OUT/env.txt"
  # The large build is made here (525 MB of LM head: too large to carry).
  step gpu_genai_prepare 300 python3 -m benchmarks.gpu_genai prepare out/gpu-genai \
    --names llama-v128k-bf16-cuda
  step gpu_genai 400 python3 -m benchmarks.gpu_genai run out/gpu-genai/llama-*-cuda --out "$OUT"
fi

log "stage $STAGE rc=$rc"
# At most 8 files come back: env.txt, the reports, and every log in one archive.
tar -czf /tmp/logs.tgz -C "$OUT" --exclude='*.md' --exclude=env.txt . && mv /tmp/logs.tgz \
  "$OUT/logs_$STAGE.tgz" && find "$OUT" -name '*.log' -delete
exit $rc
