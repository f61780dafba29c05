// Runs an icl-onnx optimized model from C++: register the ICL op library, create a session, run.
//
//   run_model MODEL.onnx LIBRARY.so
//
// Every input gets deterministic values (float: sin(i) / 2, int64 and int32: i % 7) in its declared
// shape, with dynamic dimensions set to 1; every output is printed as "name: v0 v1 ...".
// Build (see README, Deploy): g++ -std=c++17 run_model.cc -I ORT_INCLUDE -L ORT_LIB -l:libonnxruntime.so.1.xx

#include <onnxruntime_cxx_api.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace {

std::vector<int64_t> ConcreteShape(std::vector<int64_t> shape) {
  for (auto& d : shape) {
    if (d < 0) d = 1;  // a dynamic dimension
  }
  return shape;
}

size_t Elements(const std::vector<int64_t>& shape) {
  size_t n = 1;
  for (auto d : shape) n *= static_cast<size_t>(d);
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s MODEL.onnx LIBRARY.so\n", argv[0]);
    return 2;
  }
  try {
    Ort::Env env(ORT_LOGGING_LEVEL_WARNING, "icl-onnx-example");
    Ort::SessionOptions options;
    options.RegisterCustomOpsLibrary(argv[2]);  // the ai.icl operators
    Ort::Session session(env, argv[1], options);

    Ort::AllocatorWithDefaultOptions allocator;
    Ort::MemoryInfo memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
    std::vector<std::string> input_names, output_names;
    std::vector<std::vector<float>> floats;
    std::vector<std::vector<int64_t>> ints;
    std::vector<std::vector<int32_t>> ints32;
    std::vector<Ort::Value> inputs;
    floats.reserve(session.GetInputCount());
    ints.reserve(session.GetInputCount());
    ints32.reserve(session.GetInputCount());
    for (size_t i = 0; i < session.GetInputCount(); ++i) {
      input_names.push_back(session.GetInputNameAllocated(i, allocator).get());
      Ort::TypeInfo type_info = session.GetInputTypeInfo(i);  // owns what `info` reads
      auto info = type_info.GetTensorTypeAndShapeInfo();
      auto shape = ConcreteShape(info.GetShape());
      size_t n = Elements(shape);
      if (info.GetElementType() == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) {
        auto& data = floats.emplace_back(n);
        for (size_t k = 0; k < n; ++k) data[k] = static_cast<float>(std::sin(double(k)) / 2);
        inputs.push_back(Ort::Value::CreateTensor<float>(memory, data.data(), n, shape.data(),
                                                         shape.size()));
      } else if (info.GetElementType() == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64) {
        auto& data = ints.emplace_back(n);
        for (size_t k = 0; k < n; ++k) data[k] = static_cast<int64_t>(k % 7);
        inputs.push_back(Ort::Value::CreateTensor<int64_t>(memory, data.data(), n, shape.data(),
                                                           shape.size()));
      } else if (info.GetElementType() == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32) {
        auto& data = ints32.emplace_back(n);
        for (size_t k = 0; k < n; ++k) data[k] = static_cast<int32_t>(k % 7);
        inputs.push_back(Ort::Value::CreateTensor<int32_t>(memory, data.data(), n, shape.data(),
                                                           shape.size()));
      } else {
        std::fprintf(stderr, "input %s: only float, int64 and int32 inputs are filled\n",
                     input_names.back().c_str());
        return 2;
      }
    }
    for (size_t i = 0; i < session.GetOutputCount(); ++i) {
      output_names.push_back(session.GetOutputNameAllocated(i, allocator).get());
    }
    std::vector<const char*> in_ptrs, out_ptrs;
    for (auto& s : input_names) in_ptrs.push_back(s.c_str());
    for (auto& s : output_names) out_ptrs.push_back(s.c_str());

    auto outputs = session.Run(Ort::RunOptions{nullptr}, in_ptrs.data(), inputs.data(),
                               inputs.size(), out_ptrs.data(), out_ptrs.size());
    for (size_t i = 0; i < outputs.size(); ++i) {
      auto info = outputs[i].GetTensorTypeAndShapeInfo();
      if (info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) continue;
      const float* data = outputs[i].GetTensorData<float>();
      std::printf("%s:", output_names[i].c_str());
      for (size_t k = 0; k < info.GetElementCount(); ++k) std::printf(" %.9g", data[k]);
      std::printf("\n");
    }
  } catch (const Ort::Exception& e) {
    std::fprintf(stderr, "onnxruntime: %s\n", e.what());
    return 1;
  }
  return 0;
}
