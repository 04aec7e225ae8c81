// The addon's exports. Only typed arrays, numbers and short strings cross this boundary.
#include <napi.h>

#include <string>

#include "cpu/mem_bandwidth.h"
#include "napi/native_engine.h"
#include "napi/native_model.h"
#include "util/number_text.h"
#ifdef SGL_WITH_CUDA
#include "../cuda/cuda_probe.h"
#endif

namespace {

Napi::Value memcpy_bandwidth(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(info.Env(), "bytes must be a number");
  size_t bytes = size_t(info[0].As<Napi::Number>().DoubleValue());
  int iters = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 5;
  return Napi::Number::New(info.Env(), sgl::cpu_memcpy_bandwidth_gbs(bytes, iters));
}

Napi::Value read_bandwidth(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(info.Env(), "bytes must be a number");
  size_t bytes = size_t(info[0].As<Napi::Number>().DoubleValue());
  int iters = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 5;
  return Napi::Number::New(info.Env(), sgl::cpu_read_bandwidth_gbs(bytes, iters));
}

// formatNumberArray(values: Float64Array, out: Uint8Array, float32 = false): the JSON text of the numbers
// ("[a,b,...]") in out's first bytes; returns their count, or -1 when out is too small. float32 false: the
// bytes JSON.stringify writes; true: each value's float32 written with the shortest digits that round-trip
// to that float32, in the same layout.
Napi::Value format_number_array(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  static const char* const kSignature = "formatNumberArray(values: Float64Array, out: Uint8Array, float32?: boolean)";
  if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsTypedArray())
    throw Napi::TypeError::New(env, kSignature);
  const Napi::TypedArray a = info[0].As<Napi::TypedArray>(), b = info[1].As<Napi::TypedArray>();
  if (a.TypedArrayType() != napi_float64_array || b.TypedArrayType() != napi_uint8_array)
    throw Napi::TypeError::New(env, kSignature);
  bool float32 = false;
  if (info.Length() > 2 && !info[2].IsUndefined()) {
    if (!info[2].IsBoolean()) throw Napi::TypeError::New(env, std::string(kSignature) + ": float32 must be a boolean");
    float32 = info[2].As<Napi::Boolean>().Value();
  }
  const Napi::Float64Array v = info[0].As<Napi::Float64Array>();
  Napi::Uint8Array out = info[1].As<Napi::Uint8Array>();
  char* dst = reinterpret_cast<char*>(out.Data());
  const size_t n = float32 ? sgl::write_js_float32_array(v.Data(), v.ElementLength(), dst, out.ElementLength())
                           : sgl::write_js_number_array(v.Data(), v.ElementLength(), dst, out.ElementLength());
  return Napi::Number::New(env, n == 0 ? -1.0 : double(n));
}

Napi::Object init(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeModel", sgl::native_model_class(env));
  exports.Set("NativeEngine", sgl::native_engine_class(env));
  exports.Set("cpuMemcpyBandwidthGBs", Napi::Function::New(env, memcpy_bandwidth));
  exports.Set("cpuReadBandwidthGBs", Napi::Function::New(env, read_bandwidth));
  exports.Set("formatNumberArray", Napi::Function::New(env, format_number_array));
#ifdef SGL_WITH_CUDA
  exports.Set("cudaCompiled", Napi::Boolean::New(env, true));
  exports.Set("cudaDeviceCount", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), sgl::cuda_device_count());
  }));
  exports.Set("cudaDeviceName", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    char buf[256];
    if (!sgl::cuda_device_describe(buf, sizeof buf)) return info.Env().Null();
    return Napi::String::New(info.Env(), buf);
  }));
#else
  exports.Set("cudaCompiled", Napi::Boolean::New(env, false));
#endif
  return exports;
}

}  // namespace

NODE_API_MODULE(sglang_native, init)
