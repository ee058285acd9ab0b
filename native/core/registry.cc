// The lock table's records and the acquire path (see registry.h for the parts).
#include "registry.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <string_view>
#include <thread>

#include "lock_file.h"
#include "test_point.h"

namespace lockspace {

#ifdef LOCKSPACE_TEST_POINTS
std::atomic<testing::PointFn> testing::pointFn{nullptr};
#endif

namespace {

// Fairness to another process's exclusive waiter: after this many shared joins to one continuous
// kernel lock, a join has /proc/locks read for a blocked writer, at most once per this many ms per
// entry, and never sooner than kWriterCheckSpacing times as long as the last read took after it (a
// read waits milliseconds for an RCU grace period, tens of ms on a busy host).
constexpr uint8_t kJoinsBeforeWriterCheck = 8;
constexpr uint32_t kWriterCheckMs = 50;
constexpr uint32_t kWriterCheckSpacing = 20;

uint32_t coarseMs() noexcept {
  struct timespec ts {};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<uint32_t>(static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000);
}

// On a network file system F_GETLK reports the holder's pid on its own host (or nothing useful), so
// no pid is given there and the holder is not named a process of this host.
const char* otherHolder(bool remote) { return remote ? "held by another host or process" : "held by another process"; }

}  // namespace

// ---------------------------------------------------------------------------------------------------
// The registry and its directories
// ---------------------------------------------------------------------------------------------------

Registry& Registry::instance() {
  // Never destroyed: no static destructor may race a thread that is still using the table at exit.
  static Registry* registry = new Registry();
  return *registry;
}

Registry::Registry() = default;

Registry::~Registry() {
  {
    Lock lk(mu_);
    while (writerChecks_ != 0) waitReleasing(writerChecksDone_, lk);
  }
  std::vector<Entry*> all;
  byInode_.forEach([&](Entry* e) { all.push_back(e); });
  for (Entry* e : all) eraseEntry(e);  // its fds close: nothing of this table is held any more
}

DirPtr Registry::pathModeDir() { return dirs_.pathMode(); }
DirPtr Registry::openDir(const std::string& dir) { return dirs_.open(dir); }
bool Registry::isRemotePath(const std::string& path) { return networkFs_.ofParent(path); }
void Registry::setForceRemote(bool on) noexcept { NetworkFs::setForced(on); }
bool Registry::forceRemote() noexcept { return NetworkFs::forced(); }

// ---------------------------------------------------------------------------------------------------
// Table records
// ---------------------------------------------------------------------------------------------------

SysError Registry::busyHere(const Entry* e, const std::string& path) const {
  SysError err(EBUSY, "fcntl", path, e->shared ? "held shared in this process" : "held exclusively in this process");
  err.busyHere = true;
  return err;
}

// Threads that meet an entry in transition wait on the stripe of its inode, so a busy table does not
// wake every waiter at every transition.
Registry::Stripe& Registry::stripe(const InodeKey& key) { return stripes_[InodeHash()(key) % kStripes]; }

void Registry::waitTransition(Lock& lk, const InodeKey& key) {
  LS_CHECK_HELD(mu_);
  Stripe& st = stripe(key);
  ++st.waiters;
  waitReleasing(st.cv, lk);
  --st.waiters;
}

// ESTALE: the client's cached name of a file that another host deleted or replaced. A fresh lookup
// finds the current file; the pause (see Tries) gives the client's cache a moment to let it go.
void Registry::stalePause(Lock& lk, const Tries& tries) {
  LS_CHECK_HELD(mu_);
  lk.unlock();
  lockfile::staleNamePause(tries.stale);
  lk.lock();
}

void Registry::setState(Entry* e, State to) {
  LS_CHECK(mu_.heldByThisThread(), "an entry's state changed without the table mutex");
  LS_CHECK(transitionAllowed(e->state, to), "an entry's state changed in a way entry.h does not allow");
  e->state = to;
}

void Registry::notifyTransition(const InodeKey& key) {
  Stripe& st = stripe(key);
  if (st.waiters > 0) st.cv.notify_all();
}

// Whether fd's file is on a network file system: a statfs the first time its device is seen, so it is
// asked before the mutex is taken for insertEntry. Out of memory: taken for one (the careful answer).
bool Registry::onNetworkFs(const Dir& dir, dev_t dev, int fd) noexcept {
  try {
    return dir.remote() || networkFs_.ofDevice(dev, fd);
  } catch (...) {
    return true;
  }
}

Entry* Registry::insertEntry(const DirPtr& dir, const std::string& name, InodeKey key, UniqueFd fd, const Request& req,
                             bool remote) {
  Entry* e = Entry::make(*dir, name);
  e->serial = ++nextSerial_;
  e->key = key;
  e->fd = std::move(fd);
  e->kind = req.kind;
  e->shared = req.shared;
  e->autoCreate = false;  // set by the grant (addOwner): a reserving request may never be granted
  try {
    e->remote = remote;
    byInode_.insert(e);
    e->named = dir->byName_.insert(e) == e;
  } catch (...) {
    byInode_.erase(e);
    fd = std::move(e->fd);  // the caller's fd again: it decides whether closing it is safe
    Entry::destroy(e);
    throw;
  }
  e->dir = dir.get();
  if (dir->entries_++ == 0) dir->self_ = dir;
  return e;
}

void Registry::eraseEntry(Entry* e) {
  Dir* dir = e->dir;
  dir->byName_.erase(e);
  byInode_.erase(e);
  for (const Owner& o : e->owners) {  // normally none left
    leases_.drop(o.lease);
    owners_.unref(o.owner);
  }
  Entry::destroy(e);  // closes fd and spares: callers make sure no lock is held through them any more
  if (--dir->entries_ == 0) dir->self_.reset();  // may destroy the Dir: nothing of it is used after
}

// Whether two absolute paths name one directory entry by their text alone: equal once repeated '/'
// and '.' components are dropped ('..' is left alone: it depends on symlinks).
static bool sameLexicalPath(std::string_view a, std::string_view b) {
  auto next = [](std::string_view& p) {  // the next component, skipping empty and '.' ones
    for (;;) {
      while (!p.empty() && p.front() == '/') p.remove_prefix(1);
      const size_t end = std::min(p.find('/'), p.size());
      const std::string_view part = p.substr(0, end);
      p.remove_prefix(end);
      if (part != ".") return part;
    }
  };
  for (;;) {
    const std::string_view x = next(a), y = next(b);
    if (x != y) return false;
    if (x.empty()) return true;
  }
}

uint64_t Registry::addOwner(Entry* e, const DirPtr& via, const std::string& name, const Request& req) {
  uint32_t owner = owners_.intern(req.owner);
  uint64_t lease = 0;
  const bool alias = via.get() != e->dir || name != e->name();
  try {
    lease = leases_.add(e);
    if (alias) aliases_.emplace(lease, new Alias{via, name});
    e->owners.push_back(Owner{lease, owner, req.env, ++grantOrder_});
  } catch (...) {
    if (lease) {
      aliases_.erase(lease);
      leases_.drop(lease);
    }
    owners_.unref(owner);
    throw;
  }
  // The last release deletes the file by the entry's name: only for an owner that asked for autoCreate
  // through that name. One that came through another name (a hard link) reached a file that was there:
  // it created nothing, and must not delete a name it never used.
  if (req.autoCreate && (!alias || sameLexicalPath(via->fullPath(name), e->path()))) e->autoCreate = true;
  return lease;
}

void Registry::removeOwner(Entry* e, uint64_t lease) {
  for (Owner* o = e->owners.begin(); o != e->owners.end(); ++o) {
    if (o->lease != lease) continue;
    uint32_t owner = o->owner;
    e->owners.erase(o);
    leases_.drop(lease);
    owners_.unref(owner);
    if (!aliases_.empty()) aliases_.erase(lease);
    return;
  }
}

const Dir* Registry::ownerDir(const Entry* e, uint64_t lease) const {
  if (aliases_.empty()) return e->dir;
  auto it = aliases_.find(lease);
  return it == aliases_.end() ? e->dir : it->second->dir.get();
}

std::string_view Registry::ownerName(const Entry* e, uint64_t lease) const {
  if (aliases_.empty()) return e->name();
  auto it = aliases_.find(lease);
  return it == aliases_.end() ? e->name() : std::string_view(it->second->name);
}

void Registry::queueWaiter(Entry* e, Waiter&& w) {
  const uint64_t request = w.request;
  WaitQueue::Handle at = e->waiters().push(std::move(w));
  try {
    book_.queue(request, e, at);
  } catch (...) {
    e->waiters().erase(at);
    throw;
  }
}

// An inode number names a file only while the file exists: one found by stat(path) may have been freed
// and reused (ext4 reuses them at once) by a file this table holds under another name before the lookup
// in byInode_. An entry that stays in the table keeps its fd open, which pins its inode; so if the entry
// with this serial is in the table both before and after a stat of the path, and that stat gives its
// inode, the path named that very file while the entry was there, and its lock was not let go
// meanwhile (for "locked throughout", confirmEntry also compares Entry::takenAgain). Called with the
// mutex held; drops it for the stat.
Registry::NameCheck Registry::checkName(Lock& lk, const char* path, const InodeKey& key, uint32_t serial) {
  LS_CHECK_HELD(mu_);
  lk.unlock();
  const bool reaches = lockfile::namesInode(path, key);
  LS_TEST_POINT("name.checked", path);
  lk.lock();
  const Entry* again = byInode_.find(key);
  if (!again || again->serial != serial) return NameCheck::EntryChanged;
  return reaches ? NameCheck::Reaches : NameCheck::Moved;
}

// A table entry found for the name (by name, or by the inode a stat of it gave): before it is joined,
// waited for or reported busy, a stat must show that the name still reaches its file. Returns the entry
// to use, or nullptr to look again (something changed; *check says what: Moved, the name reaches
// another file now).
Entry* Registry::confirmEntry(Lock& lk, Entry* e, const std::string& path, NameCheck* check) {
  LS_CHECK_HELD(mu_);
  const bool wasHeld = e->state == State::Held;
  const InodeKey key = e->key;
  const uint32_t serial = e->serial;
  const uint32_t takenAgain = e->takenAgain;
  *check = checkName(lk, path.c_str(), key, serial);  // path: not e's memory (e may go)
  if (*check != NameCheck::Reaches) return nullptr;
  e = byInode_.find(key);
  // A join needs the name checked while the lock was held throughout: one that became Held meanwhile,
  // or whose lock a hand-off took again (it may have been lost), is looked at again.
  if (e->transient() || e->state == State::Idle || (e->state == State::Held && !wasHeld)) return nullptr;
  if (e->state == State::Held && e->takenAgain != takenAgain) {
    *check = NameCheck::EntryChanged;
    return nullptr;
  }
  return e;
}

// Its name reaches another file now (renamed over, unlinked, its directory replaced): the entry stays
// for its owners and waiters, but a new acquire of the name must find the file the name reaches.
void Registry::detachName(Entry* e) {
  if (!e->named) return;
  e->dir->byName_.erase(e);
  e->named = false;
}

// Closing any fd of an inode drops every POSIX lock this process holds on it: an fd of an inode this
// table has an entry for goes with that entry (spares close with it, never before).
void Registry::park(Entry* holder, UniqueFd& fd) {
  try {
    std::vector<UniqueFd>& spare = holder->ext().spare;
    if (spare.size() == spare.capacity()) spare.reserve(spare.size() * 2 + 1);
  } catch (...) {
    (void)fd.release();  // out of memory: leak it rather than close it and drop the entry's lock
    throw;
  }
  holder->ext().spare.push_back(std::move(fd));  // closed when that entry is
}

// An fd of key's inode goes with its entry, if there is one, else it is closed.
void Registry::closeOrPark(Lock& lk, UniqueFd& fd, const InodeKey& key) {
  LS_CHECK_HELD(mu_);
  Entry* holder = byInode_.find(key);
  while (holder && holder->transient()) {
    waitTransition(lk, key);  // keeps fd open until the other thread is done with the inode
    holder = byInode_.find(key);
  }
  if (holder)
    park(holder, fd);
  else
    fd.reset();
}

// ---------------------------------------------------------------------------------------------------
// Acquire
// ---------------------------------------------------------------------------------------------------

AcquireResult Registry::acquire(const DirPtr& dir, const std::string& name, const Request& req, uint64_t request,
                                SinkPtr sink) {
  if (!dir) throw ArgError("invalid lockspace handle");
  dir->checkName(name);
  Lock lk(mu_);
  const Attempt a{dir, name, req, request, sink, Purpose::Lock};
  AcquireResult res = acquireLocked(lk, a);
  checkWriter(a);
  return res;
}

// A shared request joined a shared kernel lock (e, Held). Overlapping shared leases keep this
// process's one read lock for as long as they overlap, and the kernel queues nobody across processes:
// an exclusive waiter in another process would wait until they all end. So a lock joined often is
// looked at (rate-limited, on a thread of its own: checkWriter): once /proc/locks shows another process blocked for an
// exclusive lock of it, new shared requests queue instead of joining (or get EBUSY without wait), and the last release
// lets the lock go before the queue takes it again (handOff), so that the writer gets its turn.
void Registry::noteJoin(Entry* e, const Attempt& a) {
  if (e->remote) return;  // network file systems: no /proc/locks to ask
  if (e->joins < kJoinsBeforeWriterCheck && ++e->joins < kJoinsBeforeWriterCheck) return;
  const uint32_t now = coarseMs();
  if (e->writerCheckAt != 0 && static_cast<int32_t>(now - e->writerCheckAt) < 0) return;
  e->writerCheckAt = (now + kWriterCheckMs) | 1;  // (never 0) until this check says how long it took
  a.writerCheck = e->key;
  a.writerCheckSerial = e->serial;
}

// The check noteJoin asked for, on a thread of its own (mutex held): reading /proc/locks takes the
// kernel's file-lock rwsem for writing, which waits for an RCU grace period (milliseconds), and no
// acquire should wait for that. If no thread can be had, the check comes again later.
void Registry::checkWriter(const Attempt& a) {
  if (a.writerCheckSerial == 0) return;
  ++writerChecks_;
  // The thread blocks every signal (a handler of the process must not run on it): it is created so.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  try {
    std::thread([this, key = a.writerCheck, serial = a.writerCheckSerial] {
      pthread_setname_np(pthread_self(), "lockspace-check");
      writerCheck(key, serial);
    }).detach();
  } catch (...) {
    --writerChecks_;
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

void Registry::writerCheck(InodeKey key, uint32_t serial) noexcept {
  const uint32_t began = coarseMs();
  const bool waits = lockfile::writerBlocked(key);
  const uint32_t ended = coarseMs();
  Lock lk(mu_);
  Entry* e = byInode_.find(key);
  if (e && e->serial == serial && e->state == State::Held && e->shared) {
    e->writerCheckAt = (ended + std::max(kWriterCheckMs, (ended - began) * kWriterCheckSpacing)) | 1;
    const bool was = e->writerWaits;
    e->writerWaits = waits;
    // The writer gave up (or got its turn elsewhere): shared requests queued meanwhile join now.
    try {
      if (was && !waits && e->hasWaiters() && e->waiters().front().req.shared) grantInPlace(lk, e);
    } catch (...) {  // out of memory: they join at the next release
    }
  }
  if (--writerChecks_ == 0) writerChecksDone_.notify_all();
}

// Called right after a stat showed that the name reaches e's file (and, for a join, while e was Held).
// Retry: the lock was taken again and the name reaches another file now (see stillLocked).
Registry::Next Registry::joinOrQueue(Lock& lk, Entry* e, const Attempt& a, AcquireResult& res) {
  LS_CHECK_HELD(mu_);
  const auto admitsNow = [&] {
    return e->state == State::Held && WaitQueue::admitsJoin(e->shared, a.req.shared, e->hasWaiters());
  };
  bool admits = admitsNow();
  LockNow now{LeaseCheck::Held, 0};
  if (admits && !e->writerWaits) {
    const std::string joiner = e->remote ? a.dir->fullPath(a.name) : std::string();
    const bool locked = stillLocked(lk, e, now, e->remote ? joiner.c_str() : nullptr);
    if (now.check == LeaseCheck::Replaced) return Next::Retry;
    admits = admitsNow();  // the queue may have changed while the mutex was let go
    if (locked && admits && !e->writerWaits) {
      res = {addOwner(e, a.dir, a.name, a.req), false};
      noteJoin(e, a);
      return Next::Answered;
    }
  }
  // A lock of this process found gone (or the kernel could not say): its leases are lost, and no one
  // joins them. The request queues (the hand-off after their release takes the lock again) or is
  // refused, as against an exclusive holder here, or another process's.
  const bool lost = now.check != LeaseCheck::Held;
  if (admits && !lost) noteJoin(e, a);  // another process's writer waits: is it still there?
  if (a.sink) {
    queueWaiter(e, Waiter{a.request, a.req, a.dir, a.name, a.sink});
    res = {0, true};
    return Next::Answered;
  }
  std::string path = a.dir->fullPath(a.name);
  if (now.check == LeaseCheck::Error) throw SysError(now.err, "fcntl", path);
  if (e->state == State::KernelWait || now.check == LeaseCheck::Conflict) {
    SysError err(EBUSY, "fcntl", path, otherHolder(e->remote));
    err.holderPid = e->remote ? 0 : holderPidOf(lk, e, lockfile::modeOf(a.req.shared));
    throw err;
  }
  if (lost) {
    SysError err(EBUSY, "fcntl", path,
                 "held in this process, whose lock on it is gone (a descriptor of the file closed outside lockspace?): "
                 "its leases are lost");
    err.busyHere = true;
    throw err;
  }
  if (admits) {
    SysError err(EBUSY, "fcntl", path, "held shared in this process; another process waits to lock it exclusively");
    err.busyHere = true;
    throw err;
  }
  throw busyHere(e, path);
}

// The other process a kernel wait waits for, asked through the entry's fd without the mutex: the fd
// stays open meanwhile (e is not closed nor erased while it has askers: waitForAskers).
int Registry::holderPidOf(Lock& lk, Entry* e, lockfile::Mode mode) {
  LS_CHECK_HELD(mu_);
  Extra& x = e->ext();
  const InodeKey key = e->key;
  const int fd = e->fd.get();
  const LockKind kind = e->kind;
  ++x.askers;
  lk.unlock();
  const int pid = lockfile::holderPid(fd, kind, mode);
  lk.lock();
  if (--x.askers == 0) notifyTransition(key);
  return pid;
}

// Before an entry's fd closes (Closing, or a kernel wait that could not start).
void Registry::waitForAskers(Lock& lk, Entry* e) {
  LS_CHECK_HELD(mu_);
  while (e->extra && e->extra->askers > 0) waitTransition(lk, e->key);
}

// What an acquire (or inspect) reports for a name that is not a regular file.
void Registry::requireRegular(mode_t mode, const std::string& path) {
  const char* why = "";
  if (const int err = lockfile::checkRegular(mode, &why)) throw SysError(err, "open", path, why);
}

// 1. known, 2. opened by name, 3. reserved, 4. locked (each step may send it round again).
AcquireResult Registry::acquireLocked(Lock& lk, const Attempt& a) {
  LS_CHECK_HELD(mu_);
  // Whatever happens, the caller gets the mutex back locked (some callers go on after an error).
  struct Relock {
    Lock& lk;
    ~Relock() {
      if (!lk.owns_lock()) lk.lock();
    }
  } relock{lk};
  for (Tries tries;;) {
    if (tries.exhausted())
      throw SysError(EAGAIN, "open", a.dir->fullPath(a.name), "the file kept being replaced while locking it");
    Entry* e = nullptr;
    AcquireResult res;
    Entry* known = a.dir->byName_.find(a.name);
    const Next next = known ? useKnown(lk, a, known, tries, e, res) : openByName(lk, a, tries, e, res);
    if (next == Next::Retry) continue;
    if (next == Next::Answered || lockReserved(lk, a, e, tries, res) == Next::Answered) return res;
  }
}

// 1. Known under this very name: held, waited for, or idle with its fd still open.
Registry::Next Registry::useKnown(Lock& lk, const Attempt& a, Entry* e, Tries& tries, Entry*& reserved,
                                  AcquireResult& res) {
  LS_CHECK_HELD(mu_);
  if (e->transient()) {
    waitTransition(lk, e->key);
    return Next::Retry;
  }
  if (e->state != State::Idle) {
    NameCheck check;
    Entry* same = confirmEntry(lk, e, e->path(), &check);  // a copy: e may be freed meanwhile
    if (!same) {
      if (check == NameCheck::Moved) {
        detachName(e);  // moved implies e is still the same entry (same serial)
        ++tries.stale;
      }
      return Next::Retry;
    }
    const Next next = joinOrQueue(lk, same, a, res);
    if (next == Next::Retry) ++tries.stale;  // the name moved
    return next;
  }
  idle_.unlink(e);
  setState(e, State::Opening);
  e->shared = a.req.shared;
  e->autoCreate = false;  // set by the grant (addOwner)
  e->kind = a.req.kind;
  reserved = e;
  return Next::Reserved;
}

// What a name is now, learned outside the mutex: created (fd), there (st), or an error (err).
struct Registry::NameNow {
  UniqueFd fd;
  struct stat st {};
  bool exists = false;
  int err = 0;
};

// With create, first try to create it (one syscall where it is absent): O_EXCL opens nothing that
// exists, so no FIFO, device or symlink is ever opened; whatever is in the way takes the stat path.
void Registry::lookUpName(const char* path, bool create, NameNow& now) {
  if (create) {
    now.err = lockfile::createNew(path, now.fd);
  }
  if (now.fd || (create && now.err != EEXIST)) return;
  now.exists = ::lstat(path, &now.st) == 0;
  if (now.exists) return;
  now.err = errno;
  if (now.err == ENOENT && create) {  // gone again since the create found it
    now.err = lockfile::openOrCreate(path, now.fd);
  }
}

// 2. Not known by name: stat it, and look the inode up before opening anything; then open it, and 3.
//    reserve it in the table.
Registry::Next Registry::openByName(Lock& lk, const Attempt& a, Tries& tries, Entry*& reserved, AcquireResult& res) {
  LS_CHECK_HELD(mu_);
  const std::string path = a.dir->fullPath(a.name);
  lk.unlock();
  NameNow now;
  lookUpName(path.c_str(), a.req.autoCreate && a.purpose != Purpose::Delete, now);
  if (now.exists) {
    requireRegular(now.st.st_mode, path);
    LS_TEST_POINT("acquire.statted", a.name.c_str());
    lk.lock();
    if (Entry* other = byInode_.find(InodeKey{now.st.st_dev, now.st.st_ino}))
      return meetEntry(lk, a, other, path, tries, res);
    lk.unlock();
    now.err = lockfile::open(path.c_str(), now.fd);
  }
  if (!now.fd) return openFailed(lk, a, tries, now, path);
  return reserveOpened(lk, a, tries, now, path, reserved);
}

// The name's inode is in the table (under another name, or the stat saw a file since deleted whose
// inode number the held one reuses): only a confirmed match may join (or be refused as busy).
Registry::Next Registry::meetEntry(Lock& lk, const Attempt& a, Entry* other, const std::string& path, Tries& tries,
                                   AcquireResult& res) {
  LS_CHECK_HELD(mu_);
  if (other->transient()) {
    waitTransition(lk, other->key);
    return Next::Retry;
  }
  if (other->state == State::Idle) {
    dropIdle(other);  // idle under another name: close it and open this name afresh
    return Next::Retry;
  }
  NameCheck check;
  Entry* same = confirmEntry(lk, other, path, &check);
  Next next = same ? joinOrQueue(lk, same, a, res) : Next::Retry;
  if (next == Next::Retry && (same || check == NameCheck::Moved)) ++tries.stale;  // the name moved
  return next;
}

// The open failed (mutex not held): look again if the file vanished meanwhile; out of descriptors,
// give the idle ones back once; else it is the caller's error.
Registry::Next Registry::openFailed(Lock& lk, const Attempt& a, Tries& tries, const NameNow& now,
                                    const std::string& path) {
  lk.lock();
  if ((now.err == ENOENT && now.exists) || now.err == ESTALE) {  // vanished between stat and open
    if (now.err == ESTALE) stalePause(lk, tries);
    ++tries.stale;
    return Next::Retry;
  }
  if ((now.err == EMFILE || now.err == ENFILE) && !tries.droppedIdleFds && idle_.size() > 0) {
    while (Entry* oldest = idle_.oldest()) dropIdle(oldest);
    tries.droppedIdleFds = true;
    return Next::Retry;
  }
  throw a.dir->openError(now.err, path);
}

// An fd of the name (mutex not held): a regular file not in the table meanwhile is reserved.
Registry::Next Registry::reserveOpened(Lock& lk, const Attempt& a, Tries& tries, NameNow& now, const std::string& path,
                                       Entry*& reserved) {
  UniqueFd& fd = now.fd;
  struct stat fst {};
  if (::fstat(fd.get(), &fst) != 0) {
    const int err = errno;
    lk.lock();
    if ((err == ESTALE || err == ENOENT) && now.exists) {
      // Network file systems: the file went away on the server under a cached name. The fd reaches
      // the inode the name showed; park it with that inode's entry, if held, and look again.
      closeOrPark(lk, fd, InodeKey{now.st.st_dev, now.st.st_ino});
      stalePause(lk, tries);
      ++tries.stale;
      return Next::Retry;
    }
    throw SysError(err, "fstat", path);  // cannot happen on an fd we just opened
  }
  if (!S_ISREG(fst.st_mode)) {
    fd.reset();  // a non-regular file is never in the table: closing drops nothing
    requireRegular(fst.st_mode, path);
  }
  const InodeKey key{fst.st_dev, fst.st_ino};
  const bool remote = onNetworkFs(*a.dir, key.dev, fd.get());
  lk.lock();
  // Reached through another name (hard link, other path to the directory) meanwhile? Then this fd
  // must not be closed while that entry may hold a lock on the inode: it joins that entry's spares,
  // and the next round finds the entry by the inode a stat gives, and checks it.
  for (Entry* other = byInode_.find(key); other; other = byInode_.find(key)) {
    if (other->transient()) {
      waitTransition(lk, key);  // keep the fd until the other thread is done with the inode
      continue;
    }
    if (other->state == State::Idle) {
      dropIdle(other);  // not locked: its fd can go, ours takes its place
      break;
    }
    park(other, fd);
    return Next::Retry;
  }
  if (a.dir->byName_.find(a.name)) {  // taken under this name meanwhile
    fd.reset();                       // nobody in this process holds this inode now: closing drops nothing
    return Next::Retry;
  }
  // 3. Reserve the inode in the table.
  reserved = insertEntry(a.dir, a.name, key, std::move(fd), a.req, remote);
  return Next::Reserved;
}

// 4. Lock it outside the mutex; the reservation keeps every other thread of this process away. Then
//    the path must still name the inode locked: it may have been unlinked or replaced since it was
//    opened (or since it went idle), e.g. by an autoCreate release in another process.
Registry::Next Registry::lockReserved(Lock& lk, const Attempt& a, Entry* e, Tries& tries, AcquireResult& res) {
  LS_CHECK_HELD(mu_);
  const InodeKey key = e->key;
  const lockfile::Mode mode = lockfile::modeOf(a.req.shared);
  lk.unlock();
  if (const int err = lockfile::tryLock(e->fd.get(), a.req.kind, mode)) {
    const bool busy = lockfile::isBusy(err);
    const bool remote = e->remote;  // e may be gone below
    const int pid = busy && !remote ? lockfile::holderPid(e->fd.get(), a.req.kind, mode) : 0;
    // Network file systems keep no idle fds: one that will not wait is erased below. Still reserved,
    // no other thread of this process holds the inode: closing it here drops nothing.
    if (remote && !(busy && a.sink)) e->fd.reset();
    lk.lock();
    if (busy && a.sink) {
      // Wait for the other process in a dedicated thread, not in the caller nor in libuv's pool.
      setState(e, State::KernelWait);
      queueWaiter(e, Waiter{a.request, a.req, a.dir, a.name, a.sink});
      startKernelWait(lk, e);
      notifyTransition(key);
      res = {0, true};
      return Next::Answered;
    }
    if (busy && cacheable(e))
      makeIdle(e);
    else
      eraseEntry(e);  // the process holds no lock on this inode: closing drops nothing
    notifyTransition(key);
    if (err == ESTALE || err == ENOENT) {  // the file went away on the server (a cached name): look again
      stalePause(lk, tries);
      ++tries.stale;
      return Next::Retry;
    }
    const std::string path = a.dir->fullPath(a.name);
    if (!busy) throw SysError(err, "fcntl", path);
    SysError other(EBUSY, "fcntl", path, otherHolder(remote));
    other.holderPid = pid;
    throw other;
  }
  if (!lockfile::namesInode(e->cpath(), e->key)) {
    e->fd.reset();  // still reserved: no one else in this process holds this inode
    lk.lock();
    eraseEntry(e);
    notifyTransition(key);
    ++tries.stale;
    return Next::Retry;
  }
  lk.lock();
  try {
    res = {addOwner(e, a.dir, a.name, a.req), false};
  } catch (...) {
    e->fd.reset();  // still reserved: no one else in this process holds this inode
    eraseEntry(e);
    notifyTransition(key);
    throw;
  }
  if (a.purpose == Purpose::Delete) e->autoCreate = true;
  setState(e, State::Held);
  notifyTransition(key);
  return Next::Answered;
}

}  // namespace lockspace
