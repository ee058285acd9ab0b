// The C++ core test's scenarios of deadlock detection: a model of the table's queues and grants with
// a deadlock oracle (the wait-for graph over owners with every edge, not the search's reduced one),
// run over many random schedules against a Registry of its own; and the cycle a search reports.
#include <stdlib.h>

#include <algorithm>
#include <cstdint>
#include <list>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "support.h"

namespace lockspace::test {
namespace {

constexpr int kOwners = 5;
constexpr int kResources = 4;

std::string ownerName(int o) { return "o" + std::to_string(o); }

struct ModelRequest {
  uint64_t id;
  int owner;
  bool shared;
  std::vector<int> awaitedBy;
};

struct ModelLease {
  uint64_t lease;
  int owner;
};

struct ModelResource {
  std::vector<ModelLease> holders;
  bool shared = false;  // while held
  std::list<ModelRequest> queue;
};

bool conflicts(bool otherShared, bool wantShared) { return !(otherShared && wantShared); }

// The documented semantics, as plainly as it can be said.
struct Model {
  ModelResource res[kResources];

  // What a hand-off or a cancel grants now (the queue's policy): the ids, in order.
  std::vector<ModelRequest> grantFront(int k) {
    ModelResource& r = res[k];
    std::vector<ModelRequest> granted;
    while (!r.queue.empty()) {
      const ModelRequest w = r.queue.front();  // a copy: popped below
      const bool head = granted.empty();
      const bool ok = head && r.holders.empty() ? true : w.shared && r.shared;
      if (!ok) break;
      if (r.holders.empty() && head) r.shared = w.shared;
      granted.push_back(w);
      r.queue.pop_front();
      r.holders.push_back({0, w.owner});  // lease filled in by the caller
    }
    return granted;
  }

  // The wait-for graph: adj[b][t] when owner b waits for owner t.
  void edges(int k, std::list<ModelRequest>::const_iterator at, std::vector<std::pair<int, int>>& out) const {
    const ModelResource& r = res[k];
    const ModelRequest& w = *at;
    std::set<int> targets;
    if (!r.holders.empty() && conflicts(r.shared, w.shared))
      for (const ModelLease& h : r.holders) targets.insert(h.owner);
    for (auto it = r.queue.begin(); it != at; ++it)
      if (conflicts(it->shared, w.shared)) targets.insert(it->owner);
    std::vector<int> blocked = w.awaitedBy;
    blocked.push_back(w.owner);
    for (int b : blocked)
      for (int t : targets)
        if (!(b == t && b == w.owner)) out.emplace_back(b, t);
  }

