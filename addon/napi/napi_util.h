// Argument helpers for the N-API glue: typed errors that name the argument.
#pragma once
#include <napi.h>

#include <string>

namespace sgl {

inline Napi::Object arg_object(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsObject())
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be an object");
  return info[i].As<Napi::Object>();
}

inline std::string prop_string(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsString()) throw Napi::TypeError::New(o.Env(), std::string(key) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

inline int64_t prop_int(const Napi::Object& o, const char* key, int64_t dflt, bool required = false) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) {
    if (required) throw Napi::TypeError::New(o.Env(), std::string(key) + " is required");
    return dflt;
  }
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string(key) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (d != double(int64_t(d))) throw Napi::TypeError::New(o.Env(), std::string(key) + " must be an integer");
  return int64_t(d);
}

inline Napi::Int32Array prop_i32(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw Napi::TypeError::New(o.Env(), std::string(key) + " must be an Int32Array");
  return v.As<Napi::Int32Array>();
}

}  // namespace sgl
