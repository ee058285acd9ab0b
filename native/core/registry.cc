#include "registry.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <unordered_set>

#include "kernel_wait.h"
#include "test_point.h"
#include "wait_queue.h"

namespace lockspace {

#ifdef LOCKSPACE_TEST_POINTS
std::atomic<testing::PointFn> testing::pointFn{nullptr};
#endif

// ---------------------------------------------------------------------------------------------------
// Table records
// ---------------------------------------------------------------------------------------------------

enum class State : uint8_t {
  Opening,     // reserved by a thread that is opening/locking it (outside the mutex)
  Held,        // locked, with at least one owner
  Granting,    // locked: a thread checks the names of the requests it is about to grant (outside the mutex)
  KernelWait,  // not held: a kernel-wait thread blocks in F_SETLKW on behalf of the queued requests
  Closing,     // last owner gone: being unlocked/unlinked/closed (outside the mutex)
  Idle,        // not locked, fd kept open for a fast re-acquire (bounded LRU, local file systems)
};

// Where an owner reached the entry, when that differs from the entry's own dir/name (hard link,
// symlinked directory, path-mode name of a directory resource).
struct Alias {
  DirPtr dir;
  std::string name;
};

struct Owner {
  uint64_t lease;
  uint32_t owner;  // interned owner key
  uint32_t env;
  uint64_t order;  // when it was granted: a thread's end releases its leases oldest first
};

struct Waiter {
  uint64_t request;
  Request req;
  DirPtr dir;
  std::string name;
  SinkPtr sink;
};

// What few entries need: allocated on first use.
struct Extra {
  std::vector<UniqueFd> spare;  // other fds of this inode: closing them while locked would drop the lock
  std::deque<Waiter> waiters;   // queued requests, FIFO
  pthread_t thread{};           // the kernel-wait thread while KernelWait
  bool blocking = false;        // that thread is between unlocking to block and locking again
};

// One resource. Allocated with its full path right behind it (see make), the name being the path's
// last nameLen characters: with a short directory and a 64-character name an entry is one ~200-byte
// allocation, and the fast paths stat the path without building a string.
struct Entry {
  InodeKey key;
  UniqueFd fd;
  State state = State::Opening;
  bool shared = false;      // kernel lock mode while Held
  bool autoCreate = false;  // delete the file at the last release
  bool remote = false;
  bool named = true;  // in its Dir's name index; false once its name was found to reach another file
  LockKind kind = LockKind::Posix;
  uint16_t nameLen = 0;
  uint16_t pathLen = 0;
  // Unique per insertion, and renewed whenever the entry lets its kernel lock go while staying in the
  // table (idle, or unlocked to wait in another mode). The same serial before and after an unlocked
  // window means the same file (the open fd pins its inode number), locked throughout if it was then.
  uint32_t serial = 0;
  Dir* dir = nullptr;        // kept alive by Dir::self_ while it has entries
  Entry* lruPrev = nullptr;  // idle list links while Idle
  Entry* lruNext = nullptr;
  std::unique_ptr<Extra> extra;
  SmallVec<Owner, 1> owners;

