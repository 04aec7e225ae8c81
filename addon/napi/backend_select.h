// Picks the Backend for a device option ("auto" | "cpu" | "cuda") and a dtype option (--dtype), and sizes the
// KV pool from free device memory, for NativeEngine and NativeModel.
#pragma once
#include <string>

#include "backend/backend.h"
#include "model/model_config.h"

namespace sgl {

// "cpu": the CPU backend; "cuda": the CUDA backend or a std::runtime_error when there is none;
// "auto": CUDA when a GPU is present, else the CPU. Anything else: std::invalid_argument.
// dtype (SGLang's --dtype): "float32" / "float" pick CUDA's float32 table (cuda_backend_f32: f32 activations,
// KV cache and weights); "auto", "bfloat16", "float16", "half" the bf16 one. The CPU backend is the same for
// every dtype (it computes in f32 on the weights as stored; the JS front checks the flag against that).
// An unknown dtype: std::invalid_argument.
const Backend& select_backend(const std::string& device, const std::string& dtype = "auto");

// True for "float32" / "float", false for the other --dtype values, std::invalid_argument otherwise.
bool dtype_is_float32(const std::string& dtype);

// SGLang's mem_fraction_static: weights + KV pool together take `fraction` of the device's memory. Called
// after the weights are placed, it returns how many pages of `page_size` tokens the KV pool gets (at least
// 1), or throws when the weights alone exceed the fraction. Only meaningful on a device backend.
int kv_pages_from_memory(const Backend& be, const ModelConfig& cfg, int page_size, double fraction);

}  // namespace sgl
