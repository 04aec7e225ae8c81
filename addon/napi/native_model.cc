#include "napi/native_model.h"

#include <memory>
#include <stdexcept>

#include "backend/backend.h"
#include "kv/kv_cache.h"
#include "models/model.h"
#include "napi/backend_select.h"
#include "napi/model_info.h"
#include "napi/napi_util.h"

namespace sgl {
namespace {

class NativeModel : public Napi::ObjectWrap<NativeModel> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "NativeModel",
                       {InstanceMethod("info", &NativeModel::info), InstanceMethod("forward", &NativeModel::forward),
                        InstanceMethod("close", &NativeModel::close)});
  }

  explicit NativeModel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeModel>(info) {
    Napi::Object opts = arg_object(info, 0, "options");
    std::string dir = prop_string(opts, "modelPath");
    int num_pages = int(prop_int(opts, "numPages", 0, true));
    int page_size = int(prop_int(opts, "pageSize", 1));
    std::string device = "cpu";
    if (!opts.Get("device").IsUndefined()) device = prop_string(opts, "device");
    std::string dtype = "auto";  // "float32": CUDA's float32 table (select_backend)
    if (!opts.Get("dtype").IsUndefined()) dtype = prop_string(opts, "dtype");
    try {
      const Backend& be = select_backend(device, dtype);
      backend_ = &be;
      config_ = std::make_unique<ModelConfig>(model_config_load(dir));
      ckpt_ = std::make_unique<Checkpoint>(dir);
      model_ = model_create(*config_, *ckpt_, be);
      kv_ = std::make_unique<KvCache>(be, config_->num_layers, num_pages, page_size, config_->num_kv_heads,
                                      config_->head_dim);
    } catch (const std::exception& e) {
      throw Napi::Error::New(info.Env(), e.what());
    }
  }

 private:
  const Backend* backend_ = nullptr;
  std::unique_ptr<ModelConfig> config_;
  std::unique_ptr<Checkpoint> ckpt_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<KvCache> kv_;

  void check_open(Napi::Env env) {
    if (!model_) throw Napi::Error::New(env, "model is closed");
  }

  Napi::Value info(const Napi::CallbackInfo& info) {
    check_open(info.Env());
    return model_info_object(info.Env(), *config_, *ckpt_, *kv_, *backend_);
  }

  // forward({tokenIds, qoIndptr, kvIndptr, kvPageIndices, kvLens, logitRows}) -> Float32Array [R * V]
  // (V = the classifier's labels for a sequence classifier: ModelConfig::logits_width)
  Napi::Value forward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    check_open(env);
    Napi::Object o = arg_object(info, 0, "batch");
    Napi::Int32Array ids = prop_i32(o, "tokenIds"), qo = prop_i32(o, "qoIndptr"), kvp = prop_i32(o, "kvIndptr"),
                     pages = prop_i32(o, "kvPageIndices"), kvlen = prop_i32(o, "kvLens"), rows = prop_i32(o, "logitRows");
    ForwardBatch b;
    b.B = int32_t(kvlen.ElementLength());
    b.T = int32_t(ids.ElementLength());
    b.R = int32_t(rows.ElementLength());
    if (qo.ElementLength() != size_t(b.B) + 1) throw Napi::RangeError::New(env, "qoIndptr must have kvLens.length + 1 entries");
    if (kvp.ElementLength() != size_t(b.B) + 1) throw Napi::RangeError::New(env, "kvIndptr must have kvLens.length + 1 entries");
    if (b.B > 0 && size_t(kvp[b.B]) != pages.ElementLength())
      throw Napi::RangeError::New(env, "kvPageIndices must have kvIndptr[B] entries");
    b.token_ids = ids.Data();
    b.qo_indptr = qo.Data();
    b.kv_indptr = kvp.Data();
    b.kv_page_indices = pages.Data();
    b.kv_lens = kvlen.Data();
    b.logit_rows = rows.Data();
    Napi::Float32Array out = Napi::Float32Array::New(env, size_t(b.R) * config_->logits_width());
    try {
      LogitsOut lo;
      lo.logits = out.Data();
      model_->forward(b, *kv_, lo);
    } catch (const std::invalid_argument& e) {
      throw Napi::RangeError::New(env, e.what());
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, e.what());
    }
    return out;
  }

  Napi::Value close(const Napi::CallbackInfo& info) {
    kv_.reset();
    model_.reset();
    ckpt_.reset();
    return info.Env().Undefined();
  }
};

}  // namespace

Napi::Function native_model_class(Napi::Env env) { return NativeModel::define(env); }

}  // namespace sgl
