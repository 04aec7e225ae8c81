// A small persistent thread pool for the CPU kernels. The engine calls ops from one thread, and a decode
// step runs ~10 parallel regions per layer, so dispatch must cost microseconds: workers wait for a
// generation counter to change, spinning briefly before sleeping on a condition variable.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace sgl {

class ThreadPool {
 public:
  // job(thread_index, num_threads); the calling thread is index 0.
  using Job = std::function<void(int, int)>;

  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }
  // Stops and restarts the workers; n < 1 means 1. Not while a job runs.
  void resize(int num_threads);

  // Runs job once on every thread (caller included) and returns when all have finished. Called from
  // inside a job (nested), it runs job(0, 1) inline.
  void run(const Job& job);

  // Splits [0, n) into at most num_threads contiguous chunks of at least min_chunk items and runs
  // fn(begin, end) on each; runs inline when there is only one chunk.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_chunk = 1);

  // Hands out tasks [0, n) one at a time from a shared counter (for uneven task costs): fn(task).
  void parallel_for_dynamic(int64_t n, const std::function<void(int64_t)>& fn);

  // Idle workers stop spinning and sleep until the next run(). The engine calls it when a step's parallel
  // work is over: spinning workers would otherwise hold their cores while the engine thread posts results
  // and Node's thread wakes up, so that thread would preempt the engine thread instead of using a free core.
  void park();

 private:
  void start(int num_threads);
  void stop();
  void worker_loop(int index, uint64_t seen);
  void wait_done();

  int num_threads_ = 1;
  std::vector<std::thread> workers_;
  const Job* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> main_sleeping_{false};
  std::atomic<bool> stop_{false};
  std::atomic<bool> parked_{false};
  std::mutex mu_;
  std::condition_variable wake_cv_;
  std::condition_variable done_cv_;
};

// The process-wide pool, sized from env SGL_CPU_THREADS or std::thread::hardware_concurrency().
ThreadPool& cpu_pool();
void set_cpu_threads(int n);
int cpu_threads();

}  // namespace sgl
