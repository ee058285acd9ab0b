// Deadlock detection in the lock table (PostgreSQL's lmgr model, src/backend/storage/lmgr/README and
// deadlock.c): a request waits optimistically; once it has waited deadlockTimeout, its thread asks
// checkDeadlock whether it is in a cycle of waits, and if so it alone is taken off its queue and fails
// with EDEADLK, which breaks the cycle; the other members go on.
//
// The graph (see registry.h, checkDeadlock): its nodes are owner keys, every thread's and every copy's
// (one table). An owner waits by each queued request it blocks: its own requests, and those it awaits
// (Request::awaitedBy, a Web Locks callback awaiting a request made inside it). A request waits for
//   - hard edges: the owners holding its resource in a mode that conflicts with it;
//   - soft edges: the owners of requests queued ahead of it in a mode that conflicts with it (FIFO: it
//     is granted only after them). Only the nearest conflicting ones: an exclusive request waits for
//     the shared run right ahead of it and the exclusive request before that run, a shared one for
//     the nearest exclusive request ahead; the earlier ones are reached through them.
// An owner waiting for itself by its own request (two tasks of one thread, under one owner, one
// holding while the other waits) is no edge: its other task may release. A request of an entry in
// transition (being granted, opened or closed), of a thread that is gone, or one not queued (announced,
// starting over) has no edges: it is not known to wait. Requests that wait for another process (the
// entry waits in the kernel) have no hard edge: the kernel reports cycles between processes (POSIX).
//
// Cost: only a request that has waited deadlockTimeout asks; one search visits each owner once, each
// request it reaches once or twice, and each resource's holders once (see Search).
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "registry.h"

namespace lockspace {

namespace {

// Does a request of mode wantShared wait for a lock or an earlier request of mode otherShared?
bool conflicts(bool otherShared, bool wantShared) noexcept { return !(otherShared && wantShared); }

}  // namespace

// One search, from one queued request, under the registry's mutex.
struct Registry::DeadlockSearch {
  using Handle = WaitQueue::Handle;
  using ConstIt = std::list<Waiter>::const_iterator;

  explicit DeadlockSearch(Registry& registry) : r(registry) {}

  DeadlockCycle from(Entry* e, Handle at) {
    const Waiter& w = *at;
    own = w.req.owner;
    blocked.insert(own);
    for (const std::string& o : w.req.awaitedBy) blocked.insert(o);
    if (!waits(e, w)) return {};
    std::vector<std::pair<std::string_view, bool>> starts;
    // The edges b -> u of every b in `blocked`; own -> own alone is none (see the top).
    targets(e, at, w.req.awaitedBy.empty() ? own : std::string_view(), [&](std::string_view u, bool soft) { starts.emplace_back(u, soft); });
    for (const auto& [u, soft] : starts) {
      if (visited.count(u)) continue;
      start = u;
      startSoft = soft;
      // A loop u -> u: u blocks this request and holds (or queued ahead) what it waits for.
      if (closes(u)) return cycle(e, u, u, 0, false, true);
      visited.insert(u);
      stack.push_back(u);
      while (!stack.empty()) {
        const std::string_view m = stack.back();
        stack.pop_back();
        if (DeadlockCycle c = expand(m, e); !c.empty()) return c;
      }
    }
    return {};
  }

 private:
  struct Reached {
    std::string_view from;
    uint64_t request;
    bool soft;
  };
  struct NearestExclusive {
    bool found;
    std::string_view owner;
  };

  // n blocks the request searched from, and its edge to the start is one (see from).
  bool closes(std::string_view n) const { return blocked.count(n) && (n != start || n != own); }

  bool waits(const Entry* e, const Waiter& w) const {
    return !e->transient() && !r.deadEnvs_.count(w.req.env);
  }

  // Follows m's edges; a cycle once one reaches an owner that closes it.
  DeadlockCycle expand(std::string_view m, Entry* searched) {
    const std::unordered_set<uint64_t>* requests = r.book_.blockedBy(std::string(m));
    if (!requests) return {};
    for (uint64_t q : *requests) {
      const RequestBook::Booking* b = r.book_.find(q);
      if (!b || b->phase != RequestBook::Phase::Queued) continue;
      const Waiter& w = *b->at;
      if (!waits(b->entry, w)) continue;
      DeadlockCycle found;
      targets(b->entry, b->at, m == w.req.owner ? m : std::string_view(), [&](std::string_view u, bool soft) {
        if (!found.empty()) return;
        if (closes(u)) {
          found = cycle(searched, u, m, q, soft, false);
          return;
        }
        if (!visited.insert(u).second) return;
        reached.emplace(u, Reached{m, q, soft});
        stack.push_back(u);
      });
      if (!found.empty()) return found;
    }
    return {};
  }

