// What the table and the file system say, without changing anything: resources, queued, stats, verify
// and inspect (see registry.h for the parts).
#include <errno.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>

#include "lock_file.h"
#include "lock_query.h"
#include "registry.h"

namespace lockspace {

std::vector<ResourceInfo> Registry::resources(const DirPtr& dir) {
  std::lock_guard<TableMutex> lk(mu_);
  std::vector<ResourceInfo> out;
  byInode_.forEach([&](Entry* e) {
    if (!e->locked()) return;
    for (const Owner& o : e->owners) {
      if (ownerDir(e, o.lease) != dir.get()) continue;
      std::string name(ownerName(e, o.lease));
      ResourceInfo info{name, dir->fullPath(name), e->shared, e->autoCreate, {}};
      for (const Owner& each : e->owners) info.owners.push_back(ownerKey(each.owner));
      out.push_back(std::move(info));
      return;
    }
  });
  std::sort(out.begin(), out.end(), [](const ResourceInfo& a, const ResourceInfo& b) { return a.name < b.name; });
  return out;
}

std::vector<QueuedRequest> Registry::queued(const DirPtr& dir) {
  std::lock_guard<TableMutex> lk(mu_);
  std::vector<QueuedRequest> out;
  byInode_.forEach([&](Entry* e) {
    if (!e->hasWaiters()) return;
    for (const Waiter& w : e->extra->waiters) {
      if (w.dir == dir) out.push_back(QueuedRequest{w.request, w.name, w.req.shared, w.req.owner});
    }
  });
  // Request ids grow with each request: their order is the order the requests were made in.
  std::sort(out.begin(), out.end(),
            [](const QueuedRequest& a, const QueuedRequest& b) { return a.request < b.request; });
  return out;
}

Stats Registry::stats() {
  Lock lk(mu_);
  // A writer check in flight (see noteJoin) has /proc/locks open for a moment: wait for it, so that
  // a count of this process's descriptors taken after the stats is exact.
  while (writerChecks_ != 0) waitReleasing(writerChecksDone_, lk);
  Stats s;
  s.resources = byInode_.size() - idle_.size();  // held, waited for, or in transition
  s.leases = leases_.size();
  s.waiters = book_.waiting();  // queued, or starting over on a replaced file
  s.kernelWaits = kernelWaits_;
  s.idleFds = idle_.size();
  byInode_.forEach([&](Entry* e) { s.spareFds += e->extra ? e->extra->spare.size() : 0; });
  return s;
}

// --- lost locks and inspection --------------------------------------------------------------------
// Network file systems can lose a held lock (the client dies, the server restarts, a partition
// outlasts the server's timeout), other hosts can unlink or replace a held file, and on any file
// system code outside lockspace that closes a descriptor of the file drops this process's POSIX lock.
// verify() finds out without changing anything, never by re-locking (that would silently take back
// a lock lost while nobody held it, hiding the window in which another process could have had it):
//   local: ownLock below. If ours is gone: Conflict if another process holds a conflicting lock
//     now, else Dropped.
//   network: F_GETLK on the held fd, asked of the server (a FUSE file system does not keep this
//     process's locks in the kernel); it reports another owner's conflicting lock.
// And a lookup of the name.

namespace {

// This process's pid, which ownLock compares on every join, without a syscall each time (glibc does not
// cache it): read at load, and again in a child that forks without exec.
std::atomic<pid_t> selfPid{::getpid()};
[[maybe_unused]] const int selfPidAtFork = pthread_atfork(nullptr, nullptr, [] { selfPid.store(::getpid()); });

struct OwnLock {
  LeaseCheck check;  // Held, Dropped or Conflict
  bool sure;         // false: could not tell (Held), as on network file systems
};

// Local file systems: whether this process still holds its lock (kind, mode) on byte 0 of fd's file.
OwnLock ownLock(int fd, LockKind kind, lockfile::Mode mode) {
  if (kind == LockKind::Posix) {
    // An OFD query through our own fd has another owner (the open file) than our POSIX lock (the
    // process): it sees our lock as well as everyone else's, and needs no descriptor to be closed.
    struct flock fl {};
    if (lockfile::query(fd, LockKind::Ofd, lockfile::Mode::Exclusive, fl) == 0) {
      if (fl.l_type == F_UNLCK) return {LeaseCheck::Dropped, true};
      const short ours = mode == lockfile::Mode::Shared ? F_RDLCK : F_WRLCK;
      // This process's POSIX lock (an OFD lock shows pid -1): ours, unless it changed type.
      if (fl.l_pid == selfPid.load(std::memory_order_relaxed))
        return {fl.l_type == ours ? LeaseCheck::Held : LeaseCheck::Dropped, true};
      if (fl.l_type == F_WRLCK || mode == lockfile::Mode::Exclusive) return {LeaseCheck::Conflict, true};
      // Another process's shared lock, which ours may or may not be next to: fdinfo tells.
    }
  }
  bool shown = false;
  if (lockfile::shownHeld(fd, kind, mode, shown) != 0) return {LeaseCheck::Held, false};
  return {shown ? LeaseCheck::Held : LeaseCheck::Dropped, true};
}

}  // namespace

// The kernel's side of verify, asked without the mutex: Held, Dropped (ours is gone and nobody holds
// it), Conflict (another owner's conflicting lock: what a server reports, and what took ours) or Error.
Registry::LockNow Registry::kernelLockNow(int fd, LockKind kind, lockfile::Mode mode, bool remote) {
  const OwnLock own = remote ? OwnLock{LeaseCheck::Held, false} : ownLock(fd, kind, mode);
  struct flock fl {};
  fl.l_type = F_UNLCK;
  const bool ask = !own.sure || own.check == LeaseCheck::Dropped;
  if (const int err = ask ? lockfile::query(fd, kind, mode, fl) : 0) return {LeaseCheck::Error, err};
  if (fl.l_type != F_UNLCK) return {LeaseCheck::Conflict, 0};
  return {own.check, 0};
}

// On a network file system the server reports other owners' locks only, so a lock of ours lost while
// nobody took it cannot be seen: there a join takes it again (a non-blocking lock in the same mode,
// which changes nothing while it is there), which hides nothing that could be seen.
Registry::LockNow Registry::lockAgain(int fd, LockKind kind, lockfile::Mode mode) {
  const int err = lockfile::tryLock(fd, kind, mode);
  if (err == 0) return {LeaseCheck::Held, 0};
  return lockfile::isBusy(err) ? LockNow{LeaseCheck::Conflict, 0} : LockNow{LeaseCheck::Error, err};
}

// Before a join adds an owner to a lock this process holds (a shared join, a grant in place): is the
// lock still there? A descriptor of the file closed elsewhere in this process, or a network file
// system's server, may have dropped it, and a joiner would then hold nothing. On a local file system
// it is asked as verify asks, never by locking again, which would hide from the leases held there
// that they were lost (on a network one, see lockAgain). A local OFD lock is not asked: only the
// table's own descriptor holds it. The entry is reserved meanwhile (Granting, the syscalls without
// the mutex) and Held again after. False: gone, or the kernel could not say (now says which).
// A lock taken again may have been lost since the joiner's stat, long enough for another host to
// delete the file: then its name (joinerPath) is looked at again, and Replaced if it moved.
bool Registry::stillLocked(Lock& lk, Entry* e, LockNow& now, const char* joinerPath) {
  LS_CHECK_HELD(mu_);
  LS_CHECK(e->state == State::Held, "a join to an entry not held");
  if (e->kind == LockKind::Ofd && !e->remote) {
    now = {LeaseCheck::Held, 0};
    return true;
  }
  setState(e, State::Granting);
  const int fd = e->fd.get();
  const LockKind kind = e->kind;
  const lockfile::Mode mode = lockfile::modeOf(e->shared);
  const bool remote = e->remote;
  const InodeKey key = e->key;
  lk.unlock();
  now = remote ? lockAgain(fd, kind, mode) : kernelLockNow(fd, kind, mode, false);
  if (remote && now.check == LeaseCheck::Held && joinerPath && !lockfile::namesInode(joinerPath, key))
    now = {LeaseCheck::Replaced, 0};
  lk.lock();
  setState(e, State::Held);
  notifyTransition(key);
  return now.check == LeaseCheck::Held;
}

VerifyResult Registry::verify(uint64_t lease) {
  Lock lk(mu_);
  Entry* e = leases_.find(lease);
  VerifyResult out;
  if (!e || !e->locked()) {
    out.check = LeaseCheck::NotHeld;
    return out;
  }
  // While the lease is held its entry keeps its fd open (fds close only once every lease is gone),
  // so the fd is used outside the mutex and the answer counts only if the lease is still held after.
  const uint32_t serial = e->serial;
  const int fd = e->fd.get();
  const LockKind kind = e->kind;
  const InodeKey key = e->key;
  const Dir* via = ownerDir(e, lease);
  DirPtr dir = via == e->dir ? e->dir->self_ : aliases_.at(lease)->dir;
  const std::string name(ownerName(e, lease));
  const lockfile::Mode mode = lockfile::modeOf(e->shared);  // a reader of a shared lock is no conflict
  const bool remote = e->remote;
  out.path = dir->fullPath(name);
  lk.unlock();

  const LockNow now = kernelLockNow(fd, kind, mode, remote);
  struct stat st {};
  const int statRc = ::lstat(out.path.c_str(), &st);
  const int statErr = statRc == 0 ? 0 : errno;

  lk.lock();
  Entry* again = leases_.find(lease);
  if (again != e || e->serial != serial) {
    out.check = LeaseCheck::NotHeld;
    return out;
  }
  if (now.check == LeaseCheck::Error) {
    out.check = LeaseCheck::Error;
    out.err = now.err;
    out.syscall = "fcntl";
  } else if (now.check != LeaseCheck::Held) {
    out.check = now.check;
  } else if (statErr == ENOENT || statErr == ESTALE) {
    out.check = LeaseCheck::Unlinked;
  } else if (statRc != 0) {
    out.check = LeaseCheck::Error;
    out.err = statErr;
    out.syscall = "stat";
  } else if (st.st_dev != key.dev || st.st_ino != key.ino) {
    out.check = LeaseCheck::Replaced;
  }
  return out;
}

void Registry::fillOwnView(const Entry* e, InspectResult& out) const {
  out.owners.clear();
  out.held = e->locked() && !e->owners.empty();
  out.heldShared = e->shared;
  out.heldKind = e->kind;
  for (const Owner& o : e->owners) out.owners.push_back(ownerKey(o.owner));
  out.waiters = e->extra ? e->extra->waiters.size() : 0;
}

InspectResult Registry::inspect(const DirPtr& dir, const std::string& name) {
  if (!dir) throw ArgError("invalid lockspace handle");
  dir->checkName(name);
  InspectResult out;
  out.path = dir->fullPath(name);
  out.remote = dir->pathMode() ? isRemotePath(out.path) : dir->remote();
  Lock lk(mu_);
  // As in an acquire, the looks again that count are those after the name moved (or went stale);
  // waits for another thread's transition (a hand-off) always end, and do not.
  for (Tries tries;;) {
    if (tries.exhausted()) throw SysError(EAGAIN, "stat", out.path, "the file kept being replaced");
    lk.unlock();
    struct stat st {};
    if (::lstat(out.path.c_str(), &st) != 0) {
      const int err = errno;
      lk.lock();
      if (err == ESTALE) {
        stalePause(lk, tries);
        ++tries.stale;
        continue;
      }
      throw SysError(err, "stat", out.path);
    }
    requireRegular(st.st_mode, out.path);
    const InodeKey key{st.st_dev, st.st_ino};
    out.dev = st.st_dev;
    out.ino = st.st_ino;
    lk.lock();
    out.owners.clear();
    out.held = false;
    out.waiters = 0;
    Entry* e = byInode_.find(key);
    if (e && e->transient()) {
      waitTransition(lk, key);
      continue;
    }
    if (e) fillOwnView(e, out);
    if (!out.remote) {
      // Local: the kernel's answer, from a descriptor table of its own (nothing of ours is dropped and
      // our own locks are seen); the caller reads /proc/locks for the other holders' pids.
      lk.unlock();
      lockquery::Answer a = lockquery::ask({out.path}, lockquery::Records::All)[0];
      lk.lock();
      // The name reaches another file (or none) now: look again; lstat tells what is there.
      const bool moved = a.dev != 0 && !(InodeKey{a.dev, a.ino} == key);
      if (moved || a.err == ENOENT || a.err == ELOOP || a.err == EINVAL) {
        ++tries.stale;
        continue;
      }
      out.queryErr = a.err;
      out.querySyscall = a.syscall;
      out.lockType = a.type;
      out.lockPid = a.pid;
      out.records = std::move(a.records);
      return out;
    }

    // Network file system: ask the server. With an entry, through its fd (this process's own locks
    // do not conflict with themselves there); else through a read-only fd of our own, reserved in
    // the table while open so that no acquire of this inode can start meanwhile: closing it must not
    // drop a lock of this process.
    Entry* reserved = nullptr;
    int fd = -1;
    uint32_t serial = 0;
    if (e) {
      fd = e->fd.get();
      serial = e->serial;
    } else {
      lk.unlock();
      UniqueFd own;
      const int err = lockfile::openForQuery(out.path.c_str(), own);
      struct stat fst {};
      const bool statted = own && ::fstat(own.get(), &fst) == 0;
      const int fstatErr = statted ? 0 : errno;
      const bool remote = statted && onNetworkFs(*dir, fst.st_dev, own.get());
      lk.lock();
      if (!own) {
        if (err != ENOENT && err != ESTALE) throw SysError(err, "open", out.path);
        ++tries.stale;
        continue;
      }
      if (!statted) {
        (void)own.release();  // cannot happen on an fd just opened; never close an fd of an unknown inode
        throw SysError(fstatErr, "fstat", out.path);
      }
      // The file opened may be held by this process by now (acquired meanwhile, or the name replaced
      // by a file held under another name): then our fd must not be closed while that entry may hold
      // a lock; it goes with the entry (spares close with it) and we look again.
      const InodeKey ownKey{fst.st_dev, fst.st_ino};
      if (byInode_.find(ownKey) || !(ownKey == key)) {
        closeOrPark(lk, own, ownKey);
        if (!(ownKey == key)) ++tries.stale;
        continue;
      }
      Request req;
      reserved = insertEntry(dir, name, key, std::move(own), req, remote);
      fd = reserved->fd.get();
    }
    lk.unlock();
    struct flock fl {};
    // POSIX F_GETLK sees every other owner's lock, OFD ones too (their pid shows as -1).
    const int err = lockfile::query(fd, LockKind::Posix, lockfile::Mode::Exclusive, fl);
    if (reserved) reserved->fd.reset();  // still reserved: nothing of this process holds a lock on the inode
    lk.lock();
    if (reserved) {
      eraseEntry(reserved);
      notifyTransition(key);
    } else {
      Entry* now = byInode_.find(key);
      while (now && now->transient()) {  // a hand-off, say: the fd stays open unless it is let go
        waitTransition(lk, key);
        now = byInode_.find(key);
      }
      if (!now || now->serial != serial) continue;  // let go meanwhile: its fd may have been closed
      fillOwnView(now, out);
    }
    if (err != 0) throw SysError(err, "fcntl", out.path);
    out.otherHeld = fl.l_type != F_UNLCK;
    out.otherShared = fl.l_type == F_RDLCK;
    out.otherOfd = fl.l_pid == -1;
    // The holder records, read and checked from the lock query thread (which sees this process's
    // own locks as the server reports them to another owner). Without the mutex: it opens its own fd.
    lk.unlock();
    lockquery::Answer a = lockquery::ask({out.path}, lockquery::Records::All)[0];
    lk.lock();
    if (a.err == 0) {
      out.records = std::move(a.records);
    } else {
      out.records.err = a.err;
      out.records.syscall = a.syscall;
    }
    return out;
  }
}

}  // namespace lockspace
