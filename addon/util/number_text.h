// ECMAScript number text (what JSON.stringify writes for a number) for float rows: the REST gateway's
// embeddings are 1,536-number arrays whose JSON.stringify took ~0.22 ms a row on the JS thread; this writes
// the same bytes from the shortest round-trip digits of std::to_chars (Ryu): a whole /encode body in 157
// instead of 243 µs (bench/embedding-json-bench.ts; src/http/number-json.ts calls it through formatNumberArray).
#pragma once
#include <cstddef>

namespace sgl {

// Each number as Number.prototype.toString writes it (shortest digits that round-trip; fixed notation for
// decimal exponents in [-7, 21), else d.ddde±x), "0" for -0, and "null" for NaN and infinities (as JSON does).
// Writes "[a,b,...]" (a JSON array of the n numbers) into dst; the bytes written, or 0 when cap is too small
// ((kMaxNumberTextBytes + 1) * n + 2 always suffices).
constexpr size_t kMaxNumberTextBytes = 26;  // "-0.0000012345678901234567" is 25
size_t write_js_number_array(const double* v, size_t n, char* dst, size_t cap);

}  // namespace sgl
