// Shared by the small GPU parity harnesses: PASS/FAIL lines, the "N passed, M failed" summary the runner
// parses, and the skip where no CUDA device is present.
#pragma once
#include <cstdio>
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

inline int summary() {
  std::printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail == 0 ? 0 : 1;
}

}  // namespace gpu_check
