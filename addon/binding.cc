// The addon's exports. Only typed arrays, numbers and short strings cross this boundary.
#include <napi.h>

#include "cpu/mem_bandwidth.h"
#include "napi/native_engine.h"
#include "napi/native_model.h"
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

Napi::Object init(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeModel", sgl::native_model_class(env));
  exports.Set("NativeEngine", sgl::native_engine_class(env));
  exports.Set("cpuMemcpyBandwidthGBs", Napi::Function::New(env, memcpy_bandwidth));
  exports.Set("cpuReadBandwidthGBs", Napi::Function::New(env, read_bandwidth));
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
