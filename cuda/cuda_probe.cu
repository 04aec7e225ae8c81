#include <cuda_runtime.h>

#include <cstdio>

#include "cuda_probe.h"

namespace sgl {

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

bool cuda_device_describe(char* buf, int len) {
  if (cuda_device_count() == 0) return false;
  cudaDeviceProp p;
  if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) return false;
  std::snprintf(buf, len, "%s (sm_%d%d, %zu MiB)", p.name, p.major, p.minor, p.totalGlobalMem >> 20);
  return true;
}

bool cuda_mem_info(size_t* free_bytes, size_t* total_bytes) {
  if (cuda_device_count() == 0) return false;
  if (cudaMemGetInfo(free_bytes, total_bytes) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return true;
}

}  // namespace sgl
