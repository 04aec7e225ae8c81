#include "util/json.h"

#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace sgl {

class JsonParser {
 public:
  explicit JsonParser(const std::string& s) : s_(s) {}

  Json parse_document() {
    Json v = parse_value(0);
    skip_ws();
    if (i_ != s_.size()) fail("trailing characters");
    return v;
  }

 private:
  const std::string& s_;
  size_t i_ = 0;

  [[noreturn]] void fail(const char* what) {
    throw std::runtime_error(std::string("invalid JSON: ") + what + " at byte " + std::to_string(i_));
  }
  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) i_++;
  }
  bool consume(const char* lit) {
    size_t n = 0;
    while (lit[n]) n++;
    if (s_.compare(i_, n, lit) == 0) {
      i_ += n;
      return true;
    }
    return false;
  }

  Json parse_value(int depth) {
    if (depth > 256) fail("nesting too deep");
    skip_ws();
    if (i_ >= s_.size()) fail("unexpected end");
    Json v;
    char c = s_[i_];
    if (c == '{') {
      i_++;
      v.kind_ = Json::Kind::Object;
      v.o_ = std::make_shared<std::map<std::string, Json>>();
      skip_ws();
      if (i_ < s_.size() && s_[i_] == '}') {
        i_++;
        return v;
      }
      for (;;) {
        skip_ws();
        if (i_ >= s_.size() || s_[i_] != '"') fail("expected a key string");
        std::string key = parse_string();
        skip_ws();
        if (i_ >= s_.size() || s_[i_] != ':') fail("expected ':'");
        i_++;
        (*v.o_)[key] = parse_value(depth + 1);
        skip_ws();
        if (i_ < s_.size() && s_[i_] == ',') {
          i_++;
          continue;
        }
        if (i_ < s_.size() && s_[i_] == '}') {
          i_++;
          return v;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c == '[') {
      i_++;
      v.kind_ = Json::Kind::Array;
      v.a_ = std::make_shared<std::vector<Json>>();
      skip_ws();
      if (i_ < s_.size() && s_[i_] == ']') {
        i_++;
        return v;
      }
      for (;;) {
        v.a_->push_back(parse_value(depth + 1));
        skip_ws();
        if (i_ < s_.size() && s_[i_] == ',') {
          i_++;
          continue;
        }
        if (i_ < s_.size() && s_[i_] == ']') {
          i_++;
          return v;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c == '"') {
      v.kind_ = Json::Kind::String;
      v.s_ = parse_string();
      return v;
    }
    if (consume("true")) {
      v.kind_ = Json::Kind::Bool;
      v.b_ = true;
      return v;
    }
    if (consume("false")) {
      v.kind_ = Json::Kind::Bool;
      return v;
    }
    if (consume("null")) return v;
    // Python's json writes these for non-finite floats
    if (consume("NaN")) return number(NAN);
    if (consume("Infinity")) return number(INFINITY);
    if (consume("-Infinity")) return number(-INFINITY);
    if (c == '-' || (c >= '0' && c <= '9')) {
      size_t start = i_;
      if (s_[i_] == '-') i_++;
      while (i_ < s_.size() && ((s_[i_] >= '0' && s_[i_] <= '9') || s_[i_] == '.' || s_[i_] == 'e' ||
                                s_[i_] == 'E' || s_[i_] == '+' || s_[i_] == '-'))
        i_++;
      std::string num = s_.substr(start, i_ - start);
      char* end = nullptr;
      double d = std::strtod(num.c_str(), &end);
      if (end != num.c_str() + num.size()) fail("bad number");
      return number(d);
    }
    fail("unexpected character");
  }

  static Json number(double d) {
    Json v;
    v.kind_ = Json::Kind::Number;
    v.n_ = d;
    return v;
  }

  static void put_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    }
  }

  uint32_t parse_hex4() {
    if (i_ + 4 > s_.size()) fail("short \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
      char h = s_[i_++];
      v <<= 4;
      if (h >= '0' && h <= '9') v |= h - '0';
      else if (h >= 'a' && h <= 'f') v |= h - 'a' + 10;
      else if (h >= 'A' && h <= 'F') v |= h - 'A' + 10;
      else fail("bad \\u escape");
    }
    return v;
  }

  std::string parse_string() {
    i_++;  // opening quote
    std::string out;
    for (;;) {
      if (i_ >= s_.size()) fail("unterminated string");
      char c = s_[i_++];
      if (c == '"') return out;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) fail("unterminated escape");
      char e = s_[i_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = parse_hex4();
          if (cp >= 0xD800 && cp < 0xDC00 && i_ + 1 < s_.size() && s_[i_] == '\\' && s_[i_ + 1] == 'u') {
            i_ += 2;
            uint32_t lo = parse_hex4();
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          put_utf8(out, cp);
          break;
        }
        default: fail("bad escape");
      }
    }
  }
};

