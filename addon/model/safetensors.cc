#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include "util/fs.h"
#include "util/json.h"

namespace sgl {

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

static std::string shape_to_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); i++) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string TensorInfo::shape_str() const { return shape_to_str(shape); }

static const std::map<std::string, DType>& dtype_names() {
  static const std::map<std::string, DType> names = {
      {"F32", DType::F32}, {"BF16", DType::BF16}, {"F16", DType::F16}, {"I32", DType::I32},
      {"I64", DType::I64}, {"U8", DType::U8},     {"BOOL", DType::BOOL}};
  return names;
}

// The dtype as safetensors spells it (F32, BF16, ...), for messages about a file's contents.
static std::string st_dtype_name(DType t) {
  for (const auto& kv : dtype_names())
    if (kv.second == t) return kv.first;
  return "?";
}

static bool parse_dtype(const std::string& s, DType* out) {
  auto it = dtype_names().find(s);
  if (it == dtype_names().end()) return false;
  *out = it->second;
  return true;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot stat " + path + ": " + std::strerror(errno));
  }
  size_ = size_t(st.st_size);
  if (size_ < 8) {
    ::close(fd);
    throw std::runtime_error(path + ": truncated safetensors file (" + std::to_string(size_) +
                             " bytes, no header)");
  }
  map_ = mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    throw std::runtime_error("cannot mmap " + path + ": " + std::strerror(errno));
  }
  const uint8_t* base = static_cast<const uint8_t*>(map_);
  uint64_t header_len = 0;
  std::memcpy(&header_len, base, 8);  // little-endian on every target we build for
  if (header_len > size_ - 8) {
    std::string msg = path + ": truncated or corrupt safetensors header (header length " +
                      std::to_string(header_len) + " bytes, file has " + std::to_string(size_) + ")";
    munmap(map_, size_);
    map_ = nullptr;
    throw std::runtime_error(msg);
  }
  const uint8_t* data_base = base + 8 + header_len;
  size_t data_size = size_ - 8 - header_len;
  Json header;
  try {
    header = Json::parse(std::string(reinterpret_cast<const char*>(base + 8), header_len));
    if (!header.is_object()) throw std::runtime_error("header is not a JSON object");
    for (const auto& kv : header.object()) {
      if (kv.first == "__metadata__") continue;
      const Json& t = kv.second;
      TensorInfo info;
      info.name = kv.first;
      info.file = path;
      if (!parse_dtype(t["dtype"].is_string() ? t["dtype"].str() : "", &info.dtype))
        throw std::runtime_error("tensor '" + kv.first + "' has unsupported dtype " + t["dtype"].dump());
      for (const Json& d : t["shape"].array()) info.shape.push_back(d.integer());
      const Json& off = t["data_offsets"];
      if (!off.is_array() || off.size() != 2) throw std::runtime_error("tensor '" + kv.first + "' lacks data_offsets");
      int64_t begin = off.at(0).integer(), end = off.at(1).integer();
      info.nbytes = size_t(info.numel()) * dtype_size(info.dtype);
      if (begin < 0 || end < begin || uint64_t(end) > data_size)
        throw std::runtime_error("tensor '" + kv.first + "' data [" + std::to_string(begin) + ", " +
                                 std::to_string(end) + ") lies outside the file's " + std::to_string(data_size) +
                                 " data bytes (truncated file?)");
      if (size_t(end - begin) != info.nbytes)
        throw std::runtime_error("tensor '" + kv.first + "' has " + std::to_string(end - begin) +
                                 " bytes but shape " + info.shape_str() + " x " + st_dtype_name(info.dtype) +
                                 " needs " + std::to_string(info.nbytes));
      info.data = data_base + begin;
      tensors_.emplace(info.name, std::move(info));
    }
  } catch (const std::exception& e) {
    munmap(map_, size_);
    map_ = nullptr;
    throw std::runtime_error(path + ": corrupt safetensors header: " + e.what());
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) munmap(map_, size_);
}

Checkpoint::Checkpoint(const std::string& dir) : dir_(dir) {
  if (!is_directory(dir)) throw std::runtime_error("model directory not found: " + dir);
  std::string index_path = path_join(dir, "model.safetensors.index.json");
  std::vector<std::string> names;
  if (file_exists(index_path)) {
    Json index;
    try {
      index = Json::parse(read_file(index_path));
    } catch (const std::exception& e) {
      throw std::runtime_error(index_path + ": " + e.what());
    }
    if (!index["weight_map"].is_object()) throw std::runtime_error(index_path + ": no weight_map object");
    std::set<std::string> uniq;
    for (const auto& kv : index["weight_map"].object()) uniq.insert(kv.second.str());
    names.assign(uniq.begin(), uniq.end());
    for (const auto& name : names)
      if (!file_exists(path_join(dir, name)))
        throw std::runtime_error("missing shard " + name + " named by " + index_path);
  } else if (file_exists(path_join(dir, "model.safetensors"))) {
    names.push_back("model.safetensors");
  } else {
    throw std::runtime_error("no model.safetensors or model.safetensors.index.json in " + dir);
  }
  for (const auto& name : names) {
    files_.push_back(std::make_unique<SafetensorsFile>(path_join(dir, name)));
    for (const auto& kv : files_.back()->tensors()) index_[kv.first] = &kv.second;
  }
}

const TensorInfo* Checkpoint::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

std::string Checkpoint::file_list() const {
  std::string s;
  for (const auto& f : files_) {
    if (!s.empty()) s += ", ";
    std::string p = f->path();
    s += p.substr(p.find_last_of('/') + 1);
  }
  return s;
}

size_t Checkpoint::total_bytes() const {
  size_t n = 0;
  for (const auto& kv : index_) n += kv.second->nbytes;
  return n;
}

const TensorInfo& Checkpoint::require(const std::string& name, const std::vector<int64_t>& shape) const {
  const TensorInfo* t = find(name);
  if (!t) throw std::runtime_error("missing tensor '" + name + "' in " + dir_ + " (" + file_list() + ")");
  if (t->shape != shape)
    throw std::runtime_error("tensor '" + name + "' in " + t->file + " has shape " + t->shape_str() +
                             ", expected " + shape_to_str(shape));
  if (t->dtype != DType::F32 && t->dtype != DType::BF16 && t->dtype != DType::F16)
    throw std::runtime_error("tensor '" + name + "' in " + t->file + " has dtype " + st_dtype_name(t->dtype) +
                             ", expected BF16, F16 or F32");
  return *t;
}

WeightRef Checkpoint::weight(const std::string& name, const std::vector<int64_t>& shape) const {
  const TensorInfo& t = require(name, shape);
  return WeightRef{t.data, t.dtype};
}

WeightRef Checkpoint::optional_weight(const std::string& name, const std::vector<int64_t>& shape) const {
  if (!find(name)) return WeightRef{};
  return weight(name, shape);
}

}  // namespace sgl
