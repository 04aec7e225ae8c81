// y[T, N] = x[T, K] · W[N, K]ᵀ (+ bias[N]) on the GPU: bf16 x and W, f32 accumulation, bf16 y (or f32 y for
// the logits). cuBLASLt where the build has it (SGL_WITH_CUBLAS), a plain tiled CUDA-core kernel otherwise
// (and for any shape cuBLASLt's heuristic has no algorithm for).
//
// Row-major onto cuBLASLt's column-major: a row-major [R, C] matrix with row stride C is, read column-major,
// the [C, R] matrix with leading dimension C, i.e. its transpose. So row-major y[T, N] is column-major yᵀ
// (N x T, ld N), x[T, K] is xᵀ (K x T, ld K) and W[N, K] is Wᵀ (K x N, ld K). We compute
//     yᵀ (N x T) = W (N x K) · xᵀ (K x T)
// with A = the stored Wᵀ (K x N, ld K) under op T, B = the stored xᵀ (K x T, ld K) under op N,
// C = D = yᵀ (N x T, ld N); m = N, n = T, k = K. The bias runs along D's rows (m = N), which is what
// CUBLASLT_EPILOGUE_BIAS broadcasts over the columns (tokens).
//
// The bias vector must have D's type (CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE defaults to Dtype, and for bf16
// inputs the only exceptions are FP8/IMMA kernels). A bf16 y takes the placed bf16 bias in the epilogue;
// an f32 y (logits) would need an f32 bias, so there the bias is added by a small kernel after the GEMM.
//
// The float32 table (matmul_cuda_f32): x, W, bias and y all f32; cuBLASLt with CUBLAS_COMPUTE_32F and CUDA_R_32F
// A/B/C/D (plain SGEMM: CUBLAS_COMPUTE_32F never takes TF32 tensor cores, only the _FAST_TF32 compute types
// do), the f32 bias in the epilogue (its type is D's, f32); the same tiled kernel on f32 where cuBLAS is absent.
// No GEMV there: cuBLASLt or the tiled kernel at every T.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "cuda_common.cuh"
#include "gemv.h"
#include "ops.h"

#if defined(SGL_WITH_CUBLAS)
#include <cublasLt.h>
#endif

namespace sgl {

namespace {

using bf16 = __nv_bfloat16;

// ---- fallback: 16x16 output tiles through shared memory, CUDA cores --------------------------------------
constexpr int kTile = 16;

// E: bf16 x, W and bias (the default table) or f32 (the float32 table, OutF32 always).
template <typename E, bool OutF32>
__global__ void matmul_tiled_kernel(const E* __restrict__ x, const E* __restrict__ w, const E* __restrict__ bias,
                                    void* __restrict__ y, int T, int K, int N) {
  __shared__ float xs[kTile][kTile + 1];  // [token][k]
  __shared__ float ws[kTile][kTile + 1];  // [output feature][k]
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int t0 = blockIdx.y * kTile, n0 = blockIdx.x * kTile;
  float acc = 0.0f;
  for (int k0 = 0; k0 < K; k0 += kTile) {
    const int kk = k0 + tx;
    xs[ty][tx] = (t0 + ty < T && kk < K) ? to_f(x[int64_t(t0 + ty) * K + kk]) : 0.0f;
    ws[ty][tx] = (n0 + ty < N && kk < K) ? to_f(w[int64_t(n0 + ty) * K + kk]) : 0.0f;
    __syncthreads();
#pragma unroll
    for (int j = 0; j < kTile; j++) acc += xs[ty][j] * ws[tx][j];
    __syncthreads();
  }
  const int t = t0 + ty, n = n0 + tx;
  if (t < T && n < N) {
    if (bias) acc += to_f(bias[n]);
    if (OutF32)
      static_cast<float*>(y)[int64_t(t) * N + n] = acc;
    else
      static_cast<E*>(y)[int64_t(t) * N + n] = from_f<E>(acc);
  }
}

template <typename E>
void matmul_fallback(const MatmulParams& p) {
  const E* x = static_cast<const E*>(p.x);
  const E* w = static_cast<const E*>(p.w.data);
  const E* b = static_cast<const E*>(p.bias.data);
  dim3 grid(unsigned((p.N + kTile - 1) / kTile), unsigned((p.T + kTile - 1) / kTile));
  dim3 block(kTile, kTile);
  if (p.y_f32 || sizeof(E) == 4)  // the float32 table's y is f32 whether or not it is the logits
    matmul_tiled_kernel<E, true><<<grid, block, 0, sgl_stream()>>>(x, w, b, p.y, p.T, p.K, p.N);
  else
    matmul_tiled_kernel<E, false><<<grid, block, 0, sgl_stream()>>>(x, w, b, p.y, p.T, p.K, p.N);
  SGL_CUDA_LAUNCH_CHECK();
}

#if defined(SGL_WITH_CUBLAS)

// y[t, n] += bias[n] for an f32 y (the bias cuBLASLt's epilogue would want is f32 there), or for a bf16 y
// whose bias pointer is too loosely aligned for the epilogue.
// (B: the bias's type, bf16; f32 on the float32 table, whose y is f32 too.)
template <typename B, bool OutF32>
__global__ void bias_add_kernel(void* y, const B* __restrict__ bias, int64_t total, int N) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const float b = to_f(bias[i % N]);
    if (OutF32) {
      static_cast<float*>(y)[i] += b;
    } else {
      bf16* p = static_cast<bf16*>(y) + i;
      *p = __float2bfloat16_rn(__bfloat162float(*p) + b);
    }
  }
}

