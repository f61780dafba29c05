# icl::openblas: OpenBLAS from the scipy-openblas32 wheel (symbols prefixed scipy_).
find_package(Python3 REQUIRED COMPONENTS Interpreter)
execute_process(
  COMMAND ${Python3_EXECUTABLE} -c
    "import scipy_openblas32 as s; print(s.get_include_dir()); print(s.get_lib_dir())"
  OUTPUT_VARIABLE _icl_ob OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _icl_rc)
if(NOT _icl_rc EQUAL 0)
  message(FATAL_ERROR "scipy-openblas32 is not importable by ${Python3_EXECUTABLE}: pip install scipy-openblas32")
endif()
string(REPLACE "\n" ";" _icl_ob "${_icl_ob}")
list(GET _icl_ob 0 ICL_OPENBLAS_INCLUDE_DIR)
list(GET _icl_ob 1 ICL_OPENBLAS_LIB_DIR)
add_library(icl::openblas SHARED IMPORTED)
set_target_properties(icl::openblas PROPERTIES
  IMPORTED_LOCATION "${ICL_OPENBLAS_LIB_DIR}/libscipy_openblas.so"
  INTERFACE_INCLUDE_DIRECTORIES "${ICL_OPENBLAS_INCLUDE_DIR}")
message(STATUS "OpenBLAS: ${ICL_OPENBLAS_LIB_DIR}")
