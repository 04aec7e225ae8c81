// A small JSON reader for config.json, generation_config.json and safetensors headers.
// Parses the whole document into a tree; numbers are doubles (exact for the integers we meet: < 2^53).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace sgl {

class Json {
 public:
  enum class Kind { Null, Bool, Number, String, Array, Object };

  static Json parse(const std::string& text);  // throws std::runtime_error with the byte offset

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::Null; }
  bool is_number() const { return kind_ == Kind::Number; }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_array() const { return kind_ == Kind::Array; }
  bool is_object() const { return kind_ == Kind::Object; }
  bool is_bool() const { return kind_ == Kind::Bool; }

  double number() const;
  int64_t integer() const;  // number that must be integral
  bool boolean() const;
  const std::string& str() const;
  const std::vector<Json>& array() const;
  const std::map<std::string, Json>& object() const;

  bool has(const std::string& key) const;
  // Member access: returns a Null Json when absent (objects only).
  const Json& operator[](const std::string& key) const;
  const Json& at(size_t i) const { return array().at(i); }
  size_t size() const;

  // Convenience with defaults: absent or null gives the default.
  double num_or(const std::string& key, double dflt) const;
  int64_t int_or(const std::string& key, int64_t dflt) const;
  bool bool_or(const std::string& key, bool dflt) const;
  std::string str_or(const std::string& key, const std::string& dflt) const;

  std::string dump() const;  // compact serialisation (for passing raw values through)

 private:
  friend class JsonParser;
  Kind kind_ = Kind::Null;
  bool b_ = false;
  double n_ = 0;
  std::string s_;
  std::shared_ptr<std::vector<Json>> a_;
  std::shared_ptr<std::map<std::string, Json>> o_;
};

}  // namespace sgl
