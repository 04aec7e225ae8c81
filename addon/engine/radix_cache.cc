#include "engine/radix_cache.h"

#include <algorithm>
#include <queue>
#include <sstream>
#include <stdexcept>
#include <tuple>

namespace sgl {

RadixCache::RadixCache(PagePool& pool, int32_t page_size, bool disabled)
    : pool_(pool), page_size_(page_size), disabled_(disabled), root_(std::make_unique<Node>()) {
  if (page_size < 1) throw std::invalid_argument("RadixCache: page_size must be >= 1");
}

// Pages stay allocated on destruction: the pool may already be gone, and the owner decides.
RadixCache::~RadixCache() { destroy(std::move(root_)); }

// Iterative teardown: a deep chain (P = 1, long prompts) would overflow the stack through ~unique_ptr.
void RadixCache::destroy(std::unique_ptr<Node> node) {
  std::vector<std::unique_ptr<Node>> stack;
  if (node) stack.push_back(std::move(node));
  while (!stack.empty()) {
    std::unique_ptr<Node> n = std::move(stack.back());
    stack.pop_back();
    for (auto& kv : n->children) stack.push_back(std::move(kv.second));
  }
}

// Leading pages of node's edge equal to tokens, at most max_pages.
size_t RadixCache::match_pages(const Node* node, const int32_t* tokens, size_t max_pages) const {
  size_t edge_pages = node->pages.size(), lim = std::min(edge_pages, max_pages), p = 0;
  for (; p < lim; ++p)
    if (!std::equal(tokens + p * page_size_, tokens + (p + 1) * page_size_, node->tokens.begin() + p * page_size_))
      break;
  return p;
}

std::unique_ptr<RadixCache::Node> RadixCache::new_node(Node* parent) {
  auto n = std::make_unique<Node>();
  n->parent = parent;
  n->id = ++next_id_;
  return n;
}

// Splits node's edge after keep_pages pages; returns the new upper node (which takes node's place).
RadixCache::Node* RadixCache::split(Node* node, size_t keep_pages) {
  Node* parent = node->parent;
  const size_t keep_tokens = keep_pages * page_size_;
  auto upper = new_node(parent);
  upper->tokens.assign(node->tokens.begin(), node->tokens.begin() + keep_tokens);
  upper->pages.assign(node->pages.begin(), node->pages.begin() + keep_pages);
  // Same lock state and LRU time: the page counters stay valid.
  upper->lock_ref = node->lock_ref;
  upper->last_access = node->last_access;

  auto slot = parent->children.find(page_key(node->tokens.data()));
  std::unique_ptr<Node> lower = std::move(slot->second);
  lower->tokens.erase(lower->tokens.begin(), lower->tokens.begin() + keep_tokens);
  lower->pages.erase(lower->pages.begin(), lower->pages.begin() + keep_pages);
  lower->parent = upper.get();
  upper->children.emplace(page_key(lower->tokens.data()), std::move(lower));
  Node* raw = upper.get();
  slot->second = std::move(upper);  // first page unchanged, so the key stays
  return raw;
}

RadixCache::MatchResult RadixCache::match_prefix(const int32_t* tokens, size_t n) {
  MatchResult r;
  r.last_node = root_.get();
  if (disabled_) return r;
  const size_t len = n / page_size_ * page_size_;
  const uint64_t now = ++clock_;
  Node* node = root_.get();
  node->last_access = now;
  size_t pos = 0;
  while (pos < len) {
    auto it = node->children.find(page_key(tokens + pos));
    if (it == node->children.end()) break;
    Node* child = it->second.get();
    child->last_access = now;
    size_t m = match_pages(child, tokens + pos, (len - pos) / page_size_);
    const bool inside_edge = m < child->pages.size();
    if (inside_edge) child = split(child, m);
    r.pages.insert(r.pages.end(), child->pages.begin(), child->pages.end());
    pos += child->tokens.size();
    node = child;
    if (inside_edge) break;
  }
  r.matched_tokens = pos;
  r.last_node = node;
  return r;
}

size_t RadixCache::insert(const int32_t* tokens, size_t n, const int32_t* pages) {
  if (disabled_) return 0;
  const size_t len = n / page_size_ * page_size_;
  const uint64_t now = ++clock_;
  Node* node = root_.get();
  node->last_access = now;
  size_t pos = 0;
  while (pos < len) {
    auto it = node->children.find(page_key(tokens + pos));
    if (it == node->children.end()) {
      auto leaf = new_node(node);
      leaf->tokens.assign(tokens + pos, tokens + len);
      leaf->pages.assign(pages + pos / page_size_, pages + len / page_size_);
      leaf->last_access = now;
      total_pages_ += leaf->pages.size();
      evictable_pages_ += leaf->pages.size();
      node->children.emplace(page_key(tokens + pos), std::move(leaf));
      return pos;
    }
    Node* child = it->second.get();
    child->last_access = now;
    size_t m = match_pages(child, tokens + pos, (len - pos) / page_size_);
    if (m < child->pages.size()) child = split(child, m);
    pos += child->tokens.size();
    node = child;
  }
  return pos;
}

void RadixCache::lock(Node* node) {
  for (; node && node != root_.get(); node = node->parent) {
    if (node->lock_ref++ == 0) {
      evictable_pages_ -= node->pages.size();
      protected_pages_ += node->pages.size();
    }
  }
}

void RadixCache::unlock(Node* node) {
  // Check the whole path first so a bad call changes nothing.
  for (Node* n = node; n && n != root_.get(); n = n->parent)
    if (n->lock_ref <= 0) throw std::logic_error("RadixCache::unlock: lock_ref would go below zero");
  for (; node && node != root_.get(); node = node->parent) {
    if (--node->lock_ref == 0) {
      protected_pages_ -= node->pages.size();
      evictable_pages_ += node->pages.size();
    }
  }
}

int32_t RadixCache::evict(int32_t num_pages) {
  if (disabled_ || num_pages <= 0) return 0;
  using Entry = std::tuple<uint64_t, uint64_t, Node*>;  // (last_access, id, node)
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;  // oldest first
  std::vector<Node*> stack{root_.get()};
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    if (n->children.empty()) {
      if (n != root_.get() && n->lock_ref == 0) heap.emplace(n->last_access, n->id, n);
    } else {
      for (auto& kv : n->children) stack.push_back(kv.second.get());
    }
  }
  int32_t freed = 0;
  while (freed < num_pages && !heap.empty()) {
    Node* leaf = std::get<2>(heap.top());
    heap.pop();
    Node* parent = leaf->parent;
    pool_.free(leaf->pages);
    freed += int32_t(leaf->pages.size());
    total_pages_ -= leaf->pages.size();
    evictable_pages_ -= leaf->pages.size();
    parent->children.erase(page_key(leaf->tokens.data()));  // destroys leaf
    if (parent != root_.get() && parent->children.empty() && parent->lock_ref == 0)
      heap.emplace(parent->last_access, parent->id, parent);
  }
  return freed;
}

