// Picks the Backend for a device option ("auto" | "cpu" | "cuda") and sizes the KV pool from free device
// memory, for NativeEngine and NativeModel.
#pragma once
#include <string>

#include "backend/backend.h"
#include "model/model_config.h"

namespace sgl {

// "cpu": the CPU backend; "cuda": the CUDA backend or a std::runtime_error when there is none;
// "auto": CUDA when a GPU is present, else the CPU. Anything else: std::invalid_argument.
const Backend& select_backend(const std::string& device);

// SGLang's mem_fraction_static: weights + KV pool together take `fraction` of the device's memory. Called
// after the weights are placed, it returns how many pages of `page_size` tokens the KV pool gets (at least
// 1), or throws when the weights alone exceed the fraction. Only meaningful on a device backend.
int kv_pages_from_memory(const Backend& be, const ModelConfig& cfg, int page_size, double fraction);

}  // namespace sgl