  // Is request `id` (queued on k) in a cycle through one of its own edges?
  bool inCycle(int k, uint64_t id) const {
    bool adj[kOwners][kOwners] = {};
    std::list<ModelRequest>::const_iterator mine;
    for (int j = 0; j < kResources; ++j) {
      for (auto it = res[j].queue.begin(); it != res[j].queue.end(); ++it) {
        if (it->id == id) mine = it;
        std::vector<std::pair<int, int>> es;
        edges(j, it, es);
        for (auto [b, t] : es) adj[b][t] = true;
      }
    }
    bool reach[kOwners][kOwners] = {};  // reflexive and transitive
    for (int i = 0; i < kOwners; ++i) {
      reach[i][i] = true;
      for (int j = 0; j < kOwners; ++j) reach[i][j] = reach[i][j] || adj[i][j];
    }
    for (int m = 0; m < kOwners; ++m)
      for (int i = 0; i < kOwners; ++i)
        for (int j = 0; j < kOwners; ++j) reach[i][j] = reach[i][j] || (reach[i][m] && reach[m][j]);
    std::vector<std::pair<int, int>> mineEdges;
    edges(k, mine, mineEdges);
    for (auto [b, t] : mineEdges)
      if (reach[t][b]) return true;
    return false;
  }
};

struct Counts {
  int checks = 0, cycles = 0, softCycles = 0, loops = 0;
};

// One random schedule: acquires (waiting or not, shared or not, some awaited by other owners),
// releases, cancels and deadlock checks; after each step the table's grants are the model's, and
// each check's answer is the oracle's.
void runSchedule(uint32_t seed, Counts& counts) {
  std::mt19937 rng(seed);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint32_t>(n)); };
  Registry own;
  DirPtr d = own.openDir(freshDir(("dl-" + std::to_string(seed)).c_str()));
  for (int k = 0; k < kResources; ++k) own.create(d, "r" + std::to_string(k));
  auto sink = std::make_shared<TestSink>();
  Model m;
  uint64_t nextRequest = 1;
  size_t grantsSeen = 0;
  // The table's grants since the last look must be exactly `expected` (ids, in order).
  auto takeGrants = [&](int k, std::vector<ModelRequest> expected) {
    CHECK(sink->grants.size() == grantsSeen + expected.size());
    if (sink->grants.size() != grantsSeen + expected.size()) return false;
    ModelResource& r = m.res[k];
    for (size_t i = 0; i < expected.size(); ++i) {
      const auto& g = sink->grants[grantsSeen + i];
      CHECK(g.first == expected[i].id);
      // the model pushed holders with lease 0 in order: fill them in
      for (ModelLease& h : r.holders)
        if (h.lease == 0 && h.owner == expected[i].owner) {
          h.lease = g.second;
          break;
        }
    }
    grantsSeen = sink->grants.size();
    return true;
  };
  for (int step = 0; step < 80; ++step) {
    const int op = pick(10);
    if (op < 5) {  // acquire
      const int k = pick(kResources);
      const int o = pick(kOwners);
      Request rq = req(pick(2) == 0, false, ownerName(o).c_str());
      ModelRequest mr{nextRequest++, o, rq.shared, {}};
      if (pick(4) == 0) {
        const int p = pick(kOwners);
        if (p != o) {
          mr.awaitedBy.push_back(p);
          rq.awaitedBy.push_back(ownerName(p));
        }
      }
      const bool wait = pick(4) != 0;
      ModelResource& r = m.res[k];
      const bool free = r.holders.empty() && r.queue.empty();
      const bool join = !r.holders.empty() && r.shared && rq.shared && r.queue.empty();
      AcquireResult got;
      const std::string name = "r" + std::to_string(k);
      const int err = errnoOf([&] { got = wait ? own.acquire(d, name, rq, mr.id, sink) : own.acquire(d, name, rq); });
      if (free || join) {
        CHECK(err == 0 && got.lease != 0);
        if (free) r.shared = rq.shared;
        r.holders.push_back({got.lease, o});
      } else if (wait) {
        CHECK(err == 0 && got.queued);
        r.queue.push_back(mr);
      } else {
        CHECK(err == EBUSY);
      }
    } else if (op < 7) {  // release a random lease
      std::vector<std::pair<int, size_t>> all;
      for (int k = 0; k < kResources; ++k)
        for (size_t i = 0; i < m.res[k].holders.size(); ++i) all.emplace_back(k, i);
      if (all.empty()) continue;
      auto [k, i] = all[pick(static_cast<int>(all.size()))];
      ModelResource& r = m.res[k];
      const uint64_t lease = r.holders[i].lease;
      r.holders.erase(r.holders.begin() + static_cast<long>(i));
      CHECK(own.release(lease));
      std::vector<ModelRequest> granted;
      if (r.holders.empty()) granted = m.grantFront(k);
      if (!takeGrants(k, granted)) return;
    } else {  // cancel or check a random queued request
      std::vector<std::pair<int, uint64_t>> all;
      for (int k = 0; k < kResources; ++k)
        for (const ModelRequest& w : m.res[k].queue) all.emplace_back(k, w.id);
      if (all.empty()) continue;
      // Not a structured binding: a lambda below captures id, which C++17 does not allow of one.
      const std::pair<int, uint64_t> chosen = all[pick(static_cast<int>(all.size()))];
      const int k = chosen.first;
      const uint64_t id = chosen.second;
      bool remove = true;
      if (op < 8) {
        CHECK(own.cancel(id));
      } else {
        const bool expected = m.inCycle(k, id);
        const DeadlockCycle cycle = own.checkDeadlock(id);
        ++counts.checks;
        CHECK(expected == !cycle.empty());
        if (expected != !cycle.empty()) {
          fprintf(stderr, "  seed %u step %d: request %llu, oracle %d, search %d\n", seed, step,
                  static_cast<unsigned long long>(id), expected, !cycle.empty());
          for (int j = 0; j < kResources; ++j) {
            fprintf(stderr, "    r%d %s holders:", j, m.res[j].shared ? "shared" : "excl");
            for (const ModelLease& h : m.res[j].holders) fprintf(stderr, " o%d", h.owner);
            fprintf(stderr, " queue:");
            for (const ModelRequest& w : m.res[j].queue) {
              fprintf(stderr, " #%llu o%d%s", static_cast<unsigned long long>(w.id), w.owner, w.shared ? "s" : "x");
              for (int p : w.awaitedBy) fprintf(stderr, "(by o%d)", p);
            }
            fprintf(stderr, "\n");
          }
          return;
        }
        remove = expected;
        if (expected) {
          ++counts.cycles;
          if (cycle.size() == 1) ++counts.loops;
          if (std::any_of(cycle.begin(), cycle.end(), [](const DeadlockStep& s) { return s.soft; }))
            ++counts.softCycles;
          // Every step is one of the table's owners, and each step's path one of its files.
          for (const DeadlockStep& s : cycle)
            CHECK(s.owner.size() == 2 && s.owner[0] == 'o' && s.path.rfind(d->path(), 0) == 0);
          CHECK(!own.cancel(id));  // no longer queued
        }
      }
      if (!remove) continue;
      ModelResource& r = m.res[k];
      const bool wasHead = r.queue.front().id == id;
      r.queue.remove_if([&](const ModelRequest& w) { return w.id == id; });
      std::vector<ModelRequest> granted;
      if (wasHead && !r.holders.empty() && r.shared && !r.queue.empty() && r.queue.front().shared)
        granted = m.grantFront(k);
      if (!takeGrants(k, granted)) return;
    }
  }
}

}  // namespace

