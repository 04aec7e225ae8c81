// Scalar 16-bit float conversions (baseline x86-64, no F16C needed). Used by the scalar kernels, by the
// tails of the SIMD ones, and by the tests.
#pragma once
#include <cstdint>
#include <cstring>

#include "backend/backend.h"

namespace sgl {

static inline float bits_to_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

static inline uint32_t f32_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// bf16 is the top half of an f32.
static inline float bf16_to_f32(uint16_t h) { return bits_to_f32(uint32_t(h) << 16); }

// Round to nearest even; NaN stays NaN.
static inline uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1);
  return uint16_t(u >> 16);
}

// IEEE half -> float, exact for every input (subnormals, inf, NaN).
static inline float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t man = h & 0x3ff;
  if (exp == 0x1f) return bits_to_f32(sign | 0x7f800000u | (man << 13));
  if (exp != 0) return bits_to_f32(sign | ((exp + 112) << 23) | (man << 13));
  // zero or subnormal: man * 2^-24, exact in f32
  float v = float(man) * (1.0f / 16777216.0f);
  return sign ? -v : v;
}

// float -> IEEE half, round to nearest even (used by tests to build f16 weights).
static inline uint16_t f32_to_f16(float f) {
  uint32_t u = f32_to_bits(f);
  uint16_t sign = uint16_t((u >> 16) & 0x8000);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | 0x7e00;            // NaN
  if (a >= 0x477ff000u) return sign | 0x7c00;           // overflow (>= 65520) -> inf
  if (a < 0x38800000u) {                                // below the smallest normal half: subnormal
    float v = bits_to_f32(a) * 16777216.0f;             // in units of 2^-24, exact
    uint32_t m = uint32_t(v);
    float rem = v - float(m);
    if (rem > 0.5f || (rem == 0.5f && (m & 1))) m++;
    return uint16_t(sign | m);
  }
  uint32_t r = a + 0xfffu + ((a >> 13) & 1) - (112u << 23);
  return uint16_t(sign | (r >> 13));
}

// One element of a weight in its stored dtype (F32, BF16 or F16), as f32.
static inline float load_weight(const void* base, DType dt, int64_t i) {
  switch (dt) {
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(base)[i]);
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(base)[i]);
    default: return static_cast<const float*>(base)[i];
  }
}

// n consecutive elements starting at i -> f32.
static inline void load_weight_row(const void* base, DType dt, int64_t i, int64_t n, float* out) {
  if (dt == DType::F32) {
    std::memcpy(out, static_cast<const float*>(base) + i, size_t(n) * 4);
  } else if (dt == DType::BF16) {
    const uint16_t* p = static_cast<const uint16_t*>(base) + i;
    for (int64_t j = 0; j < n; j++) out[j] = bf16_to_f32(p[j]);
  } else {
    const uint16_t* p = static_cast<const uint16_t*>(base) + i;
    for (int64_t j = 0; j < n; j++) out[j] = f16_to_f32(p[j]);
  }
}

}  // namespace sgl
