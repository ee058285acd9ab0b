// Compact containers for the lock table: tens of thousands of held locks should cost well under
// 256 bytes each, so the indexes are open-addressing tables of pointers rather than node-based maps.
// Plain C++, no N-API; not thread-safe (the registry mutex guards them).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>
#include <vector>

namespace lockspace {

// A hash set of T* found by a key that the traits derive from each element: linear probing with
// backward-shift deletion (no tombstones), capacity a power of two, load factor at most 1/2.
//   Traits::Key, static size_t hash(const Key&), static Key key(const T*), static bool eq(const Key&, const Key&)
template <typename T, typename Traits>
class FlatSet {
 public:
  using Key = typename Traits::Key;

  FlatSet() = default;
  FlatSet(const FlatSet&) = delete;
  FlatSet& operator=(const FlatSet&) = delete;
  ~FlatSet() { std::free(slots_); }

  size_t size() const noexcept { return size_; }

  T* find(const Key& key) const noexcept {
    if (size_ == 0) return nullptr;
    for (size_t i = Traits::hash(key) & mask_;; i = (i + 1) & mask_) {
      T* e = slots_[i];
      if (!e) return nullptr;
      if (Traits::eq(Traits::key(e), key)) return e;
    }
  }

  // Inserts e unless an element with the same key is there; returns the element now in the set.
  T* insert(T* e) {
    if ((size_ + 1) * 2 > capacity()) grow();
    const Key k = Traits::key(e);
    size_t i = Traits::hash(k) & mask_;
    for (; slots_[i]; i = (i + 1) & mask_)
      if (Traits::eq(Traits::key(slots_[i]), k)) return slots_[i];
    slots_[i] = e;
    ++size_;
    return e;
  }

  // Removes exactly this element (by identity); false if it is not in the set.
  bool erase(const T* e) noexcept {
    if (size_ == 0) return false;
    size_t i = Traits::hash(Traits::key(e)) & mask_;
    for (; slots_[i] != e; i = (i + 1) & mask_)
      if (!slots_[i]) return false;
    // Backward-shift: pull later members of the probe run into the hole.
    for (size_t j = (i + 1) & mask_; slots_[j]; j = (j + 1) & mask_) {
      size_t home = Traits::hash(Traits::key(slots_[j])) & mask_;
      // Move slots_[j] into the hole at i if its home is not in the cyclic range (i, j].
      if (((j - home) & mask_) >= ((j - i) & mask_)) {
        slots_[i] = slots_[j];
        i = j;
      }
    }
    slots_[i] = nullptr;
    --size_;
    return true;
  }

  template <typename F>
  void forEach(F&& f) const {
    for (size_t i = 0; i < capacity(); ++i)
      if (slots_[i]) f(slots_[i]);
  }

 private:
  size_t capacity() const noexcept { return slots_ ? mask_ + 1 : 0; }

  void grow() {
    size_t cap = capacity() ? capacity() * 2 : 16;
    T** fresh = static_cast<T**>(std::calloc(cap, sizeof(T*)));
    if (!fresh) throw std::bad_alloc();
    T** old = slots_;
    size_t oldCap = capacity();
    slots_ = fresh;
    mask_ = cap - 1;
    for (size_t i = 0; i < oldCap; ++i) {
      if (!old[i]) continue;
      size_t j = Traits::hash(Traits::key(old[i])) & mask_;
      while (slots_[j]) j = (j + 1) & mask_;
      slots_[j] = old[i];
    }
    std::free(old);
  }

  T** slots_ = nullptr;
  size_t mask_ = 0;
  size_t size_ = 0;
};

// A vector with room for N elements inline (most resources have exactly one owner): 8 bytes of
// bookkeeping beyond the inline elements.
template <typename T, uint32_t N>
class SmallVec {
  static_assert(std::is_trivially_copyable<T>::value, "SmallVec holds plain records");
  static_assert(sizeof(T) * N >= sizeof(T*), "inline room must fit a pointer");

 public:
  SmallVec() noexcept {}
  SmallVec(const SmallVec&) = delete;
  SmallVec& operator=(const SmallVec&) = delete;
  ~SmallVec() {
    if (cap_ != N) std::free(u_.heap);
  }

  T* begin() noexcept { return data(); }
  T* end() noexcept { return data() + size_; }
  const T* begin() const noexcept { return data(); }
  const T* end() const noexcept { return data() + size_; }
  uint32_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  T& front() noexcept { return data()[0]; }

  void push_back(const T& v) {
    if (size_ == cap_) {
      uint32_t cap = cap_ * 2;
      T* fresh = static_cast<T*>(std::malloc(sizeof(T) * cap));
      if (!fresh) throw std::bad_alloc();
      std::memcpy(static_cast<void*>(fresh), data(), sizeof(T) * size_);
      if (cap_ != N) std::free(u_.heap);
      u_.heap = fresh;
      cap_ = cap;
    }
    data()[size_++] = v;
  }

  void erase(T* at) noexcept {
    std::memmove(static_cast<void*>(at), at + 1, sizeof(T) * static_cast<size_t>(end() - at - 1));
    --size_;
  }

 private:
  T* data() noexcept { return cap_ == N ? u_.inline_ : u_.heap; }
  const T* data() const noexcept { return cap_ == N ? u_.inline_ : u_.heap; }
  union U {
    T inline_[N];
    T* heap;
    U() noexcept {}
  } u_;
  uint32_t size_ = 0;
  uint32_t cap_ = N;
};

}  // namespace lockspace
