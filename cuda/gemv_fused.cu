// The decode step's elementwise ops folded into the GEMV that consumes them (T <= kGemvMaxT tokens, bf16):
//   rms_norm_matmul: h = round(x + residual_in) (stored to residual_out by block 0), y = round(rmsnorm(h) * g) · Wᵀ
//   silu_mul_matmul: y = round(silu(gate) * up) · Wᵀ over strided gate|up rows
// Every block first issues its weight chunks (gemv_common.cuh), then computes the whole activation rows it
// needs (T x K, at most 48 KB) into shared memory, one barrier, then its warps run the same dot product as
// the plain GEMV with x read from shared memory. The activation is recomputed by every block: K is a few
// thousand elements, read from L2, against the block's 8-16 weight rows of K each. Launched with PDL
// (cuda_common.cuh): the weight chunks are issued before the wait for the previous kernel; the activations
// (the previous kernels' outputs) are read after it, through plain pointers (no __restrict__ / __ldg
// read-only path: the kernel's lifetime overlaps their writer's).
//
// Bit-exactness with the unfused ops: the norm reproduces rms_norm_kernel's arithmetic AND its summation
// order. rms_norm runs one block of NT = block_for(K / 8, 1024) threads per row; thread v sums the squares of
// vectors v, v + NT, ... (8 elements each, in order), then block_sum (a butterfly per warp, then a butterfly
// over the warp totals). Here the 256 threads play those NT "virtual" threads (thread i plays i, i + 256, ...;
// a virtual thread's lanes are the real warp's lanes, so the per-warp butterfly is the same one), and the
// second butterfly is the same over the same totals. silu uses silu_mul1 (elementwise_common.cuh) as the
// strided silu_mul kernel does. The dot product is the plain GEMV's (gemv_common.cuh), so y matches rms_norm
// (or silu_mul) followed by matmul_cuda's GEMV bit for bit.
#include <cstdint>

#include "cuda_common.cuh"
#include "elementwise_common.cuh"
#include "gemv.h"
#include "gemv_common.cuh"
#include "ops.h"

