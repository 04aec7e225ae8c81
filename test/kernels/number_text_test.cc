// Standalone test of addon/util/number_text (no Node): the float32 writer's digits against std::to_chars'
// shortest float digits, laid out by an independent string-based Number.prototype.toString layout, for a
// stride sample of all 2^32 float bit patterns plus edge cases (powers of two, subnormals, the extremes,
// NaN / infinities / zeros), and the double writer on edge cases. `number_text_test --all` compares every
// bit pattern (~4.3 billion; minutes): what was run once when the Schubfach writer was added (2026-12-07).
// Prints one line per group and ends with "N passed, M failed"; exits non-zero on any failure.
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "util/number_text.h"

namespace {

int g_passed = 0, g_failed = 0;

void check(const std::string& name, bool ok, const std::string& detail = "") {
  std::printf("%s %s%s%s\n", ok ? "PASS" : "FAIL", name.c_str(), ok ? "" : ": ", ok ? "" : detail.c_str());
  (ok ? g_passed : g_failed)++;
}

// Number.prototype.toString's layout of digits d (no trailing zeros) with the first digit's exponent e10.
std::string js_layout(const std::string& d, int e10) {
  const int k = int(d.size()), n = e10 + 1;
  if (k <= n && n <= 21) return d + std::string(size_t(n - k), '0');
  if (0 < n && n <= 21) return d.substr(0, size_t(n)) + "." + d.substr(size_t(n));
  if (-6 < n && n <= 0) return "0." + std::string(size_t(-n), '0') + d;
  std::string s = d.substr(0, 1);
  if (k > 1) s += "." + d.substr(1);
  return s + "e" + (n - 1 >= 0 ? "+" : "-") + std::to_string(std::abs(n - 1));
}

// The reference text of a number: std::to_chars' shortest digits of T, in the JS layout; "null" / "0".
template <typename T>
std::string reference(T x) {
  if (!std::isfinite(x)) return "null";
  if (x == 0) return "0";
  char buf[64];
  char* end = std::to_chars(buf, buf + sizeof buf, x, std::chars_format::scientific).ptr;
  std::string s(buf, size_t(end - buf));
  std::string sign;
  if (s[0] == '-') sign = "-", s = s.substr(1);
  const size_t e = s.find('e');
  std::string digits;
  for (size_t i = 0; i < e; i++)
    if (s[i] != '.') digits += s[i];
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  return sign + js_layout(digits, std::stoi(s.substr(e + 1)));
}

// Writes the values with the float32 (or double) writer and compares each element with the reference;
// returns the number of mismatches (the first few printed).
int compare(const std::vector<double>& v, bool float32, int& shown) {
  std::vector<char> out((sgl::kMaxNumberTextBytes + 1) * v.size() + 2 + 64);
  const size_t n = float32 ? sgl::write_js_float32_array(v.data(), v.size(), out.data(), out.size())
                           : sgl::write_js_number_array(v.data(), v.size(), out.data(), out.size());
  if (n == 0) return int(v.size());
  std::string text(out.data() + 1, n - 2);  // without the brackets
  int bad = 0;
  size_t at = 0;
  for (size_t i = 0; i < v.size(); i++) {
    size_t comma = text.find(',', at);
    if (comma == std::string::npos) comma = text.size();
    const std::string got = text.substr(at, comma - at);
    at = comma + 1;
    const std::string want = float32 ? reference(float(v[i])) : reference(v[i]);
    if (got != want) {
      if (shown++ < 8) std::printf("  %.17g: got %s, want %s\n", v[i], got.c_str(), want.c_str());
      bad++;
    }
  }
  return bad;
}

double from_bits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return double(f);
}

}  // namespace

int main(int argc, char** argv) {
  const bool all = argc > 1 && std::strcmp(argv[1], "--all") == 0;
  int shown = 0;
  {
    // Edge cases: every power of two (the asymmetric rounding intervals), subnormal extremes, max / min,
    // integers around 2^24, ties, values around the layout's exponent thresholds.
    std::vector<double> v;
    for (int e = -149; e <= 127; e++) v.push_back(std::ldexp(1.0, e)), v.push_back(-std::ldexp(1.0, e));
    for (uint32_t b : {1u, 2u, 3u, 0x7FFFFFu, 0x800000u, 0x7F7FFFFFu, 0x00800001u, 0x3F800000u, 0x3DCCCCCDu})
      v.push_back(from_bits(b));
    for (double x : {16777215.0, 16777216.0, 16777217.0, 2793289.25, 1e21, 1e-7, 1.5e-7, 9.99999e20, 123456.789,
                     0.1, 0.2, 0.3, 1.0 / 3, 1e-6, 1e-5, 3.4028234663852886e38, 1e39, -1e39})
      v.push_back(x);
    v.push_back(std::numeric_limits<double>::quiet_NaN());
    v.push_back(std::numeric_limits<double>::infinity());
    v.push_back(-0.0);
    v.push_back(0.0);
    check("float32 edge cases (" + std::to_string(v.size()) + ")", compare(v, true, shown) == 0);
    check("double edge cases (" + std::to_string(v.size()) + ")", compare(v, false, shown) == 0);
  }
  {
    // Every float bit pattern with a stride (both signs, all exponents), or every one with --all.
    const uint64_t stride = all ? 1 : 997;
    std::vector<double> v;
    v.reserve(1 << 16);
    uint64_t count = 0;
    int bad = 0;
    for (uint64_t b = 0; b <= 0xFFFFFFFFull; b += stride) {
      v.push_back(from_bits(uint32_t(b)));
      count++;
      if (v.size() == (1u << 16)) {
        bad += compare(v, true, shown);
        v.clear();
      }
    }
    if (!v.empty()) bad += compare(v, true, shown);
    check("float32 bit patterns, stride " + std::to_string(stride) + " (" + std::to_string(count) + " values)",
          bad == 0, std::to_string(bad) + " mismatches");
  }
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