  // Calls f(owner, soft) for each owner request `at` of e waits for, but `skip` (an owner's own
  // request never waits for itself). Each resource's holders are listed once per search (the owner
  // skipped then is listed later if another request waits for it).
  template <typename F>
  void targets(Entry* e, Handle at, std::string_view skip, F&& f) {
    const Waiter& w = *at;
    if (e->state == State::Held && conflicts(e->shared, w.req.shared)) {
      auto [memo, first] = holdersListed.try_emplace(e, std::string_view());
      if (first) {
        for (const Owner& o : e->owners) {
          const std::string_view u = r.ownerKey(o.owner);
          if (!skip.empty() && u == skip)
            memo->second = u;
          else
            f(u, false);
        }
      } else if (!memo->second.empty() && memo->second != skip) {
        const std::string_view u = memo->second;
        memo->second = std::string_view();
        f(u, false);
      }
    }
    const ConstIt begin = e->extra->waiters.begin();
    ConstIt it = at;
    if (!w.req.shared) {  // the shared run right ahead, and the exclusive request before it
      while (it != begin) {
        --it;
        if (skip.empty() || it->req.owner != skip) f(it->req.owner, true);
        if (!it->req.shared) break;
      }
      return;
    }
    std::vector<uint64_t> passed;  // shared requests ahead: the same nearest exclusive request
    NearestExclusive nearest{false, {}};
    while (it != begin) {
      --it;
      if (!it->req.shared) {
        nearest = {true, it->req.owner};
        break;
      }
      auto known = nearestExclusive.find(it->request);
      if (known != nearestExclusive.end()) {
        nearest = known->second;
        break;
      }
      passed.push_back(it->request);
    }
    for (uint64_t p : passed) nearestExclusive.emplace(p, nearest);
    if (nearest.found && (skip.empty() || nearest.owner != skip)) f(nearest.owner, true);
  }

  DeadlockStep step(std::string_view owner, const Entry* e, bool soft) const {
    return DeadlockStep{std::string(owner), e->path(), soft};
  }
  const Entry* entryOf(uint64_t request) const { return r.book_.find(request)->entry; }

  // The cycle closer -> start (by the searched request) -> ... -> last -(request, soft)-> closer.
  DeadlockCycle cycle(const Entry* searched, std::string_view closer, std::string_view last, uint64_t request,
                      bool soft, bool loop) const {
    DeadlockCycle c;
    c.push_back(step(closer, searched, startSoft));
    if (loop) return c;
    std::vector<DeadlockStep> middle;
    for (std::string_view at = last; at != start;) {
      const Reached& how = reached.at(at);
      middle.push_back(step(how.from, entryOf(how.request), how.soft));
      at = how.from;
    }
    c.insert(c.end(), middle.rbegin(), middle.rend());
    c.push_back(step(last, entryOf(request), soft));
    return c;
  }

  Registry& r;
  std::string_view own;                         // the searched request's owner
  std::unordered_set<std::string_view> blocked;  // the owners the searched request blocks
  std::string_view start;                       // the owner the current descent started from
  bool startSoft = false;
  std::unordered_set<std::string_view> visited;
  std::unordered_map<std::string_view, Reached> reached;
  std::vector<std::string_view> stack;
  std::unordered_map<const Entry*, std::string_view> holdersListed;  // and the holder skipped then
  std::unordered_map<uint64_t, NearestExclusive> nearestExclusive;
};

DeadlockCycle Registry::checkDeadlock(uint64_t request) {
  Lock lk(mu_);
  const RequestBook::Booking* b = book_.find(request);
  if (!b || b->phase != RequestBook::Phase::Queued) return {};
  DeadlockCycle cycle = DeadlockSearch(*this).from(b->entry, b->at);
  if (!cycle.empty()) cancelLocked(lk, request);  // the one waiter that fails: the cycle is broken
  return cycle;
}

}  // namespace lockspace
