// Memory-mapped safetensors files. Layout: u64 little-endian header length N, N bytes of JSON header
// {name: {dtype, shape, data_offsets: [begin, end)}, "__metadata__": {...}}, then the tensor bytes.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"

namespace sgl {

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;  // inside the mapping
  size_t nbytes;
  std::string file;  // path, for error messages
  int64_t numel() const;
  std::string shape_str() const;  // "[a, b]"
};

class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);  // throws with the file name on any problem
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }

 private:
  std::string path_;
  void* map_ = nullptr;
  size_t size_ = 0;
  std::map<std::string, TensorInfo> tensors_;
};

// All tensors of a model directory: model.safetensors, or the shards named by model.safetensors.index.json.
class Checkpoint {
 public:
  explicit Checkpoint(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const TensorInfo* find(const std::string& name) const;
  // The tensor, checked: exists, has this shape, and one of the float dtypes (bf16/f16/f32).
  // Throws e.g. "missing tensor 'lm_head.weight' in /m (model.safetensors)".
  const TensorInfo& require(const std::string& name, const std::vector<int64_t>& shape) const;
  WeightRef weight(const std::string& name, const std::vector<int64_t>& shape) const;
  // Same, or an absent WeightRef if the tensor does not exist (optional biases).
  WeightRef optional_weight(const std::string& name, const std::vector<int64_t>& shape) const;
  std::string file_list() const;
  size_t total_bytes() const;

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorInfo*> index_;
};

}  // namespace sgl
