// matmul threading and regime choice, plus the portable scalar kernel (the fallback without AVX2).
#include "cpu/matmul.h"

#include <algorithm>
#include <vector>

#include "cpu/convert.h"
#include "cpu/cpu_features.h"
#include "cpu/thread_pool.h"

namespace sgl {

namespace {

// Dot product with 8 independent partial sums so the compiler can keep SSE lanes busy.
float dot_f32(const float* a, const float* b, int64_t n) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) s[j] += a[i + j] * b[i + j];
  for (; i < n; i++) s[0] += a[i] * b[i];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

void gemv_scalar(const MatmulParams& p, int64_t t0, int64_t t1, int64_t n0, int64_t n1) {
  const float* x = static_cast<const float*>(p.x);
  float* y = static_cast<float*>(p.y);
  const int64_t K = p.K, N = p.N;
  // One converted weight row at a time, reused by every token.
  thread_local std::vector<float> row;
  row.resize(size_t(K));
  for (int64_t n = n0; n < n1; n++) {
    load_weight_row(p.w.data, p.w.dtype, n * K, K, row.data());
    float b = p.bias.data ? load_weight(p.bias.data, p.bias.dtype, n) : 0.0f;
    for (int64_t t = t0; t < t1; t++) y[t * N + n] = dot_f32(x + t * K, row.data(), K) + b;
  }
}

void gemv_threaded(const MatmulKernels& k, const MatmulParams& p) {
  ThreadPool& pool = cpu_pool();
  const int64_t T = p.T, N = p.N;
  const int64_t g = k.gemv_tokens;
  const int64_t groups = (T + g - 1) / g;
  if (groups >= pool.num_threads() && N < 64) {
    // Many tokens, few outputs (e.g. a score head): split tokens.
    pool.parallel_for(groups, [&](int64_t g0, int64_t g1) { k.gemv(p, g0 * g, g1 * g < T ? g1 * g : T, 0, N); });
    return;
  }
  // Split output rows into ~8 chunks per thread handed out dynamically: when the cores are shared with
  // other threads (Node's, other processes), whoever is running takes over the chunks of a descheduled
  // worker instead of waiting for it. Chunks hold >= ~32 KiB of weights (tiny matrices stay on one
  // thread) and a multiple of 8 rows (the kernels' row blocking).
  const int64_t row_bytes = int64_t(p.K) * int64_t(dtype_size(p.w.dtype));
  const int64_t per_thread = 8 * int64_t(pool.num_threads());
  int64_t chunk = std::max<int64_t>(1 + (32 << 10) / (row_bytes + 1), (N + per_thread - 1) / per_thread);
  chunk = (chunk + 7) / 8 * 8;
  const int64_t chunks = (N + chunk - 1) / chunk;
  pool.parallel_for_dynamic(chunks, [&](int64_t c) { k.gemv(p, 0, T, c * chunk, std::min(N, (c + 1) * chunk)); });
}

void gemm_threaded(const MatmulKernels& k, const MatmulParams& p) {
  ThreadPool& pool = cpu_pool();
  const int64_t T = p.T, N = p.N, nr_max = k.panel_rows, mr = k.token_block;
  const int64_t panels = (N + nr_max - 1) / nr_max;
  const int64_t tblocks = (T + mr - 1) / mr;
  // Split tokens too when there are too few panels to keep every thread busy (each split re-packs).
  int64_t tsplit = 1;
  const int64_t want = 4 * int64_t(pool.num_threads());
  if (panels < want) {
    tsplit = (want + panels - 1) / panels;
    if (tsplit > tblocks) tsplit = tblocks;
  }
  pool.parallel_for_dynamic(panels * tsplit, [&](int64_t item) {
    int64_t pi = item / tsplit, ti = item % tsplit;
    int64_t n0 = pi * nr_max;
    int nr = int(N - n0 < nr_max ? N - n0 : nr_max);
    int64_t b0 = tblocks * ti / tsplit, b1 = tblocks * (ti + 1) / tsplit;
    int64_t t0 = b0 * mr, t1 = b1 * mr < T ? b1 * mr : T;
    if (t0 < t1) k.gemm_panel(p, n0, nr, t0, t1);
  });
}

}  // namespace

const MatmulKernels& matmul_kernels_scalar() {
  static const MatmulKernels k = {"scalar", gemv_scalar, 1, nullptr, 0, 0, 0};
  return k;
}

void matmul_with(const MatmulKernels& k, const MatmulParams& p) {
  if (p.T <= 0 || p.N <= 0) return;
  if (k.gemm_panel && p.T > k.gemv_tokens && p.N >= k.gemm_min_n)
    gemm_threaded(k, p);
  else
    gemv_threaded(k, p);
}

void matmul_cpu(const MatmulParams& p) {
  switch (cpu_isa()) {
    case CpuIsa::Avx512: matmul_with(matmul_kernels_avx512(), p); break;
    case CpuIsa::Avx2: matmul_with(matmul_kernels_avx2(), p); break;
    default: matmul_with(matmul_kernels_scalar(), p); break;
  }
}

}  // namespace sgl
