// The prefill MLP's gate|up GEMM with silu_mul in its epilogue (Backend::matmul_silu_mul), on Hopper's
// warpgroup MMA (wgmma, sm_90a): out[T, I] = round(silu(round(x Wgᵀ)) · round(x Wuᵀ)), the products rounded to
// bf16 as cuBLASLt stores them and the activation as silu_mul does, so the result is the unfused pair's up to
// the GEMM's summation order. It saves the [T, 2I] round trip of the unfused pair: at 16k tokens of
// gte-Qwen2-1.5B that is ~0.9 GB a layer, ~10% of the step.
//
// Block: 128 tokens x 128 outputs, two warpgroups of 64 tokens each. Per 64-wide k step the block loads the x
// tile [128 x 64] and a weight tile of 256 rows [256 x 64]: the 128 gate rows of its outputs, then their 128
// up rows. One wgmma.m64n256k16 per k16 gives a warpgroup the gate (columns 0-127) and up (128-255) products of
// its rows side by side: gate column c and up column 128 + c sit in the same thread (accumulator indices 4j + e
// and 4(j + 16) + e), so the epilogue needs no exchange. Both operands are K-major (row-major x and W, as the
// Q Kᵀ product of the prefill attention), 128-byte swizzled, through a 4-stage cp.async ring (48 KiB a stage,
// two tiles in flight while one is multiplied). Blocks run in groups of 8 token tiles sweeping the output
// tiles, so one wave's x rows and weight rows stay in L2.
#include <cuda_bf16.h>

#include <cstdlib>

#include "attention_common.cuh"
#include "cuda_common.cuh"
#include "elementwise_common.cuh"
#include "ops.h"
#include "wgmma.cuh"

namespace sgl {

namespace {

using bf16 = __nv_bfloat16;

constexpr int kBM = 128;                  // tokens a block
constexpr int kBN = 128;                  // outputs a block (gate and up rows: 2 kBN weight rows)
constexpr int kBK = 64;                   // k per stage: one 128-byte swizzle row
constexpr int kStages = 4;
constexpr int kThreads = 256;
constexpr int kATile = kBM * kBK * 2;      // 16 KiB
constexpr int kBTile = 2 * kBN * kBK * 2;  // 32 KiB
constexpr int kStageBytes = kATile + kBTile;
constexpr int kOutStride = kBN * 2 + 16;   // staged output row (bytes), padded against bank conflicts
constexpr int kSmem = kStages * kStageBytes + 1024;  // + alignment slack for the 1024-byte swizzle atoms
constexpr int kGroupM = 8;
static_assert(kBM * kOutStride <= kStages * kStageBytes, "the output tile is staged in the ring");

// (row, 16-byte chunk) of a [rows x 64] bf16 tile in the 128-byte swizzle.
__device__ __forceinline__ uint32_t sw_off(int row, int chunk) {
  return uint32_t(row * 128 + ((chunk ^ (row & 7)) << 4));
}

__device__ __forceinline__ float round_bf16(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }

__global__ void __launch_bounds__(kThreads, 1)
    matmul_silu_kernel(const bf16* __restrict__ x, const bf16* __restrict__ w, bf16* __restrict__ out, int T, int K,
                       int I) {
#if SGL_WGMMA_ARCH
  using namespace attn;  // cp.async helpers, smem_u32, pack_bf16
  const int num_m = (T + kBM - 1) / kBM, num_n = I / kBN;
  // grouped order: kGroupM token tiles sweep the output tiles together
  const int per_group = kGroupM * num_n;
  const int group = blockIdx.x / per_group, first_m = group * kGroupM;
  const int gm = min(num_m - first_m, kGroupM);
  const int in_group = blockIdx.x % per_group;
  const int m0 = (first_m + in_group % gm) * kBM, n0 = (in_group / gm) * kBN;

  extern __shared__ __align__(128) uint8_t smem[];
  uint8_t* base = smem + ((1024u - (smem_u32(smem) & 1023u)) & 1023u);
  const uint32_t s0 = smem_u32(base);

  const int tid = threadIdx.x, lane = tid & 31, wg = tid >> 7;
  const int wrow = ((tid >> 5) & 3) * 16, g = lane >> 2, t4 = lane & 3;
  // Loader: chunk tid % 8 of rows tid / 8 + 32 i (32 rows a pass: every pass has the same swizzle term).
  const int ld_row = tid >> 3, ld_chunk = tid & 7;
  const uint32_t ld_off = sw_off(ld_row, ld_chunk);
  const int kt_n = K / kBK;
  auto load = [&](int kt, int stage) {
    const uint32_t sa = s0 + stage * kStageBytes, sb = sa + kATile;
    const int k = kt * kBK + ld_chunk * 8;
#pragma unroll
    for (int i = 0; i < kBM / 32; i++) {
      const int r = m0 + ld_row + 32 * i;
      const bool ok = r < T;
      cp_async16(sa + ld_off + i * 32 * 128, ok ? x + int64_t(r) * K + k : x, ok ? 16 : 0);
    }
#pragma unroll
    for (int i = 0; i < 2 * kBN / 32; i++) {
      const int r = ld_row + 32 * i;  // weight tile row: gate rows first, then up rows
      const int64_t wr = r < kBN ? int64_t(n0 + r) : int64_t(I) + n0 + (r - kBN);
      cp_async16(sb + ld_off + i * 32 * 128, w + wr * K + k, 16);
    }
  };

  // Prologue: tiles 0 .. kStages - 3, a cp.async group each.
#pragma unroll
  for (int s = 0; s < kStages - 2; s++) {
    if (s < kt_n) load(s, s);
    cp_async_commit();
  }
  float acc[128];
#pragma unroll
  for (int i = 0; i < 128; i++) acc[i] = 0.0f;

  for (int kt = 0; kt < kt_n; kt++) {
    // Tile kt has landed (this thread's copies), is visible to the async proxy, and everyone's is; every
    // warpgroup has also passed its wait for the product of tile kt - 2, whose stage is reloaded next.
    cp_async_wait<kStages - 3>();
    wgmma::fence_proxy_async_smem();
    __syncthreads();
    const int nk = kt + kStages - 2;
    if (nk < kt_n) load(nk, nk % kStages);
    cp_async_commit();

    const uint32_t sa = s0 + (kt % kStages) * kStageBytes;
    const uint32_t a_wg = sa + wg * 64 * 128, b_t = sa + kATile;
    wgmma::fence();
#pragma unroll
    for (int kk = 0; kk < kBK / 16; kk++) {
      const uint64_t da = wgmma::desc_sw128(a_wg + kk * 32, 16, 1024);
      const uint64_t db = wgmma::desc_sw128(b_t + kk * 32, 16, 1024);
      wgmma::wgmma_m64n256k16_ss(acc, da, db, 1);
    }
    wgmma::commit();
    wgmma::wait<1>();  // the product of tile kt - 1 is done: its stage may be reloaded after the next barrier
    wgmma::fence_operands(acc);
  }
  wgmma::wait<0>();
  wgmma::fence_operands(acc);
  cp_async_wait<0>();
  __syncthreads();  // every product is done: the ring is free for the output tile

  // Epilogue: out = round(silu(round(gate)) · round(up)), staged as [128][kBN] bf16 rows, then 16-byte stores.
#pragma unroll
  for (int hr = 0; hr < 2; hr++) {
    const int row = wg * 64 + wrow + g + 8 * hr;
#pragma unroll
    for (int j = 0; j < 16; j++) {
      const float g0 = round_bf16(acc[4 * j + 2 * hr]), g1 = round_bf16(acc[4 * j + 2 * hr + 1]);
      const float u0 = round_bf16(acc[4 * (j + 16) + 2 * hr]), u1 = round_bf16(acc[4 * (j + 16) + 2 * hr + 1]);
      const uint32_t v = pack_bf16(silu_mul1(g0, u0), silu_mul1(g1, u1));
      asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(s0 + row * kOutStride + (8 * j + 2 * t4) * 2), "r"(v) : "memory");
    }
  }
  __syncthreads();
  constexpr int kChunks = kBN / 8;  // 16-byte chunks of an output row
  for (int i = tid; i < kBM * kChunks; i += kThreads) {
    const int r = i / kChunks, c = i % kChunks;
    if (m0 + r < T) {
      uint4 v;
      asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
                   : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                   : "r"(s0 + r * kOutStride + c * 16)
                   : "memory");
      *reinterpret_cast<uint4*>(out + int64_t(m0 + r) * I + n0 + c * 8) = v;
    }
  }
#endif  // SGL_WGMMA_ARCH
}

