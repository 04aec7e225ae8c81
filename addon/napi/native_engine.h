// JS class NativeEngine: the serving engine. A model, its paged KV cache and the continuous-batching
// Scheduler, driven by a native engine thread; results reach JavaScript as one batched onStep call per step.
//
//   const eng = new NativeEngine({modelPath, numPages, pageSize, chunkedPrefillSize, maxPrefillTokens,
//                                 maxRunningRequests, disableRadixCache, schedulePolicy, randomSeed?, onStep});
//   eng.info(); eng.submit(req); eng.abort(rid); await eng.flushCache(); eng.stats(); await eng.close();
//
// Types and field meanings: NativeEngineOptions / NativeRequest / NativeStepOutput / NativeEngineStats in
// src/native/addon.ts. Threading: the JS thread validates and converts requests and pushes commands
// (submit / abort / flush) onto a mutex-protected queue; the engine thread alone touches the Scheduler, the
// Model and the KvCache. Step results, flush results and the end of close() come back through one
// thread-safe function, which is referenced (keeps the event loop alive) only while requests are live or a
// flushCache()/close() promise is pending. Details of the JS-visible behaviour: native_engine.cc.
#pragma once
#include <napi.h>

namespace sgl {
Napi::Function native_engine_class(Napi::Env env);
}  // namespace sgl
