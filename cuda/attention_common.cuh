// Shared by the attention kernels (attention.cu, attention_prefill.cu, attention_decode.cu): PTX wrappers
// for cp.async / ldmatrix / mma.sync (sm_80+ instructions, fine on sm_90 without the "a" suffix), the
// swizzled shared-memory tile layout, and the launchers each file provides to the dispatcher.
//
// Tile layout in shared memory: a tile of R rows x D bf16 (D = 64 or 128) is stored row-major, each row
// split into D/8 chunks of 16 bytes; chunk c of row r sits at chunk position c ^ (r & 7). ldmatrix reads
// 8 rows at one logical chunk, which then land on 8 distinct 16-byte bank groups (no conflicts), and the
// 16-byte cp.async writes of one row stay a permutation of that row.
//
// Fragment conventions of mma.m16n8k16 (g = lane / 4, t = lane % 4):
//   A (16x16, row): a0 = (row g, k 2t..2t+1), a1 = (row g+8, k 2t..), a2 = (row g, k 2t+8..), a3 = (g+8, 2t+8..)
//   B (16x8, col):  b0 = (k 2t..2t+1, n g), b1 = (k 2t+8.., n g)
//   C (16x8 f32):   c0,c1 = (row g, n 2t, 2t+1), c2,c3 = (row g+8, n 2t, 2t+1)
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/backend.h"

namespace sgl {
namespace attn {

constexpr float kLog2e = 1.4426950408889634f;

// ---- launchers (host side), each enqueues on sgl_stream() ------------------------------------------------

// Tensor-core prefill (any mix of q_len), D = 64 or 128.
void launch_prefill_tc(const AttentionParams& p);
void launch_prefill_tc_bm64(const AttentionParams& p);  // the 64-row query tiles whatever max_q_len is
// Hopper (sm_90a) wgmma prefill, D = 64 or 128, max_q_len > 64 (attention_prefill_sm90.cu). Returns false
// without launching where it does not apply (another device, other shapes, SGL_PREFILL_WGMMA=0).
bool launch_prefill_wgmma(const AttentionParams& p);
// Split-KV tensor-core decode (every q_len <= 1), D = 64 or 128.
void launch_decode_tc(const AttentionParams& p);
// CUDA-core fallback for any D (multiple of 8, <= 256), any q_len: one warp per (query token, head).
void launch_generic(const AttentionParams& p);

// ---- device helpers -------------------------------------------------------------------------------------

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte global -> shared copy; src_bytes = 0 writes zeros (src must still be a valid address).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2,
                                                  uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}

// c += a * b  (m16n8k16, bf16 inputs, f32 accumulators). Registers only, so not volatile: the compiler may
// interleave it with the (volatile, ordered) shared-memory loads.
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats -> packed bf16x2, the first in the low half (the lower k / column index of a fragment).
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// Byte offset of (row, chunk) in a swizzled tile whose rows hold CHUNKS 16-byte chunks (CHUNKS >= 8).
template <int CHUNKS>
__device__ __forceinline__ uint32_t swz(int row, int chunk) {
  return static_cast<uint32_t>((row * CHUNKS + (chunk ^ (row & 7))) * 16);
}

// Where a prefill block stands (both tensor-core prefill kernels): query rows [m0, m0 + BM) of sequence b,
// query head h over KV head kvh, the keys its rows may see ([0, n_end): causal stops at the last row's
// position), and the paged-cache offset of each key. rows() is false for a block past the sequence's rows.
struct PrefillBlock {
  int q_begin, q_len;  // the sequence's query rows in q / out
  int m0;              // the block's first query row
  int kv_len, pos0;    // keys of the sequence; position of its query 0
  int kvh, n_end;
  const int32_t* seq_pages;       // the sequence's page ids
  int P;                          // page size
  int64_t row_stride, head_off;   // elements per cached token; the KV head's offset within one

  __device__ __forceinline__ bool rows() const { return m0 < q_len; }
  // Element offset of a key in the caches; -1 outside [0, n_end) (its tile row is zero-filled).
  __device__ __forceinline__ int64_t key_offset(int key) const {
    if (key >= n_end) return -1;
    const int pg = seq_pages[key / P];
    return (int64_t(pg) * P + key % P) * row_stride + head_off;
  }
  // Copies the block's BM query rows of head h (zeros past q_len) into shared memory with 16-byte cp.async:
  // this thread moves chunk ld_chunk of rows ld_row + i * ROWS_PER_PASS, to dst + i * pass_bytes (dst: the
  // thread's first row in the kernel's shared layout).
  template <int BM, int D, int ROWS_PER_PASS>
  __device__ __forceinline__ void load_q(const __nv_bfloat16* q, int H, int h, int ld_row, int ld_chunk, uint32_t dst,
                                         uint32_t pass_bytes) const {
#pragma unroll
    for (int it = 0; it < BM / ROWS_PER_PASS; it++) {
      const int r = ld_row + it * ROWS_PER_PASS;
      const bool ok = m0 + r < q_len;
      const __nv_bfloat16* src = q + (int64_t(q_begin + m0 + r) * H + h) * D + ld_chunk * 8;
      cp_async16(dst + it * pass_bytes, ok ? src : q, ok ? 16 : 0);
    }
  }
};

template <int BM, int D>
__device__ __forceinline__ PrefillBlock prefill_block(int b, int h, int m_tile, const int32_t* qo_indptr,
                                                      const int32_t* kv_indptr, const int32_t* page_ids,
                                                      const int32_t* kv_lens, int H, int Hkv, int P, int causal) {
  PrefillBlock k;
  k.q_begin = qo_indptr[b];
  k.q_len = qo_indptr[b + 1] - k.q_begin;
  k.m0 = m_tile * BM;
  k.kv_len = kv_lens[b];
  k.kvh = h / (H / Hkv);
  k.pos0 = k.kv_len - k.q_len;
  k.n_end = k.kv_len;
  if (causal) k.n_end = min(k.kv_len, k.pos0 + min(k.m0 + BM, k.q_len));
  k.n_end = max(k.n_end, 0);
  k.seq_pages = page_ids + kv_indptr[b];
  k.P = P;
  k.row_stride = int64_t(Hkv) * D;
  k.head_off = int64_t(k.kvh) * D;
  return k;
}

// exp2 of x - m where m may be -inf (a row that has seen no key yet): then every x is -inf too and the
// result must be 0, not NaN.
__device__ __forceinline__ float safe_max(float m) { return m == -INFINITY ? 0.0f : m; }

}  // namespace attn
}  // namespace sgl