// SGL_MATMUL_SILU: 1 takes this kernel for prefill MLPs on sm_90 devices, 0 (the default until it has been
// measured against cuBLASLt + silu_mul on an H100) keeps the unfused pair.
bool enabled_on_device() {
  static const bool on = [] {
    const char* e = std::getenv("SGL_MATMUL_SILU");
    return e != nullptr && e[0] == '1' && sgl_is_sm90();
  }();
  return on;
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

}  // namespace

// Prefill steps only (T >= 64: below that a 128-token tile is mostly idle; and not inside a decode graph's
// capture, which keeps cuBLASLt + silu_mul); K a multiple of 64, I of 128.
bool matmul_silu_mul_cuda(const MatmulSiluMulParams& p) {
  if (p.T < 64 || p.K <= 0 || p.K % kBK != 0 || p.I <= 0 || p.I % kBN != 0) return false;
  if (p.w.dtype != DType::BF16 || !aligned16(p.x) || !aligned16(p.w.data) || !aligned16(p.out)) return false;
  if (!enabled_on_device()) return false;
  cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
  SGL_CUDA_CHECK(cudaStreamIsCapturing(sgl_stream(), &cap));
  if (cap != cudaStreamCaptureStatusNone) return false;
  static const bool attr_set = [] {
    SGL_CUDA_CHECK(cudaFuncSetAttribute(matmul_silu_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
    return true;
  }();
  (void)attr_set;
  const int blocks = ((p.T + kBM - 1) / kBM) * (p.I / kBN);
  matmul_silu_kernel<<<blocks, kThreads, kSmem, sgl_stream()>>>(static_cast<const bf16*>(p.x),
                                                                 static_cast<const bf16*>(p.w.data),
                                                                 static_cast<bf16*>(p.out), p.T, p.K, p.I);
  SGL_CUDA_LAUNCH_CHECK();
  return true;
}

}  // namespace sgl
