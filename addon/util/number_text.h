// ECMAScript number text (what JSON.stringify writes for a number) for float rows: the REST gateway's
// embeddings are 1,536-number arrays whose JSON.stringify takes ~0.24 ms a row on the JS thread. Two modes,
// both writing shortest round-trip digits as Number.prototype.toString lays them out: double (std::to_chars'
// digits: JSON.stringify's bytes exactly) and float32 (the shortest digits that round-trip to the value's
// float32, as numpy and orjson print a float32; Schubfach, the same digits as std::to_chars' for a float, at
// under half its cost). src/http/number-json.ts calls these through formatNumberArray and holds the timings
// (bench/embedding-json-bench.ts).
#pragma once
#include <cstddef>

namespace sgl {

// Each number as Number.prototype.toString writes it (shortest digits that round-trip; fixed notation for
// decimal exponents in [-7, 21), else d.ddde±x), "0" for -0, and "null" for NaN and infinities (as JSON does).
// Writes "[a,b,...]" (a JSON array of the n numbers) into dst; the bytes written, or 0 when cap is too small
// ((kMaxNumberTextBytes + 1) * n + 2 always suffices, in either mode).
constexpr size_t kMaxNumberTextBytes = 26;  // "-0.0000012345678901234567" is 25
size_t write_js_number_array(const double* v, size_t n, char* dst, size_t cap);

// The same for float(v[i]) (round to nearest; beyond float's range that is an infinity: "null"): the shortest
// digits that round-trip to that float, in the same layout ("0.1" for 0.1f, not 0.10000000149011612).
size_t write_js_float32_array(const double* v, size_t n, char* dst, size_t cap);

}  // namespace sgl
