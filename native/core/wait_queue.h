// The requests queued on one resource, and THE grant policy for them, stated once. Plain C++, no
// N-API, not thread-safe (the registry's mutex guards every queue).
//
//  1. A shared request joins a shared holder at once only while nobody is queued, so a stream of
//     shared requests in this process never starves a queued exclusive one.
//  2. When the last owner leaves, the head of the queue decides the lock mode (FIFO); the shared
//     requests right behind a shared head ride along, up to the first exclusive one. While the lock
//     is held shared, a shared head (an exclusive one before it was cancelled) joins the holders, with
//     the shared requests right behind it.
//  3. Nobody is granted anything unless the name the request came through reaches the locked file
//     at that moment: the registry checks it while it holds the kernel lock, outside its mutex, for
//     one round of requests (see GrantRound), and a request whose name reaches another file now
//     starts over as a new acquire.
//  4. The queue may change while a round's names are checked (a cancel, a dead thread's request
//     dropped from the head): a round that comes to a request it did not check stops there, and the
//     policy is asked again, so nobody it admits is left queued behind requests that are gone.
//
// Interface: admitsJoin (a new request meets a holder), admitsQueued (the front of the queue, in
// order); WaitQueue (push returns a handle that erase takes in O(1): a cancel costs the same however
// long the queue is); GrantRound (one round of rule 3 and 4).
#pragma once

#include <cstdint>
#include <iterator>
#include <list>
#include <string>
#include <utility>
#include <vector>

#include "dir.h"
#include "types.h"

namespace lockspace {

struct Waiter {
  uint64_t request;
  Request req;
  DirPtr dir;
  std::string name;  // as the request named it (in dir)
  SinkPtr sink;
  // The first request of the run of this owner's requests that this one joined at the back (itself if
  // the one before it had another owner), and that request's push. Requests only leave a queue or join
  // it at the back, so while that push is still queued here, every request between it and this one has
  // this owner too. The deadlock search jumps over one owner's requests with it.
  uint64_t push = 0;  // this one's push (a request queued here again is another push)
  uint64_t runStart = 0;
  uint64_t runStartPush = 0;
};

class WaitQueue {
 public:
  using Handle = std::list<Waiter>::iterator;

  // A new request of mode wantShared meets the resource held in mode heldShared.
  static bool admitsJoin(bool heldShared, bool wantShared, bool anyQueued) noexcept {
    return heldShared && wantShared && !anyQueued;
  }
  // The next request at the front of the queue (head: nothing granted before it in this round) may be
  // granted while the lock is held in mode heldShared, by `hasOwners` owners or none.
  static bool admitsQueued(bool heldShared, bool wantShared, bool head, bool hasOwners) noexcept {
    return head && !hasOwners ? wantShared == heldShared : wantShared && heldShared;
  }

  bool empty() const noexcept { return list_.empty(); }
  size_t size() const noexcept { return list_.size(); }
  Waiter& front() noexcept { return list_.front(); }
  Handle push(Waiter&& w) {
    w.push = ++pushes_;
    const bool sameRun = !list_.empty() && list_.back().req.owner == w.req.owner;
    w.runStart = sameRun ? list_.back().runStart : w.request;
    w.runStartPush = sameRun ? list_.back().runStartPush : w.push;
    return list_.insert(list_.end(), std::move(w));
  }
  void erase(Handle at) noexcept { list_.erase(at); }
  Waiter popFront() {
    Waiter w = std::move(list_.front());
    list_.pop_front();
    return w;
  }
  bool isFront(Handle at) const noexcept { return at == list_.begin(); }
  std::list<Waiter> takeAll() noexcept {
    std::list<Waiter> all;
    all.swap(list_);
    return all;
  }
  auto begin() const noexcept { return list_.begin(); }
  auto end() const noexcept { return list_.end(); }

  // The requests at the front that the policy admits now, in queue order (rule 2), calling f(w) on each.
  template <typename F>
  void forAdmitted(bool heldShared, bool hasOwners, F&& f) const {
    bool head = true;
    for (const Waiter& w : list_) {
      if (!admitsQueued(heldShared, w.req.shared, head, hasOwners)) break;
      f(w);
      head = false;
    }
  }

 private:
  std::list<Waiter> list_;
  uint64_t pushes_ = 0;
};

// One grant round: the requests the policy admitted (whose names are then checked outside the mutex),
// and, afterwards, whether the request now at the front is one of them. Requests only leave a queue
// or join it at the back, so the admitted ones are still in order: one pass over them in all.
class GrantRound {
 public:
  GrantRound(const WaitQueue& q, bool heldShared, bool hasOwners) {
    q.forAdmitted(heldShared, hasOwners, [this](const Waiter& w) { admitted_.push_back(w.request); });
  }
  bool empty() const noexcept { return admitted_.empty(); }
  const std::vector<uint64_t>& admitted() const noexcept { return admitted_; }
  // Was the request now at the front admitted (and checked) by this round? Members skipped on the way
  // have left the queue meanwhile. False: the round stops there and the policy is asked again.
  bool checked(uint64_t front) noexcept {
    while (next_ < admitted_.size() && admitted_[next_] != front) ++next_;
    return next_ < admitted_.size();
  }

 private:
  std::vector<uint64_t> admitted_;
  size_t next_ = 0;
};

}  // namespace lockspace