void testDeadlockOracle() {
  Counts counts;
  const char* env = getenv("LOCKSPACE_DEADLOCK_RUNS");  // more schedules, by hand
  const int runs = env ? atoi(env) : 1500;
  for (uint32_t seed = 1; seed <= static_cast<uint32_t>(runs); ++seed) {
    const int before = failures;
    runSchedule(seed, counts);
    if (failures != before) {
      fprintf(stderr, "  (schedule seed %u)\n", seed);
      return;
    }
  }
  printf("  deadlock oracle: %d runs, %d checks, %d cycles (%d through a soft edge, %d loops of one owner)\n", runs,
         counts.checks, counts.cycles, counts.softCycles, counts.loops);
  CHECK(counts.cycles > 100 && counts.softCycles > 10 && counts.loops > 10 && counts.checks > counts.cycles * 2);
}

// A 2-cycle: the report names both owners and both files, and only the searched request leaves.
void testDeadlockReport() {
  Registry own;
  DirPtr d = own.openDir(freshDir("dl-report"));
  own.create(d, "x");
  own.create(d, "y");
  auto sink = std::make_shared<TestSink>();
  const uint64_t ax = own.acquire(d, "x", req(false, false, "A")).lease;
  const uint64_t by = own.acquire(d, "y", req(false, false, "B")).lease;
  CHECK(own.acquire(d, "y", req(false, false, "A"), 1, sink).queued);
  CHECK(own.checkDeadlock(1).empty());  // no cycle yet
  CHECK(own.acquire(d, "x", req(false, false, "B"), 2, sink).queued);
  const DeadlockCycle c = own.checkDeadlock(1);
  CHECK(c.size() == 2);
  if (c.size() == 2) {
    CHECK(c[0].owner == "A" && c[0].path == d->path() + "/y" && !c[0].soft);
    CHECK(c[1].owner == "B" && c[1].path == d->path() + "/x" && !c[1].soft);
  }
  CHECK(own.stats().waiters == 1);
  CHECK(own.checkDeadlock(2).empty());  // broken: B goes on waiting
  own.release(ax);
  CHECK(sink->grants.size() == 1 && sink->grants[0].first == 2);
  own.release(by);
  for (auto& g : sink->grants) own.release(g.second);
  CHECK(own.stats().leases == 0 && own.stats().waiters == 0);
}

// A cycle behind a long run of one owner's own requests: A's request at the back of E's queue waits
// (soft) for B's request at the front, past 1,000 more of A's; B also waits for F, which A holds. The
// search jumps over A's run (also once its first request has left the queue) and finds the cycle.
void testDeadlockPastOwnRun() {
  Registry own;
  DirPtr d = own.openDir(freshDir("dl-run"));
  own.create(d, "e");
  own.create(d, "f");
  auto sink = std::make_shared<TestSink>();
  const uint64_t he = own.acquire(d, "e", req(false, false, "H")).lease;
  const uint64_t af = own.acquire(d, "f", req(false, false, "A")).lease;
  CHECK(own.acquire(d, "e", req(false, false, "B"), 1, sink).queued);
  for (uint64_t r = 2; r <= 1002; ++r) CHECK(own.acquire(d, "e", req(r % 3 == 0, false, "A"), r, sink).queued);
  CHECK(own.checkDeadlock(1002).empty());  // no cycle yet: B waits only for H
  CHECK(own.acquire(d, "f", req(false, false, "B"), 2000, sink).queued);
  CHECK(own.cancel(2));  // the first of A's run leaves: the others' jumps fall back, step by step
  const DeadlockCycle c = own.checkDeadlock(1002);
  CHECK(c.size() == 2 && c[0].owner == "A" && c[0].soft && c[1].owner == "B" && !c[1].soft);
  CHECK(!own.checkDeadlock(500).empty());  // any of A's requests closes one too (it is rejected alone)
  own.release(af);
  own.release(he);
  while (own.stats().leases > 0) {
    for (auto& g : sink->grants) own.release(g.second);
  }
  CHECK(own.stats().waiters == 0);
}

}  // namespace lockspace::test