void bias_add(const MatmulParams& p, bool f32_in) {
  const int64_t total = int64_t(p.T) * p.N;
  const int threads = 256;
  int64_t blocks = (total + threads - 1) / threads;
  const int64_t cap = int64_t(sgl_sm_count()) * 16;
  if (blocks > cap) blocks = cap;
  if (blocks < 1) blocks = 1;
  if (f32_in) {
    const float* b = static_cast<const float*>(p.bias.data);
    bias_add_kernel<float, true><<<unsigned(blocks), threads, 0, sgl_stream()>>>(p.y, b, total, p.N);
  } else {
    const bf16* b = static_cast<const bf16*>(p.bias.data);
    if (p.y_f32)
      bias_add_kernel<bf16, true><<<unsigned(blocks), threads, 0, sgl_stream()>>>(p.y, b, total, p.N);
    else
      bias_add_kernel<bf16, false><<<unsigned(blocks), threads, 0, sgl_stream()>>>(p.y, b, total, p.N);
  }
  SGL_CUDA_LAUNCH_CHECK();
}

[[noreturn]] void cublas_fail(cublasStatus_t s, const char* what, const char* file, int line) {
  throw std::runtime_error(std::string("cuBLASLt error ") + std::to_string(int(s)) + " (" +
                           cublasLtGetStatusString(s) + ") in " + what + " at " + file + ":" + std::to_string(line));
}

#define SGL_CUBLAS_CHECK(expr)                                                          \
  do {                                                                                  \
    cublasStatus_t sgl_st_ = (expr);                                                    \
    if (sgl_st_ != CUBLAS_STATUS_SUCCESS) cublas_fail(sgl_st_, #expr, __FILE__, __LINE__); \
  } while (0)

constexpr size_t kLtWorkspace = size_t(32) << 20;

// Largest power of two (<= 256) the address is a multiple of: cuBLASLt's heuristic assumes 256-byte
// aligned buffers unless told otherwise, so the plan is keyed by the alignment it was chosen for.
uint32_t alignment_of(const void* p) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t al = 256;
  while (al > 1 && (a % al) != 0) al >>= 1;
  return al;
}

struct PlanKey {
  int T, K, N;
  bool y_f32, fused_bias;
  uint32_t al_x, al_w, al_y, al_b;
  bool f32_in;  // the float32 table: f32 x, W, bias and y
  bool accumulate = false;  // y += (matmul_add: beta = 1, C = D = y), timed and tuned apart
  bool operator<(const PlanKey& o) const {
    return std::tie(T, K, N, y_f32, fused_bias, al_x, al_w, al_y, al_b, f32_in, accumulate) <
           std::tie(o.T, o.K, o.N, o.y_f32, o.fused_bias, o.al_x, o.al_w, o.al_y, o.al_b, o.f32_in, o.accumulate);
  }
};

