// The CUDA Backend tables (addon/backend/backend.h) on device 0, bf16 (cuda_backend) and float32
// (cuda_backend_f32): memory management, weight placement (upload + conversion to bf16, or to f32), and the
// ops of elementwise.cu, matmul.cu, gemv_fused.cu, attention*.cu, logits.cu, moe.cu and graphs.cu. Everything but place_weight is enqueued on sgl_stream(); download, sync and to_f32 wait for it.
#include <cstdint>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>

#include "attention.h"
#include "cuda_common.cuh"
#include "cuda_probe.h"
#include "graphs.h"
#include "ops.h"

namespace sgl {

namespace {

// ---- bit-exact conversions (integer arithmetic: --use_fast_math cannot flush subnormals here) -----------

// f32 bits -> bf16 bits, round to nearest even; NaN stays NaN (quiet bit set), as cpu/convert.h.
__device__ __forceinline__ uint16_t f32_bits_to_bf16(uint32_t u) {
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

// IEEE half bits -> f32 bits, exact for every input (subnormals, inf, NaN).
__device__ __forceinline__ uint32_t f16_bits_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  if (exp == 0x1f) return sign | 0x7f800000u | (man << 13);
  if (exp != 0) return sign | ((exp + 112) << 23) | (man << 13);
  if (man == 0) return sign;
  // Subnormal half: man * 2^-24, a normal f32. Normalise the mantissa by hand.
  const int shift = __clz(man) - 21;  // leading zeros within the 10-bit field, + 1 to drop the implicit bit
  const uint32_t m = (man << shift) & 0x3ffu;
  const uint32_t e = uint32_t(113 - shift);
  return sign | (e << 23) | (m << 13);
}

// dst[i] = bf16(src[i]) for n elements of F32 (src_f16 false) or F16 raw bits; 4 per thread.
__global__ void convert_to_bf16_kernel(const void* __restrict__ src, uint16_t* __restrict__ dst, int64_t n,
                                       bool src_f16) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t n4 = n / 4;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n4; i += stride) {
    uint16_t o[4];
    if (src_f16) {
      const uint2 v = reinterpret_cast<const uint2*>(src)[i];
      o[0] = f32_bits_to_bf16(f16_bits_to_f32(uint16_t(v.x & 0xffffu)));
      o[1] = f32_bits_to_bf16(f16_bits_to_f32(uint16_t(v.x >> 16)));
      o[2] = f32_bits_to_bf16(f16_bits_to_f32(uint16_t(v.y & 0xffffu)));
      o[3] = f32_bits_to_bf16(f16_bits_to_f32(uint16_t(v.y >> 16)));
    } else {
      const uint4 v = reinterpret_cast<const uint4*>(src)[i];
      o[0] = f32_bits_to_bf16(v.x);
      o[1] = f32_bits_to_bf16(v.y);
      o[2] = f32_bits_to_bf16(v.z);
      o[3] = f32_bits_to_bf16(v.w);
    }
    reinterpret_cast<uint2*>(dst)[i] =
        make_uint2(uint32_t(o[0]) | (uint32_t(o[1]) << 16), uint32_t(o[2]) | (uint32_t(o[3]) << 16));
  }
  if (blockIdx.x == 0 && threadIdx.x < n - n4 * 4) {
    const int64_t i = n4 * 4 + threadIdx.x;
    dst[i] = src_f16 ? f32_bits_to_bf16(f16_bits_to_f32(static_cast<const uint16_t*>(src)[i]))
                     : f32_bits_to_bf16(static_cast<const uint32_t*>(src)[i]);
  }
}

// dst[i] = f32(src[i]) for n elements of BF16 (src_f16 false) or F16 raw bits (the float32 table's weights):
// both widen exactly.
__global__ void convert_to_f32_kernel(const uint16_t* __restrict__ src, uint32_t* __restrict__ dst, int64_t n,
                                      bool src_f16) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dst[i] = src_f16 ? f16_bits_to_f32(src[i]) : uint32_t(src[i]) << 16;
}

