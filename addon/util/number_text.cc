#include "util/number_text.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace sgl {

namespace {

// Copies the len (<= kMax) digits at d to p: a fixed 16-byte copy where kMax <= 16 (no call to memcpy; d
// holds 16 readable bytes, and the bytes past p's len are room the array's cap leaves, written over later).
template <int kMax>
inline void copy_digits(char* p, const char* d, int len) {
  if constexpr (kMax <= 16)
    std::memcpy(p, d, 16);
  else
    std::memcpy(p, d, size_t(len));
}

// Lays out k (<= kMax) significant digits d[0..k) (no leading or trailing zeros), the first of decimal
// exponent e10, as Number.prototype.toString does (ECMA-262 Number::toString with n = e10 + 1: the decimal
// point sits after n digits); returns the end. The sign is already written. Writes at most 25 bytes past p
// with kMax <= 9 (fixed-size copies; the text itself is at most 21), the text (at most 24) and a byte or so
// that the digits then overwrite otherwise.
template <int kMax>
char* write_js_layout(char* p, const char* d, int k, int e10) {
  const int n = e10 + 1;
  if (n > 21 || n <= -6) {  // d.ddde+x / d.ddde-x
    *p++ = d[0];
    if (k > 1) {
      *p++ = '.';
      copy_digits<kMax>(p, d + 1, k - 1);
      p += k - 1;
    }
    *p++ = 'e';
    *p++ = e10 >= 0 ? '+' : '-';
    unsigned e = unsigned(e10 >= 0 ? e10 : -e10);  // < 400
    if (e >= 100) {
      *p++ = char('0' + e / 100);
      e %= 100;
      *p++ = char('0' + e / 10);
    } else if (e >= 10) {
      *p++ = char('0' + e / 10);
    }
    *p++ = char('0' + e % 10);
    return p;
  }
  if (n <= 0) {  // 0.000ddd: "0." and -n zeros (at most 5), then the digits
    std::memcpy(p, "0.000000", 8);
    p += 2 - n;
    copy_digits<kMax>(p, d, k);
    return p + k;
  }
  if (k <= n) {  // an integer: the digits, then n - k zeros
    copy_digits<kMax>(p, d, k);
    p += k;
    std::memset(p, '0', size_t(n - k));
    return p + (n - k);
  }
  copy_digits<kMax>(p, d, n);  // the point inside the digits
  p += n;
  *p++ = '.';
  copy_digits<kMax>(p, d + n, k - n);
  return p + (k - n);
}

// The shortest decimal that round-trips to a float32 (Schubfach, R. Giulietti, "The Schubfach way to render
// doubles", 2020, as in A. Bolz's Drachennest schubfach_32): value x = c * 2^q lies in the rounding interval
// R = [(c - 1/2) 2^q, (c + 1/2) 2^q] (a quarter below when the lower neighbour is closer; closed when c is
// even); the interval, scaled by 10^-k and in quarter units, is computed by round-to-odd multiplication with
// a 64-bit g ~ 10^-k; the result is the one-digit-shorter decimal if one lies in R, else the closest
// decimal of the scale 10^k in R. It is std::to_chars' (Ryu's) shortest for every finite nonzero float:
// `build/number_text_test --all` compares all 2^32 bit patterns (0 mismatches, 2026-12-07, ~18 min on one
// core; npm test runs every 997th). digits * 10^exp10 (digits may end in zeros).
struct Decimal32 {
  uint32_t digits;
  int exp10;
};

// g(e) = floor(10^e 2^(63 - floor(log2 10^e))) + 1 for e in [-31, 45] (python's exact integers made them).
constexpr int kPow10Min = -31;
constexpr uint64_t kPow10[77] = {
    0x81CEB32C4B43FCF5, 0xA2425FF75E14FC32, 0xCAD2F7F5359A3B3F, 0xFD87B5F28300CA0E,
    0x9E74D1B791E07E49, 0xC612062576589DDB, 0xF79687AED3EEC552, 0x9ABE14CD44753B53,
    0xC16D9A0095928A28, 0xF1C90080BAF72CB2, 0x971DA05074DA7BEF, 0xBCE5086492111AEB,
    0xEC1E4A7DB69561A6, 0x9392EE8E921D5D08, 0xB877AA3236A4B44A, 0xE69594BEC44DE15C,
    0x901D7CF73AB0ACDA, 0xB424DC35095CD810, 0xE12E13424BB40E14, 0x8CBCCC096F5088CC,
    0xAFEBFF0BCB24AAFF, 0xDBE6FECEBDEDD5BF, 0x89705F4136B4A598, 0xABCC77118461CEFD,
    0xD6BF94D5E57A42BD, 0x8637BD05AF6C69B6, 0xA7C5AC471B478424, 0xD1B71758E219652C,
    0x83126E978D4FDF3C, 0xA3D70A3D70A3D70B, 0xCCCCCCCCCCCCCCCD, 0x8000000000000001,
    0xA000000000000001, 0xC800000000000001, 0xFA00000000000001, 0x9C40000000000001,
    0xC350000000000001, 0xF424000000000001, 0x9896800000000001, 0xBEBC200000000001,
    0xEE6B280000000001, 0x9502F90000000001, 0xBA43B74000000001, 0xE8D4A51000000001,
    0x9184E72A00000001, 0xB5E620F480000001, 0xE35FA931A0000001, 0x8E1BC9BF04000001,
    0xB1A2BC2EC5000001, 0xDE0B6B3A76400001, 0x8AC7230489E80001, 0xAD78EBC5AC620001,
    0xD8D726B7177A8001, 0x878678326EAC9001, 0xA968163F0A57B401, 0xD3C21BCECCEDA101,
    0x84595161401484A1, 0xA56FA5B99019A5C9, 0xCECB8F27F4200F3B, 0x813F3978F8940985,
    0xA18F07D736B90BE6, 0xC9F2C9CD04674EDF, 0xFC6F7C4045812297, 0x9DC5ADA82B70B59E,
    0xC5371912364CE306, 0xF684DF56C3E01BC7, 0x9A130B963A6C115D, 0xC097CE7BC90715B4,
    0xF0BDC21ABB48DB21, 0x96769950B50D88F5, 0xBC143FA4E250EB32, 0xEB194F8E1AE525FE,
    0x92EFD1B8D0CF37BF, 0xB7ABC627050305AE, 0xE596B7B0C643C71A, 0x8F7E32CE7BEA5C70,
    0xB35DBF821AE4F38C,
};

// floor(g * cp / 2^64), its lowest bit set when the product is not exact ("round to odd").
inline uint32_t round_to_odd(uint64_t g, uint32_t cp) {
  const unsigned __int128 prod = static_cast<unsigned __int128>(g) * cp;
  const uint32_t y1 = uint32_t(prod >> 64), y0 = uint32_t(prod >> 32);
  return y1 | uint32_t(y0 > 1);
}

// A finite, nonzero float's bits (the sign ignored).
Decimal32 shortest_float32(uint32_t bits) {
  const uint32_t fraction = bits & 0x7FFFFF, biased = (bits >> 23) & 0xFF;
  uint32_t c;
  int q;
  if (biased != 0) {
    c = fraction | 0x800000;
    q = int(biased) - 150;
    if (-23 <= q && q <= 0 && (c & ((uint32_t(1) << -q) - 1)) == 0) return {c >> -q, 0};  // an integer < 2^24
  } else {  // subnormal
    c = fraction;
    q = -149;
  }
  const bool even = (c & 1) == 0;  // R is closed when c is even (ties round to even c)
  const bool lower_closer = fraction == 0 && biased > 1;
  const uint32_t cbl = 4 * c - 2 + uint32_t(lower_closer), cb = 4 * c, cbr = 4 * c + 2;
  // (q * 1262611) >> 22 = floor(log10 2^q); minus 524031: floor(log10 (3/4) 2^q) (arithmetic shifts)
  const int k = (q * 1262611 - (lower_closer ? 524031 : 0)) >> 22;
  const int h = q + ((-k * 1741647) >> 19) + 1;  // floor(log2 10^-k) = (-k * 1741647) >> 19; h in [1, 4]
  const uint64_t g = kPow10[-k - kPow10Min];
  const uint32_t vbl = round_to_odd(g, cbl << h), vb = round_to_odd(g, cb << h), vbr = round_to_odd(g, cbr << h);
  const uint32_t lower = vbl + uint32_t(!even), upper = vbr - uint32_t(!even);
  const uint32_t s = vb / 4;
  if (s >= 10) {  // one digit fewer: s' 10^(k+1) or (s' + 1) 10^(k+1), whichever (at most one) lies in R
    const uint32_t sp = s / 10;
    const bool up_inside = lower <= 40 * sp, wp_inside = 40 * sp + 40 <= upper;
    if (up_inside != wp_inside) return {sp + uint32_t(wp_inside), k + 1};
  }
  const bool u_inside = lower <= 4 * s, w_inside = 4 * s + 4 <= upper;
  if (u_inside != w_inside) return {s + uint32_t(w_inside), k};
  const uint32_t mid = 4 * s + 2;  // both in R: the closer, ties to even
  return {s + uint32_t(vb > mid || (vb == mid && (s & 1) != 0)), k};
}

constexpr char kDigitPairs[] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

// x's shortest float32 digits in Number.prototype.toString's layout at p (x finite and nonzero).
char* write_js_float32(char* p, float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  if (bits >> 31) *p++ = '-';
  Decimal32 d = shortest_float32(bits);
  while (d.digits % 10 == 0) {  // the significant digits alone
    d.digits /= 10;
    d.exp10++;
  }
  char buf[32];  // the digits (at most 9), ending at buf + 16: 16 readable bytes from any of them
  char* q = buf + 16;
  uint32_t m = d.digits;
  while (m >= 100) {
    q -= 2;
    std::memcpy(q, kDigitPairs + 2 * (m % 100), 2);
    m /= 100;
  }
  if (m >= 10) {
    q -= 2;
    std::memcpy(q, kDigitPairs + 2 * m, 2);
  } else {
    *--q = char('0' + m);
  }
  const int k = int(buf + 16 - q);
  return write_js_layout<9>(p, q, k, d.exp10 + k - 1);
}

// Writes x as Number.prototype.toString does (x's shortest round-trip digits) at p; returns the end.
char* write_js_double(char* p, double x) {
  // Shortest round-trip digits in scientific form: [-]d[.ddd]e(+|-)dd[d] (two exponent digits at least).
  char sci[40];
  const char* end = std::to_chars(sci, sci + sizeof sci, x, std::chars_format::scientific).ptr;
  char* s = sci;
  if (*s == '-') {
    *p++ = '-';
    s++;
  }
  const char* e = end[-4] == 'e' ? end - 4 : end - 5;  // 'e', its sign, 2 or 3 digits
  int e10 = 0;
  for (const char* q = e + 2; q < end; q++) e10 = e10 * 10 + (*q - '0');
  if (e[1] == '-') e10 = -e10;
  const int len = int(e - s);
  if (len == 1) return write_js_layout<17>(p, s, 1, e10);
  s[1] = s[0];  // "d.ddd" -> the k digits contiguous from s + 1
  return write_js_layout<17>(p, s + 1, len - 1, e10);
}

// x (a double or a float) as JSON.stringify writes a number, with the shortest digits that round-trip to x's
// own type; returns the end.
template <typename T>
char* write_js_number(char* p, T x) {
  if (!std::isfinite(x)) {
    std::memcpy(p, "null", 4);
    return p + 4;
  }
  if (x == 0) {  // +0 and -0
    *p++ = '0';
    return p;
  }
  if constexpr (std::is_same_v<T, float>)
    return write_js_float32(p, x);
  else
    return write_js_double(p, x);
}

template <typename T>
size_t write_array(const double* v, size_t n, char* dst, size_t cap) {
  if (cap < (kMaxNumberTextBytes + 1) * n + 2) return 0;
  char* p = dst;
  *p++ = '[';
  for (size_t i = 0; i < n; i++) {
    if (i) *p++ = ',';
    p = write_js_number(p, static_cast<T>(v[i]));
  }
  *p++ = ']';
  return size_t(p - dst);
}

}  // namespace

size_t write_js_number_array(const double* v, size_t n, char* dst, size_t cap) {
  return write_array<double>(v, n, dst, cap);
}

size_t write_js_float32_array(const double* v, size_t n, char* dst, size_t cap) {
  return write_array<float>(v, n, dst, cap);
}

}  // namespace sgl
