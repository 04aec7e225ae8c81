#include "napi/backend_select.h"

#include <algorithm>
#include <stdexcept>

#if defined(SGL_WITH_CUDA)
#include "../cuda/cuda_probe.h"
#endif

namespace sgl {

bool dtype_is_float32(const std::string& dtype) {
  if (dtype == "float32" || dtype == "float") return true;
  if (dtype == "auto" || dtype == "bfloat16" || dtype == "float16" || dtype == "half") return false;
  throw std::invalid_argument("dtype must be 'auto', 'bfloat16', 'float16', 'float32', 'half' or 'float', got '" + dtype +
                              "'");
}

const Backend& select_backend(const std::string& device, const std::string& dtype) {
  const bool f32 = dtype_is_float32(dtype);
  if (device == "cpu") return cpu_backend();
  const Backend* cuda = f32 ? cuda_backend_f32() : cuda_backend();
  if (device == "cuda") {
    if (!cuda) throw std::runtime_error("device 'cuda': no CUDA device (or the addon was built without CUDA)");
    return *cuda;
  }
  if (device == "auto") return cuda ? *cuda : cpu_backend();
  throw std::invalid_argument("device must be 'auto', 'cpu' or 'cuda', got '" + device + "'");
}

int kv_pages_from_memory(const Backend& be, const ModelConfig& cfg, int page_size, double fraction) {
#if defined(SGL_WITH_CUDA)
  size_t free_b = 0, total_b = 0;
  be.sync();
  if (!cuda_mem_info(&free_b, &total_b)) throw std::runtime_error("cannot read the device's memory size");
  const double used = double(total_b - free_b);  // weights and everything else already resident
  const double budget = double(total_b) * fraction - used;
  const double page_bytes = 2.0 * cfg.num_layers * page_size * cfg.num_kv_heads * cfg.head_dim * dtype_size(be.act_dtype);
  if (budget < 2.0 * page_bytes) {
    throw std::runtime_error("mem_fraction_static " + std::to_string(fraction) + " of " + std::to_string(total_b >> 20) +
                             " MiB leaves no room for the KV cache after " + std::to_string(size_t(used) >> 20) +
                             " MiB in use (weights); raise --mem-fraction-static");
  }
  const double pages = budget / page_bytes - 1.0;  // the KV cache adds one scratch page
  return pages > 2.0e9 ? 2000000000 : std::max(1, int(pages));
#else
  (void)be, (void)cfg, (void)page_size, (void)fraction;
  throw std::runtime_error("sizing the KV pool from device memory needs the CUDA backend");
#endif
}

}  // namespace sgl