// bf16 -> f32 is the bits shifted up: exact for every pattern, NaN payloads and subnormals included.
__global__ void bf16_to_f32_kernel(const uint16_t* __restrict__ src, uint32_t* __restrict__ dst, int64_t n) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dst[i] = uint32_t(src[i]) << 16;
}

unsigned grid_for(int64_t items, int threads) {
  int64_t blocks = (items + threads - 1) / threads;
  const int64_t cap = int64_t(sgl_sm_count()) * 16;
  if (blocks > cap) blocks = cap;
  if (blocks < 1) blocks = 1;
  return unsigned(blocks);
}

// ---- memory -----------------------------------------------------------------------------------------------

void* cuda_alloc(size_t bytes) {
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, bytes ? bytes : 256);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the (non-sticky) allocation error
    return nullptr;
  }
  return p;
}

void cuda_free(void* p) {
  if (p) SGL_CUDA_CHECK(cudaFree(p));
}

void cuda_upload(void* dst, const void* src, size_t bytes) {
  if (bytes) SGL_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, sgl_stream()));
}

void cuda_download(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  SGL_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, sgl_stream()));
  SGL_CUDA_CHECK(cudaStreamSynchronize(sgl_stream()));
}

void cuda_memset_zero(void* dst, size_t bytes) {
  if (bytes) SGL_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, sgl_stream()));
}

void cuda_sync() { SGL_CUDA_CHECK(cudaStreamSynchronize(sgl_stream())); }

void* cuda_host_alloc(size_t bytes) {
  void* p = nullptr;
  SGL_CUDA_CHECK(cudaMallocHost(&p, bytes ? bytes : 64));
  return p;
}

void cuda_host_free(void* p) {
  if (p) SGL_CUDA_CHECK(cudaFreeHost(p));
}

// Enqueued only: dst (pinned, host_alloc) holds the data after the next cuda_sync.
void cuda_download_async(void* dst, const void* src, size_t bytes) {
  if (bytes) SGL_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, sgl_stream()));
}

// ---- weights ----------------------------------------------------------------------------------------------
// The host weight is usually a memory map (pageable), so it goes through two pinned buffers: while chunk i
// is DMA'd from one, the CPU copies chunk i+1 into the other (an event per buffer says when the DMA that
// last read it is done). bf16 chunks land in place; f32/f16 chunks land in a device staging area and a
// kernel converts them (stream order keeps the staging area from being overwritten early).
//
// This runs on a stream of its own, not sgl_stream(), and waits for it before returning: weights may be
// placed from another thread (a checkpoint update) while the engine thread captures sgl_stream() into a
// CUDA graph, and nothing may be enqueued on a capturing stream from outside. The destination is fresh
// memory and the sync happens before the weight is handed out, so the ops on sgl_stream() need no ordering.

constexpr size_t kStageBytes = size_t(64) << 20;

struct Staging {
  std::mutex mu;
  cudaStream_t stream = nullptr;
  void* pinned[2] = {nullptr, nullptr};
  cudaEvent_t done[2] = {nullptr, nullptr};
  void* device = nullptr;  // raw f32/f16 bytes of one chunk
};

Staging& staging() {
  static Staging* s = new Staging();  // never destroyed (the driver may be gone at exit)
  return *s;
}

