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
//     the nearest exclusive request ahead; the earlier ones are reached through them (past the
//     searched owner's own requests, whose edges to it are none: the scan goes on behind them).
// An owner waiting for itself by its own request (two tasks of one thread, under one owner, one
// holding while the other waits) is no edge: its other task may release. An owner that awaits the
// request (awaitedBy) waiting for itself is one: `request('n', () => request('n', ...))`. So each
// blocked owner is searched for on its own (from), with its own edges. A request of an entry in
// transition (being granted, opened or closed), of a thread that is gone, or one not queued (announced,
// starting over) has no edges: it is not known to wait. Requests that wait for another process (the
// entry waits in the kernel) have no hard edge: the kernel reports cycles between processes (POSIX).
//
// Cost: only a request that has waited deadlockTimeout asks; one search visits each owner once, each
// request it reaches once or twice, and each resource's holders once in full (later only those that
// close a cycle). A run of the searched owner's own requests in a queue is jumped over at once
// (Waiter::runStart), so one owner's long queue costs a search O(1), not O(its length).
// native/test/deadlock_test.cc checks the answers against an oracle with every edge.
#include <algorithm>
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

  // One search for each owner the request blocks: its own owner (whose edges to itself are none),
  // then, if any, the owners that await it (Web Locks callbacks: their edges to themselves count).
  static DeadlockCycle from(Registry& registry, Entry* e, Handle at) {
    const Waiter& w = *at;
    if (e->transient() || registry.deadEnvs_.count(w.req.env)) return {};
    DeadlockCycle c = DeadlockSearch(registry, {w.req.owner}).run(e, at, w.req.owner);
    if (!c.empty() || w.req.awaitedBy.empty()) return c;
    const std::unordered_set<std::string_view> awaiting(w.req.awaitedBy.begin(), w.req.awaitedBy.end());
    return DeadlockSearch(registry, awaiting).run(e, at, std::string_view());
  }

  DeadlockSearch(Registry& registry, std::unordered_set<std::string_view> closers)
      : r(registry), closing(std::move(closers)) {}

  // Does a path lead from what request `at` waits for (but `skip`) back to an owner in `closing`?
  DeadlockCycle run(Entry* e, Handle at, std::string_view skip) {
    std::vector<std::pair<std::string_view, bool>> starts;
    targets(e, at, skip, [&](std::string_view u, bool soft) { starts.emplace_back(u, soft); });
    for (const auto& [u, soft] : starts) {
      if (visited.count(u)) continue;
      start = u;
      startSoft = soft;
      // A loop u -> u: u awaits this request and holds (or queued ahead) what it waits for.
      if (closing.count(u)) return cycle(e, u, u, 0, false, true);
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
  struct Listed {
    std::string_view skipped;               // a holder not listed the first time (it was skip)
    std::vector<std::string_view> closers;  // holders that the searched request blocks
  };
  struct NearestExclusive {
    bool found;
    ConstIt at;
  };

  bool closes(std::string_view n) const { return closing.count(n) != 0; }

  bool waits(const Entry* e, const Waiter& w) const { return !e->transient() && !r.deadEnvs_.count(w.req.env); }

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
  // request never waits for itself). Each resource's holders are listed in full once per search;
  // later, only those that could close a cycle (the owners the searched request blocks) and the one
  // skipped then (if another request waits for it): the others are reached already.
  template <typename F>
  void targets(Entry* e, Handle at, std::string_view skip, F&& f) {
    const Waiter& w = *at;
    if (e->state == State::Held && conflicts(e->shared, w.req.shared)) {
      auto [memo, first] = holdersListed.try_emplace(e);
      Listed& listed = memo->second;
      if (first) {
        for (const Owner& o : e->owners) {
          const std::string_view u = r.ownerKey(o.owner);
          if (closes(u)) listed.closers.push_back(u);
          if (!skip.empty() && u == skip)
            listed.skipped = u;
          else
            f(u, false);
        }
      } else {
        for (std::string_view u : listed.closers)
          if (skip.empty() || u != skip) f(u, false);
        if (!listed.skipped.empty() && listed.skipped != skip) {
          const std::string_view u = listed.skipped;
          listed.skipped = std::string_view();
          f(u, false);
        }
      }
    }
    const ConstIt begin = e->extra->waiters.begin();
    ConstIt it = at;
    if (!w.req.shared) {  // the shared run right ahead, and the exclusive request before it
      while (it != begin) {
        --it;
        const bool mine = !skip.empty() && it->req.owner == skip;
        if (!mine) f(it->req.owner, true);
        // One of skip's own requests is no edge for it: what that request waits for, this one waits
        // for too (it conflicts with everything ahead), so the scan goes on past it, and past the
        // rest of that run of skip's requests at once.
        if (!it->req.shared && !mine) break;
        if (mine) it = runStart(e, it);
      }
      return;
    }
    // A shared request: the nearest exclusive request ahead not of skip's own.
    for (NearestExclusive x = nearestBefore(begin, it); x.found; x = nearestBefore(begin, runStart(e, x.at))) {
      if (skip.empty() || x.at->req.owner != skip) {
        f(x.at->req.owner, true);
        break;
      }
    }
  }

  // The first request of the run of one owner's requests that `it` is in (see Waiter::runStart), or
  // `it` itself when that request has left the queue.
  ConstIt runStart(const Entry* e, ConstIt it) const {
    if (it->runStartPush == it->push) return it;
    const RequestBook::Booking* b = r.book_.find(it->runStart);
    const bool there = b && b->phase == RequestBook::Phase::Queued && b->entry == e && b->at->push == it->runStartPush;
    return there ? ConstIt(b->at) : it;
  }

  // The nearest exclusive request before `it` in its queue (shared requests between are passed over;
  // each is looked at once per search).
  NearestExclusive nearestBefore(ConstIt begin, ConstIt it) {
    std::vector<uint64_t> passed;  // shared requests ahead: the same nearest exclusive request
    NearestExclusive nearest{false, {}};
    while (it != begin) {
      --it;
      if (!it->req.shared) {
        nearest = {true, it};
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
    return nearest;
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
  std::unordered_set<std::string_view> closing;  // owners that the searched request blocks: reached, a cycle
  std::string_view start;                        // the owner the current descent started from
  bool startSoft = false;
  std::unordered_set<std::string_view> visited;
  std::unordered_map<std::string_view, Reached> reached;
  std::vector<std::string_view> stack;
  std::unordered_map<const Entry*, Listed> holdersListed;
  std::unordered_map<uint64_t, NearestExclusive> nearestExclusive;
};

DeadlockCycle Registry::checkDeadlock(uint64_t request) {
  Lock lk(mu_);
  const RequestBook::Booking* b = book_.find(request);
  if (!b || b->phase != RequestBook::Phase::Queued) return {};
  DeadlockCycle cycle = DeadlockSearch::from(*this, b->entry, b->at);
  if (!cycle.empty()) cancelLocked(lk, request);  // the one waiter that fails: the cycle is broken
  return cycle;
}

}  // namespace lockspace