  static Entry* make(const Dir& dir, std::string_view name) {
    const std::string path = dir.fullPath(name);
    if (path.size() > UINT16_MAX) throw SysError(ENAMETOOLONG, "open", path);
    void* mem = ::operator new(sizeof(Entry) + path.size() + 1);
    Entry* e = new (mem) Entry();
    char* chars = reinterpret_cast<char*>(e + 1);
    std::memcpy(chars, path.data(), path.size());
    chars[path.size()] = '\0';
    e->pathLen = static_cast<uint16_t>(path.size());
    e->nameLen = static_cast<uint16_t>(name.size());
    return e;
  }
  static void destroy(Entry* e) noexcept {
    e->~Entry();  // closes fd and spares
    ::operator delete(e);
  }
  const char* cpath() const noexcept { return reinterpret_cast<const char*>(this + 1); }
  std::string path() const { return std::string(cpath(), pathLen); }
  const char* cname() const noexcept { return cpath() + (pathLen - nameLen); }
  std::string_view name() const noexcept { return {cname(), nameLen}; }
  Extra& ext() {
    if (!extra) extra.reset(new Extra());
    return *extra;
  }
  bool hasWaiters() const noexcept { return extra && !extra->waiters.empty(); }
  std::deque<Waiter>& waiters() { return ext().waiters; }
  bool transient() const noexcept {
    return state == State::Opening || state == State::Closing || state == State::Granting;
  }
  bool locked() const noexcept { return state == State::Held || state == State::Granting; }
};

InodeKey InodeTraits::key(const Entry* e) noexcept { return e->key; }
std::string_view NameTraits::key(const Entry* e) noexcept { return e->name(); }

// ---------------------------------------------------------------------------------------------------
// Syscall helpers
// ---------------------------------------------------------------------------------------------------
namespace {

int setLock(int fd, LockKind kind, short type, bool wait) {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 1;
  int cmd = kind == LockKind::Ofd ? (wait ? F_OFD_SETLKW : F_OFD_SETLK) : (wait ? F_SETLKW : F_SETLK);
  return ::fcntl(fd, cmd, &fl);
}

// The pid of another process holding a conflicting POSIX lock, or 0 (none, or an OFD lock: -1 there).
int holderPid(int fd, LockKind kind, bool shared) {
  struct flock fl {};
  fl.l_type = shared ? F_RDLCK : F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 1;
  if (::fcntl(fd, kind == LockKind::Ofd ? F_OFD_GETLK : F_GETLK, &fl) != 0) return 0;
  return fl.l_type == F_UNLCK || fl.l_pid <= 0 ? 0 : fl.l_pid;
}

bool isBusyErrno(int err) { return err == EAGAIN || err == EACCES; }

// On a network file system F_GETLK reports the holder's pid on its own host (or nothing useful), so
// no pid is given there and the holder is not named a process of this host.
const char* otherHolder(bool remote) { return remote ? "held by another host or process" : "held by another process"; }

// ESTALE: the client's cached name of a file that another host deleted or replaced. A fresh lookup
// finds the current file; give the client's cache a moment to let go (bounded by kMaxAttempts).
void staleNamePause(int attempt) {
  struct timespec pause {
    0, std::min(1L << std::min(attempt, 5), 32L) * 1'000'000L
  };
  ::nanosleep(&pause, nullptr);
}

void checkRegular(mode_t mode, const std::string& path) {
  if (S_ISREG(mode)) return;
  if (S_ISLNK(mode)) throw SysError(ELOOP, "open", path, "resource path is a symbolic link");
  if (S_ISDIR(mode)) throw SysError(EISDIR, "open", path, "resource path is a directory");
  const char* what = S_ISFIFO(mode) ? "a FIFO" : S_ISSOCK(mode) ? "a socket" : "a device";
  throw SysError(EINVAL, "open", path, std::string("resource path is ") + what + ", not a regular file");
}

bool isRemoteFs(long type) {
  switch (static_cast<unsigned long>(type)) {
    case 0x6969UL:      // NFS
    case 0x517BUL:      // SMB
    case 0xFF534D42UL:  // CIFS
    case 0xFE534D42UL:  // SMB2
    case 0x65735546UL:  // FUSE
    case 0x00C36400UL:  // Ceph
    case 0x01021997UL:  // 9p
    case 0x5346414FUL:  // AFS
    case 0x73757245UL:  // Coda
    case 0x01161970UL:  // GFS2
    case 0x7461636FUL:  // OCFS2
    case 0x0BD00BD0UL:  // Lustre
      return true;
    default:
      return false;
  }
}

constexpr int kOpenFlags = O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY;
constexpr int kMaxAttempts = 64;

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Dir
// ---------------------------------------------------------------------------------------------------

Dir::~Dir() = default;

namespace {
std::atomic<bool> forcedRemote{false};
}

bool Dir::remote() const noexcept { return remote_ || forcedRemote.load(std::memory_order_relaxed); }
void Registry::setForceRemote(bool on) noexcept { forcedRemote = on; }
bool Registry::forceRemote() noexcept { return forcedRemote.load(std::memory_order_relaxed); }

std::string Dir::fullPath(std::string_view name) const {
  if (pathMode_) return std::string(name);
  std::string p;
  p.reserve(path_.size() + 1 + name.size());
  p.append(path_);
  if (p.empty() || p.back() != '/') p.push_back('/');
  p.append(name);
  return p;
}

// ---------------------------------------------------------------------------------------------------
// Registry
// ---------------------------------------------------------------------------------------------------

Registry& Registry::instance() {
  // Never destroyed: no static destructor may race a thread that is still using the table at exit.
  static Registry* registry = new Registry();
  return *registry;
}

Registry::Registry() {
  pathDir_.reset(new Dir());
  pathDir_->pathMode_ = true;
  readIdleCap();
}

DirPtr Registry::pathModeDir() { return pathDir_; }

DirPtr Registry::openDir(const std::string& dir) {
  if (dir.empty() || dir[0] != '/' || dir.find('\0') != std::string::npos)
    throw ArgError("directory must be an absolute path without NUL bytes");
  // Create it like libvirt does: mode 0700, with parents. If opening it then fails, remove what this
  // call created: a failed open leaves nothing behind.
  std::vector<std::string> created;
  auto undo = [&created] {
    for (auto it = created.rbegin(); it != created.rend(); ++it) ::rmdir(it->c_str());
  };
  try {
    for (size_t pos = 1;; ++pos) {
      pos = dir.find('/', pos);
      std::string prefix = dir.substr(0, pos);
      if (!prefix.empty()) {
        if (::mkdir(prefix.c_str(), 0700) == 0)
          created.push_back(prefix);
        else if (errno != EEXIST)
          throw SysError(errno, "mkdir", prefix);
      }
      if (pos == std::string::npos) break;
    }
    return openCanonicalDir(dir);
  } catch (...) {
    undo();
    throw;
  }
}

DirPtr Registry::openCanonicalDir(const std::string& dir) {
  char* real = ::realpath(dir.c_str(), nullptr);
  if (!real) throw SysError(errno, "realpath", dir);
  std::string canonical(real);
  ::free(real);

  std::lock_guard<std::mutex> lk(mu_);
  auto it = dirs_.find(canonical);
  if (it != dirs_.end()) {
    if (DirPtr existing = it->second.lock()) return existing;
    dirs_.erase(it);
  }
  struct stat st {};
  if (::stat(canonical.c_str(), &st) != 0) throw SysError(errno, "stat", canonical);
  if (!S_ISDIR(st.st_mode)) throw SysError(ENOTDIR, "open", canonical);
  struct statfs sfs {};
  bool remote = ::statfs(canonical.c_str(), &sfs) == 0 && isRemoteFs(sfs.f_type);
  DirPtr d(new Dir());
  d->path_ = canonical;
  d->remote_ = remote;
  // Drop expired records now and then so the map does not grow with dead directories.
  if (dirs_.size() > 64) {
    for (auto i = dirs_.begin(); i != dirs_.end();) i = i->second.expired() ? dirs_.erase(i) : std::next(i);
  }
  dirs_.emplace(canonical, d);
  return d;
}

bool Registry::isRemotePath(const std::string& path) {
  if (forceRemote()) return true;
  size_t slash = path.rfind('/');
  std::string parent = slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = remotePaths_.find(parent);
    if (it != remotePaths_.end()) return it->second;
  }
  struct statfs sfs {};
  bool remote = ::statfs(parent.c_str(), &sfs) == 0 && isRemoteFs(sfs.f_type);
  std::lock_guard<std::mutex> lk(mu_);
  if (remotePaths_.size() > 4096) remotePaths_.clear();
  remotePaths_[parent] = remote;
  return remote;
}

void Registry::validateName(const Dir& dir, const std::string& name) const {
  if (name.find('\0') != std::string::npos) throw ArgError("resource name must not contain NUL bytes");
  if (dir.pathMode()) {
    if (name.empty() || name[0] != '/' || name.back() == '/' || name.size() >= 4096)
      throw ArgError("resource name must be an absolute path to a file");
    return;
  }
  if (name.empty() || name.size() > 255 || name == "." || name == ".." || name.find('/') != std::string::npos)
    throw ArgError("resource name must be a single path component");
}

SysError Registry::busyHere(const Entry* e, const std::string& path) const {
  SysError err(EBUSY, "fcntl", path, e->shared ? "held shared in this process" : "held exclusively in this process");
  err.busyHere = true;
  return err;
}

// Threads that meet an entry in transition wait on the stripe of its inode, so a busy table does not
// wake every waiter at every transition.
Registry::Stripe& Registry::stripe(const InodeKey& key) { return stripes_[InodeHash()(key) % kStripes]; }

void Registry::waitTransition(Lock& lk, const InodeKey& key) {
  Stripe& st = stripe(key);
  ++st.waiters;
  st.cv.wait(lk);
  --st.waiters;
}

Entry* Registry::insertEntry(const DirPtr& dir, const std::string& name, InodeKey key, UniqueFd fd,
                             const Request& req) {
  Entry* e = Entry::make(*dir, name);
  e->serial = ++nextSerial_;
  e->key = key;
  e->fd = std::move(fd);
  e->kind = req.kind;
  e->shared = req.shared;
  e->autoCreate = req.autoCreate;
  try {
    e->remote = dir->remote() || forceRemote() || remoteDev(key.dev, e->fd.get());
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
    dropLease(o.lease);
    unrefOwner(o.owner);
  }
  Entry::destroy(e);  // closes fd and spares: callers make sure no lock is held through them any more
  if (--dir->entries_ == 0) dir->self_.reset();  // may destroy the Dir: nothing of it is used after
}

uint64_t Registry::addOwner(Entry* e, const DirPtr& via, const std::string& name, const Request& req) {
  uint32_t owner = internOwner(req.owner);
  uint64_t lease = 0;
  try {
    lease = newLease(e);
    if (via.get() != e->dir || name != e->name()) aliases_.emplace(lease, new Alias{via, name});
    e->owners.push_back(Owner{lease, owner, req.env, ++grantOrder_});
  } catch (...) {
    if (lease) {
      aliases_.erase(lease);
      dropLease(lease);
    }
    unrefOwner(owner);
    throw;
  }
  return lease;
}

void Registry::removeOwner(Entry* e, uint64_t lease) {
  for (Owner* o = e->owners.begin(); o != e->owners.end(); ++o) {
    if (o->lease != lease) continue;
    uint32_t owner = o->owner;
    e->owners.erase(o);
    dropLease(lease);
    unrefOwner(owner);
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

// --- leases and owners -----------------------------------------------------------------------------

Entry* Registry::leaseEntry(uint64_t lease) const noexcept {
  uint64_t index = lease & 0xFFFFFF;
  uint64_t gen = lease >> 24;
  if (index >= leaseSlots_.size()) return nullptr;
  const LeaseSlot& slot = leaseSlots_[index];
  return slot.gen == gen ? slot.entry : nullptr;
}

uint64_t Registry::newLease(Entry* e) {
  uint32_t index;
  if (freeLease_ != UINT32_MAX) {
    index = freeLease_;
    freeLease_ = leaseSlots_[index].nextFree;
  } else {
    if (leaseSlots_.size() >= 0xFFFFFF) throw SysError(ENOLCK, "acquire", "", "too many leases");
    index = static_cast<uint32_t>(leaseSlots_.size());
    leaseSlots_.push_back(LeaseSlot{nullptr, 0, UINT32_MAX});
  }
  LeaseSlot& slot = leaseSlots_[index];
  // Generations run 1..2^29-1, so an id is never 0 and always below 2^53.
  slot.gen = slot.gen >= (1u << 29) - 1 ? 1 : slot.gen + 1;
  slot.entry = e;
  ++leaseCount_;
  return (static_cast<uint64_t>(slot.gen) << 24) | index;
}

void Registry::dropLease(uint64_t lease) noexcept {
  uint64_t index = lease & 0xFFFFFF;
  if (index >= leaseSlots_.size() || leaseSlots_[index].gen != (lease >> 24) || !leaseSlots_[index].entry) return;
  LeaseSlot& slot = leaseSlots_[index];
  slot.entry = nullptr;
  slot.nextFree = freeLease_;
  freeLease_ = static_cast<uint32_t>(index);
  --leaseCount_;
}

uint32_t Registry::internOwner(const std::string& key) {
  auto it = ownerIds_.find(key);
  if (it != ownerIds_.end()) {
    ++owners_[it->second].second;
    return it->second;
  }
  uint32_t id;
  if (!freeOwnerIds_.empty()) {
    id = freeOwnerIds_.back();
    owners_[id] = {key, 1};
    freeOwnerIds_.pop_back();
  } else {
    id = static_cast<uint32_t>(owners_.size());
    owners_.emplace_back(key, 1);
  }
  try {
    ownerIds_.emplace(key, id);
  } catch (...) {
    owners_[id] = {std::string(), 0};
    freeOwnerIds_.push_back(id);
    throw;
  }
  return id;
}

void Registry::unrefOwner(uint32_t id) {
  if (--owners_[id].second != 0) return;
  ownerIds_.erase(owners_[id].first);
  owners_[id].first = std::string();
  freeOwnerIds_.push_back(id);
}

// --- idle descriptors ------------------------------------------------------------------------------
// After the last release of a plain (not autoCreate) resource on a local file system the entry stays
// in the table, unlocked, with its fd open: re-acquiring it costs one fcntl and one stat instead of
// open+fcntl+close. The idle entries form an LRU list bounded by idleLimit_.

void Registry::lruUnlink(Entry* e) {
  (e->lruPrev ? e->lruPrev->lruNext : lruHead_) = e->lruNext;
  (e->lruNext ? e->lruNext->lruPrev : lruTail_) = e->lruPrev;
  e->lruPrev = e->lruNext = nullptr;
  --idleCount_;
}

void Registry::makeIdle(Entry* e) {
  e->state = State::Idle;
  e->serial = ++nextSerial_;  // unlocked: a later lock is another locking period
  e->autoCreate = false;
  if (e->extra) e->extra->spare.clear();  // unlocked: closing them drops nothing
  e->lruPrev = nullptr;
  e->lruNext = lruHead_;
  (lruHead_ ? lruHead_->lruPrev : lruTail_) = e;
  lruHead_ = e;
  ++idleCount_;
  if (++idledSinceLimitRead_ >= kIdleLimitReadEvery) readIdleCap();
  while (idleCount_ > idleCap_ && evictOneIdle()) {
  }
}

// Idle fds are a cache: they never take more than a small share of the process's descriptor limit,
// which is read again every kIdleLimitReadEvery idle transitions (the application may lower it).
void Registry::readIdleCap() {
  idledSinceLimitRead_ = 0;
  struct rlimit rl {};
  size_t share = idleLimit_;
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    share = static_cast<size_t>(rl.rlim_cur / kIdleShareOfFdLimit);
  idleCap_ = std::min(idleLimit_, share);
}

void Registry::dropIdle(Entry* e) {
  lruUnlink(e);
  eraseEntry(e);  // closes its fd: it is not locked
}

bool Registry::evictOneIdle() {
  if (!lruTail_) return false;
  dropIdle(lruTail_);
  return true;
}

size_t Registry::closeIdleFds() {
  std::lock_guard<std::mutex> lk(mu_);
  size_t n = 0;
  while (evictOneIdle()) ++n;
  return n;
}

void Registry::setIdleLimit(size_t limit) {
  std::lock_guard<std::mutex> lk(mu_);
  idleLimit_ = limit;
  readIdleCap();
  while (idleCount_ > idleCap_ && evictOneIdle()) {
  }
}

bool Registry::remoteDev(dev_t dev, int fd) {
  auto it = remoteDevs_.find(dev);
  if (it != remoteDevs_.end()) return it->second;
  struct statfs sfs {};
  bool remote = ::fstatfs(fd, &sfs) != 0 || isRemoteFs(sfs.f_type);
  remoteDevs_.emplace(dev, remote);
  return remote;
}

bool Registry::cacheable(const Entry* e) const { return idleLimit_ != 0 && !e->remote; }

void Registry::notifyTransition(const InodeKey& key) {
  Stripe& st = stripe(key);
  if (st.waiters > 0) st.cv.notify_all();
}

// An inode number names a file only while the file exists: one found by stat(path) may have been freed
// and reused (ext4 reuses them at once) by a file this table holds under another name before the lookup
// in byInode_. An entry that stays in the table keeps its fd open, which pins its inode; so if the entry
// with this serial is in the table both before and after a stat of the path, and that stat gives its
// inode, the path named that very file while the entry was there (locked throughout, if it was locked
// before: see Entry::serial). Called with the mutex held; drops it for the stat.
Registry::NameCheck Registry::checkName(Lock& lk, const char* path, const InodeKey& key, uint32_t serial) {
  lk.unlock();
  const bool reaches = namesInode(path, key);
  lk.lock();
  const Entry* again = byInode_.find(key);
  if (!again || again->serial != serial) return NameCheck::EntryChanged;
  return reaches ? NameCheck::Reaches : NameCheck::Moved;
}

// Its name reaches another file now (renamed over, unlinked, its directory replaced): the entry stays
// for its owners and waiters, but a new acquire of the name must find the file the name reaches.
void Registry::detachName(Entry* e) {
  if (!e->named) return;
  e->dir->byName_.erase(e);
  e->named = false;
}

SysError Registry::openError(int err, const Dir& dir, const std::string& path) const {
  if (err == ENOENT && !dir.pathMode()) {
    struct stat st {};
    if (::stat(dir.path().c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      return SysError(err, "open", path,
                      "the lockspace directory " + dir.path() + " was removed or replaced since it was opened");
  }
  return SysError(err, "open", path);
}

// --- acquire ---------------------------------------------------------------------------------------

AcquireResult Registry::acquire(const DirPtr& dir, const std::string& name, const Request& req, uint64_t request,
                                SinkPtr sink) {
  if (!dir) throw ArgError("invalid lockspace handle");
  validateName(*dir, name);
  Lock lk(mu_);
  return acquireLocked(lk, dir, name, req, request, sink, Purpose::Lock);
}

// Called right after a stat showed that the name reaches e's file (and, for a join, while e was Held).
AcquireResult Registry::joinOrQueue(Lock&, Entry* e, const DirPtr& dir, const std::string& name, const Request& req,
                                    uint64_t request, const SinkPtr& sink) {
  if (e->state == State::Held && WaitQueue::admitsJoin(e->shared, req.shared, e->hasWaiters())) {
    e->autoCreate = e->autoCreate || req.autoCreate;
    return {addOwner(e, dir, name, req), false};
  }
  if (sink) {
    e->waiters().push_back(Waiter{request, req, dir, name, sink});
    requests_[request] = e;
    return {0, true};
  }
  std::string path = dir->fullPath(name);
  if (e->state == State::KernelWait) {
    SysError err(EBUSY, "fcntl", path, otherHolder(e->remote));
    err.holderPid = e->remote ? 0 : holderPid(e->fd.get(), e->kind, req.shared);
    throw err;
  }
  throw busyHere(e, path);
}

// A table entry found for the name (by name, or by the inode a stat of it gave): before it is joined,
// waited for or reported busy, a stat must show that the name still reaches its file. Returns the entry
// to use, or nullptr to look again (something changed; *moved: the name reaches another file now).
Entry* Registry::confirmEntry(Lock& lk, Entry* e, const std::string& path, bool* moved) {
  const bool wasHeld = e->state == State::Held;
  const InodeKey key = e->key;
  const uint32_t serial = e->serial;
  const NameCheck check = checkName(lk, path.c_str(), key, serial);  // path: not e's memory (e may go)
  *moved = check == NameCheck::Moved;
  if (check != NameCheck::Reaches) return nullptr;
  e = byInode_.find(key);
  // A join needs the name checked while the lock was held: one that became Held meanwhile is looked at again.
  if (e->transient() || e->state == State::Idle || (e->state == State::Held && !wasHeld)) return nullptr;
  return e;
}

AcquireResult Registry::acquireLocked(Lock& lk, const DirPtr& dir, const std::string& name, const Request& req,
                                      uint64_t request, const SinkPtr& sink, Purpose purpose) {
  // Whatever happens, the caller gets the mutex back locked (some callers go on after an error).
  struct Relock {
    Lock& lk;
    ~Relock() {
      if (!lk.owns_lock()) lk.lock();
    }
  } relock{lk};
  const bool forDelete = purpose == Purpose::Delete;
  // delete never joins nor waits: it is an exclusive, non-waiting acquire followed by an unlink.
  const uint64_t req_id = forDelete ? 0 : request;
  const SinkPtr& req_sink = forDelete ? nullSink_ : sink;
  bool droppedIdleFds = false;

  // Retries because the file was unlinked or replaced under us are bounded; waits for another thread's
  // transition are not counted (they always end).
  for (int stale = 0;;) {
    if (stale >= kMaxAttempts)
      throw SysError(EAGAIN, "open", dir->fullPath(name), "the file kept being replaced while locking it");

    Entry* e = nullptr;
    // 1. Known under this very name: held, waited for, or idle with its fd still open.
    if (Entry* known = dir->byName_.find(name)) {
      e = known;
      if (e->transient()) {
        waitTransition(lk, e->key);
        continue;
      }
      if (e->state != State::Idle) {
        bool moved = false;
        Entry* same = confirmEntry(lk, e, e->path(), &moved);  // a copy: e may be freed meanwhile
        if (!same) {
          if (moved) {
            detachName(e);  // moved implies e is still the same entry (same serial)
            ++stale;
          }
          continue;
        }
        return joinOrQueue(lk, same, dir, name, req, req_id, req_sink);
      }
      lruUnlink(e);
      e->state = State::Opening;
      e->shared = req.shared;
      e->autoCreate = req.autoCreate;
      e->kind = req.kind;
    } else {
      // 2. Not known by name: stat it, and look the inode up before opening anything. With autoCreate,
      //    first try to create it (one syscall where it is absent): O_EXCL opens nothing that exists,
      //    so no FIFO, device or symlink is ever opened; whatever is in the way takes the stat path.
      const std::string path = dir->fullPath(name);
      const char* cpath = path.c_str();
      lk.unlock();
      struct stat st {};
      UniqueFd fd;
      int err = 0;
      bool exists = false;
      const bool create = req.autoCreate && !forDelete;
      if (create) {
        fd.reset(::open(cpath, kOpenFlags | O_CREAT | O_EXCL, 0600));
        err = fd ? 0 : errno;
      }
      if (!fd && (!create || err == EEXIST)) exists = ::lstat(cpath, &st) == 0;
      if (exists) {
        checkRegular(st.st_mode, path);
        LS_TEST_POINT("acquire.statted", name.c_str());
        lk.lock();
        if (Entry* other = byInode_.find(InodeKey{st.st_dev, st.st_ino})) {
          if (other->transient()) {
            waitTransition(lk, other->key);
            continue;
          }
          if (other->state == State::Idle) {
            dropIdle(other);  // idle under another name: close it and open this name afresh
            continue;
          }
          // Held under another name, or the stat saw a file since deleted whose inode number the
          // held one reuses: only a confirmed match may join (or be refused as busy).
          bool moved = false;
          if (Entry* same = confirmEntry(lk, other, path, &moved))
            return joinOrQueue(lk, same, dir, name, req, req_id, req_sink);
          continue;
        }
        lk.unlock();
        fd.reset(::open(cpath, kOpenFlags));
      } else if (!fd && (!create || err == EEXIST)) {  // the stat failed
        err = errno;
        if (err == ENOENT && create) fd.reset(::open(cpath, kOpenFlags | O_CREAT, 0600));
      }
      if (!fd) {
        if (exists || (err == ENOENT && create)) err = errno;
        if (err == ESTALE) staleNamePause(stale);
        lk.lock();
        if ((err == ENOENT && exists) || err == ESTALE) {  // vanished between stat and open: look again
          ++stale;
          continue;
        }
        // Out of descriptors: the idle ones are ours to give back, once.
        if ((err == EMFILE || err == ENFILE) && !droppedIdleFds && idleCount_ > 0) {
          while (evictOneIdle()) {
          }
          droppedIdleFds = true;
          continue;
        }
        throw openError(err, *dir, path);
      }
      struct stat fst {};
      if (::fstat(fd.get(), &fst) != 0) {
        err = errno;
        lk.lock();
        if ((err == ESTALE || err == ENOENT) && exists) {
          // Network file systems: the file went away on the server under a cached name. The fd
          // reaches the inode the name showed; park it with that inode's entry, if held, and look again.
          closeOrPark(lk, fd, InodeKey{st.st_dev, st.st_ino});
          lk.unlock();
          staleNamePause(stale);
          lk.lock();
          ++stale;
          continue;
        }
        throw SysError(err, "fstat", path);  // cannot happen on an fd we just opened
      }
      if (!S_ISREG(fst.st_mode)) {
        fd.reset();  // a non-regular file is never in the table: closing drops nothing
        checkRegular(fst.st_mode, path);
      }
      const InodeKey key{fst.st_dev, fst.st_ino};
      lk.lock();
      // Reached through another name (hard link, other path to the directory) meanwhile? Then this
      // fd must not be closed while that entry may hold a lock on the inode: it joins that entry's
      // spares, and the next round finds the entry by the inode a stat gives, and checks it.
      bool retry = false;
      for (Entry* other = byInode_.find(key); other; other = byInode_.find(key)) {
        if (other->transient()) {
          waitTransition(lk, key);  // keep the fd until the other thread is done with the inode
          continue;
        }
        if (other->state == State::Idle) {
          dropIdle(other);  // not locked: its fd can go, ours takes its place
          break;
        }
        try {
          std::vector<UniqueFd>& spare = other->ext().spare;
          if (spare.size() == spare.capacity()) spare.reserve(spare.size() * 2 + 1);
        } catch (...) {
          (void)fd.release();  // out of memory: leak the fd rather than close it and drop other's lock
          throw;
        }
        other->ext().spare.push_back(std::move(fd));  // closed when that entry is
        retry = true;
        break;
      }
      if (retry) continue;
      if (dir->byName_.find(name)) {  // taken under this name meanwhile
        fd.reset();                   // nobody in this process holds this inode now: closing drops nothing
        continue;
      }
      // 3. Reserve the inode in the table.
      e = insertEntry(dir, name, key, std::move(fd), req);
    }

    // 4. Lock it outside the mutex; the reservation keeps every other thread of this process away.
    const InodeKey key = e->key;
    lk.unlock();
    if (setLock(e->fd.get(), req.kind, req.shared ? F_RDLCK : F_WRLCK, false) != 0) {
      const int err = errno;
      const bool remote = e->remote;  // e may be gone below
      const int pid = isBusyErrno(err) && !remote ? holderPid(e->fd.get(), req.kind, req.shared) : 0;
      lk.lock();
      const std::string path = dir->fullPath(name);
      if (isBusyErrno(err) && req_sink) {
        // Wait for the other process in a dedicated thread, not in the caller nor in libuv's pool.
        e->state = State::KernelWait;
        e->waiters().push_back(Waiter{req_id, req, dir, name, req_sink});
        requests_[req_id] = e;
        startKernelWait(e);
        notifyTransition(key);
        return {0, true};
      }
      if (isBusyErrno(err) && cacheable(e)) {
        makeIdle(e);
      } else {
        eraseEntry(e);  // the process holds no lock on this inode: closing drops nothing
      }
      notifyTransition(key);
      if (err == ESTALE || err == ENOENT) {  // the file went away on the server (a cached name): look again
        lk.unlock();
        staleNamePause(stale);
        lk.lock();
        ++stale;
        continue;
      }
      if (!isBusyErrno(err)) throw SysError(err, "fcntl", path);
      SysError busy(EBUSY, "fcntl", path, otherHolder(remote));
      busy.holderPid = pid;
      throw busy;
    }

    // 5. The path must still name the inode we locked: it may have been unlinked or replaced since we
    //    opened it (or since it went idle), e.g. by an autoCreate release in another process.
    if (!namesInode(e->cpath(), e->key)) {
      e->fd.reset();  // still reserved: no one else in this process holds this inode
      lk.lock();
      eraseEntry(e);
      notifyTransition(key);
      ++stale;
      continue;
    }

    lk.lock();
    uint64_t lease;
    try {
      lease = addOwner(e, dir, name, req);
    } catch (...) {
      e->fd.reset();  // still reserved: no one else in this process holds this inode
      eraseEntry(e);
      notifyTransition(key);
      throw;
    }
    if (forDelete) e->autoCreate = true;
    e->state = State::Held;
    notifyTransition(key);
    return {lease, false};
  }
}

// --- release ---------------------------------------------------------------------------------------

bool Registry::release(uint64_t lease) {
  Lock lk(mu_);
  if (!leaseEntry(lease)) return false;
  releaseLocked(lk, lease, Purpose::Lock);
  return true;
}

bool Registry::isHeld(uint64_t lease) {
  std::lock_guard<std::mutex> lk(mu_);
  return leaseEntry(lease) != nullptr;
}

int Registry::releaseLocked(Lock& lk, uint64_t lease, Purpose purpose) {
  Entry* e = leaseEntry(lease);
  while (e && e->transient()) {  // another thread is granting queued requests of it: let it finish
    waitTransition(lk, e->key);
    e = leaseEntry(lease);
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
  // Network file systems: an autoCreate file stays. A client of another host keeps seeing a deleted
  // file by its cached name for about a second, so a waiter there would be granted the deleted
  // inode while a new acquire here creates and locks a new file: two holders. Only delete unlinks.
  if (e->remote && unlink == Unlink::Yes) unlink = Unlink::No;
  e->state = State::Closing;
  const bool cacheableNow = cacheable(e) && e->named;  // reads idleLimit_: under the mutex
  lk.unlock();
  // Only this thread touches a Closing entry's fds; everyone else waits for the transition.
  int unlinkErr = 0;
  bool deleted = false;
  if (unlink != Unlink::No) {
    // Never delete a file another process still holds: be exclusive first (upgrade a shared lock).
    if (e->shared && setLock(e->fd.get(), e->kind, F_WRLCK, false) != 0) {
      unlinkErr = isBusyErrno(errno) ? EBUSY : errno;
    } else if (namesInode(e->cpath(), e->key)) {
      if (::unlink(e->cpath()) == 0)
        deleted = true;
      else
        unlinkErr = errno;
    } else {
      unlinkErr = ENOENT;  // the name reaches another file now: not ours to delete
    }
  }
  const bool keep = !deleted && cacheableNow && setLock(e->fd.get(), e->kind, F_UNLCK, false) == 0;
  if (!keep) closeEntryFd(e);  // drops the lock; the spares go with the entry, under the mutex
  lk.lock();
  const InodeKey key = e->key;
  if (keep)
    makeIdle(e);
  else
    eraseEntry(e);
  notifyTransition(key);
  return unlink == Unlink::Must ? unlinkErr : 0;
}

// The last owner left and requests are queued: pass the lock on without closing the fd.
void Registry::handOff(Lock& lk, Entry* e) {
  std::vector<Waiter> moved;
  for (;;) {
    dropDeadHead(e);
    if (!e->hasWaiters()) {  // nobody left to take it (or out of memory failed them all)
      finishLastRelease(lk, e, e->autoCreate ? Unlink::Yes : Unlink::No);
      break;
    }
    const bool headShared = e->waiters().front().req.shared;
    if (headShared != e->shared) {
      if (setLock(e->fd.get(), e->kind, headShared ? F_RDLCK : F_WRLCK, false) != 0) {
        // Another process holds it shared: drop ours (no upgrade deadlock) and wait in the kernel.
        setLock(e->fd.get(), e->kind, F_UNLCK, false);
        e->serial = ++nextSerial_;  // not locked throughout any more
        e->state = State::KernelWait;
        startKernelWait(e);
        break;
      }
      e->shared = headShared;
    }
    e->state = State::Granting;
    grantFront(lk, e, moved);
    e->state = State::Held;
    if (!e->owners.empty()) {
      notifyTransition(e->key);
      break;
    }
  }
  // Requests whose names reach another file now start over, once this entry is settled.
  for (Waiter& w : moved) redispatch(lk, std::move(w));
}

void Registry::dropDeadHead(Entry* e) {
  // Requests of a thread that is gone are cancelled when it goes (releaseEnv); this is the backstop.
  while (e->hasWaiters() && deadEnvs_.count(e->waiters().front().req.env)) {
    requests_.erase(e->waiters().front().request);
    e->waiters().pop_front();
  }
}

// Grants the requests at the front of e's queue that the wait queue's policy admits, each only if the
// name it came through still reaches e's file; those whose names reach another file now are taken off
// the queue into `moved` (counted as starting over), for the caller to redispatch once e is settled.
// Called with the mutex held, e reserved (Granting) and its kernel lock held in mode e->shared; drops
// the mutex for the stats (nothing can change e's lock meanwhile: it is reserved).
void Registry::grantFront(Lock& lk, Entry* e, std::vector<Waiter>& moved) {
  // The queue may change under a round (a cancel while the mutex is dropped, a dead thread's request
  // dropped from the head): whenever a round stops at a request it did not check, the policy is asked
  // again, so nobody the policy admits is left queued behind requests that are gone.
  while (grantRound(lk, e, moved) == Round::StoppedUnchecked) {
  }
}

Registry::Round Registry::grantRound(Lock& lk, Entry* e, std::vector<Waiter>& moved) {
  dropDeadHead(e);
  // 1. The batch the policy admits now, and the paths it came through (mostly just the entry's own).
  std::vector<uint64_t> batch;
  std::vector<std::string> paths;
  const bool hadOwners = !e->owners.empty();
  if (e->hasWaiters()) {
    for (const Waiter& w : e->waiters()) {
      if (!WaitQueue::admitsQueued(e->shared, w.req.shared, batch.empty(), hadOwners)) break;
      batch.push_back(w.request);
      std::string p = w.dir->fullPath(w.name);
      if (std::find(paths.begin(), paths.end(), p) == paths.end()) paths.push_back(std::move(p));
    }
  }
  if (batch.empty()) return Round::Done;
  lk.unlock();
  LS_TEST_POINT("grant.checking", e->cname());
  std::vector<char> reaches(paths.size());
  for (size_t i = 0; i < paths.size(); ++i) reaches[i] = namesInode(paths[i].c_str(), e->key);
  lk.lock();
  // 2. In queue order, the batch members still there (cancels may have taken some): grant those whose
  //    names reach the file, take the others off the queue.
  bool ownNameMoved = false;
  std::string own = e->path();
  for (size_t i = 0; i < paths.size(); ++i)
    if (!reaches[i] && paths[i] == own) ownNameMoved = true;
  if (ownNameMoved) detachName(e);
  for (dropDeadHead(e); e->hasWaiters(); dropDeadHead(e)) {
    Waiter& w = e->waiters().front();
    if (std::find(batch.begin(), batch.end(), w.request) == batch.end()) return Round::StoppedUnchecked;
    const std::string p = w.dir->fullPath(w.name);
    const size_t at = static_cast<size_t>(std::find(paths.begin(), paths.end(), p) - paths.begin());
    if (!reaches[at]) {
      requests_.erase(w.request);
      inFlight_.insert(w.request);
      moved.push_back(std::move(w));
      e->waiters().pop_front();
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
    e->autoCreate = e->autoCreate || w.req.autoCreate;
    requests_.erase(w.request);
    SinkPtr sink = std::move(w.sink);
    uint64_t request = w.request;
    e->waiters().pop_front();
    sink->granted(request, lease);
  }
  return Round::Done;
}

bool Registry::cancel(uint64_t request, bool* runnerReports) {
  Lock lk(mu_);
  return cancelLocked(lk, request, runnerReports);
}

bool Registry::cancelLocked(Lock& lk, uint64_t request, bool* runnerReports) {
  if (runnerReports) *runnerReports = false;
  auto it = requests_.find(request);
  if (it == requests_.end()) {
    const bool announced = announced_.count(request) != 0;
    if (announced || inFlight_.count(request)) {
      cancelledInFlight_.insert(request);
      if (runnerReports) *runnerReports = announced;
      return true;
    }
    return false;
  }
  Entry* e = it->second;
  requests_.erase(it);
  auto& ws = e->waiters();
  bool wasHead = !ws.empty() && ws.front().request == request;
  ws.erase(std::find_if(ws.begin(), ws.end(), [&](const Waiter& w) { return w.request == request; }));
  if (e->state == State::KernelWait) {
    if (wasHead) interrupt(e);  // re-evaluate: nobody left, or another lock mode wanted
  } else if (e->state == State::Held && e->shared && wasHead && e->hasWaiters() && e->waiters().front().req.shared) {
    // Shared requests queued behind a cancelled exclusive one may join the shared holders now.
    std::vector<Waiter> moved;
    e->state = State::Granting;
    grantFront(lk, e, moved);
    e->state = State::Held;
    notifyTransition(e->key);
    for (Waiter& w : moved) redispatch(lk, std::move(w));
  }
  return true;
}

void Registry::announce(uint64_t request) {
  std::lock_guard<std::mutex> lk(mu_);
  announced_.insert(request);
}

AcquireResult Registry::acquireAnnounced(const DirPtr& dir, const std::string& name, const Request& req,
                                         uint64_t request, SinkPtr sink) {
  Lock lk(mu_);
  auto gone = [&] { return cancelledInFlight_.count(request) || deadEnvs_.count(req.env); };
  auto settle = [&] {
    announced_.erase(request);
    cancelledInFlight_.erase(request);
  };
  AcquireResult cancelled;
  cancelled.cancelled = true;
  if (gone()) {
    settle();
    return cancelled;
  }
  AcquireResult res;
  try {
    if (!dir) throw ArgError("invalid lockspace handle");
    validateName(*dir, name);
    res = acquireLocked(lk, dir, name, req, request, sink, Purpose::Lock);
  } catch (...) {
    const bool wasCancelled = gone();
    settle();
    if (wasCancelled) return cancelled;
    throw;
  }
  const bool wasCancelled = gone();
  settle();
  if (!wasCancelled) return res;
  if (res.queued) cancelLocked(lk, request);
  if (res.lease) releaseLocked(lk, res.lease, Purpose::Lock);
  return cancelled;
}

void Registry::releaseByName(const DirPtr& dir, const std::string& name, const std::string& owner) {
  validateName(*dir, name);
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
  // Or a lease this owner took by this very name on a file that the name no longer reaches.
  if (!lease) {
    byInode_.forEach([&](Entry* e) {
      if (lease || !e->locked()) return;
      for (const Owner& o : e->owners) {
        if (ownerKey(o.owner) == owner && ownerDir(e, o.lease) == dir.get() && ownerName(e, o.lease) == name) {
          lease = o.lease;  // the owner's first lease of it, as by a name that still reaches the file
          break;
        }
      }
    });
  }
  if (!lease) throw NotHeldError(path);
  releaseLocked(lk, lease, Purpose::Lock);
}

size_t Registry::releaseOwner(const DirPtr& dir, const std::string& owner) {
  Lock lk(mu_);
  std::vector<uint64_t> mine;
  byInode_.forEach([&](Entry* e) {
    if (!e->locked()) return;
    for (const Owner& o : e->owners)
      if (ownerKey(o.owner) == owner && ownerDir(e, o.lease) == dir.get()) mine.push_back(o.lease);
  });
  for (uint64_t lease : mine) releaseLocked(lk, lease, Purpose::Lock);
  return mine.size();
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
  // Oldest first, as the thread would most likely have released them, and never in the table's
  // (inode hash) order: which release comes first decides what a waiter whose name moved finds.
  std::sort(leases.begin(), leases.end());
  for (const auto& l : leases) releaseLocked(lk, l.second, Purpose::Lock);
  return leases.size();
}

// --- create / delete -------------------------------------------------------------------------------

void Registry::create(const DirPtr& dir, const std::string& name) {
  if (!dir) throw ArgError("invalid lockspace handle");
  validateName(*dir, name);
  // A regular file, mode 0600, never following a symlink and never truncating: no fd is opened.
  const std::string path = dir->fullPath(name);
  if (::mknod(path.c_str(), S_IFREG | 0600, 0) == 0) return;
  const int err = errno;
  if (err == EEXIST) {  // held in this process is the better answer (the name reaches a locked file)
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
      Lock lk(mu_);
      Entry* e = byInode_.find(InodeKey{st.st_dev, st.st_ino});
      if (e && !e->transient() && e->state != State::Idle) {
        bool moved = false;
        if (Entry* same = confirmEntry(lk, e, path, &moved)) throw busyHere(same, path);
      }
    }
  }
  throw openError(err, *dir, path);
}

void Registry::remove(const DirPtr& dir, const std::string& name, LockKind kind) {
  if (!dir) throw ArgError("invalid lockspace handle");
  validateName(*dir, name);
  Request req;
  req.kind = kind;
  Lock lk(mu_);
  AcquireResult res;
  try {
    res = acquireLocked(lk, dir, name, req, 0, nullptr, Purpose::Delete);
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

// --- introspection ---------------------------------------------------------------------------------

std::vector<ResourceInfo> Registry::resources(const DirPtr& dir) {
  std::lock_guard<std::mutex> lk(mu_);
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

Stats Registry::stats() {
  std::lock_guard<std::mutex> lk(mu_);
  Stats s;
  s.resources = byInode_.size() - idleCount_;  // held, waited for, or in transition
  s.leases = leaseCount_;
  s.waiters = requests_.size() + inFlight_.size();  // queued, or starting over on a replaced file
  s.kernelWaits = kernelWaits_;
  s.idleFds = idleCount_;
  byInode_.forEach([&](Entry* e) { s.spareFds += e->extra ? e->extra->spare.size() : 0; });
  return s;
}

// --- lost locks and inspection --------------------------------------------------------------------
// Network file systems can lose a held lock (the client dies, the server restarts, a partition
// outlasts the server's timeout) and other hosts can unlink or replace a held file. verify() finds
// out without changing anything: a lock query on the held fd and a lookup of the name. A query,
// not a re-assertion: re-locking would silently take back a lock lost while nobody held it.

namespace {
// The first lock of another owner that conflicts with type on byte 0, via fd; F_UNLCK when none.
int queryLock(int fd, LockKind kind, short type, struct flock& fl) {
  fl = {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 1;
  return ::fcntl(fd, kind == LockKind::Ofd ? F_OFD_GETLK : F_GETLK, &fl);
}
}  // namespace

void Registry::closeOrPark(Lock& lk, UniqueFd& fd, const InodeKey& key) {
  // Closing any fd of an inode drops every POSIX lock this process holds on it: an fd of an inode
  // this table has an entry for goes with that entry (spares close with it); else it is closed.
  Entry* holder = byInode_.find(key);
  while (holder && holder->transient()) {
    waitTransition(lk, key);  // keeps fd open until the other thread is done with the inode
    holder = byInode_.find(key);
  }
  if (!holder) return fd.reset();
  try {
    holder->ext().spare.push_back(std::move(fd));
  } catch (...) {
    (void)fd.release();  // out of memory: leak it rather than drop the entry's lock
    throw;
  }
}

void Registry::closeEntryFd(Entry* e) noexcept {
  // On a network file system close() alone lets the unlock reach the server after it returns (the
  // other host still sees the lock for a while): unlock first, so a release is seen when it is done.
  if (e->remote && e->fd) setLock(e->fd.get(), e->kind, F_UNLCK, false);
  e->fd.reset();
}

VerifyResult Registry::verify(uint64_t lease) {
  Lock lk(mu_);
  Entry* e = leaseEntry(lease);
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
  const short type = e->shared ? F_RDLCK : F_WRLCK;  // a reader of a shared lock is no conflict
  out.path = dir->fullPath(name);
  lk.unlock();

  struct flock fl {};
  const int rc = queryLock(fd, kind, type, fl);
  const int queryErr = rc == 0 ? 0 : errno;
  struct stat st {};
  const int statRc = ::lstat(out.path.c_str(), &st);
  const int statErr = statRc == 0 ? 0 : errno;

  lk.lock();
  Entry* again = leaseEntry(lease);
  if (again != e || e->serial != serial) {
    out.check = LeaseCheck::NotHeld;
    return out;
  }
  if (rc != 0) {
    out.check = LeaseCheck::Error;
    out.err = queryErr;
    out.syscall = "fcntl";
  } else if (fl.l_type != F_UNLCK) {
    out.check = LeaseCheck::Conflict;
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
  validateName(*dir, name);
  InspectResult out;
  out.path = dir->fullPath(name);
  out.remote = dir->pathMode() ? isRemotePath(out.path) : dir->remote();
  Lock lk(mu_);
  for (int attempt = 0;; ++attempt) {
    if (attempt >= kMaxAttempts) throw SysError(EAGAIN, "stat", out.path, "the file kept being replaced");
    lk.unlock();
    struct stat st {};
    if (::lstat(out.path.c_str(), &st) != 0) {
      const int err = errno;
      if (err == ESTALE) {
        staleNamePause(attempt);
        lk.lock();
        continue;
      }
      lk.lock();
      throw SysError(err, "stat", out.path);
    }
    checkRegular(st.st_mode, out.path);
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
    if (!out.remote) return out;  // the caller reads /proc/locks

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
      UniqueFd own(::open(out.path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY));
      const int err = own ? 0 : errno;
      struct stat fst {};
      const bool statted = own && ::fstat(own.get(), &fst) == 0;
      const int fstatErr = statted ? 0 : errno;
      lk.lock();
      if (!own) {
        if (err == ENOENT || err == ESTALE) continue;
        throw SysError(err, "open", out.path);
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
        continue;
      }
      Request req;
      reserved = insertEntry(dir, name, key, std::move(own), req);
      fd = reserved->fd.get();
    }
    lk.unlock();
    struct flock fl {};
    // POSIX F_GETLK sees every other owner's lock, OFD ones too (their pid shows as -1).
    const int rc = queryLock(fd, LockKind::Posix, F_WRLCK, fl);
    const int err = rc == 0 ? 0 : errno;
    lk.lock();
    if (reserved) {
      reserved->fd.reset();  // still reserved: nothing of this process holds a lock on the inode
      eraseEntry(reserved);
      notifyTransition(key);
    } else {
      Entry* now = byInode_.find(key);
      if (!now || now->serial != serial || now->transient()) continue;  // its fd may have been closed
      fillOwnView(now, out);
    }
    if (rc != 0) throw SysError(err, "fcntl", out.path);
    out.otherHeld = fl.l_type != F_UNLCK;
    out.otherShared = fl.l_type == F_RDLCK;
    out.otherOfd = fl.l_pid == -1;
    return out;
  }
}

// --- kernel waits ----------------------------------------------------------------------------------

namespace {
void kernelWaitThread(void* arg) { Registry::runKernelWait(static_cast<Entry*>(arg)); }
}  // namespace

void Registry::startKernelWait(Entry* e) {
  // Called with the mutex held, e in state KernelWait with at least one waiter.
  e->ext().blocking = false;
  int rc = kwait::spawn(kernelWaitThread, e, &e->ext().thread);
  if (rc == 0) {
    ++kernelWaits_;
    return;
  }
  // No thread: fail the queued requests and drop the entry (the process holds no lock on it).
  failWaiters(e, SysError(rc, "pthread_create", e->dir->fullPath(e->name()), "cannot start a thread to wait"));
  const InodeKey key = e->key;
  eraseEntry(e);
  notifyTransition(key);
}

void Registry::failWaiters(Entry* e, const SysError& err) {
  if (!e->hasWaiters()) return;
  std::deque<Waiter> ws = std::move(e->waiters());
  e->waiters().clear();
  for (Waiter& w : ws) {
    requests_.erase(w.request);
    // A request re-dispatched after its file was replaced may have been cancelled meanwhile (the
    // caller has settled it), or belong to a thread that is gone: it hears nothing more.
    if (cancelledInFlight_.count(w.request) || deadEnvs_.count(w.req.env)) continue;
    w.sink->failed(w.request, err);
  }
}

void Registry::interrupt(Entry* e) {
  // Called with the mutex held. A kernel-wait thread that is not blocking will look at the queue again
  // before it blocks; one that is blocking (or about to) is ended there, and a new one takes over.
  if (!e->extra->blocking) return;
  e->extra->blocking = false;
  kwait::interrupt(e->extra->thread);  // alive: it cannot finish before it has taken the mutex again
}

void Registry::kernelWaitInterrupted(Lock& lk, Entry* e) {
  // Called with the mutex held by the kernel-wait thread of e, which is unwinding (see kernel_wait.h).
  // Its fcntl may have got the lock just before it ended: nobody in this process holds the file while
  // the entry waits, so let that go, then wait again for what is still queued, on a new thread.
  e->extra->blocking = false;
  setLock(e->fd.get(), e->kind, F_UNLCK, false);
  --kernelWaits_;
  if (!e->hasWaiters()) return closeAbandoned(lk, e);
  startKernelWait(e);  // counts the new thread in, or fails the queue if there can be none
}

// The cleanup handler of an interrupted kernel wait: runs on that thread as it ends, without the mutex.
void Registry::onKernelWaitInterrupted(void* arg) {
  const KernelWaitExit& exit = *static_cast<KernelWaitExit*>(arg);
  Lock lk(exit.registry->mu_);
  try {
    exit.registry->kernelWaitInterrupted(lk, exit.entry);
  } catch (const std::exception&) {  // out of memory: the entry is left to the process's exit
  }
}

void Registry::runKernelWait(Entry* e) {
  Registry& r = instance();
  Lock lk(r.mu_, std::defer_lock);
  bool countedOut = false;
  try {
    lk.lock();
    r.kernelWaitLoop(lk, e, countedOut);  // counts itself out of kernelWaits_ before its outcome is delivered
  } catch (const std::exception&) {
    // Only allocation failures can land here; there is no sane way on: do not take the process down
    // with an exception escaping a thread, leave the entry to the process's exit. (Not catch (...):
    // an interrupt's unwinding must go on to the end of the thread.)
    if (!lk.owns_lock()) lk.lock();
    if (!countedOut) --r.kernelWaits_;
  }
}

void Registry::closeAbandoned(Lock& lk, Entry* e) {
  // Called with the mutex held by the kernel-wait thread of e. Closing drops the lock if we had it.
  e->state = State::Closing;
  lk.unlock();
  closeEntryFd(e);
  lk.lock();
  const InodeKey key = e->key;
  eraseEntry(e);
  notifyTransition(key);
}

void Registry::kernelWaitLoop(Lock& lk, Entry* e, bool& countedOut) {
  using Clock = std::chrono::steady_clock;
  // POSIX deadlock detection counts processes, not threads: see below. EDEADLK that lasts this long
  // is taken for a real deadlock.
  constexpr auto kDeadlockPatience = std::chrono::milliseconds(1000);
  Clock::time_point deadlockSince{};
  long deadlockBackoffNs = 500'000;
  for (;;) {
    if (!e->hasWaiters()) {
      --kernelWaits_;
      countedOut = true;
      return closeAbandoned(lk, e);
    }
    const bool wantShared = e->waiters().front().req.shared;
    e->extra->blocking = true;  // until the mutex is taken again, interrupt() ends this thread
    lk.unlock();
    // An interrupt ends this thread inside this section (see kernel_wait.h): the cleanup handler then
    // does its bookkeeping. A pthread cleanup handler, not a destructor, because musl ends a cancelled
    // thread without unwinding its C++ frames; glibc runs it while unwinding.
    int rc = 0;
    int err = 0;
    bool deadlocked = false;
    KernelWaitExit onInterrupt{this, e};
    pthread_cleanup_push(onKernelWaitInterrupted, &onInterrupt);
    kwait::Interruptible interruptible;  // the fcntl and the back-off sleep below
    rc = setLock(e->fd.get(), e->kind, wantShared ? F_RDLCK : F_WRLCK, true);
    err = errno;
    if (rc != 0 && err == EDEADLK && deadlockSince == Clock::time_point()) deadlockSince = Clock::now();
    if (rc == 0 || err != EDEADLK) deadlockSince = Clock::time_point();
    deadlocked = rc != 0 && err == EDEADLK && Clock::now() - deadlockSince > kDeadlockPatience;
    if (rc != 0 && err == EDEADLK && !deadlocked) {
      // POSIX locks belong to processes, so the kernel sees a cycle when two processes each have one
      // thread holding what a thread of the other waits for, although every thread will go on and
      // release. It refuses to block: retry with a bounded back-off instead (an interrupt ends the
      // sleep too, so timeouts and aborts still work). A real deadlock waits like any wait.
      struct timespec pause {
        0, deadlockBackoffNs
      };
      ::nanosleep(&pause, nullptr);
      deadlockBackoffNs = std::min<long>(deadlockBackoffNs * 2, 32'000'000);
    } else {
      deadlockBackoffNs = 500'000;
    }
    interruptible.end();
    pthread_cleanup_pop(0);
    if (rc == 0) LS_TEST_POINT("kwait.locked", e->cname());
    lk.lock();
    e->extra->blocking = false;
    if (rc != 0) {
      if (err == EINTR || (err == EDEADLK && !deadlocked)) continue;
      // A lasting EDEADLK is a real deadlock; any other error is final too: fail the queued requests
      // after the entry is gone, so whoever hears of it sees a table without it.
      SysError failure(err, "fcntl", e->dir->fullPath(e->name()),
                       err == EDEADLK ? "the kernel reports a deadlock with another process" : "");
      std::deque<Waiter> ws = std::move(e->waiters());
      e->waiters().clear();
      for (const Waiter& w : ws) requests_.erase(w.request);
      --kernelWaits_;
      countedOut = true;
      closeAbandoned(lk, e);
      for (Waiter& w : ws) w.sink->failed(w.request, failure);
      return;
    }
    // Requests may have been cancelled meanwhile. A lock that no longer fits the head is let go before
    // waiting in the other mode: upgrading in place while another process does the same deadlocks.
    if (!e->hasWaiters() || e->waiters().front().req.shared != wantShared) {
      setLock(e->fd.get(), e->kind, F_UNLCK, false);
      continue;
    }
    // Locked: grant the front of the queue, each request only if its name still reaches this file.
    e->state = State::Granting;
    e->shared = wantShared;
    --kernelWaits_;
    countedOut = true;
    std::vector<Waiter> moved;
    grantFront(lk, e, moved);
    const bool granted = !e->owners.empty();
    if (!granted) {
      // Every name checked reaches another file now (or the batch was cancelled meanwhile): let the
      // lock go, and wait again for whoever is still queued.
      setLock(e->fd.get(), e->kind, F_UNLCK, false);
      ++kernelWaits_;
      countedOut = false;
    }
    e->state = granted ? State::Held : State::KernelWait;
    notifyTransition(e->key);
    for (Waiter& w : moved) redispatch(lk, std::move(w));
    if (granted) return;
  }
}

bool Registry::namesInode(const char* path, const InodeKey& key) {
  struct stat st {};
  return ::lstat(path, &st) == 0 && st.st_dev == key.dev && st.st_ino == key.ino;
}

void Registry::redispatch(Lock& lk, Waiter w) {
  // The request stays in inFlight_ until acquireLocked is back (it drops the mutex on the way): a
  // cancel meanwhile is marked, returns true (the caller settles it) and is honoured here.
  auto gone = [&] { return cancelledInFlight_.count(w.request) || deadEnvs_.count(w.req.env); };
  auto settle = [&] {
    inFlight_.erase(w.request);
    cancelledInFlight_.erase(w.request);
  };
  if (gone()) return settle();
  AcquireResult res;
  try {
    res = acquireLocked(lk, w.dir, w.name, w.req, w.request, w.sink, Purpose::Lock);
  } catch (const SysError& err) {
    const bool deliver = !gone();
    settle();
    if (deliver) w.sink->failed(w.request, err);
    return;
  } catch (...) {  // out of memory: answer it anyway, the other re-dispatched requests still get theirs
    const bool deliver = !gone();
    settle();
    if (deliver) w.sink->failed(w.request, SysError(ENOMEM, "acquire", std::string()));
    return;
  }
  if (!gone()) {
    settle();
    if (res.lease) w.sink->granted(w.request, res.lease);
    return;
  }
  settle();
  if (res.queued) cancelLocked(lk, w.request);
  if (res.lease) releaseLocked(lk, res.lease, Purpose::Lock);
}

}  // namespace lockspace