// How many of the heuristic's algorithms a tuned plan times: SGL_GEMM_CANDIDATES (1-64; default 8).
constexpr int kMaxCandidates = 64;
int tune_candidates() {
  static const int n = [] {
    const char* e = std::getenv("SGL_GEMM_CANDIDATES");
    const int v = e ? std::atoi(e) : 8;
    return v < 1 ? 1 : v > kMaxCandidates ? kMaxCandidates : v;
  }();
  return n;
}

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool ok = false;  // false: the heuristic found nothing, take the fallback kernel
  bool tuned = false;  // algo was picked by timing (or taken from the tuned plan of the same T bucket)
  std::vector<cublasLtMatmulAlgo_t> candidates;  // the heuristic's algorithms, best first (tuning only)
};

struct LtState {
  std::mutex mu;
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  std::map<PlanKey, Plan> plans;
  // Tuned algorithms by bucket: a plan's key with T rounded up to a power of two. A new T of a bucket already
  // tuned takes that bucket's algorithm (if cuBLASLt accepts it for the new T) instead of timing the
  // candidates again: prefill lengths vary per request, and each timing costs ~1 ms.
  std::map<PlanKey, cublasLtMatmulAlgo_t> tuned;
};

// GEMMs of T >= kTuneMinT tokens time the heuristic's first tune_candidates() algorithms once per (shape, T
// bucket) and keep the fastest (the default since 2026-12-07: on an H100 one 500-token gte-Qwen2-1.5B forward
// took 3.61 ms against 3.90 and the 512 x 500 wave ran at 199.6k against 197.8k tokens/s); SGL_GEMM_TUNE=0:
// the heuristic's first algorithm.
constexpr int kTuneMinT = 64;
bool gemm_tune_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("SGL_GEMM_TUNE");
    return !(e != nullptr && e[0] == '0');
  }();
  return on;
}

LtState& lt_state() {
  static LtState* s = [] {
    LtState* st = new LtState();  // never destroyed: cuBLASLt may be gone at static destruction time
    SGL_CUBLAS_CHECK(cublasLtCreate(&st->handle));
    if (cudaMalloc(&st->workspace, kLtWorkspace) != cudaSuccess) {
      cudaGetLastError();  // or the failed allocation resurfaces at the next launch check
      throw std::runtime_error("matmul: out of device memory for the 32 MiB cuBLASLt workspace");
    }
    return st;
  }();
  return *s;
}

// n_candidates: how many of the heuristic's algorithms to keep (1 unless the plan will be tuned).
Plan make_plan(LtState& s, const PlanKey& key, const void* bias, int n_candidates) {
  Plan pl;
  // f32 inputs: SGEMM (A/B/C/D CUDA_R_32F under CUBLAS_COMPUTE_32F, which excludes TF32).
  const cudaDataType_t in_type = key.f32_in ? CUDA_R_32F : CUDA_R_16BF;
  const cudaDataType_t y_type = (key.y_f32 || key.f32_in) ? CUDA_R_32F : CUDA_R_16BF;
  SGL_CUBLAS_CHECK(cublasLtMatmulDescCreate(&pl.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t op_t = CUBLAS_OP_T, op_n = CUBLAS_OP_N;
  SGL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(pl.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_t, sizeof(op_t)));
  SGL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(pl.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_n, sizeof(op_n)));
  if (key.fused_bias) {
    const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    SGL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(pl.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
    // The heuristic reads the pointer's value for its alignment; each call sets the real one.
    SGL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(pl.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  }
  SGL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&pl.a, in_type, uint64_t(key.K), uint64_t(key.N), int64_t(key.K)));
  SGL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&pl.b, in_type, uint64_t(key.K), uint64_t(key.T), int64_t(key.K)));
  SGL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&pl.c, y_type, uint64_t(key.N), uint64_t(key.T), int64_t(key.N)));

  cublasLtMatmulPreference_t pref = nullptr;
  SGL_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = kLtWorkspace;
  SGL_CUBLAS_CHECK(
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
  SGL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &key.al_w,
                                                        sizeof(key.al_w)));
  SGL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &key.al_x,
                                                        sizeof(key.al_x)));
  SGL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &key.al_y,
                                                        sizeof(key.al_y)));
  SGL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &key.al_y,
                                                        sizeof(key.al_y)));
  cublasLtMatmulHeuristicResult_t results[kMaxCandidates]{};
  int found = 0;
  cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(s.handle, pl.desc, pl.a, pl.b, pl.c, pl.c, pref, n_candidates,
                                                     results, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st == CUBLAS_STATUS_SUCCESS)
    for (int i = 0; i < found; i++)
      if (results[i].state == CUBLAS_STATUS_SUCCESS) pl.candidates.push_back(results[i].algo);
  if (!pl.candidates.empty()) {
    pl.algo = pl.candidates.front();
    pl.ok = true;
  } else {
    std::fprintf(stderr, "sgl cuda matmul: no cuBLASLt algorithm for T=%d K=%d N=%d y_f32=%d bias=%d f32=%d "
                 "(status %d), using the fallback kernel\n", key.T, key.K, key.N, int(key.y_f32), int(key.fused_bias),
                 int(key.f32_in), int(st));
  }
  return pl;
}

