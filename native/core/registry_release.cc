// Releases, the hand-off to queued requests, cancels, re-dispatch, create/delete and the idle fds
// (see registry.h for the parts).
#include <errno.h>
#include <sys/stat.h>

#include <algorithm>

#include "lock_file.h"
#include "registry.h"
#include "test_point.h"

namespace lockspace {

// --- release ---------------------------------------------------------------------------------------

bool Registry::release(uint64_t lease) {
  Lock lk(mu_);
  if (!leases_.find(lease)) return false;
  releaseLocked(lk, lease, Purpose::Lock);
  return true;
}

bool Registry::isHeld(uint64_t lease) {
  std::lock_guard<TableMutex> lk(mu_);
  return leases_.find(lease) != nullptr;
}

int Registry::releaseLocked(Lock& lk, uint64_t lease, Purpose purpose) {
  LS_CHECK_HELD(mu_);
  Entry* e = leases_.find(lease);
  while (e && e->transient()) {  // another thread is granting queued requests of it: let it finish
    waitTransition(lk, e->key);
    e = leases_.find(lease);
  }
  if (!e) return 0;
  removeOwner(e, lease);
  if (!e->owners.empty()) return 0;
  if (e->hasWaiters()) {
    handOff(lk, e);
    return purpose == Purpose::Delete ? EBUSY : 0;
  }
  return finishLastRelease(lk, e, purpose == Purpose::Delete ? Unlink::Must : e->autoCreate ? Unlink::Yes : Unlink::No);
}

// The last owner is gone and nobody waits: unlock (keep the fd idle) or close, unlinking first when
// asked. Returns the unlink error when the unlink was a must (delete), else 0.
int Registry::finishLastRelease(Lock& lk, Entry* e, Unlink unlink) {
  LS_CHECK_HELD(mu_);
  // Network file systems: an autoCreate file stays. A client of another host keeps seeing a deleted
  // file by its cached name for about a second, so a waiter there would be granted the deleted
  // inode while a new acquire here creates and locks a new file: two holders. Only delete unlinks.
  if (e->remote && unlink == Unlink::Yes) unlink = Unlink::No;
  setState(e, State::Closing);
  waitForAskers(lk, e);
  const bool cacheableNow = cacheable(e) && e->named;  // reads the idle limit: under the mutex
  lk.unlock();
  // Only this thread touches a Closing entry's fds; everyone else waits for the transition.
  int unlinkErr = 0;
  if (unlink != Unlink::No)
    unlinkErr = lockfile::deleteHeld(e->fd.get(), e->kind, lockfile::modeOf(e->shared), e->cpath(), e->key);
  const bool deleted = unlink != Unlink::No && unlinkErr == 0;
  const bool keep = !deleted && cacheableNow && lockfile::unlock(e->fd.get(), e->kind) == 0;
  if (!keep) lockfile::closeLocked(e->fd, e->kind, e->remote);  // the spares go with the entry, under the mutex
  lk.lock();
  const InodeKey key = e->key;
  if (keep)
    makeIdle(e);
  else
    eraseEntry(e);
  notifyTransition(key);
  return unlink == Unlink::Must ? unlinkErr : 0;
}

// The last owner left and requests are queued: pass the lock on without closing the fd. The entry is
// reserved (Granting) until it is settled: Held by the requests granted, KernelWait to wait for another
// process, or Closing when nobody is left to take it.
void Registry::handOff(Lock& lk, Entry* e) {
  LS_CHECK_HELD(mu_);
  std::vector<Waiter> moved;
  setState(e, State::Granting);
  // The kernel lock is taken again, in the head's mode, before anything is handed on: it may be gone
  // (a descriptor of the file closed elsewhere in this process, a network file system's server), and
  // then the lease it was held for is lost, but the next holder must not be.
  bool lockedNow = false;
  for (;;) {
    dropDeadHead(e);
    if (!e->hasWaiters()) {  // nobody left to take it (or out of memory failed them all)
      finishLastRelease(lk, e, e->autoCreate ? Unlink::Yes : Unlink::No);
      break;
    }
    const bool headShared = e->waiters().front().req.shared;
    // Another process waits to lock it exclusively (see noteJoin): let it go, so that the writer gets
    // its turn, and wait in the kernel for it again, after a pause that lets the writer in. Or the head
    // wants the other mode, or the lock is not known to be there: take it in place unless another
    // process holds it (then let it go and wait in the kernel: never a blocking upgrade).
    const bool yieldToWriter = e->writerWaits;
    if (yieldToWriter || headShared != e->shared || !lockedNow) {
      if (!fitKernelLock(lk, e, headShared, yieldToWriter ? Fit::LetGo : Fit::TryInPlace)) {
        e->serial = ++nextSerial_;  // not locked throughout any more
        e->writerWaits = false;
        if (yieldToWriter) e->ext().yieldFirst = true;
        return settle(lk, e, State::KernelWait, moved, WaitBy::NewThread);
      }
      lockedNow = true;
      ++e->takenAgain;  // had it been lost, it is this process's again only from now (Entry::takenAgain)
      continue;         // the queue may have changed while the mutex was let go
    }
    if (grantReserved(lk, e, moved)) return;
  }
  // Requests whose names reach another file now start over, once this entry is settled.
  for (Waiter& w : moved) redispatch(lk, std::move(w));
}

// THE change of a reserved entry's kernel lock (Granting, or KernelWait on its own kernel-wait thread)
// to another mode: in place when a non-blocking try gets it (TryInPlace), else let go; never by a
// blocking upgrade, which deadlocks when two processes do it. The syscalls run without the mutex (the
// reservation keeps every other thread of this process off the fd). True: locked in mode `shared` now.
bool Registry::fitKernelLock(Lock& lk, Entry* e, bool shared, Fit how) {
  LS_CHECK_HELD(mu_);
  LS_CHECK(e->state == State::Granting || e->state == State::KernelWait, "the kernel lock of an entry not reserved");
  const int fd = e->fd.get();
  const LockKind kind = e->kind;
  lk.unlock();
  const bool switched = how == Fit::TryInPlace && lockfile::tryLock(fd, kind, lockfile::modeOf(shared)) == 0;
  if (!switched) lockfile::unlock(fd, kind);
  lk.lock();
  if (!switched) return false;
  e->shared = shared;
  e->joins = 0;
  return true;
}

// THE grant, for every path that grants queued requests (a hand-off, a grant in place, a kernel wait's
// lock): e is reserved (Granting) and locked in mode e->shared. Grants what the queue's policy admits,
// each request only if its name still reaches e's file; if anyone holds e then, e is settled Held.
// False: nobody holds it, e stays Granting for the caller to let go (`moved` kept for its settle).
bool Registry::grantReserved(Lock& lk, Entry* e, std::vector<Waiter>& moved) {
  LS_CHECK_HELD(mu_);
  LS_CHECK(e->state == State::Granting, "a grant from an entry not reserved");
  grantFront(lk, e, moved);
  if (e->owners.empty()) return false;
  settle(lk, e, State::Held, moved);
  return true;
}

// Ends a reservation: e goes to `to` (KernelWait: waited for by a new kernel-wait thread, or by the
// one that calls), the threads waiting for its transition are woken, and the requests whose names
// reach another file now start over, once e is settled.
void Registry::settle(Lock& lk, Entry* e, State to, std::vector<Waiter>& moved, WaitBy by) {
  LS_CHECK_HELD(mu_);
  const InodeKey key = e->key;
  setState(e, to);
  if (to == State::KernelWait && by == WaitBy::NewThread) startKernelWait(lk, e);  // none: e is gone, its queue failed
  notifyTransition(key);
  for (Waiter& w : moved) redispatch(lk, std::move(w));
}

void Registry::dropDeadHead(Entry* e) {
  // Requests of a thread that is gone are cancelled when it goes (releaseEnv); this is the backstop.
  while (e->hasWaiters() && deadEnvs_.count(e->waiters().front().req.env)) {
    book_.leave(e->waiters().front().request);
    e->waiters().popFront();
  }
}

// Grants the requests at the front of e's queue that the wait queue's policy admits, each only if the
// name it came through still reaches e's file; those whose names reach another file now are taken off
// the queue into `moved` (counted as starting over), for the caller to redispatch once e is settled.
// Called with the mutex held, e reserved (Granting) and its kernel lock held in mode e->shared; drops
// the mutex for the stats (nothing can change e's lock meanwhile: it is reserved).
void Registry::grantFront(Lock& lk, Entry* e, std::vector<Waiter>& moved) {
  LS_CHECK_HELD(mu_);
  // A round that stops at a request it did not check asks the policy again (wait_queue.h, rule 4).
  while (grantRound(lk, e, moved) == Round::StoppedUnchecked) {
  }
}

Registry::Round Registry::grantRound(Lock& lk, Entry* e, std::vector<Waiter>& moved) {
  LS_CHECK_HELD(mu_);
  dropDeadHead(e);
  if (!e->hasWaiters()) return Round::Done;
  // 1. The requests the policy admits now, and the paths they came through (mostly just the entry's own).
  GrantRound round(e->waiters(), e->shared, !e->owners.empty());
  if (round.empty()) return Round::Done;
  std::vector<std::string> paths;
  e->waiters().forAdmitted(e->shared, !e->owners.empty(), [&](const Waiter& w) {
    std::string p = w.dir->fullPath(w.name);
    if (std::find(paths.begin(), paths.end(), p) == paths.end()) paths.push_back(std::move(p));
  });
  lk.unlock();
  LS_TEST_POINT("grant.checking", e->cname());
  std::vector<char> reaches(paths.size());
  for (size_t i = 0; i < paths.size(); ++i) reaches[i] = lockfile::namesInode(paths[i].c_str(), e->key);
  lk.lock();
  // 2. In queue order, the admitted requests still there (cancels may have taken some): grant those
  //    whose names reach the file, take the others off the queue.
  bool ownNameMoved = false;
  const std::string own = e->path();
  for (size_t i = 0; i < paths.size(); ++i)
    if (!reaches[i] && paths[i] == own) ownNameMoved = true;
  if (ownNameMoved) detachName(e);
  for (dropDeadHead(e); e->hasWaiters(); dropDeadHead(e)) {
    Waiter& w = e->waiters().front();
    if (!round.checked(w.request)) return Round::StoppedUnchecked;
    const std::string p = w.dir->fullPath(w.name);
    const size_t at = static_cast<size_t>(std::find(paths.begin(), paths.end(), p) - paths.begin());
    if (!reaches[at]) {
      book_.restart(w.request);
      moved.push_back(e->waiters().popFront());
      continue;
    }
    if (!WaitQueue::admitsQueued(e->shared, w.req.shared, true, !e->owners.empty())) break;
    uint64_t lease;
    try {
      lease = addOwner(e, w.dir, w.name, w.req);
    } catch (const SysError& err) {  // too many leases: fail what is queued, never strand it
      failWaiters(e, err);
      return Round::Done;
    } catch (const std::bad_alloc&) {
      failWaiters(e, SysError(ENOMEM, "acquire", std::string()));
      return Round::Done;
    }
    book_.leave(w.request);
    Waiter granted = e->waiters().popFront();
    granted.sink->granted(granted.request, lease);
  }
  return Round::Done;
}

void Registry::failWaiters(Entry* e, const SysError& err) {
  if (!e->hasWaiters()) return;
  std::list<Waiter> ws = e->waiters().takeAll();
  for (Waiter& w : ws) {
    // A request re-dispatched after its file was replaced may have been cancelled meanwhile (the
    // caller has settled it), or belong to a thread that is gone: it hears nothing more.
    const bool silent = book_.withdrawn(w.request) || deadEnvs_.count(w.req.env);
    book_.leave(w.request);
    if (!silent) w.sink->failed(w.request, err);
  }
}

// --- cancel, announced requests, re-dispatch --------------------------------------------------------

bool Registry::cancel(uint64_t request, bool* runnerReports) {
  Lock lk(mu_);
  return cancelLocked(lk, request, runnerReports);
}

bool Registry::cancelLocked(Lock& lk, uint64_t request, bool* runnerReports) {
  LS_CHECK_HELD(mu_);
  if (runnerReports) *runnerReports = false;
  const RequestBook::Cancel found = book_.cancel(request);
  switch (found.found) {
    case RequestBook::Cancel::Nothing:
      return false;
    case RequestBook::Cancel::Announced:
      if (runnerReports) *runnerReports = true;
      return true;
    case RequestBook::Cancel::Restarting:
      return true;
    case RequestBook::Cancel::Queued:
      break;
  }
  Entry* e = found.entry;
  const bool wasHead = e->waiters().isFront(found.at);
  e->waiters().erase(found.at);
  if (e->state == State::KernelWait) {
    if (wasHead) interrupt(e);  // re-evaluate: nobody left, or another lock mode wanted
  } else if (e->state == State::Held && e->shared && !e->writerWaits && wasHead && e->hasWaiters() &&
             e->waiters().front().req.shared) {
    grantInPlace(lk, e);  // shared requests queued behind a cancelled exclusive one may join now
  }
  return true;
}

// Grants what the policy admits now to a Held entry, without a hand-off.
void Registry::grantInPlace(Lock& lk, Entry* e) {
  LS_CHECK_HELD(mu_);
  LockNow now{};
  if (!stillLocked(lk, e, now)) return;  // gone: they wait for the hand-off, which takes the lock again
  std::vector<Waiter> moved;
  setState(e, State::Granting);
  if (!grantReserved(lk, e, moved)) settle(lk, e, State::Held, moved);  // (it has owners: never)
}

void Registry::announce(uint64_t request) {
  std::lock_guard<TableMutex> lk(mu_);
  book_.announce(request);
}

bool Registry::runnerGone(uint64_t request, uint32_t env) const {
  return book_.withdrawn(request) || deadEnvs_.count(env);
}

AcquireResult Registry::acquireAnnounced(const DirPtr& dir, const std::string& name, const Request& req,
                                         uint64_t request, SinkPtr sink) {
  Lock lk(mu_);
  AcquireResult cancelled;
  cancelled.cancelled = true;
  if (runnerGone(request, req.env)) {
    book_.settle(request);
    return cancelled;
  }
  AcquireResult res;
  try {
    if (!dir) throw ArgError("invalid lockspace handle");
    dir->checkName(name);
    const Attempt a{dir, name, req, request, sink, Purpose::Lock};
    res = acquireLocked(lk, a);
    checkWriter(a);
  } catch (...) {
    const bool wasCancelled = runnerGone(request, req.env);
    book_.settle(request);
    if (wasCancelled) return cancelled;
    throw;
  }
  const bool wasCancelled = runnerGone(request, req.env);
  book_.settle(request);
  if (!wasCancelled) return res;
  if (res.queued) cancelLocked(lk, request);
  if (res.lease) releaseLocked(lk, res.lease, Purpose::Lock);
  return cancelled;
}

void Registry::redispatch(Lock& lk, Waiter w) {
  LS_CHECK_HELD(mu_);
  // The request stays booked as restarting until acquireLocked is back (it drops the mutex on the
  // way): a cancel meanwhile marks it, returns true (the caller settles it) and is honoured here.
  if (runnerGone(w.request, w.req.env)) {
    book_.settle(w.request);
    return;
  }
  AcquireResult res;
  try {
    res = acquireLocked(lk, Attempt{w.dir, w.name, w.req, w.request, w.sink, Purpose::Lock});
  } catch (const SysError& err) {
    const bool deliver = !runnerGone(w.request, w.req.env);
    book_.settle(w.request);
    if (deliver) w.sink->failed(w.request, err);
    return;
  } catch (...) {  // out of memory: answer it anyway, the other re-dispatched requests still get theirs
    const bool deliver = !runnerGone(w.request, w.req.env);
    book_.settle(w.request);
    if (deliver) w.sink->failed(w.request, SysError(ENOMEM, "acquire", std::string()));
    return;
  }
  if (!runnerGone(w.request, w.req.env)) {
    book_.settle(w.request);
    if (res.lease) w.sink->granted(w.request, res.lease);
    return;
  }
  book_.settle(w.request);
  if (res.queued) cancelLocked(lk, w.request);
  if (res.lease) releaseLocked(lk, res.lease, Purpose::Lock);
}

// --- release by name, owner and environment ---------------------------------------------------------

void Registry::releaseByName(const DirPtr& dir, const std::string& name, const std::string& owner) {
  dir->checkName(name);
  const std::string path = dir->fullPath(name);
  Lock lk(mu_);
  auto ownerLease = [&](const Entry* e) -> uint64_t {
    if (!e || !e->locked()) return 0;
    for (const Owner& o : e->owners)
      if (ownerKey(o.owner) == owner) return o.lease;
    return 0;
  };
  // The resource the name reaches (by this name or another of the same file): by the inode a stat
  // gives, confirmed like an acquire.
  uint64_t lease = 0;
  {
    struct stat st {};
    lk.unlock();
    const bool exists = ::lstat(path.c_str(), &st) == 0;
    lk.lock();
    Entry* e = exists ? byInode_.find(InodeKey{st.st_dev, st.st_ino}) : nullptr;
    if (e && checkName(lk, path.c_str(), e->key, e->serial) == NameCheck::Reaches)
      lease = ownerLease(byInode_.find(InodeKey{st.st_dev, st.st_ino}));
  }
  // Or the oldest lease this owner took by this very name on a file that the name no longer reaches:
  // the oldest, as by a name that still reaches the file, and never the table's (inode hash) order.
  if (!lease) {
    uint64_t oldest = 0;
    byInode_.forEach([&](Entry* e) {
      if (!e->locked()) return;
      for (const Owner& o : e->owners) {
        const bool mine =
            ownerKey(o.owner) == owner && ownerDir(e, o.lease) == dir.get() && ownerName(e, o.lease) == name;
        if (mine && (!lease || o.order < oldest)) {
          lease = o.lease;
          oldest = o.order;
        }
      }
    });
  }
  if (!lease) throw NotHeldError(path);
  releaseLocked(lk, lease, Purpose::Lock);
}

size_t Registry::releaseOwner(const DirPtr& dir, const std::string& owner) {
  Lock lk(mu_);
  std::vector<std::pair<uint64_t, uint64_t>> mine;  // (order, lease)
  byInode_.forEach([&](Entry* e) {
    if (!e->locked()) return;
    for (const Owner& o : e->owners)
      if (ownerKey(o.owner) == owner && ownerDir(e, o.lease) == dir.get()) mine.emplace_back(o.order, o.lease);
  });
  releaseOldestFirst(lk, mine);
  return mine.size();
}

// Leases released together go oldest first, as their holder would most likely have released them,
// and never in the table's (inode hash) order: which release comes first decides what a waiter whose
// name moved finds (the new file handed on, or deleted by an autoCreate release).
void Registry::releaseOldestFirst(Lock& lk, std::vector<std::pair<uint64_t, uint64_t>>& leases) {
  LS_CHECK_HELD(mu_);
  std::sort(leases.begin(), leases.end());
  for (const auto& l : leases) releaseLocked(lk, l.second, Purpose::Lock);
}

size_t Registry::releaseEnv(uint32_t env, std::vector<ReleasedLease>* released) {
  Lock lk(mu_);
  deadEnvs_.insert(env);  // from now on nothing is granted to it
  std::vector<uint64_t> requests;
  std::vector<std::pair<uint64_t, uint64_t>> leases;  // (order, lease)
  byInode_.forEach([&](Entry* e) {
    if (e->hasWaiters())
      for (const Waiter& w : e->waiters())
        if (w.req.env == env) requests.push_back(w.request);
    for (const Owner& o : e->owners) {
      if (o.env != env) continue;
      leases.emplace_back(o.order, o.lease);
      if (released) released->push_back({ownerDir(e, o.lease)->fullPath(ownerName(e, o.lease)), ownerKey(o.owner)});
    }
  });
  // Cancel in the same critical section that marked the env dead: a release in between must never
  // hand the lock over to (or pick the lock mode for) a waiter of a thread that is gone.
  for (uint64_t r : requests) cancelLocked(lk, r);
  releaseOldestFirst(lk, leases);
  return leases.size();
}

// --- create / delete -------------------------------------------------------------------------------

void Registry::create(const DirPtr& dir, const std::string& name) {
  if (!dir) throw ArgError("invalid lockspace handle");
  dir->checkName(name);
  const std::string path = dir->fullPath(name);
  const int err = lockfile::makeFile(path.c_str());  // no fd is opened
  if (err == 0) return;
  if (err == EEXIST) {  // held in this process is the better answer (the name reaches a locked file)
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
      Lock lk(mu_);
      Entry* e = byInode_.find(InodeKey{st.st_dev, st.st_ino});
      if (e && !e->transient() && e->state != State::Idle) {
        NameCheck check;
        if (Entry* same = confirmEntry(lk, e, path, &check)) throw busyHere(same, path);
      }
    }
  }
  throw dir->openError(err, path);
}