// Places `host` as a device weight of dtype `out` (BF16: the default table; F32: the float32 table).
WeightRef place_weight_as(const WeightRef& host, size_t count, DType out_dt) {
  if (!host.data) return WeightRef{nullptr, out_dt};
  if (host.dtype != DType::F32 && host.dtype != DType::BF16 && host.dtype != DType::F16)
    throw std::runtime_error(std::string("place_weight: unsupported weight dtype ") + dtype_name(host.dtype));
  const size_t out_bytes = count * dtype_size(out_dt);
  void* dst = cuda_alloc(out_bytes);  // clears the error on failure: it would resurface at the next launch check
  if (!dst)
    throw std::runtime_error("place_weight: out of device memory for a weight of " + std::to_string(out_bytes) +
                             " bytes");
  if (count == 0) return WeightRef{dst, out_dt};

  Staging& s = staging();
  std::lock_guard<std::mutex> lock(s.mu);
  try {
    if (!s.stream) SGL_CUDA_CHECK(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
    for (int b = 0; b < 2; b++) {
      if (!s.pinned[b]) SGL_CUDA_CHECK(cudaHostAlloc(&s.pinned[b], kStageBytes, cudaHostAllocDefault));
      if (!s.done[b]) SGL_CUDA_CHECK(cudaEventCreateWithFlags(&s.done[b], cudaEventDisableTiming));
    }
    const bool convert = host.dtype != out_dt;
    if (convert && !s.device && !(s.device = cuda_alloc(kStageBytes)))
      throw std::runtime_error("place_weight: out of device memory for the conversion staging area");

    cudaStream_t st = s.stream;
    const size_t in_es = dtype_size(host.dtype);
    const size_t chunk = kStageBytes / in_es;  // elements per chunk (a multiple of 4: aligned vectors)
    const char* src = static_cast<const char*>(host.data);
    char* out = static_cast<char*>(dst);
    const size_t out_es = dtype_size(out_dt);
    int b = 0;
    for (size_t e0 = 0; e0 < count; e0 += chunk, b ^= 1) {
      const size_t n = count - e0 < chunk ? count - e0 : chunk;
      const size_t bytes = n * in_es;
      SGL_CUDA_CHECK(cudaEventSynchronize(s.done[b]));  // the DMA that last read this buffer is done
      std::memcpy(s.pinned[b], src + e0 * in_es, bytes);
      if (convert) {
        SGL_CUDA_CHECK(cudaMemcpyAsync(s.device, s.pinned[b], bytes, cudaMemcpyHostToDevice, st));
        if (out_dt == DType::BF16) {
          convert_to_bf16_kernel<<<grid_for(int64_t(n) / 4, 256), 256, 0, st>>>(
              s.device, reinterpret_cast<uint16_t*>(out + e0 * out_es), int64_t(n), host.dtype == DType::F16);
        } else {  // F32 from BF16 or F16
          convert_to_f32_kernel<<<grid_for(int64_t(n), 256), 256, 0, st>>>(
              static_cast<const uint16_t*>(s.device), reinterpret_cast<uint32_t*>(out + e0 * out_es), int64_t(n),
              host.dtype == DType::F16);
        }
        SGL_CUDA_LAUNCH_CHECK();
      } else {
        SGL_CUDA_CHECK(cudaMemcpyAsync(out + e0 * out_es, s.pinned[b], bytes, cudaMemcpyHostToDevice, st));
      }
      SGL_CUDA_CHECK(cudaEventRecord(s.done[b], st));
    }
    SGL_CUDA_CHECK(cudaStreamSynchronize(st));
  } catch (...) {
    cudaFree(dst);
    throw;
  }
  return WeightRef{dst, out_dt};
}

WeightRef cuda_place_weight(const WeightRef& host, size_t count) { return place_weight_as(host, count, DType::BF16); }
WeightRef cuda_place_weight_f32(const WeightRef& host, size_t count) {
  return place_weight_as(host, count, DType::F32);
}

void cuda_release_weight(const WeightRef& placed) {
  if (placed.data) SGL_CUDA_CHECK(cudaFree(const_cast<void*>(placed.data)));
}

// bf16 device values (an activation buffer) -> f32 host: converted on the device, then one download.
void cuda_to_f32(const void* src, float* dst_host, size_t n) {
  if (!n) return;
  uint32_t* tmp = static_cast<uint32_t*>(sgl_workspace(n * sizeof(float)));
  bf16_to_f32_kernel<<<grid_for(int64_t(n), 256), 256, 0, sgl_stream()>>>(static_cast<const uint16_t*>(src), tmp,
                                                                         int64_t(n));
  SGL_CUDA_LAUNCH_CHECK();
  cuda_download(dst_host, tmp, n * sizeof(float));
}

// The float32 table's activations are f32 already: one download.
void cuda_to_f32_f32(const void* src, float* dst_host, size_t n) { cuda_download(dst_host, src, n * sizeof(float)); }

}  // namespace