void run_algo(LtState& s, Plan& pl, const cublasLtMatmulAlgo_t& algo, const MatmulParams& p, bool accumulate) {
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  SGL_CUBLAS_CHECK(cublasLtMatmul(s.handle, pl.desc, &alpha, p.w.data, pl.a, p.x, pl.b, &beta, p.y, pl.c, p.y, pl.c,
                                  &algo, s.workspace, kLtWorkspace, sgl_stream()));
}

// Times each candidate on this call's own buffers (y is rewritten by the real call after; an accumulating
// call's y is saved first and put back) and keeps the fastest in pl.algo and in the T bucket. Skipped while
// sgl_stream() is being captured into a graph (no synchronisation is allowed then): the plan keeps the
// heuristic's first algorithm.
void tune_plan(LtState& s, Plan& pl, const PlanKey& key, const MatmulParams& p) {
  pl.tuned = true;
  cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
  SGL_CUDA_CHECK(cudaStreamIsCapturing(sgl_stream(), &cap));
  if (cap != cudaStreamCaptureStatusNone) return;
  PlanKey bucket = key;
  bucket.T = kTuneMinT;
  while (bucket.T < key.T) bucket.T *= 2;
  auto hit = s.tuned.find(bucket);
  if (hit != s.tuned.end()) {
    cublasLtMatmulHeuristicResult_t check{};
    if (cublasLtMatmulAlgoCheck(s.handle, pl.desc, pl.a, pl.b, pl.c, pl.c, &hit->second, &check) ==
            CUBLAS_STATUS_SUCCESS &&
        check.workspaceSize <= kLtWorkspace) {
      pl.algo = hit->second;
      pl.candidates.clear();
      return;
    }
  }
  if (pl.candidates.size() > 1) {
    const size_t y_bytes = size_t(p.T) * size_t(p.N) * (key.y_f32 || key.f32_in ? 4 : 2);
    void* saved = nullptr;
    if (key.accumulate) {
      SGL_CUDA_CHECK(cudaMalloc(&saved, y_bytes));
      SGL_CUDA_CHECK(cudaMemcpyAsync(saved, p.y, y_bytes, cudaMemcpyDeviceToDevice, sgl_stream()));
    }
    cudaEvent_t ev[2];
    SGL_CUDA_CHECK(cudaEventCreate(&ev[0]));
    SGL_CUDA_CHECK(cudaEventCreate(&ev[1]));
    float best_ms = 0.0f;
    for (size_t i = 0; i < pl.candidates.size(); i++) {
      run_algo(s, pl, pl.candidates[i], p, key.accumulate);  // warm-up
      SGL_CUDA_CHECK(cudaEventRecord(ev[0], sgl_stream()));
      for (int r = 0; r < 3; r++) run_algo(s, pl, pl.candidates[i], p, key.accumulate);
      SGL_CUDA_CHECK(cudaEventRecord(ev[1], sgl_stream()));
      SGL_CUDA_CHECK(cudaEventSynchronize(ev[1]));
      float ms = 0.0f;
      SGL_CUDA_CHECK(cudaEventElapsedTime(&ms, ev[0], ev[1]));
      if (i == 0 || ms < best_ms) best_ms = ms, pl.algo = pl.candidates[i];
    }
    cudaEventDestroy(ev[0]);
    cudaEventDestroy(ev[1]);
    if (saved) {
      SGL_CUDA_CHECK(cudaMemcpyAsync(p.y, saved, y_bytes, cudaMemcpyDeviceToDevice, sgl_stream()));
      SGL_CUDA_CHECK(cudaStreamSynchronize(sgl_stream()));
      SGL_CUDA_CHECK(cudaFree(saved));
    }
  }
  s.tuned[bucket] = pl.algo;
  pl.candidates.clear();
}

