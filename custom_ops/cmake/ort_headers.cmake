# Resolves ORT_INCLUDE_DIR: the onnxruntime C/C++ headers (C API 21).
# Order: -DORT_INCLUDE_DIR, $ICL_ONNX_ORT_INCLUDE_DIR, else fetch Debian's libonnxruntime-dev
# once into a per-user cache (~/.cache/icl-onnx) with fetch_ort_headers.py.
if(NOT ORT_INCLUDE_DIR AND DEFINED ENV{ICL_ONNX_ORT_INCLUDE_DIR})
  set(ORT_INCLUDE_DIR "$ENV{ICL_ONNX_ORT_INCLUDE_DIR}")
endif()
if(NOT ORT_INCLUDE_DIR)
  find_package(Python3 REQUIRED COMPONENTS Interpreter)
  if(DEFINED ENV{XDG_CACHE_HOME})
    set(_icl_cache "$ENV{XDG_CACHE_HOME}/icl-onnx")
  else()
    set(_icl_cache "$ENV{HOME}/.cache/icl-onnx")
  endif()
  execute_process(
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/fetch_ort_headers.py
            ${_icl_cache}/onnxruntime-1.21-include
    OUTPUT_VARIABLE ORT_INCLUDE_DIR
    OUTPUT_STRIP_TRAILING_WHITESPACE
    RESULT_VARIABLE _icl_rc)
  if(NOT _icl_rc EQUAL 0)
    message(FATAL_ERROR "Could not fetch the onnxruntime headers; set ICL_ONNX_ORT_INCLUDE_DIR.")
  endif()
endif()
if(NOT EXISTS "${ORT_INCLUDE_DIR}/onnxruntime_lite_custom_op.h")
  message(FATAL_ERROR "ORT_INCLUDE_DIR=${ORT_INCLUDE_DIR} holds no onnxruntime_lite_custom_op.h")
endif()
message(STATUS "onnxruntime headers: ${ORT_INCLUDE_DIR}")
