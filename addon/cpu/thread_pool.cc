#include "cpu/thread_pool.h"

#include <chrono>
#include <cstdlib>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SGL_CPU_RELAX() _mm_pause()
#else
#define SGL_CPU_RELAX() std::this_thread::yield()
#endif

namespace sgl {

namespace {

// How long an idle worker (or the waiting caller) spins before sleeping. Consecutive parallel regions of
// a decode step are microseconds apart, so this keeps wake-ups off the kernel's futex path.
constexpr auto kSpin = std::chrono::microseconds(200);
// Pure pause-spinning only for the first iterations; after that each spin iteration yields, so when the
// cores are oversubscribed (Node's own threads, other processes) a waiting thread hands its core to the
// thread it is waiting for instead of burning the time slice.
constexpr int kPauseSpins = 2048;

inline void spin_wait(int i) {
  if (i < kPauseSpins)
    SGL_CPU_RELAX();
  else
    std::this_thread::yield();
}

thread_local bool t_in_job = false;

struct InJob {
  InJob() { t_in_job = true; }
  ~InJob() { t_in_job = false; }
};

}  // namespace

ThreadPool::ThreadPool(int num_threads) { start(num_threads); }

ThreadPool::~ThreadPool() { stop(); }

void ThreadPool::start(int n) {
  num_threads_ = n < 1 ? 1 : n;
  stop_.store(false);
  pending_.store(0);
  // The starting generation is read here, not in the new thread: run() may bump it before a worker
  // gets scheduled, and that job must not be missed.
  const uint64_t gen = generation_.load();
  for (int i = 1; i < num_threads_; i++) workers_.emplace_back([this, i, gen] { worker_loop(i, gen); });
}

void ThreadPool::stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_.store(true);
    generation_.fetch_add(1);
  }
  wake_cv_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
}

void ThreadPool::resize(int n) {
  if (n < 1) n = 1;
  if (n == num_threads_) return;
  stop();
  start(n);
}

void ThreadPool::worker_loop(int index, uint64_t seen) {
  for (;;) {
    // Wait for a new generation: spin first, then sleep.
    auto spin_until = std::chrono::steady_clock::now() + kSpin;
    uint64_t gen;
    for (int i = 0;; i++) {
      gen = generation_.load(std::memory_order_acquire);
      if (gen != seen) break;
      spin_wait(i);
      if (((i & 63) == 63 && std::chrono::steady_clock::now() > spin_until) || parked_.load(std::memory_order_relaxed)) {
        // Dekker-style handshake with run(): either run() sees sleepers_ > 0 and notifies under the
        // mutex, or the predicate below sees the new generation.
        sleepers_.fetch_add(1);
        {
          std::unique_lock<std::mutex> lk(mu_);
          wake_cv_.wait(lk, [&] { return generation_.load() != seen; });
        }
        sleepers_.fetch_sub(1);
        gen = generation_.load(std::memory_order_acquire);
        break;
      }
    }
    seen = gen;
    if (stop_.load()) return;
    {
      InJob in_job;
      (*job_)(index, num_threads_);
    }
    if (pending_.fetch_sub(1) == 1 && main_sleeping_.load()) {
      std::lock_guard<std::mutex> lk(mu_);
      done_cv_.notify_one();
    }
  }
}

void ThreadPool::wait_done() {
  auto spin_until = std::chrono::steady_clock::now() + kSpin;
  for (int i = 0; pending_.load(std::memory_order_acquire) != 0; i++) {
    spin_wait(i);
    if ((i & 63) == 63 && std::chrono::steady_clock::now() > spin_until) {
      main_sleeping_.store(true);
      {
        std::unique_lock<std::mutex> lk(mu_);
        done_cv_.wait(lk, [&] { return pending_.load() == 0; });
      }
      main_sleeping_.store(false);
      break;
    }
  }
}

void ThreadPool::park() { parked_.store(true, std::memory_order_relaxed); }

void ThreadPool::run(const Job& job) {
  if (t_in_job || num_threads_ == 1) {
    job(0, 1);
    return;
  }
  job_ = &job;
  parked_.store(false, std::memory_order_relaxed);
  pending_.store(num_threads_ - 1, std::memory_order_relaxed);
  generation_.fetch_add(1);  // seq_cst: pairs with the sleepers_ handshake in worker_loop
  if (sleepers_.load() > 0) {
    std::lock_guard<std::mutex> lk(mu_);
    wake_cv_.notify_all();
  }
  {
    InJob in_job;
    job(0, num_threads_);
  }
  wait_done();
  job_ = nullptr;
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn,
                              int64_t min_chunk) {
  if (n <= 0) return;
  if (min_chunk < 1) min_chunk = 1;
  int64_t chunks = (n + min_chunk - 1) / min_chunk;
  if (chunks > num_threads_) chunks = num_threads_;
  if (chunks <= 1 || t_in_job) {
    fn(0, n);
    return;
  }
  run([&](int i, int) {
    if (i >= chunks) return;
    int64_t b = n * i / chunks, e = n * (i + 1) / chunks;
    if (b < e) fn(b, e);
  });
}

void ThreadPool::parallel_for_dynamic(int64_t n, const std::function<void(int64_t)>& fn) {
  if (n <= 0) return;
  if (n == 1 || num_threads_ == 1 || t_in_job) {
    for (int64_t i = 0; i < n; i++) fn(i);
    return;
  }
  std::atomic<int64_t> next{0};
  run([&](int, int) {
    for (int64_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < n;) fn(i);
  });
}

namespace {

int default_threads() {
  if (const char* s = std::getenv("SGL_CPU_THREADS")) {
    int n = std::atoi(s);
    if (n > 0) return n;
  }
  unsigned hc = std::thread::hardware_concurrency();
  return hc ? int(hc) : 1;
}

}  // namespace

ThreadPool& cpu_pool() {
  static ThreadPool pool(default_threads());
  return pool;
}

void set_cpu_threads(int n) { cpu_pool().resize(n); }

int cpu_threads() { return cpu_pool().num_threads(); }

}  // namespace sgl
