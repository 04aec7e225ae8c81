// Small file-system helpers for the loader.
#pragma once
#include <string>

namespace sgl {
bool file_exists(const std::string& path);
bool is_directory(const std::string& path);
std::string read_file(const std::string& path);  // throws "cannot read PATH: reason"
std::string path_join(const std::string& a, const std::string& b);
}  // namespace sgl