namespace sgl {
namespace {

using bf16 = __nv_bfloat16;
using gemv::kWarps;
constexpr int kThreads = kWarps * 32;
constexpr size_t kMaxSmem = size_t(47) << 10;  // the activation rows in shared memory (under 48 KB with the static part: no opt-in)

struct alignas(16) Vec8 {
  bf16 v[8];
};

// The rows of the warp: n = blockIdx.x * kWarps * R + r * kWarps + warp. Rows past N read row N - 1 (valid
// memory; their sums are dropped), so every warp runs the same loop and reaches every barrier.
template <int R>
__device__ __forceinline__ void bind_rows(gemv::WRows<R>& wr, const bf16* w, int K, int N, int warp) {
#pragma unroll
  for (int r = 0; r < R; ++r) {
    int n = blockIdx.x * kWarps * R + r * kWarps + warp;
    if (n >= N) n = N - 1;
    wr.row[r] = reinterpret_cast<const uint4*>(w + size_t(n) * K);
  }
}

// y[t, n] = round(acc + bias[n]) for the warp's rows (lane 0 stores).
template <int T, int R>
__device__ __forceinline__ void store_rows(const float (&acc)[R][T], const bf16* bias, bf16* y, int N, int warp,
                                           int lane) {
  if (lane != 0) return;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int n = blockIdx.x * kWarps * R + r * kWarps + warp;
    if (n >= N) continue;
    const float b = bias ? __bfloat162float(bias[n]) : 0.0f;
#pragma unroll
    for (int t = 0; t < T; ++t) y[size_t(t) * N + n] = __float2bfloat16(acc[r][t] + b);
  }
}

// ---- rms_norm + GEMV -------------------------------------------------------------------------------------
// norm_threads: rms_norm_kernel's block size for this K (block_for(K / 8, 1024)), the order being mirrored.
template <int T, int R>
__global__ void __launch_bounds__(kThreads)
    rms_norm_gemv_kernel(const bf16* x, const bf16* res_in, bf16* __restrict__ res_out,
                         const bf16* __restrict__ g, float eps, const bf16* __restrict__ w,
                         const bf16* __restrict__ bias, bf16* __restrict__ y, int K, int N, int norm_threads) {
  extern __shared__ uint4 smem[];  // [T][K] bf16: the normalised rows
  __shared__ float warp_sums[32];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int chunks = K / 8;  // also the row's 8-element vectors
  const int nk = gemv::lane_chunks(chunks, lane);
  gemv::WRows<R> wr;
  bind_rows(wr, w, K, N, warp);
  gemv::wrows_prefetch(wr, lane, nk);  // weights only: before the PDL wait
  pdl_wait();
  pdl_trigger();

  const Vec8* gv = reinterpret_cast<const Vec8*>(g);
  const bool store_res = res_out != nullptr && blockIdx.x == 0;
#pragma unroll
  for (int t = 0; t < T; ++t) {
    const Vec8* xr = reinterpret_cast<const Vec8*>(x + size_t(t) * K);
    const Vec8* rr = res_in ? reinterpret_cast<const Vec8*>(res_in + size_t(t) * K) : nullptr;
    Vec8* ro = store_res ? reinterpret_cast<Vec8*>(res_out + size_t(t) * K) : nullptr;
    Vec8* hs = reinterpret_cast<Vec8*>(smem) + size_t(t) * chunks;
    // Pass 1: h = round(x + residual), kept in shared memory (and stored by block 0); sum of squares as
    // rms_norm's thread v = v0 + tid would sum them. norm_threads is a multiple of 32, so a warp is wholly
    // inside or outside it.
    for (int v0 = 0; v0 < norm_threads; v0 += kThreads) {
      const int v = v0 + tid;
      float ss = 0.0f;
      if (v < norm_threads) {
        for (int i = v; i < chunks; i += norm_threads) {
          Vec8 a = xr[i];
          if (rr) {
            const Vec8 b = rr[i];
#pragma unroll
            for (int j = 0; j < 8; ++j) a.v[j] = from_f<bf16>(to_f(a.v[j]) + to_f(b.v[j]));
          }
          if (ro) ro[i] = a;
          hs[i] = a;
#pragma unroll
          for (int j = 0; j < 8; ++j) ss = rms_sq_acc(ss, to_f(a.v[j]));
        }
      }
      ss = warp_sum(ss);
      if (lane == 0 && v < norm_threads) warp_sums[v >> 5] = ss;
    }
    __syncthreads();  // warp totals and h complete
    const int nwarps = norm_threads >> 5;
    const float tot = warp_sum(lane < nwarps ? warp_sums[lane] : 0.0f);
    const float inv = rms_inv(tot, K, eps);
    // Pass 2: the normalised row, rounded as rms_norm stores it, in place.
    for (int i = tid; i < chunks; i += kThreads) {
      const Vec8 a = hs[i], gg = gv[i];
      Vec8 o;
#pragma unroll
      for (int j = 0; j < 8; ++j) o.v[j] = from_f<bf16>(rms_scale(to_f(a.v[j]), inv, to_f(gg.v[j])));
      hs[i] = o;
    }
    __syncthreads();  // the rows are complete; warp_sums may be reused
  }

  float acc[R][T];
  gemv::wrows_dot(wr, acc, lane, nk, [&](int t, int c) { return smem[t * chunks + c]; });
  store_rows(acc, bias, y, N, warp, lane);
}

// ---- silu_mul + GEMV -------------------------------------------------------------------------------------
template <int T, int R>
__global__ void __launch_bounds__(kThreads)
    silu_mul_gemv_kernel(const bf16* gate, const bf16* up, int64_t ld,
                         const bf16* __restrict__ w, const bf16* __restrict__ bias, bf16* __restrict__ y, int K,
                         int N) {
  extern __shared__ uint4 smem[];  // [T][K] bf16: silu(gate) * up
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int chunks = K / 8;
  const int nk = gemv::lane_chunks(chunks, lane);
  gemv::WRows<R> wr;
  bind_rows(wr, w, K, N, warp);
  gemv::wrows_prefetch(wr, lane, nk);  // weights only: before the PDL wait
  pdl_wait();
  pdl_trigger();

#pragma unroll
  for (int t = 0; t < T; ++t) {
    const Vec8* gr = reinterpret_cast<const Vec8*>(gate + t * ld);
    const Vec8* ur = reinterpret_cast<const Vec8*>(up + t * ld);
    Vec8* as = reinterpret_cast<Vec8*>(smem) + size_t(t) * chunks;
    for (int i = tid; i < chunks; i += kThreads) {
      const Vec8 a = gr[i], b = ur[i];
      Vec8 o;
#pragma unroll
      for (int j = 0; j < 8; ++j) o.v[j] = from_f<bf16>(silu_mul1(to_f(a.v[j]), to_f(b.v[j])));
      as[i] = o;
    }
  }
  __syncthreads();

  float acc[R][T];
  gemv::wrows_dot(wr, acc, lane, nk, [&](int t, int c) { return smem[t * chunks + c]; });
  store_rows(acc, bias, y, N, warp, lane);
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Two rows per warp once the one-row grid would be several waves deep (gate|up's 2 x 4864 rows): half the
// blocks recompute the activation, and each lane has twice the chunks in flight.
int rows_per_warp(int N) {
  const int64_t blocks1 = (int64_t(N) + kWarps - 1) / kWarps;
  return blocks1 >= int64_t(8) * sgl_sm_count() ? 2 : 1;
}

template <int T, int R, class Kernel, class... Args>
void launch_rows(Kernel kernel, int N, size_t smem, Args... args) {
  const dim3 grid(unsigned((int64_t(N) + kWarps * R - 1) / (kWarps * R)));
  sgl_launch(kernel, grid, dim3(kThreads), smem, args...);
}

}  // namespace

bool rms_norm_matmul_cuda(const RmsNormMatmulParams& p) {
  if (p.T < 1 || p.T > kGemvMaxT || p.K <= 0 || p.K % 8 != 0 || p.N <= 0) return false;
  if (p.w.dtype != DType::BF16 || p.norm_w.dtype != DType::BF16 || (p.bias.data && p.bias.dtype != DType::BF16))
    return false;
  if (!aligned16(p.x) || !aligned16(p.residual_in) || !aligned16(p.residual_out) || !aligned16(p.norm_w.data) ||
      !aligned16(p.w.data))
    return false;
  const size_t smem = size_t(p.T) * p.K * sizeof(bf16);
  if (smem > kMaxSmem) return false;
  const bf16* x = static_cast<const bf16*>(p.x);
  const bf16* ri = static_cast<const bf16*>(p.residual_in);
  bf16* ro = static_cast<bf16*>(p.residual_out);
  const bf16* g = static_cast<const bf16*>(p.norm_w.data);
  const bf16* w = static_cast<const bf16*>(p.w.data);
  const bf16* b = static_cast<const bf16*>(p.bias.data);
  bf16* y = static_cast<bf16*>(p.y);
  const int nt = block_for(p.K / 8, 1024);  // rms_norm_impl's block for this row (16-byte vectors)
  const int R = rows_per_warp(p.N);
  if (p.T == 1 && R == 1)
    launch_rows<1, 1>(rms_norm_gemv_kernel<1, 1>, p.N, smem, x, ri, ro, g, p.eps, w, b, y, p.K, p.N, nt);
  else if (p.T == 1)
    launch_rows<1, 2>(rms_norm_gemv_kernel<1, 2>, p.N, smem, x, ri, ro, g, p.eps, w, b, y, p.K, p.N, nt);
  else if (R == 1)
    launch_rows<2, 1>(rms_norm_gemv_kernel<2, 1>, p.N, smem, x, ri, ro, g, p.eps, w, b, y, p.K, p.N, nt);
  else
    launch_rows<2, 2>(rms_norm_gemv_kernel<2, 2>, p.N, smem, x, ri, ro, g, p.eps, w, b, y, p.K, p.N, nt);
  return true;
}

bool silu_mul_matmul_cuda(const SiluMulMatmulParams& p) {
  const int64_t ld = p.ld != 0 ? p.ld : p.K;
  if (p.T < 1 || p.T > kGemvMaxT || p.K <= 0 || p.K % 8 != 0 || p.N <= 0 || ld % 8 != 0 || ld < p.K) return false;
  if (p.w.dtype != DType::BF16 || (p.bias.data && p.bias.dtype != DType::BF16)) return false;
  if (!aligned16(p.gate) || !aligned16(p.up) || !aligned16(p.w.data)) return false;
  const size_t smem = size_t(p.T) * p.K * sizeof(bf16);
  if (smem > kMaxSmem) return false;
  const bf16* gt = static_cast<const bf16*>(p.gate);
  const bf16* u = static_cast<const bf16*>(p.up);
  const bf16* w = static_cast<const bf16*>(p.w.data);
  const bf16* b = static_cast<const bf16*>(p.bias.data);
  bf16* y = static_cast<bf16*>(p.y);
  const int R = rows_per_warp(p.N);
  if (p.T == 1 && R == 1)
    launch_rows<1, 1>(silu_mul_gemv_kernel<1, 1>, p.N, smem, gt, u, ld, w, b, y, p.K, p.N);
  else if (p.T == 1)
    launch_rows<1, 2>(silu_mul_gemv_kernel<1, 2>, p.N, smem, gt, u, ld, w, b, y, p.K, p.N);
  else if (R == 1)
    launch_rows<2, 1>(silu_mul_gemv_kernel<2, 1>, p.N, smem, gt, u, ld, w, b, y, p.K, p.N);
  else
    launch_rows<2, 2>(silu_mul_gemv_kernel<2, 2>, p.N, smem, gt, u, ld, w, b, y, p.K, p.N);
  return true;
}

}  // namespace sgl
