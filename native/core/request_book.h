// Where every waiting request is, by id: one map from request id to an explicit phase. Plain C++,
// not thread-safe (the registry's mutex guards it).
//
//   Announced   its acquire was announced (it runs later on libuv's pool) and has not settled yet
//   Restarting  taken off a queue because its name reaches another file now: it runs again as a
//               new acquire, on the thread that took it off
//   Queued      in the wait queue of `entry`, at `at` (a cancel takes it off in O(1))
//   Settling    withdrawn, and off every queue: its runner settles it
//
// Announced and Restarting requests have a runner (the thread that runs their acquire): a cancel
// meanwhile only marks them withdrawn, and the runner settles them when its acquire is back. The
// runner's acquire may queue the request before it settles (all under the mutex): the booking then
// is Queued and keeps its mark, for the runner to see.
//
// Queued requests are also indexed by the owners they block (their own owner and req.awaitedBy): the
// deadlock search follows an owner to the requests it waits by.
//
// Interface: announce/restart (a runner takes a request), queue (it waits at a handle), leave (it is
// granted, failed or dropped), cancel (what a cancel finds), settle (the runner is back), withdrawn,
// waiting (queued or restarting: the waiter count), blockedBy (an owner's queued requests).
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "wait_queue.h"

namespace lockspace {

struct Entry;

class RequestBook {
 public:
  enum class Phase : uint8_t { Announced, Restarting, Queued, Settling };
  struct Booking {
    Phase phase = Phase::Announced;
    bool withdrawn = false;  // cancelled while its runner had it: the runner settles it
    Entry* entry = nullptr;  // Queued: the resource it waits for
    WaitQueue::Handle at{};  // Queued: its place in entry's queue
  };

  void announce(uint64_t request) { book(request).phase = Phase::Announced; }
  // Taken off a queue to start over: the caller runs its acquire again.
  void restart(uint64_t request) {
    Booking& b = book(request);
    if (b.phase == Phase::Queued) unqueue(request, b);
    b.phase = Phase::Restarting;
    b.entry = nullptr;
    ++restarting_;
  }
  void queue(uint64_t request, Entry* e, WaitQueue::Handle at) {
    Booking& b = book(request);
    if (b.phase == Phase::Restarting) --restarting_;
    if (b.phase == Phase::Queued) unindex(request, *b.at);
    index(request, *at);  // may throw: the booking is not changed then
    if (b.phase != Phase::Queued) ++queued_;
    b.phase = Phase::Queued;
    b.entry = e;
    b.at = at;
  }
  // Off its queue for good (granted, failed, dropped). A withdrawn request stays booked for its runner.
  void leave(uint64_t request) {
    auto it = map_.find(request);
    if (it == map_.end()) return;
    Booking& b = it->second;
    if (b.phase == Phase::Queued) unqueue(request, b);
    if (b.phase == Phase::Restarting) --restarting_;
    if (b.withdrawn) {
      b.phase = Phase::Settling;
      b.entry = nullptr;
      return;
    }
    map_.erase(it);
  }

  // What a cancel finds. Queued: the booking is gone and the caller takes the waiter off entry's queue
  // at `at`. Announced/Restarting: marked withdrawn; the runner settles it (and, for an announced
  // request, reports it cancelled).
  struct Cancel {
    enum Found : uint8_t { Nothing, Queued, Announced, Restarting } found = Nothing;
    Entry* entry = nullptr;
    WaitQueue::Handle at{};
  };
  Cancel cancel(uint64_t request) {
    auto it = map_.find(request);
    if (it == map_.end()) return {};
    Booking& b = it->second;
    switch (b.phase) {
      case Phase::Queued: {
        Cancel c{Cancel::Queued, b.entry, b.at};
        unqueue(request, b);
        map_.erase(it);
        return c;
      }
      case Phase::Announced:
        b.withdrawn = true;
        return {Cancel::Announced};
      case Phase::Restarting:
      case Phase::Settling:
        b.withdrawn = true;
        return {Cancel::Restarting};
    }
    return {};
  }

  // The runner's acquire is back: true when the request was withdrawn meanwhile. A request its acquire
  // queued stays booked (the caller takes a withdrawn one off its queue with cancel); else it is gone.
  bool settle(uint64_t request) {
    auto it = map_.find(request);
    if (it == map_.end()) return false;
    Booking& b = it->second;
    const bool withdrawn = b.withdrawn;
    b.withdrawn = false;
    if (b.phase == Phase::Queued) return withdrawn;
    if (b.phase == Phase::Restarting) --restarting_;
    map_.erase(it);
    return withdrawn;
  }

  bool withdrawn(uint64_t request) const {
    auto it = map_.find(request);
    return it != map_.end() && it->second.withdrawn;
  }
  const Booking* find(uint64_t request) const {
    auto it = map_.find(request);
    return it == map_.end() ? nullptr : &it->second;
  }
  size_t waiting() const noexcept { return queued_ + restarting_; }

  // The queued requests that `owner` waits by (its own, and those it awaits), or null if none.
  const std::unordered_set<uint64_t>* blockedBy(const std::string& owner) const {
    auto it = byOwner_.find(owner);
    return it == byOwner_.end() ? nullptr : &it->second;
  }

 private:
  Booking& book(uint64_t request) { return map_[request]; }
  void index(uint64_t request, const Waiter& w) {
    byOwner_[w.req.owner].insert(request);
    try {
      for (const std::string& o : w.req.awaitedBy) byOwner_[o].insert(request);
    } catch (...) {
      unindex(request, w);
      throw;
    }
  }
  void unindex(uint64_t request, const Waiter& w) noexcept {
    drop(w.req.owner, request);
    for (const std::string& o : w.req.awaitedBy) drop(o, request);
  }
  void drop(const std::string& owner, uint64_t request) noexcept {
    auto it = byOwner_.find(owner);
    if (it == byOwner_.end()) return;
    it->second.erase(request);
    if (it->second.empty()) byOwner_.erase(it);
  }
  // Leaves the Queued phase: its waiter (at b.at) is still in its queue, or in a list taken from it.
  void unqueue(uint64_t request, const Booking& b) noexcept {
    unindex(request, *b.at);
    --queued_;
  }
  std::unordered_map<uint64_t, Booking> map_;
  std::unordered_map<std::string, std::unordered_set<uint64_t>> byOwner_;
  size_t queued_ = 0;
  size_t restarting_ = 0;
};

}  // namespace lockspace
