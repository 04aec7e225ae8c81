// Standalone test of the KV page pool and the radix prefix cache (no Node): directed cases, then a
// randomized run with invariant checks after every operation. Prints one line per check and ends with
// "N passed, M failed"; exits non-zero on any failure.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <vector>

#include "engine/page_pool.h"
#include "engine/radix_cache.h"

using namespace sgl;

namespace {

int g_passed = 0, g_failed = 0;

bool check(const std::string& name, bool ok, const std::string& detail = "") {
  std::printf("%s %s%s%s\n", ok ? "PASS" : "FAIL", name.c_str(), (!ok && !detail.empty()) ? "\n" : "",
              ok ? "" : detail.c_str());
  (ok ? g_passed : g_failed)++;
  return ok;
}

bool throws_logic(const std::function<void()>& f, const std::string& must_contain = "") {
  try {
    f();
  } catch (const std::logic_error& e) {
    return must_contain.empty() || std::string(e.what()).find(must_contain) != std::string::npos;
  }
  return false;
}

using Vec = std::vector<int32_t>;
Vec iota_vec(int32_t from, int32_t n) {
  Vec v(n);
  for (int32_t i = 0; i < n; ++i) v[i] = from + i;
  return v;
}
Vec concat(Vec a, const Vec& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}
Vec slice(const Vec& v, size_t from, size_t to) { return Vec(v.begin() + from, v.begin() + to); }

// Tree pages and pool are disjoint and together cover every page; counters match the tree.
std::string consistency(const PagePool& pool, const RadixCache& cache) {
  std::string err = cache.check_invariants();
  Vec pages = cache.all_pages();
  std::unordered_set<int32_t> seen;
  for (int32_t p : pages) {
    if (!seen.insert(p).second) err += "page " + std::to_string(p) + " owned twice; ";
    if (pool.is_free(p)) err += "page " + std::to_string(p) + " in tree and free; ";
  }
  if (size_t(pool.available()) + pages.size() != size_t(pool.capacity()))
    err += "available " + std::to_string(pool.available()) + " + tree " + std::to_string(pages.size()) +
           " != capacity " + std::to_string(pool.capacity()) + "; ";
  if (cache.protected_pages() + cache.evictable_pages() != cache.total_cached_pages())
    err += "protected + evictable != total; ";
  return err;
}

// Inserts tokens with fresh pages the way the scheduler does: match, allocate the rest, insert, free dups.
size_t cache_sequence(PagePool& pool, RadixCache& cache, const Vec& tokens) {
  auto m = cache.match_prefix(tokens.data(), tokens.size());
  Vec pages = m.pages;
  size_t want = tokens.size() / cache.page_size();
  if (!pool.alloc(int32_t(want - pages.size()), pages)) return SIZE_MAX;
  size_t had = cache.insert(tokens.data(), tokens.size(), pages.data());
  size_t from = m.matched_tokens / cache.page_size(), to = had / cache.page_size();
  if (to > from) pool.free(pages.data() + from, to - from);
  return had;
}

void test_page_pool() {
  PagePool pool(8);
  Vec out;
  bool ok = pool.alloc(3, out);
  check("pool: alloc 3 of 8", ok && out == Vec({0, 1, 2}) && pool.available() == 5 && pool.capacity() == 8);
  Vec before = out;
  check("pool: alloc more than free fails, no change", !pool.alloc(6, out) && out == before && pool.available() == 5);
  check("pool: alloc 0", pool.alloc(0, out) && out == before);
  pool.free(out.data(), 2);
  check("pool: free 2", pool.available() == 7 && pool.is_free(0) && pool.is_free(1) && !pool.is_free(2));
  check("pool: double free throws naming the page", throws_logic([&] { pool.free(Vec{1}); }, "page 1"));
  check("pool: out-of-range free throws", throws_logic([&] { pool.free(Vec{8}); }, "page 8") &&
                                              throws_logic([&] { pool.free(Vec{-1}); }, "page -1"));
  check("pool: duplicate within one free throws, pool unchanged",
        throws_logic([&] { pool.free(Vec{2, 2}); }, "page 2") && pool.available() == 7 && !pool.is_free(2));
  pool.free(Vec{2});
  Vec all;
  check("pool: full again, alloc all", pool.available() == 8 && pool.alloc(8, all) && pool.available() == 0);
}

void test_empty_and_exact(int32_t P) {
  const std::string tag = " (P=" + std::to_string(P) + ")";
  PagePool pool(64);
  RadixCache cache(pool, P, false);
  Vec t = iota_vec(100, 3 * P);
  auto m = cache.match_prefix(t.data(), t.size());
  check("empty tree match" + tag, m.matched_tokens == 0 && m.pages.empty() && m.last_node == cache.root());
  Vec pages;
  pool.alloc(3, pages);
  size_t had = cache.insert(t.data(), t.size(), pages.data());
  m = cache.match_prefix(t.data(), t.size());
  check("insert then match same sequence" + tag,
        had == 0 && m.matched_tokens == t.size() && m.pages == pages && cache.total_cached_pages() == 3 &&
            consistency(pool, cache).empty(),
        cache.debug_string());
  // A longer query matches the whole cached sequence; a query ending mid-page matches whole pages only.
  Vec longer = concat(t, iota_vec(900, 2 * P));
  m = cache.match_prefix(longer.data(), longer.size());
  check("longer query matches the cached prefix" + tag, m.matched_tokens == t.size() && m.pages == pages);
  if (P > 1) {
    m = cache.match_prefix(t.data(), 2 * P + P / 2);
    check("partial last page is not matched" + tag, m.matched_tokens == size_t(2 * P) && m.pages == slice(pages, 0, 2),
          cache.debug_string());
  }
}

void test_split(int32_t P) {
  const std::string tag = " (P=" + std::to_string(P) + ")";
  PagePool pool(64);
  RadixCache cache(pool, P, false);
  Vec t = iota_vec(1, 8 * P);
  Vec pages;
  pool.alloc(8, pages);
  cache.insert(t.data(), t.size(), pages.data());
  // Diverge at page 3: the first 3 pages match, the node splits there.
  Vec q = concat(slice(t, 0, 3 * P), iota_vec(1000, 2 * P));
  auto m = cache.match_prefix(q.data(), q.size());
  auto* n = m.last_node;
  bool ok = m.matched_tokens == size_t(3 * P) && m.pages == slice(pages, 0, 3) && n != cache.root() &&
            n->tokens == slice(t, 0, 3 * P) && n->pages == slice(pages, 0, 3) && n->children.size() == 1 &&
            n->children.begin()->second->tokens == slice(t, 3 * P, 8 * P) &&
            n->children.begin()->second->pages == slice(pages, 3, 8);
  check("mid-edge match splits at page boundary" + tag, ok && consistency(pool, cache).empty(), cache.debug_string());
  if (P > 1) {
    // Diverge inside page 5 (one token off): only 4 whole pages match.
    Vec q2 = t;
    q2[4 * P + 1] = -7;
    m = cache.match_prefix(q2.data(), q2.size());
    check("mismatch inside a page matches the pages before it" + tag,
          m.matched_tokens == size_t(4 * P) && m.pages == slice(pages, 0, 4) && m.last_node->tokens == slice(t, 3 * P, 4 * P),
          cache.debug_string());
  }
  m = cache.match_prefix(t.data(), t.size());
  check("full match across split nodes returns pages in order" + tag,
        m.matched_tokens == t.size() && m.pages == pages && consistency(pool, cache).empty(), cache.debug_string());
}

void test_shared_prefix_insert() {
  const int32_t P = 4;
  PagePool pool(16);
  RadixCache cache(pool, P, false);
  Vec a = iota_vec(1, 8), b = concat(iota_vec(1, 4), iota_vec(50, 4));
  Vec pa, pb;
  pool.alloc(2, pa);
  cache.insert(a.data(), a.size(), pa.data());
  pool.alloc(2, pb);  // caller computed b without reusing the cache
  size_t had = cache.insert(b.data(), b.size(), pb.data());
  pool.free(pb.data(), had / P);  // duplicates are the caller's to free
  auto m = cache.match_prefix(b.data(), b.size());
  check("shared-prefix insert returns the shared length; caller frees dups",
        had == 4 && pool.available() == 16 - 3 && cache.total_cached_pages() == 3 &&
            m.pages == Vec({pa[0], pb[1]}) && consistency(pool, cache).empty(),
        cache.debug_string());
  // Inserting exactly what is cached returns the full length and takes nothing.
  Vec pc;
  pool.alloc(2, pc);
  had = cache.insert(a.data(), a.size(), pc.data());
  pool.free(pc);
  check("re-insert of a cached sequence takes nothing", had == 8 && consistency(pool, cache).empty());
  // Scheduler flow: matched prefix pages reused, only the new tail allocated.
  Vec c = concat(a, iota_vec(70, 6));
  had = cache_sequence(pool, cache, c);
  check("scheduler-style insert extends the cached sequence",
        had == 8 && cache.total_cached_pages() == 4 && consistency(pool, cache).empty(), cache.debug_string());
}

void test_short_sequence() {
  PagePool pool(8);
  RadixCache cache(pool, 4, false);
  Vec t = {5, 6, 7};
  Vec pages;  // no whole page: nothing to pass
  size_t had = cache.insert(t.data(), t.size(), pages.data());
  auto m = cache.match_prefix(t.data(), t.size());
  check("sequence shorter than a page is not cached",
        had == 0 && cache.total_cached_pages() == 0 && m.matched_tokens == 0 && m.last_node == cache.root());
}

void test_lock_and_evict() {
  PagePool pool(16);
  RadixCache cache(pool, 2, false);
  Vec a = iota_vec(1, 8), b = concat(iota_vec(1, 4), iota_vec(40, 4));
  cache_sequence(pool, cache, a);
  cache_sequence(pool, cache, b);
  auto ma = cache.match_prefix(a.data(), a.size());
  auto mb = cache.match_prefix(b.data(), b.size());
  cache.lock(ma.last_node);
  cache.lock(mb.last_node);
  check("locked: everything protected", cache.protected_pages() == 6 && cache.evictable_pages() == 0 &&
                                            consistency(pool, cache).empty());
  check("evict returns 0 while all locked", cache.evict(100) == 0 && cache.total_cached_pages() == 6);
  cache.unlock(mb.last_node);
  check("unlock one branch: only its leaf is evictable", cache.evictable_pages() == 2 && cache.protected_pages() == 4);
  check("evict frees only the unlocked leaf", cache.evict(100) == 2 && cache.total_cached_pages() == 4 &&
                                                   consistency(pool, cache).empty(),
        cache.debug_string());
  cache.unlock(ma.last_node);
  check("unlock below zero throws", throws_logic([&] { cache.unlock(ma.last_node); }) &&
                                        consistency(pool, cache).empty());
  check("after unlock all is evictable", cache.evict(100) == 4 && pool.available() == 16 && cache.total_cached_pages() == 0);
}

void test_lru() {
  PagePool pool(32);
  RadixCache cache(pool, 1, false);
  Vec a = {1, 2, 3}, b = {1, 2, 4}, c = {5, 6};
  cache_sequence(pool, cache, a);
  cache_sequence(pool, cache, b);
  cache_sequence(pool, cache, c);
  cache.match_prefix(a.data(), a.size());
  cache.match_prefix(c.data(), c.size());  // now LRU order of leaves: [4], [3], [5 6]
  bool ok = cache.evict(1) == 1 && cache.match_prefix(b.data(), 3).matched_tokens == 2 &&
            cache.match_prefix(a.data(), 3).matched_tokens == 3;
  check("LRU: least recently matched leaf goes first", ok, cache.debug_string());
  cache.match_prefix(c.data(), c.size());  // [3] (and [1 2]) now older than [5 6]
  ok = cache.evict(1) == 1 && cache.match_prefix(a.data(), 3).matched_tokens == 2;
  check("LRU: second oldest leaf next", ok, cache.debug_string());
  cache.match_prefix(c.data(), c.size());
  ok = cache.evict(1) == 2 && cache.match_prefix(a.data(), 3).matched_tokens == 0 &&
       cache.match_prefix(c.data(), 2).matched_tokens == 2 && cache.total_cached_pages() == 2;
  check("LRU: parent becomes evictable after its children go", ok && consistency(pool, cache).empty(),
        cache.debug_string());
}

void test_flush() {
  PagePool pool(16);
  RadixCache cache(pool, 2, false);
  Vec a = iota_vec(1, 10);
  cache_sequence(pool, cache, a);
  auto m = cache.match_prefix(a.data(), 4);  // lock a split-off inner node
  cache.lock(m.last_node);
  check("flush refused while locked", !cache.flush() && cache.total_cached_pages() == 5 && pool.available() == 11 &&
                                          consistency(pool, cache).empty());
  cache.unlock(m.last_node);
  check("flush succeeds, pool full", cache.flush() && cache.total_cached_pages() == 0 && pool.available() == 16 &&
                                         cache.root()->children.empty() && consistency(pool, cache).empty());
  check("usable after flush", cache_sequence(pool, cache, a) == 0 && cache.match_prefix(a.data(), a.size()).matched_tokens == 10);
}

void test_disabled() {
  PagePool pool(8);
  RadixCache cache(pool, 1, true);
  Vec t = {1, 2, 3};
  Vec pages;
  pool.alloc(3, pages);
  size_t had = cache.insert(t.data(), t.size(), pages.data());
  pool.free(pages);  // caller frees all
  auto m = cache.match_prefix(t.data(), t.size());
  cache.lock(m.last_node);
  cache.unlock(m.last_node);
  check("disabled: nothing cached", had == 0 && m.matched_tokens == 0 && m.last_node == cache.root() &&
                                        cache.total_cached_pages() == 0 && pool.available() == 8 &&
                                        cache.evict(10) == 0 && cache.flush());
}

void test_random(int32_t P, uint32_t seed, int ops) {
  const std::string tag = "random " + std::to_string(ops) + " ops (P=" + std::to_string(P) + ")";
  std::mt19937 rng(seed);
  auto irand = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  PagePool pool(48);  // small: inserts regularly have to evict first
  RadixCache cache(pool, P, false);
  // A few shared prefixes; small token alphabet so suffixes collide and split nodes often.
  std::vector<Vec> prefixes;
  for (int i = 0; i < 4; ++i) {
    Vec p(irand(2, 8) * P);
    for (auto& x : p) x = irand(0, 3);
    prefixes.push_back(p);
  }
  auto random_seq = [&] {
    const Vec& p = prefixes[irand(0, 3)];
    Vec s(p.begin(), p.begin() + irand(0, int(p.size())));
    int extra = irand(0, 4 * P);
    for (int i = 0; i < extra; ++i) s.push_back(irand(0, 3));
    return s;
  };
  std::vector<RadixCache::Node*> locked;
  int counts[6] = {0};
  size_t max_tree_pages = 0, evicted = 0;
  std::string failure;
  for (int op = 0; op < ops && failure.empty(); ++op) {
    int kind = irand(0, 99);
    std::string what;
    try {
      if (kind < 35) {  // insert: scheduler flow, or all-fresh pages with the caller freeing duplicates
        Vec s = random_seq();
        if (irand(0, 1)) {
          what = "insert(matched)";
          if (cache_sequence(pool, cache, s) == SIZE_MAX) {
            cache.evict(int32_t(s.size() / P));
            cache_sequence(pool, cache, s);
          }
        } else {
          what = "insert(fresh)";
          Vec pages;
          int32_t np = int32_t(s.size() / P);
          if (pool.available() < np) cache.evict(np - pool.available());
          if (pool.alloc(np, pages)) {
            size_t had = cache.insert(s.data(), s.size(), pages.data());
            if (had % P != 0) failure = "insert returned non-page-multiple " + std::to_string(had);
            pool.free(pages.data(), had / P);
          }
        }
        counts[0]++;
      } else if (kind < 60) {
        what = "match+lock";
        Vec s = random_seq();
        auto m = cache.match_prefix(s.data(), s.size());
        if (m.matched_tokens % P != 0 || m.pages.size() != m.matched_tokens / P ||
            !std::equal(s.begin(), s.begin() + m.matched_tokens, s.begin()))
          failure = "bad match result";
        cache.lock(m.last_node);  // root: a no-op, nothing to remember
        if (m.last_node != cache.root()) locked.push_back(m.last_node);
        counts[1]++;
      } else if (kind < 80 || locked.size() > 12) {
        what = "unlock";
        if (!locked.empty()) {
          size_t i = irand(0, int(locked.size()) - 1);
          cache.unlock(locked[i]);
          locked.erase(locked.begin() + i);
        }
        counts[2]++;
      } else if (kind < 96) {
        what = "evict";
        int32_t want = irand(0, 24);
        size_t evictable = cache.evictable_pages();
        int32_t avail = pool.available();
        int32_t freed = cache.evict(want);
        evicted += freed;
        size_t expect_min = std::min<size_t>(size_t(want), evictable);
        if (size_t(freed) < expect_min || size_t(freed) > evictable || pool.available() != avail + freed)
          failure = "evict(" + std::to_string(want) + ") freed " + std::to_string(freed) + " with " +
                    std::to_string(evictable) + " evictable";
        counts[3]++;
      } else {
        what = "flush";
        if (irand(0, 1)) {  // half the time release every lock first, so flushes also succeed
          for (auto* n : locked) cache.unlock(n);
          locked.clear();
        }
        bool ok = cache.flush();
        if (ok != locked.empty()) failure = "flush returned " + std::to_string(ok) + " with locks held";
        if (ok && pool.available() != pool.capacity()) failure = "flush left pages out of the pool";
        counts[ok ? 4 : 5]++;
      }
    } catch (const std::exception& e) {
      failure = std::string("exception: ") + e.what();
    }
    if (failure.empty()) failure = consistency(pool, cache);
    max_tree_pages = std::max(max_tree_pages, cache.total_cached_pages());
    if (!failure.empty()) failure = "op " + std::to_string(op) + " " + what + ": " + failure + "\n" + cache.debug_string();
  }
  check(tag + ": invariants after every op", failure.empty(), failure);
  std::printf("  ops: %d inserts, %d match+lock, %d unlock, %d evict, %d flush ok, %d flush refused; "
              "max tree pages %zu of %d, %zu evicted\n", counts[0], counts[1], counts[2], counts[3], counts[4],
              counts[5], max_tree_pages, pool.capacity(), evicted);
  for (auto* n : locked) cache.unlock(n);
  bool ok = cache.protected_pages() == 0 && cache.flush() && pool.available() == pool.capacity() &&
            consistency(pool, cache).empty();
  check(tag + ": unlock all, flush, pool full", ok, cache.debug_string());
}

}  // namespace

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // keep the order with stderr when a check crashes
  test_page_pool();
  for (int32_t P : {1, 4}) {
    test_empty_and_exact(P);
    test_split(P);
  }
  test_shared_prefix_insert();
  test_short_sequence();
  test_lock_and_evict();
  test_lru();
  test_flush();
  test_disabled();
  test_random(1, 7, 2000);
  test_random(4, 11, 2000);
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
