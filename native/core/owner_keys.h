// Owner keys, interned: an owner holding thousands of locks costs one string, and a lease records a
// 32-bit id. Ids are reference counted and reused once free. Plain C++, not thread-safe (the
// registry's mutex guards it).
//
// Interface: intern (a key's id, one more reference), unref (one reference less), key (an id's key).
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace lockspace {

class OwnerKeys {
 public:
  uint32_t intern(const std::string& key) {
    auto it = ids_.find(key);
    if (it != ids_.end()) {
      ++keys_[it->second].refs;
      return it->second;
    }
    uint32_t id;
    if (!free_.empty()) {
      id = free_.back();
      keys_[id] = {key, 1};
      free_.pop_back();
    } else {
      id = static_cast<uint32_t>(keys_.size());
      keys_.push_back({key, 1});
    }
    try {
      ids_.emplace(key, id);
    } catch (...) {
      keys_[id] = {std::string(), 0};
      free_.push_back(id);
      throw;
    }
    return id;
  }

  void unref(uint32_t id) {
    if (--keys_[id].refs != 0) return;
    ids_.erase(keys_[id].key);
    keys_[id].key = std::string();
    free_.push_back(id);
  }

  const std::string& key(uint32_t id) const noexcept { return keys_[id].key; }
  size_t size() const noexcept { return ids_.size(); }  // keys in use

 private:
  struct Key {
    std::string key;
    uint32_t refs;
  };
  std::unordered_map<std::string, uint32_t> ids_;
  std::vector<Key> keys_;  // by id
  std::vector<uint32_t> free_;
};

}  // namespace lockspace
