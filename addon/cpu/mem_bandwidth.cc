#include <cstdint>
#include <atomic>
#include "cpu/mem_bandwidth.h"

#include <chrono>
#include <cstdlib>
#include <cstring>

#include "cpu/thread_pool.h"

namespace sgl {

double cpu_memcpy_bandwidth_gbs(size_t bytes, int iters) {
  if (bytes < 4096) bytes = 4096;
  if (iters < 1) iters = 1;
  bytes = (bytes + 63) & ~size_t(63);
  char* src = static_cast<char*>(std::aligned_alloc(64, bytes));
  char* dst = static_cast<char*>(std::aligned_alloc(64, bytes));
  if (!src || !dst) {
    std::free(src);
    std::free(dst);
    return 0.0;
  }
  ThreadPool& pool = cpu_pool();
  const int64_t lines = int64_t(bytes / 64);
  auto copy = [&] {
    pool.parallel_for(lines, [&](int64_t b, int64_t e) {
      std::memcpy(dst + b * 64, src + b * 64, size_t(e - b) * 64);
    });
  };
  // Touch both buffers from their threads first (page faults are not bandwidth).
  pool.parallel_for(lines, [&](int64_t b, int64_t e) {
    std::memset(src + b * 64, 1, size_t(e - b) * 64);
    std::memset(dst + b * 64, 0, size_t(e - b) * 64);
  });
  copy();
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; i++) copy();
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::free(src);
  std::free(dst);
  return s > 0 ? double(bytes) * iters / s / 1e9 : 0.0;
}

double cpu_read_bandwidth_gbs(size_t bytes, int iters) {
  if (bytes < 4096) bytes = 4096;
  if (iters < 1) iters = 1;
  bytes = (bytes + 63) & ~size_t(63);
  uint64_t* buf = static_cast<uint64_t*>(std::aligned_alloc(64, bytes));
  if (!buf) return 0.0;
  ThreadPool& pool = cpu_pool();
  const int64_t lines = int64_t(bytes / 64);
  pool.parallel_for(lines, [&](int64_t b, int64_t e) { std::memset(buf + b * 8, 1, size_t(e - b) * 64); });
  std::atomic<uint64_t> sink{0};
  auto read = [&] {
    pool.parallel_for(lines, [&](int64_t b, int64_t e) {
      uint64_t acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // 8 independent lanes: one cache line per iteration
      for (int64_t l = b; l < e; l++)
        for (int k = 0; k < 8; k++) acc[k] += buf[l * 8 + k];
      uint64_t s = 0;
      for (int k = 0; k < 8; k++) s += acc[k];
      sink.fetch_add(s, std::memory_order_relaxed);  // keeps the loads from being optimised away
    });
  };
  read();
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; i++) read();
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::free(buf);
  return s > 0 && sink.load() != 0 ? double(bytes) * iters / s / 1e9 : 0.0;
}

}  // namespace sgl
