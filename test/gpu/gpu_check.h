// Shared by the small GPU parity harnesses: PASS/FAIL lines, the "N passed, M failed" summary the runner
// parses, and the skip where no CUDA device is present.
#pragma once
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <string>

#include "backend/backend.h"

namespace gpu_check {

inline int g_pass = 0, g_fail = 0;

// One check: "PASS|FAIL name[ detail]", flushed so that a crash later still shows it.
inline void report(const std::string& name, bool ok, const std::string& detail) {
  std::printf("%s %s%s%s\n", ok ? "PASS" : "FAIL", name.c_str(), detail.empty() ? "" : " ", detail.c_str());
  std::fflush(stdout);
  (ok ? g_pass : g_fail)++;
}

inline void check(bool ok, const std::string& what) { report(what, ok, ""); }

// The CUDA backend, or null after printing the skip summary (the caller returns 0).
inline const sgl::Backend* cuda_or_skip() {
  const sgl::Backend* cuda = sgl::cuda_backend();
  if (!cuda) std::printf("no CUDA device: skipped\n0 passed, 0 failed\n");
  return cuda;
}

inline std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
inline std::string fmt(const char* f, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

// Runs one group of checks; an exception is one failed check named after the group.
inline void guarded(const std::string& name, const std::function<void()>& body) {
  try {
    body();
  } catch (const std::exception& e) {
    report(name, false, std::string("(exception: ") + e.what() + ")");
  }
}

// splitmix64: fast and reproducible (the large weights have ~10^8 elements). `salt` gives each harness its
// own streams for the same seeds.
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed, uint64_t salt = 0x1234567ull) : s(seed * 0x9E3779B97F4A7C15ull + salt) {}
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  float uni(float lo = -1.0f, float hi = 1.0f) { return lo + (hi - lo) * float(next() >> 40) * (1.0f / 16777216.0f); }
  int range(int lo, int hi) { return lo + int(next() % uint64_t(hi - lo + 1)); }  // [lo, hi]
};

inline int summary() {
  std::printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail == 0 ? 0 : 1;
}

}  // namespace gpu_check