void RadixCache::free_subtree_pages(Node* node) {
  std::vector<Node*> stack{node};
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    if (!n->pages.empty()) pool_.free(n->pages);
    for (auto& kv : n->children) stack.push_back(kv.second.get());
  }
}

bool RadixCache::flush() {
  // A lock on any node is also counted on its top-level ancestor.
  for (auto& kv : root_->children)
    if (kv.second->lock_ref > 0) return false;
  free_subtree_pages(root_.get());
  // Keep the root object itself: callers may still hold it as a (no-op) last_node.
  for (auto& kv : root_->children) destroy(std::move(kv.second));
  root_->children.clear();
  total_pages_ = protected_pages_ = evictable_pages_ = 0;
  return true;
}

std::vector<int32_t> RadixCache::all_pages() const {
  std::vector<int32_t> out;
  std::vector<const Node*> stack{root_.get()};
  while (!stack.empty()) {
    const Node* n = stack.back();
    stack.pop_back();
    out.insert(out.end(), n->pages.begin(), n->pages.end());
    for (auto& kv : n->children) stack.push_back(kv.second.get());
  }
  return out;
}

std::string RadixCache::check_invariants() const {
  std::ostringstream err;
  size_t total = 0, prot = 0;
  std::vector<const Node*> stack{root_.get()};
  while (!stack.empty()) {
    const Node* n = stack.back();
    stack.pop_back();
    const bool is_root = n == root_.get();
    if (!is_root) {
      if (n->tokens.empty() || n->tokens.size() % page_size_ != 0 ||
          n->pages.size() != n->tokens.size() / page_size_)
        err << "bad edge: " << n->tokens.size() << " tokens, " << n->pages.size() << " pages; ";
      if (n->lock_ref < 0) err << "negative lock_ref; ";
      total += n->pages.size();
      if (n->lock_ref > 0) prot += n->pages.size();
    }
    int64_t child_locks = 0;
    for (auto& kv : n->children) {
      const Node* c = kv.second.get();
      if (c->parent != n) err << "bad parent link; ";
      if (c->tokens.size() < size_t(page_size_) || kv.first != page_key(c->tokens.data()))
        err << "child key mismatch; ";
      child_locks += c->lock_ref;
      stack.push_back(c);
    }
    if (!is_root && n->lock_ref < child_locks) err << "lock_ref " << n->lock_ref << " < children's " << child_locks << "; ";
  }
  if (total != total_pages_) err << "total_pages " << total_pages_ << " != tree " << total << "; ";
  if (prot != protected_pages_) err << "protected_pages " << protected_pages_ << " != tree " << prot << "; ";
  if (total - prot != evictable_pages_) err << "evictable_pages " << evictable_pages_ << " != tree " << total - prot << "; ";
  return err.str();
}

std::string RadixCache::debug_string() const {
  std::ostringstream os;
  os << "RadixCache(P=" << page_size_ << ", pages=" << total_pages_ << ", protected=" << protected_pages_
     << ", evictable=" << evictable_pages_ << ")\n";
  // Depth-first, children in key order; each line: tokens -> pages [lock, time].
  std::vector<std::pair<const Node*, int>> stack{{root_.get(), 0}};
  while (!stack.empty()) {
    auto [n, depth] = stack.back();
    stack.pop_back();
    if (n != root_.get()) {
      os << std::string(2 * depth, ' ') << "[";
      for (size_t i = 0; i < n->tokens.size(); ++i) os << (i ? " " : "") << n->tokens[i];
      os << "] -> pages {";
      for (size_t i = 0; i < n->pages.size(); ++i) os << (i ? " " : "") << n->pages[i];
      os << "} lock=" << n->lock_ref << " t=" << n->last_access << "\n";
    }
    for (auto it = n->children.rbegin(); it != n->children.rend(); ++it)
      stack.push_back({it->second.get(), depth + 1});
  }
  return os.str();
}

}  // namespace sgl
