// The idle fds: after the last release of a plain (not autoCreate) resource on a local file system
// its entry stays in the table, unlocked, with its fd open, so that re-acquiring it costs one fcntl and
// one stat instead of open+fcntl+close. They form an LRU list (most recently released first) whose
// length is capped: by the limit set (setIdleLimit), and by a share of the process's descriptor limit,
// read again now and then (the application may lower it). Plain C++, not thread-safe (the registry's
// mutex guards it); intrusive: T has `T* lruPrev, *lruNext`.
//
// Interface: push (newest), unlink, oldest, size, overCap (evict the oldest while true), setLimit,
// enabled (a limit of 0 keeps none).
#pragma once

#include <cstddef>
#include <cstdint>

namespace lockspace {

// The fewer of limit and a share of RLIMIT_NOFILE's soft limit.
size_t idleCapFor(size_t limit);

template <typename T>
class IdleList {
 public:
  static constexpr uint32_t kCapReadEvery = 64;  // pushes between two reads of the descriptor limit

  IdleList() : cap_(idleCapFor(limit_)) {}

  void push(T* e) {
    e->lruPrev = nullptr;
    e->lruNext = head_;
    (head_ ? head_->lruPrev : tail_) = e;
    head_ = e;
    ++size_;
    if (++pushesSinceCapRead_ >= kCapReadEvery) readCap();
  }

  void unlink(T* e) noexcept {
    (e->lruPrev ? e->lruPrev->lruNext : head_) = e->lruNext;
    (e->lruNext ? e->lruNext->lruPrev : tail_) = e->lruPrev;
    e->lruPrev = e->lruNext = nullptr;
    --size_;
  }

  T* oldest() const noexcept { return tail_; }
  size_t size() const noexcept { return size_; }
  bool overCap() const noexcept { return size_ > cap_; }
  bool enabled() const noexcept { return limit_ != 0; }
  void setLimit(size_t limit) {
    limit_ = limit;
    readCap();
  }

 private:
  void readCap() {
    pushesSinceCapRead_ = 0;
    cap_ = idleCapFor(limit_);
  }
  T* head_ = nullptr;
  T* tail_ = nullptr;
  size_t size_ = 0;
  size_t limit_ = 1024;
  size_t cap_;
  uint32_t pushesSinceCapRead_ = 0;
};

}  // namespace lockspace
