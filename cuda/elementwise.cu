// The memory-bound ops of the CUDA backend: embed, rms_norm (with the fused residual add), rope, kv_store,
// silu_mul and gather_rows. bf16 in and out (or f32 in and out: the float32 table, cuda_backend_f32), f32
// arithmetic; every kernel is templated on the element type E. Each kernel takes 16-byte vectors (8 bf16)
// where the row length and the pointers allow it, and falls back to narrower accesses otherwise, so any
// size works (C = 37, D = 10, odd I, ...). Semantics follow the CPU reference (addon/cpu/). Every kernel
// here is launched with PDL (sgl_launch) and starts with pdl_wait.
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

#include "cuda_common.cuh"
#include "elementwise_common.cuh"
#include "rope_common.cuh"
#include "ops.h"

namespace sgl {

namespace {

using bf16 = __nv_bfloat16;

// V consecutive elements moved as one access (bf16, V = 8: one 16-byte load/store; f32, V = 4).
template <typename E, int V>
struct alignas(sizeof(E) * V) EVec {
  E v[V];
};

bool aligned_to(const void* p, size_t bytes) { return (reinterpret_cast<uintptr_t>(p) % bytes) == 0; }

// The widest vector (8, 2 or 1 elements of es bytes; 4, 2 or 1 for f32: 16 bytes at most) that divides
// `elems` and that every pointer is aligned to.
int vec_width(int64_t elems, std::initializer_list<const void*> ptrs, size_t es = 2) {
  for (int v : {8, 4, 2}) {
    if (size_t(v) * es > 16 || (es == 2 && v == 4)) continue;  // bf16 keeps its 8 / 2 / 1 widths
    if (elems % v) continue;
    bool ok = true;
    for (const void* p : ptrs) ok = ok && (p == nullptr || aligned_to(p, size_t(v) * es));
    if (ok) return v;
  }
  return 1;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the total.
__device__ float block_sum(float v) {
  __shared__ float warp_sums[32];
  v = warp_sum(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  const int nwarps = blockDim.x >> 5;
  v = lane < nwarps ? warp_sums[lane] : 0.0f;
  return warp_sum(v);
}

// ---- rms_norm: one block per row ----------------------------------------------------------------------
// Pass 1 folds the residual in (residual = bf16(x + residual), the rounded value is what gets normalised,
// as in SGLang / transformers with bf16 activations) and sums squares; pass 2 scales and writes out. A
// thread touches the same elements in both passes, so out may alias x. The fused rms_norm + GEMV
// (gemv_fused.cu) mirrors this kernel's arithmetic and summation order (block_for(C / V, 1024) threads, each
// summing vectors i, i + blockDim, ... in order, then block_sum) to match it bit for bit: change both
// together.
template <typename E, int V>
__global__ void rms_norm_kernel(const E* x, E* residual, E* out, const E* w, int C, float eps) {
  pdl_wait();  // PDL (cuda_common.cuh): before any access to what earlier kernels wrote
  pdl_trigger();
  using Vec = EVec<E, V>;
  const int64_t row = blockIdx.x;
  const int nvec = C / V;
  const Vec* xr = reinterpret_cast<const Vec*>(x + row * C);
  Vec* rr = residual ? reinterpret_cast<Vec*>(residual + row * C) : nullptr;
  Vec* orow = reinterpret_cast<Vec*>(out + row * C);
  const Vec* wr = reinterpret_cast<const Vec*>(w);

  float ss = 0.0f;
  for (int i = threadIdx.x; i < nvec; i += blockDim.x) {
    Vec a = xr[i];
    if (rr) {
      Vec r = rr[i];
#pragma unroll
      for (int j = 0; j < V; j++) a.v[j] = from_f<E>(to_f(a.v[j]) + to_f(r.v[j]));
      rr[i] = a;
    }
#pragma unroll
    for (int j = 0; j < V; j++) ss = rms_sq_acc(ss, to_f(a.v[j]));
  }
  ss = block_sum(ss);
  const float inv = rms_inv(ss, C, eps);
  for (int i = threadIdx.x; i < nvec; i += blockDim.x) {
    Vec a = rr ? rr[i] : xr[i];
    Vec g = wr[i];
    Vec o;
#pragma unroll
    for (int j = 0; j < V; j++) o.v[j] = from_f<E>(rms_scale(to_f(a.v[j]), inv, to_f(g.v[j])));
    orow[i] = o;
  }
}

// ---- rope: one block per token ------------------------------------------------------------------------
// cos/sin once per token (rope_common.cuh), then every (head, pair) of q and k rotates. V = pairs per thread.
template <typename E, int V>
__global__ void rope_kernel(E* q, E* k, const int32_t* positions, const float* inv_freq, int H, int Hkv, int D) {
  pdl_wait();  // PDL (cuda_common.cuh): before any access to what earlier kernels wrote
  pdl_trigger();
  extern __shared__ float cs[];  // [half] cos, then [half] sin
  const int half = D / 2;
  const int64_t t = blockIdx.x;
  rope_cos_sin(cs, float(positions[t]), inv_freq, half);
  __syncthreads();
  using Vec = EVec<E, V>;
  const int groups = half / V;  // vectors per half head
  const int total = (H + Hkv) * groups;
  for (int idx = threadIdx.x; idx < total; idx += blockDim.x) {
    const int h = idx / groups, i = (idx - h * groups) * V;
    E* base = h < H ? q + (t * H + h) * D : k + (t * Hkv + (h - H)) * D;
    Vec* p1 = reinterpret_cast<Vec*>(base + i);
    Vec* p2 = reinterpret_cast<Vec*>(base + i + half);
    Vec a = *p1, b = *p2;
#pragma unroll
    for (int j = 0; j < V; j++) {
      const float c = cs[i + j], s = cs[half + i + j];
      const float x1 = to_f(a.v[j]), x2 = to_f(b.v[j]);
      a.v[j] = from_f<E>(x1 * c - x2 * s);
      b.v[j] = from_f<E>(x2 * c + x1 * s);
    }
    *p1 = a;
    *p2 = b;
  }
}

// ---- row copies with an index: embed, gather_rows, kv_store ----------------------------------------------
// dst[dst_idx[r]] = src[src_idx[r]] for rows of `row` elements (a null index is the identity); a negative
// index skips the row (kv_store's padding tokens). blockIdx.y picks one of two jobs (kv_store's K and V).
struct CopyJob {
  const bf16* src;
  bf16* dst;
  const int32_t* src_idx;
  const int32_t* dst_idx;
};

// Flat over (row, vector) pairs, grid-stride: rows of any length (kv_store's 128 elements, embed's 4096)
// keep every thread busy.
template <int V>
__global__ void copy_rows_kernel(CopyJob j0, CopyJob j1, int64_t rows, int64_t row) {
  pdl_wait();  // PDL (cuda_common.cuh): before any access to what earlier kernels wrote
  pdl_trigger();
  const CopyJob j = blockIdx.y == 0 ? j0 : j1;
  using Vec = EVec<bf16, V>;
  const int64_t nvec = row / V, total = rows * nvec;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t item = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; item < total; item += stride) {
    const int64_t r = item / nvec, i = item - r * nvec;
    const int64_t s = j.src_idx ? int64_t(j.src_idx[r]) : r;
    const int64_t d = j.dst_idx ? int64_t(j.dst_idx[r]) : r;
    if (s < 0 || d < 0) continue;
    reinterpret_cast<Vec*>(j.dst + d * row)[i] = reinterpret_cast<const Vec*>(j.src + s * row)[i];
  }
}

void copy_rows(CopyJob j0, const CopyJob* j1, int64_t rows, int64_t row) {
  if (rows <= 0 || row <= 0) return;
  CopyJob second = j1 ? *j1 : j0;
  const int v = vec_width(row, {j0.src, j0.dst, second.src, second.dst});
  const int threads = 256;
  int64_t blocks = (rows * (row / v) + threads - 1) / threads;
  const int64_t cap = int64_t(sgl_sm_count()) * 16;
  if (blocks > cap) blocks = cap;
  dim3 grid(unsigned(blocks), j1 ? 2u : 1u);
  switch (v) {
    case 8: sgl_launch(copy_rows_kernel<8>, grid, dim3(threads), 0, j0, second, rows, row); break;
    case 2: sgl_launch(copy_rows_kernel<2>, grid, dim3(threads), 0, j0, second, rows, row); break;
    default: sgl_launch(copy_rows_kernel<1>, grid, dim3(threads), 0, j0, second, rows, row); break;
  }
}

// ---- silu_mul: flat over the contiguous [T, I] tensors ----------------------------------------------------
template <typename E, int V>
__global__ void silu_mul_kernel(const E* gate, const E* up, E* out, int64_t n) {
  pdl_wait();  // PDL (cuda_common.cuh): before any access to what earlier kernels wrote
  pdl_trigger();
  using Vec = EVec<E, V>;
  const int64_t nvec = n / V;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const Vec* g = reinterpret_cast<const Vec*>(gate);
  const Vec* u = reinterpret_cast<const Vec*>(up);
  Vec* o = reinterpret_cast<Vec*>(out);
  for (int64_t i = tid; i < nvec; i += stride) {
    Vec a = g[i], b = u[i], c;
#pragma unroll
    for (int j = 0; j < V; j++) c.v[j] = from_f<E>(silu_mul1(to_f(a.v[j]), to_f(b.v[j])));
    o[i] = c;
  }
  // The tail past the last whole vector (fewer than V elements).
  const int64_t i = nvec * V + tid;
  if (i < n) out[i] = from_f<E>(silu_mul1(to_f(gate[i]), to_f(up[i])));
}

// silu_mul over rows with stride ld (a fused gate|up matmul output), out contiguous [T, I]; one grid row per
// token, V elements per access (8 for bf16 where I, ld and the pointers allow 16-byte vectors: the scalar form
// ran at ~1.9 TB/s on an H100, 14 us a layer for 500 tokens of gte-Qwen2-1.5B).
template <typename E, int V>
__global__ void silu_mul_strided_kernel(const E* __restrict__ gate, const E* __restrict__ up, E* __restrict__ out,
                                        int I, int64_t ld) {
  pdl_wait();  // PDL (cuda_common.cuh): before any access to what earlier kernels wrote
  pdl_trigger();
  using Vec = EVec<E, V>;
  const int64_t t = blockIdx.y;
  const Vec* g = reinterpret_cast<const Vec*>(gate + t * ld);
  const Vec* u = reinterpret_cast<const Vec*>(up + t * ld);
  Vec* o = reinterpret_cast<Vec*>(out + t * I);
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < I / V; i += gridDim.x * blockDim.x) {
    const Vec a = g[i], b = u[i];
    Vec c;
#pragma unroll
    for (int j = 0; j < V; j++) c.v[j] = from_f<E>(silu_mul1(to_f(a.v[j]), to_f(b.v[j])));
    o[i] = c;
  }
}

// ---- launchers, templated on the element type (bf16: the default table; float: cuda_backend_f32) ----------

// An f32 row of n elements is 2n bf16-sized units: the bit copies of embed / gather_rows / kv_store reuse the
// bf16 kernels on those units (vec_width checks the alignment in bytes either way).
template <typename E>
constexpr int64_t units() { return int64_t(sizeof(E) / sizeof(bf16)); }

template <typename E>
void embed_impl(const EmbedParams& p) {
  copy_rows({static_cast<const bf16*>(p.table.data), static_cast<bf16*>(p.out), p.ids, nullptr}, nullptr, p.T,
            int64_t(p.C) * units<E>());
}

template <typename E>
void gather_rows_impl(const GatherRowsParams& p) {
  copy_rows({static_cast<const bf16*>(p.src), static_cast<bf16*>(p.dst), p.rows, nullptr}, nullptr, p.R,
            int64_t(p.C) * units<E>());
}

template <typename E>
void kv_store_impl(const KvStoreParams& p) {
  const CopyJob k{static_cast<const bf16*>(p.k), static_cast<bf16*>(p.k_cache), nullptr, p.slots};
  const CopyJob v{static_cast<const bf16*>(p.v), static_cast<bf16*>(p.v_cache), nullptr, p.slots};
  copy_rows(k, &v, p.T, int64_t(p.Hkv) * p.D * units<E>());
}

template <typename E>
void rms_norm_impl(const RmsNormParams& p) {
  if (p.T <= 0 || p.C <= 0) return;
  const E* x = static_cast<const E*>(p.x);
  E* res = static_cast<E*>(p.residual);
  E* out = static_cast<E*>(p.out);
  const E* w = static_cast<const E*>(p.w.data);
  const int v = vec_width(p.C, {x, res, out, w}, sizeof(E));
  const int threads = block_for(p.C / v, 1024);
  const dim3 grid{unsigned(p.T)}, block{unsigned(threads)};
  switch (v) {
    case 8: sgl_launch(rms_norm_kernel<E, 8>, grid, block, 0, x, res, out, w, p.C, p.eps); break;
    case 4: sgl_launch(rms_norm_kernel<E, 4>, grid, block, 0, x, res, out, w, p.C, p.eps); break;
    case 2: sgl_launch(rms_norm_kernel<E, 2>, grid, block, 0, x, res, out, w, p.C, p.eps); break;
    default: sgl_launch(rms_norm_kernel<E, 1>, grid, block, 0, x, res, out, w, p.C, p.eps); break;
  }
}

template <typename E>
void rope_impl(const RopeParams& p) {
  const int half = p.D / 2;
  if (p.T <= 0 || half <= 0 || p.H + p.Hkv <= 0) return;
  E* q = static_cast<E*>(p.q);
  E* k = static_cast<E*>(p.k);
  // Two pairs per thread when the half head is even and the tensors aligned to two elements.
  const bool two = half % 2 == 0 && p.D % 2 == 0 && aligned_to(q, 2 * sizeof(E)) && aligned_to(k, 2 * sizeof(E));
  const int v = two ? 2 : 1;
  const int threads = block_for(int64_t(p.H + p.Hkv) * (half / v), 256);
  const size_t smem = size_t(2 * half) * sizeof(float);
  const dim3 grid{unsigned(p.T)}, block{unsigned(threads)};
  if (two)
    sgl_launch(rope_kernel<E, 2>, grid, block, smem, q, k, p.positions, p.inv_freq, p.H, p.Hkv, p.D);
  else
    sgl_launch(rope_kernel<E, 1>, grid, block, smem, q, k, p.positions, p.inv_freq, p.H, p.Hkv, p.D);
}

template <typename E>
void silu_mul_impl(const SiluMulParams& p) {
  if (p.ld != 0 && p.ld != p.I) {
    if (p.T <= 0 || p.I <= 0) return;
    const E* g = static_cast<const E*>(p.gate);
    const E* u = static_cast<const E*>(p.up);
    E* o = static_cast<E*>(p.out);
    constexpr int kV = int(16 / sizeof(E));
    const bool vec = p.I % kV == 0 && p.ld % kV == 0 && aligned_to(g, 16) && aligned_to(u, 16) && aligned_to(o, 16);
    const int v = vec ? kV : 1, threads = 256;
    const dim3 grid(unsigned((p.I / v + threads - 1) / threads), unsigned(p.T));  // a vector per thread
    if (vec)
      sgl_launch(silu_mul_strided_kernel<E, kV>, grid, dim3(threads), 0, g, u, o, p.I, int64_t(p.ld));
    else
      sgl_launch(silu_mul_strided_kernel<E, 1>, grid, dim3(threads), 0, g, u, o, p.I, int64_t(p.ld));
    return;
  }
  const int64_t n = int64_t(p.T) * p.I;
  if (n <= 0) return;
  const E* g = static_cast<const E*>(p.gate);
  const E* u = static_cast<const E*>(p.up);
  E* o = static_cast<E*>(p.out);
  // The tensors are contiguous: vectors (16 bytes) run across row ends, only the flat tail is scalar.
  constexpr int kV = int(16 / sizeof(E));
  const bool vec = aligned_to(g, 16) && aligned_to(u, 16) && aligned_to(o, 16);
  const int v = vec ? kV : 1;
  const int threads = 256;
  int64_t blocks = (n / v + threads - 1) / threads;
  const int64_t cap = int64_t(sgl_sm_count()) * 16;
  if (blocks > cap) blocks = cap;
  if (blocks < 1) blocks = 1;
  if (vec)
    sgl_launch(silu_mul_kernel<E, kV>, dim3(unsigned(blocks)), dim3(threads), 0, g, u, o, n);
  else
    sgl_launch(silu_mul_kernel<E, 1>, dim3(unsigned(blocks)), dim3(threads), 0, g, u, o, n);
}

}  // namespace

void embed_cuda(const EmbedParams& p) {
  require_bf16(p.table, "embed");
  embed_impl<bf16>(p);
}
void gather_rows_cuda(const GatherRowsParams& p) { gather_rows_impl<bf16>(p); }
void kv_store_cuda(const KvStoreParams& p) { kv_store_impl<bf16>(p); }
void rms_norm_cuda(const RmsNormParams& p) {
  require_bf16(p.w, "rms_norm");
  rms_norm_impl<bf16>(p);
}
void rope_cuda(const RopeParams& p) { rope_impl<bf16>(p); }
void silu_mul_cuda(const SiluMulParams& p) { silu_mul_impl<bf16>(p); }

void embed_cuda_f32(const EmbedParams& p) {
  require_f32(p.table, "embed");
  embed_impl<float>(p);
}
void gather_rows_cuda_f32(const GatherRowsParams& p) { gather_rows_impl<float>(p); }
void kv_store_cuda_f32(const KvStoreParams& p) { kv_store_impl<float>(p); }
void rms_norm_cuda_f32(const RmsNormParams& p) {
  require_f32(p.w, "rms_norm");
  rms_norm_impl<float>(p);
}
void rope_cuda_f32(const RopeParams& p) { rope_impl<float>(p); }
void silu_mul_cuda_f32(const SiluMulParams& p) { silu_mul_impl<float>(p); }

}  // namespace sgl
