// Run-time CUDA discovery: the backend is chosen at run time, so a build with CUDA still runs on a
// machine without a GPU (cudaGetDeviceCount fails there and we report 0 devices).
#pragma once
#include <cstddef>

namespace sgl {
int cuda_device_count();
// Writes "NAME (sm_XY, N MiB)" for device 0 into buf; returns false when no device is present.
bool cuda_device_describe(char* buf, int len);
// Free and total bytes of the current device; false when no device.
bool cuda_mem_info(size_t* free_bytes, size_t* total_bytes);
}  // namespace sgl
