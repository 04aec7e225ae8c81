// Memory bandwidth probe: the yardstick the decode benchmark compares weight streaming against.
#pragma once
#include <cstddef>

namespace sgl {

// Copies a `bytes`-sized buffer `iters` times, split across cpu_pool()'s threads, and returns
// GB/s (1e9 bytes/s) counted as bytes COPIED per second: each byte is counted once, although memory
// sees it twice (one read, one write). Use a buffer well above the last-level cache (e.g. 256 MiB).
double cpu_memcpy_bandwidth_gbs(size_t bytes, int iters);

// Reads (sums) a `bytes`-sized buffer `iters` times across cpu_pool()'s threads; GB/s of bytes read.
// This is the floor a weight-streaming decode chases: it only reads.
double cpu_read_bandwidth_gbs(size_t bytes, int iters);

}  // namespace sgl