void Registry::remove(const DirPtr& dir, const std::string& name, LockKind kind) {
  if (!dir) throw ArgError("invalid lockspace handle");
  dir->checkName(name);
  Request req;
  req.kind = kind;
  Lock lk(mu_);
  AcquireResult res;
  try {
    res = acquireLocked(lk, Attempt{dir, name, req, 0, nullptr, Purpose::Delete});
  } catch (const SysError& err) {
    if (err.err == ENOENT) return;  // absent: nothing to delete
    throw;
  }
  int err = releaseLocked(lk, res.lease, Purpose::Delete);
  if (err == EBUSY) {
    SysError busy(EBUSY, "unlink", dir->fullPath(name), "requested in this process meanwhile");
    busy.busyHere = true;
    throw busy;
  }
  if (err != 0 && err != ENOENT) throw SysError(err, "unlink", dir->fullPath(name));
}

// --- idle descriptors (see idle_list.h) ------------------------------------------------------------

void Registry::makeIdle(Entry* e) {
  setState(e, State::Idle);
  e->serial = ++nextSerial_;  // unlocked: a later lock is another locking period
  e->autoCreate = false;
  e->joins = 0;
  e->writerWaits = false;
  if (e->extra) e->extra->spare.clear();  // unlocked: closing them drops nothing
  idle_.push(e);
  trimIdle();
}

void Registry::dropIdle(Entry* e) {
  idle_.unlink(e);
  eraseEntry(e);  // closes its fd: it is not locked
}

void Registry::trimIdle() {
  while (idle_.overCap()) dropIdle(idle_.oldest());
}

size_t Registry::closeIdleFds() {
  std::lock_guard<TableMutex> lk(mu_);
  size_t n = 0;
  for (; Entry* oldest = idle_.oldest(); ++n) dropIdle(oldest);
  return n;
}

void Registry::setIdleLimit(size_t limit) {
  std::lock_guard<TableMutex> lk(mu_);
  idle_.setLimit(limit);
  trimIdle();
}

}  // namespace lockspace
