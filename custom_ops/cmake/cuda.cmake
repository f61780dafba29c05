# The CUDA part of the op library, or cuda/stub.cc when CUDA is off or nvcc is missing.
#   icl_cuda_kernels  OBJECT: the kernels and their launchers (cuda/*.cu, compiled by nvcc), the
#                     host side of the launches (cuda/*_impl.cc, e.g. matmul_impl.cc: the cuBLAS
#                     GEMMs) and the run-time cuBLAS loader (cuda/cublas.cc), both compiled as
#                     C++ (cuda/boundary.cuh says what goes where), shared by
#   icl_ops           (+ cuda/register.cc: the CUDAExecutionProvider kernels) and
#   icl_cuda_harness  SHARED, test-only: a C API over the launchers for ctypes tests and
#                     benchmarks, and the CUDA kernels' Create and input front end behind CPU ops
#                     (create_probe.cc).
# cudart is linked statically and cuBLAS is opened at run time (cuda/cublas.h), so both libraries
# load on machines with no CUDA driver and no CUDA libraries.
include(CheckLanguage)
if(ICL_ENABLE_CUDA)
  check_language(CUDA)
endif()

if(NOT (ICL_ENABLE_CUDA AND CMAKE_CUDA_COMPILER))
  target_sources(icl_ops PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/cuda/stub.cc)
  message(STATUS "CUDA kernels: off")
  return()
endif()

enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
set(CMAKE_CUDA_VISIBILITY_PRESET hidden)

set(_icl_cuda_dir ${CMAKE_CURRENT_SOURCE_DIR}/cuda)
file(GLOB ICL_CUDA_KERNEL_SOURCES CONFIGURE_DEPENDS ${_icl_cuda_dir}/*.cu
  ${_icl_cuda_dir}/*_impl.cc)
add_library(icl_cuda_kernels OBJECT ${ICL_CUDA_KERNEL_SOURCES} ${_icl_cuda_dir}/cublas.cc)
target_include_directories(icl_cuda_kernels PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_compile_options(icl_cuda_kernels PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:-O3 --expt-relaxed-constexpr -Xcompiler=-Wall>
  $<$<COMPILE_LANGUAGE:CXX>:-O3 -Wall -Wextra>)
target_link_libraries(icl_cuda_kernels PUBLIC CUDA::cudart_static ${CMAKE_DL_LIBS})
set_target_properties(icl_cuda_kernels PROPERTIES
  POSITION_INDEPENDENT_CODE ON CUDA_SEPARABLE_COMPILATION OFF)

target_sources(icl_ops PRIVATE ${_icl_cuda_dir}/register.cc)
target_compile_definitions(icl_ops PRIVATE ICL_USE_CUDA)
target_link_libraries(icl_ops PRIVATE icl_cuda_kernels)

add_library(icl_cuda_harness SHARED ${_icl_cuda_dir}/harness/harness_api.cc
  ${_icl_cuda_dir}/harness/create_probe.cc)
target_include_directories(icl_cuda_harness PRIVATE ${CMAKE_CURRENT_SOURCE_DIR} ${ORT_INCLUDE_DIR})
target_compile_definitions(icl_cuda_harness PRIVATE ORT_API_MANUAL_INIT)
target_compile_options(icl_cuda_harness PRIVATE -O2 -Wall -Wextra)
target_link_libraries(icl_cuda_harness PRIVATE icl_cuda_kernels)
# -z nodelete as for icl_ops (CMakeLists.txt): ORT dlcloses the harness too when it serves as a
# custom op library, and the wheel's toolchain (zig) then leaves exit handlers pointing into it.
target_link_options(icl_cuda_harness PRIVATE
  "-Wl,--version-script=${_icl_cuda_dir}/harness/exports.lds" "-Wl,--no-undefined"
  "-Wl,-z,nodelete")
set_target_properties(icl_cuda_harness PROPERTIES LINK_DEPENDS ${_icl_cuda_dir}/harness/exports.lds)
# Not installed: tests and benchmarks load it from the build folder (tests/support/cuda_harness.py).

message(STATUS "CUDA kernels: on (${CMAKE_CUDA_ARCHITECTURES}), harness: icl_cuda_harness")
