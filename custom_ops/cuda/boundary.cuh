// The boundary between the CUDA kernels (cuda/*.cu) and the rest of the op library. Every header
// that declares a launcher defined in a .cu file includes this one and keeps its rule.
//
// The .cu files are compiled by nvcc, everything else by the C++ compiler, and in the manylinux
// wheel the two sides use different C++ standard libraries: nvcc takes neither zig's clang nor
// libc++ as its host compiler, so it compiles with the system g++ (libstdc++ headers), while every
// .cc file is compiled by zig's clang with libc++ against glibc 2.28 (`make wheel`). The two
// libraries' classes differ in layout and name (std::__cxx11::string, std::__1::string), and only
// libc++ is linked into the library. Hence:
//  1. A launcher takes and returns only C types: pointers, integers, float, bool, the enums of
//     common/elem_type.h, cudaStream_t, cudaError_t, const char* to static text, and plain structs
//     of those (GatherProblem). No std::string, std::vector or any other library class, no
//     exception, crosses it; a failure is a cudaError_t (or a static message).
//  2. A .cu file uses only the header-only part of the C++ library (<cstdint>, <limits>,
//     <type_traits>, std::min and std::max); nothing with code in libstdc++.so (std::string and
//     std::to_string, containers, streams, throw, thread_local objects). Including a header that
//     declares such things is harmless (common/elem_type.h pulls in <string>) as long as the .cu
//     file calls none of it, nor any inline function whose signature or body uses it: an inline
//     function compiled on both sides must be the same code on both.
//  3. Host logic that needs the library (messages, cuBLAS through cuda/cublas.h, caches) goes in
//     a cuda/*_impl.cc file, compiled with the rest (cmake/cuda.cmake takes every one): e.g.
//     cuda/matmul_impl.cc runs the cuBLAS GEMMs and calls LaunchConvert2D
//     (cuda/convert_impl.cuh) for the conversions. A file without a kernel is such a file.
// A library class in a launcher's signature or in a .cu file's code fails the wheel's link under
// -Wl,--no-undefined: the two sides name such functions differently (g++'s
// LaunchMatMul[abi:cxx11] against clang's LaunchMatMul), and libstdc++'s code is not there. A
// library class inside a struct passed across would link and break at run time: rule 1 is kept
// by review. The editable build, one g++ for both sides, notices neither, so build the wheel
// (`make wheel`, tests/test_wheel.py) after touching a .cu file.
#pragma once

#include <cuda_runtime.h>