const Backend* cuda_backend() {
  static const Backend* backend = []() -> const Backend* {
    if (cuda_device_count() == 0) return nullptr;  // also clears the sticky "no device" error
    static const Backend b = {
        "cuda",
        DType::BF16,
        cuda_alloc,
        cuda_free,
        cuda_upload,
        cuda_download,
        cuda_memset_zero,
        cuda_sync,
        cuda_host_alloc,
        cuda_host_free,
        cuda_download_async,
        cuda_place_weight,
        cuda_release_weight,
        embed_cuda,
        matmul_cuda,
        rms_norm_cuda,
        rope_cuda,
        kv_store_cuda,
        attention_cuda,
        silu_mul_cuda,
        gather_rows_cuda,
        cuda_to_f32,
        logits_argmax_cuda,
        graph_begin_cuda,
        graph_end_cuda,
        graph_launch_cuda,
        graph_free_cuda,
        qkv_rope_store_cuda,
        layer_norm_cuda,
        gelu_cuda,
        sample_rows_cuda,
        rms_norm_matmul_cuda,
        silu_mul_matmul_cuda,
        moe_route_cuda,
        moe_permute_cuda,
        grouped_matmul_cuda,
        moe_unpermute_cuda,
        matmul_silu_mul_cuda,
        matmul_add_cuda,
    };
    return &b;
  }();
  return backend;
}

// The float32 table: a copy of the bf16 table (so every member set there is set here, the dtype-independent
// ones shared: memory, copies, graphs, logits_argmax and whatever works on the f32 logits) with each op that
// touches activations, the KV cache or weights replaced by its f32 instantiation. An op added to the table
// that handles activations must get an f32 version here too.
const Backend* cuda_backend_f32() {
  static const Backend* backend = []() -> const Backend* {
    const Backend* base = cuda_backend();
    if (!base) return nullptr;
    static Backend b = *base;
    b.act_dtype = DType::F32;
    b.place_weight = cuda_place_weight_f32;
    b.embed = embed_cuda_f32;
    b.matmul = matmul_cuda_f32;
    b.rms_norm = rms_norm_cuda_f32;
    b.rope = rope_cuda_f32;
    b.kv_store = kv_store_cuda_f32;
    b.attention = attention_cuda_f32;
    b.silu_mul = silu_mul_cuda_f32;
    b.gather_rows = gather_rows_cuda_f32;
    b.to_f32 = cuda_to_f32_f32;
    b.qkv_rope_store = qkv_rope_store_cuda_f32;
    b.layer_norm = layer_norm_cuda_f32;
    b.gelu = gelu_cuda_f32;
    // The fused decode GEMVs are bf16 only: the float32 table runs rms_norm / silu_mul and matmul.
    b.rms_norm_matmul = nullptr;
    b.silu_mul_matmul = nullptr;
    b.matmul_silu_mul = nullptr;  // bf16 only
    b.matmul_add = nullptr;       // bf16 only (the model folds the residual in with rms_norm)
    // MoE: moe_route (f32 logits) is shared; the others move activations and weights.
    b.moe_permute = moe_permute_cuda_f32;
    b.grouped_matmul = grouped_matmul_cuda_f32;
    b.moe_unpermute = moe_unpermute_cuda_f32;
    return &b;
  }();
  return backend;
}

}  // namespace sgl
