// A growable scratch buffer in a backend's memory (activations, step metadata).
#pragma once
#include <cstddef>
#include <stdexcept>

#include "backend/backend.h"

namespace sgl {

class DeviceBuffer {
 public:
  explicit DeviceBuffer(const Backend& b) : backend_(&b) {}
  ~DeviceBuffer() { reset(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* ensure(size_t bytes) {
    if (bytes > cap_) {
      reset();
      size_t want = bytes + bytes / 2;  // grow with headroom: step sizes vary
      ptr_ = backend_->alloc(want);
      if (!ptr_) throw std::runtime_error("out of memory: scratch buffer of " + std::to_string(want) + " bytes");
      cap_ = want;
    }
    return ptr_;
  }
  template <class T>
  T* as(size_t count) { return static_cast<T*>(ensure(count * sizeof(T))); }
  void reset() {
    if (ptr_) backend_->free(ptr_);
    ptr_ = nullptr;
    cap_ = 0;
  }

 private:
  const Backend* backend_;
  void* ptr_ = nullptr;
  size_t cap_ = 0;
};

// A growable host buffer the backend can copy into asynchronously (Backend::host_alloc: pinned on CUDA).
// Grow it only while no copy into it is in flight.
class HostStage {
 public:
  explicit HostStage(const Backend& b) : backend_(&b) {}
  ~HostStage() { reset(); }
  HostStage(const HostStage&) = delete;
  HostStage& operator=(const HostStage&) = delete;

  char* ensure(size_t bytes) {
    if (bytes > cap_) {
      reset();
      size_t want = bytes + bytes / 2;
      ptr_ = static_cast<char*>(backend_->host_alloc(want));
      if (!ptr_) throw std::runtime_error("out of memory: host staging buffer of " + std::to_string(want) + " bytes");
      cap_ = want;
    }
    return ptr_;
  }
  void reset() {
    if (ptr_) backend_->host_free(ptr_);
    ptr_ = nullptr;
    cap_ = 0;
  }

 private:
  const Backend* backend_;
  char* ptr_ = nullptr;
  size_t cap_ = 0;
};

}  // namespace sgl
