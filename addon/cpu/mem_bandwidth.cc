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

}  // namespace sgl