Json Json::parse(const std::string& text) { return JsonParser(text).parse_document(); }

static const Json kNull;

double Json::number() const {
  if (kind_ != Kind::Number) throw std::runtime_error("JSON value is not a number");
  return n_;
}
int64_t Json::integer() const {
  double d = number();
  if (std::floor(d) != d) throw std::runtime_error("JSON number is not an integer");
  return int64_t(d);
}
bool Json::boolean() const {
  if (kind_ != Kind::Bool) throw std::runtime_error("JSON value is not a boolean");
  return b_;
}
const std::string& Json::str() const {
  if (kind_ != Kind::String) throw std::runtime_error("JSON value is not a string");
  return s_;
}
const std::vector<Json>& Json::array() const {
  if (kind_ != Kind::Array) throw std::runtime_error("JSON value is not an array");
  return *a_;
}
const std::map<std::string, Json>& Json::object() const {
  if (kind_ != Kind::Object) throw std::runtime_error("JSON value is not an object");
  return *o_;
}
bool Json::has(const std::string& key) const { return kind_ == Kind::Object && o_->count(key) > 0; }
const Json& Json::operator[](const std::string& key) const {
  if (kind_ != Kind::Object) return kNull;
  auto it = o_->find(key);
  return it == o_->end() ? kNull : it->second;
}
size_t Json::size() const {
  if (kind_ == Kind::Array) return a_->size();
  if (kind_ == Kind::Object) return o_->size();
  return 0;
}
double Json::num_or(const std::string& key, double dflt) const {
  const Json& v = (*this)[key];
  return v.is_number() ? v.n_ : dflt;
}
int64_t Json::int_or(const std::string& key, int64_t dflt) const {
  const Json& v = (*this)[key];
  return v.is_number() ? v.integer() : dflt;
}
bool Json::bool_or(const std::string& key, bool dflt) const {
  const Json& v = (*this)[key];
  return v.is_bool() ? v.b_ : dflt;
}
std::string Json::str_or(const std::string& key, const std::string& dflt) const {
  const Json& v = (*this)[key];
  return v.is_string() ? v.s_ : dflt;
}

static void dump_string(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    if (c == '"') out += "\\\"";
    else if (c == '\\') out += "\\\\";
    else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else out += char(c);
  }
  out += '"';
}

static void dump_to(std::string& out, const Json& v) {
  switch (v.kind()) {
    case Json::Kind::Null: out += "null"; break;
    case Json::Kind::Bool: out += v.boolean() ? "true" : "false"; break;
    case Json::Kind::Number: {
      double d = v.number();
      char buf[32];
      if (std::isfinite(d) && std::floor(d) == d && std::fabs(d) < 9e15)
        std::snprintf(buf, sizeof buf, "%lld", (long long)d);
      else
        std::snprintf(buf, sizeof buf, "%.17g", d);
      out += buf;
      break;
    }
    case Json::Kind::String: dump_string(out, v.str()); break;
    case Json::Kind::Array: {
      out += '[';
      bool first = true;
      for (const Json& e : v.array()) {
        if (!first) out += ',';
        first = false;
        dump_to(out, e);
      }
      out += ']';
      break;
    }
    case Json::Kind::Object: {
      out += '{';
      bool first = true;
      for (const auto& kv : v.object()) {
        if (!first) out += ',';
        first = false;
        dump_string(out, kv.first);
        out += ':';
        dump_to(out, kv.second);
      }
      out += '}';
      break;
    }
  }
}

std::string Json::dump() const {
  std::string out;
  dump_to(out, *this);
  return out;
}

}  // namespace sgl