// Runs the GEMM through cuBLASLt; false when no algorithm fits (the caller falls back). f32_in: the float32
// table (f32 x, W, bias, y). accumulate: y += the product (beta = 1); the bias must then be fused (an unfused
// one would be added after the sum): false where it cannot be.
bool lt_matmul(const MatmulParams& p, bool f32_in, bool accumulate = false) {
  LtState& s = lt_state();
  const bool has_bias = p.bias.data != nullptr;
  // Epilogue bias: where its type (D's) is the bias's, i.e. bf16 y with a bf16 bias or f32 y with an f32 bias
  // (see the top of the file), and a bias aligned like a vector access.
  const bool fused_bias = has_bias && (f32_in || !p.y_f32) && alignment_of(p.bias.data) >= 16;
  if (accumulate && has_bias && !fused_bias) return false;
  PlanKey key{p.T, p.K, p.N, p.y_f32, fused_bias, alignment_of(p.x), alignment_of(p.w.data), alignment_of(p.y),
              fused_bias ? alignment_of(p.bias.data) : 0u, f32_in, accumulate};
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.plans.find(key);
  const bool tune = gemm_tune_enabled() && p.T >= kTuneMinT;
  if (it == s.plans.end()) it = s.plans.emplace(key, make_plan(s, key, p.bias.data, tune ? tune_candidates() : 1)).first;
  Plan& pl = it->second;
  if (!pl.ok) return false;
  if (fused_bias) {
    const void* bias = p.bias.data;
    SGL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(pl.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  }
  if (tune && !pl.tuned) tune_plan(s, pl, key, p);
  run_algo(s, pl, pl.algo, p, accumulate);
  if (has_bias && !fused_bias) bias_add(p, f32_in);
  return true;
}

#endif  // SGL_WITH_CUBLAS

}  // namespace

#if defined(SGL_NO_SM90A)
// Built with an nvcc older than 12.0 (no sm_90a): matmul_silu_sm90.cu is not compiled.
bool matmul_silu_mul_cuda(const MatmulSiluMulParams&) { return false; }
#endif

void matmul_cuda(const MatmulParams& p) {
  if (p.T <= 0 || p.N <= 0) return;
  if (p.w.dtype != DType::BF16 || (p.bias.data && p.bias.dtype != DType::BF16))
    throw std::runtime_error(std::string("matmul: CUDA expects bf16 weights (from place_weight), got w ") +
                             dtype_name(p.w.dtype) + (p.bias.data ? std::string(", bias ") + dtype_name(p.bias.dtype)
                                                                  : std::string()));
  if (gemv_cuda(p)) return;  // T <= 8: the weight-streaming kernel (cuBLASLt's M = 1 kernels were ~10 µs)
#if defined(SGL_WITH_CUBLAS)
  if (p.K > 0 && lt_matmul(p, false)) return;
#endif
  matmul_fallback<bf16>(p);
}

// SGL_MATMUL_ADD=0: decline, so the model runs matmul and folds the output in with rms_norm (the A/B switch).
bool matmul_add_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("SGL_MATMUL_ADD");
    return !(e != nullptr && e[0] == '0');
  }();
  return on;
}

bool matmul_add_cuda(const MatmulParams& p) {
  if (!matmul_add_enabled()) return false;
  if (p.T <= 0 || p.N <= 0) return true;
  if (p.y_f32 || p.w.dtype != DType::BF16 || (p.bias.data && p.bias.dtype != DType::BF16) || p.K <= 0) return false;
#if defined(SGL_WITH_CUBLAS)
  return lt_matmul(p, false, true);
#else
  return false;
#endif
}

void matmul_cuda_f32(const MatmulParams& p) {
  if (p.T <= 0 || p.N <= 0) return;
  if (p.w.dtype != DType::F32 || (p.bias.data && p.bias.dtype != DType::F32))
    throw std::runtime_error(std::string("matmul: the float32 CUDA backend expects f32 weights (from place_weight), got w ") +
                             dtype_name(p.w.dtype) + (p.bias.data ? std::string(", bias ") + dtype_name(p.bias.dtype)
                                                                  : std::string()));
#if defined(SGL_WITH_CUBLAS)
  if (p.K > 0 && lt_matmul(p, true)) return;
#endif
  matmul_fallback<float>(p);
}

}  // namespace sgl
