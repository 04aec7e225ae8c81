#include "util/number_text.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace sgl {

namespace {

// Writes x as Number.prototype.toString does at p; returns the end.
char* write_js_number(char* p, double x) {
  if (!std::isfinite(x)) {
    std::memcpy(p, "null", 4);
    return p + 4;
  }
  if (x == 0) {  // +0 and -0
    *p++ = '0';
    return p;
  }
  // Shortest round-trip digits in scientific form: [-]d[.ddd]e(+|-)xx.
  char sci[40];
  const std::to_chars_result r = std::to_chars(sci, sci + sizeof sci - 1, x, std::chars_format::scientific);
  *r.ptr = 0;  // (atoi below reads the exponent up to here)
  const char* s = sci;
  if (*s == '-') {
    *p++ = '-';
    s++;
  }
  char digits[24];
  int k = 0;
  for (; s < r.ptr && *s != 'e'; s++)
    if (*s != '.') digits[k++] = *s;
  const int e10 = std::atoi(s + 1);  // the exponent of the first digit (strtol-style sign)
  const int n = e10 + 1;             // ECMAScript's n: the decimal point sits after n digits
  if (k <= n && n <= 21) {           // an integer: the digits, then n - k zeros
    std::memcpy(p, digits, size_t(k));
    p += k;
    for (int i = k; i < n; i++) *p++ = '0';
  } else if (0 < n && n <= 21) {  // the point inside the digits
    std::memcpy(p, digits, size_t(n));
    p += n;
    *p++ = '.';
    std::memcpy(p, digits + n, size_t(k - n));
    p += k - n;
  } else if (-6 < n && n <= 0) {  // 0.000ddd
    *p++ = '0';
    *p++ = '.';
    for (int i = 0; i < -n; i++) *p++ = '0';
    std::memcpy(p, digits, size_t(k));
    p += k;
  } else {  // d.ddde+x / d.ddde-x
    *p++ = digits[0];
    if (k > 1) {
      *p++ = '.';
      std::memcpy(p, digits + 1, size_t(k - 1));
      p += k - 1;
    }
    *p++ = 'e';
    *p++ = n - 1 >= 0 ? '+' : '-';
    p = std::to_chars(p, p + 4, std::abs(n - 1)).ptr;
  }
  return p;
}

}  // namespace

size_t write_js_number_array(const double* v, size_t n, char* dst, size_t cap) {
  if (cap < (kMaxNumberTextBytes + 1) * n + 2) return 0;
  char* p = dst;
  *p++ = '[';
  for (size_t i = 0; i < n; i++) {
    if (i) *p++ = ',';
    p = write_js_number(p, v[i]);
  }
  *p++ = ']';
  return size_t(p - dst);
}

}  // namespace sgl
