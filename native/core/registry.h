// The process-wide lock table (libvirt's virLockSpace model), in plain C++ with no N-API types.
//
// One Registry exists per process (Registry::instance(), allocated once and never destroyed). Every
// resource this process has open and locked is one Entry, keyed by inode (dev, ino), so two names that
// reach the same file are the same resource. A second acquire of a held inode never opens a file that it
// would later have to close (closing any fd of a file drops every POSIX lock the process holds on it):
// it joins (shared on shared), queues (wait) or fails with EBUSY.
//
// Concurrency: one mutex guards all tables. Syscalls on the acquire/release fast paths run outside the
// mutex; the entry they work on is reserved in the table meanwhile (state Opening/Closing), and other
// threads that meet a reserved entry wait on a condition variable for the few microseconds it lasts.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "flat.h"
#include "unique_fd.h"

namespace lockspace {

// An expected failure, reported to the caller as a Node-style system error.
struct SysError : std::exception {
  int err;              // positive errno value
  const char* syscall;  // the syscall (or operation) that failed
  std::string path;
  std::string detail;     // extra words for the message ("held in this process", ...)
  bool busyHere = false;  // EBUSY: the holder is this process (lock table)
  int holderPid = 0;      // EBUSY: pid of another process holding a POSIX lock (from F_GETLK), else 0
  SysError(int e, const char* sc, std::string p, std::string d = {})
      : err(e), syscall(sc), path(std::move(p)), detail(std::move(d)) {}
  const char* what() const noexcept override { return "lockspace system error"; }
};

// Releasing something that is not held by that owner (ERR_LOCK_NOT_HELD).
struct NotHeldError : std::exception {
  std::string path;
  explicit NotHeldError(std::string p) : path(std::move(p)) {}
  const char* what() const noexcept override { return "lock not held"; }
};

// A caller broke the API contract (bad name, bad handle): the binding turns it into a TypeError.
struct ArgError : std::exception {
  std::string message;
  explicit ArgError(std::string m) : message(std::move(m)) {}
  const char* what() const noexcept override { return message.c_str(); }
};

struct InodeKey {
  dev_t dev = 0;
  ino_t ino = 0;
  bool operator==(const InodeKey& o) const noexcept { return dev == o.dev && ino == o.ino; }
};
struct InodeHash {
  size_t operator()(const InodeKey& k) const noexcept {
    return std::hash<uint64_t>()(static_cast<uint64_t>(k.ino) * 0x9E3779B97F4A7C15ULL ^ k.dev);
  }
};

struct Entry;
struct Waiter;
struct Alias;

struct InodeTraits {
  using Key = InodeKey;
  static size_t hash(const Key& k) noexcept { return InodeHash()(k); }
  static Key key(const Entry* e) noexcept;
  static bool eq(const Key& a, const Key& b) noexcept { return a == b; }
};
struct NameTraits {
  using Key = std::string_view;
  static size_t hash(const Key& k) noexcept { return std::hash<std::string_view>()(k); }
  static Key key(const Entry* e) noexcept;
  static bool eq(const Key& a, const Key& b) noexcept { return a == b; }
};

// A lockspace directory, or the path-mode space (absolute names) when pathMode is true.
// Shared by every LockSpace handle on the same canonical directory and by the entries opened in it.
//
// The path is the identity (as in libvirt): every syscall on a resource resolves the absolute path
// directory/name from the root, as another process opening it would, so a lockspace directory that is
// renamed, removed, recreated or replaced by a symlink underneath is followed, never held on to.
class Dir {
 public:
  ~Dir();
  Dir(const Dir&) = delete;
  Dir& operator=(const Dir&) = delete;

  bool pathMode() const noexcept { return pathMode_; }
  const std::string& path() const noexcept { return path_; }  // canonical; empty in path mode
  bool remote() const noexcept;                               // NFS, CIFS, FUSE, ... (or forced)
  std::string fullPath(std::string_view name) const;

 private:
  friend class Registry;
  Dir() = default;
  bool pathMode_ = false;
  bool remote_ = false;
  std::string path_;
  // Guarded by the registry mutex.
  FlatSet<Entry, NameTraits> byName_;
  size_t entries_ = 0;         // entries opened through this directory
  std::shared_ptr<Dir> self_;  // keeps the Dir alive while entries_ > 0
};

using DirPtr = std::shared_ptr<Dir>;

enum class LockKind : uint8_t { Posix, Ofd };

// Receives the outcome of a queued (waiting) acquire. Called with the registry mutex held: it must only
// hand the result over (queue it and wake the waiter's thread), never call back into the registry.
class Sink {
 public:
  virtual ~Sink() = default;
  virtual void granted(uint64_t request, uint64_t lease) = 0;
  virtual void failed(uint64_t request, const SysError& error) = 0;
};
using SinkPtr = std::shared_ptr<Sink>;

struct Request {
  bool shared = false;
  bool autoCreate = false;
  LockKind kind = LockKind::Posix;
  std::string owner;  // opaque owner key
  uint32_t env = 0;   // the JS environment (thread) that acquires: its leases die with it
};

struct AcquireResult {
  uint64_t lease = 0;      // non-zero: granted now
  bool queued = false;     // the request waits; its Sink hears the outcome
  bool cancelled = false;  // acquireAnnounced: cancelled before it was done; nothing held or queued
};

struct ResourceInfo {
  std::string name;
  std::string path;
  bool shared;
  bool autoCreate;
  std::vector<std::string> owners;
};

// What verify() found about a lease.
enum class LeaseCheck : uint8_t {
  Held,      // still locked (as far as the file system tells) and the name still reaches the file
  NotHeld,   // released meanwhile: nothing to say
  Error,     // the file system failed the lock query (ENOTCONN, EBADFD, EIO, ...): error says which
  Conflict,  // another host or process holds a conflicting lock: ours is gone
  Unlinked,  // the name no longer exists
  Replaced,  // the name reaches another file now
};

struct VerifyResult {
  LeaseCheck check = LeaseCheck::Held;
  int err = 0;               // Error: the errno
  const char* syscall = "";  // Error: the syscall that failed
  std::string path;          // the name the lease was acquired by, in full
};

// The kernel's and this process's view of one resource (inspect). Nothing is locked to learn it.
struct InspectResult {
  std::string path;
  dev_t dev = 0;  // the file the name reaches now
  ino_t ino = 0;
  bool remote = false;
  // Network file systems: one conflicting lock of another host or process (F_GETLK/F_OFD_GETLK with
  // a write lock), if any. Local file systems leave this to /proc/locks.
  bool otherHeld = false;
  bool otherShared = false;
  bool otherOfd = false;  // the lock reports pid -1: an OFD lock
  // This process.
  bool held = false;  // Held in the table (leases exist)
  bool heldShared = false;
  LockKind heldKind = LockKind::Posix;
  std::vector<std::string> owners;  // owner keys
  size_t waiters = 0;
};

struct Stats {
  size_t resources = 0;  // entries held, waited for or in transition (not the idle ones)
  size_t leases = 0;
  size_t waiters = 0;      // requests queued (or starting over because their file was replaced)
  size_t kernelWaits = 0;  // threads blocked in F_SETLKW
  size_t idleFds = 0;
  size_t spareFds = 0;
};

class Registry {
 public:
  static Registry& instance();

  // Directory lockspace: creates dir (0700, with parents) if missing; returns the shared Dir for its
  // canonical path. pathModeDir() is the space of absolute names.
  DirPtr openDir(const std::string& dir);
  DirPtr pathModeDir();
  bool isRemotePath(const std::string& path);  // path mode: statfs of the parent, cached

  AcquireResult acquire(const DirPtr& dir, const std::string& name, const Request& req, uint64_t request = 0,
                        SinkPtr sink = nullptr);
  // Removes a queued request. False when it is no longer queued (granted or failed already). For an
  // announced request not run yet, *runnerReports is set: acquireAnnounced will say "cancelled".
  bool cancel(uint64_t request, bool* runnerReports = nullptr);
  // A waiting acquire that runs later on another thread (libuv's pool, on network file systems): the
  // caller announces its request id first, so that a cancel before it reaches the table is not lost.
  void announce(uint64_t request);
  AcquireResult acquireAnnounced(const DirPtr& dir, const std::string& name, const Request& req, uint64_t request,
                                 SinkPtr sink);
  // Tests: treat every directory as on a network file system (threadpool paths, no idle fds).
  static void setForceRemote(bool on) noexcept;
  static bool forceRemote() noexcept;
  // Releases one lease. False when it was not held (already released): idempotent.
  bool release(uint64_t lease);
  bool isHeld(uint64_t lease);
  // libvirt-style release by name and owner key; throws NotHeldError.
  void releaseByName(const DirPtr& dir, const std::string& name, const std::string& owner);
  size_t releaseOwner(const DirPtr& dir, const std::string& owner);
  // Called when a JS environment goes away: cancels its queued requests and releases its leases
  // (their paths and owner keys go to *released, when given).
  struct ReleasedLease {
    std::string path;
    std::string owner;
  };
  size_t releaseEnv(uint32_t env, std::vector<ReleasedLease>* released = nullptr);

  void create(const DirPtr& dir, const std::string& name);
  void remove(const DirPtr& dir, const std::string& name, LockKind kind);  // "delete"

  std::vector<ResourceInfo> resources(const DirPtr& dir);
  // Is the lease's lock still there? Asks the file system about the held fd (a lock query, never a
  // change of it) and checks that the lease's name still reaches the locked file.
  VerifyResult verify(uint64_t lease);
  // Who holds name: opens nothing for writing, locks nothing, never closes an fd of a locked inode.
  InspectResult inspect(const DirPtr& dir, const std::string& name);
  Stats stats();
  size_t closeIdleFds();
  void setIdleLimit(size_t limit);

  // The kernel-wait thread's body (see kernel_wait.h): ends by unwinding when it is interrupted.
  static void runKernelWait(Entry* e);

 private:
  Registry();

  using Lock = std::unique_lock<std::mutex>;
  struct Outcome;
  // Why a resource is locked: to hold it, or (delete) to unlink it, never joining nor waiting.
  enum class Purpose : uint8_t { Lock, Delete };
  // What the last release does with the file: keep it, unlink it (autoCreate), or unlink it and report
  // why not (delete).
  enum class Unlink : uint8_t { No, Yes, Must };
  enum class NameCheck : uint8_t { Reaches, Moved, EntryChanged };

  void validateName(const Dir& dir, const std::string& name) const;
  bool cancelLocked(Lock& lk, uint64_t request, bool* runnerReports = nullptr);
  DirPtr openCanonicalDir(const std::string& dir);
  AcquireResult acquireLocked(Lock& lk, const DirPtr& dir, const std::string& name, const Request& req,
                              uint64_t request, const SinkPtr& sink, Purpose purpose);
  AcquireResult joinOrQueue(Lock& lk, Entry* e, const DirPtr& dir, const std::string& name, const Request& req,
                            uint64_t request, const SinkPtr& sink);
  Entry* confirmEntry(Lock& lk, Entry* e, const std::string& path, bool* moved);
  NameCheck checkName(Lock& lk, const char* path, const InodeKey& key, uint32_t serial);
  void detachName(Entry* e);
  SysError openError(int err, const Dir& dir, const std::string& path) const;
  struct Stripe {
    std::condition_variable cv;
    int waiters = 0;
  };
  static constexpr size_t kStripes = 32;
  Stripe& stripe(const InodeKey& key);
  void waitTransition(Lock& lk, const InodeKey& key);
  Entry* insertEntry(const DirPtr& dir, const std::string& name, InodeKey key, UniqueFd fd, const Request& req);
  void removeOwner(Entry* e, uint64_t lease);
  const std::string& ownerKey(uint32_t id) const { return owners_[id].first; }
  const Dir* ownerDir(const Entry* e, uint64_t lease) const;
  std::string_view ownerName(const Entry* e, uint64_t lease) const;
  void eraseEntry(Entry* e);
  uint64_t addOwner(Entry* e, const DirPtr& via, const std::string& name, const Request& req);
  int releaseLocked(Lock& lk, uint64_t lease, Purpose purpose);
  int finishLastRelease(Lock& lk, Entry* e, Unlink unlink);
  void handOff(Lock& lk, Entry* e);
  void grantFront(Lock& lk, Entry* e, std::vector<Waiter>& moved);
  enum class Round { Done, StoppedUnchecked };  // StoppedUnchecked: the queue changed under the round
  Round grantRound(Lock& lk, Entry* e, std::vector<Waiter>& moved);
  void failWaiters(Entry* e, const SysError& err);
  void startKernelWait(Entry* e);
  void interrupt(Entry* e);
  void kernelWaitInterrupted(Lock& lk, Entry* e);
  struct KernelWaitExit {
    Registry* registry;
    Entry* entry;
  };
  static void onKernelWaitInterrupted(void* arg);
  void kernelWaitLoop(Lock& lk, Entry* e, bool& countedOut);
  void dropDeadHead(Entry* e);
  static bool namesInode(const char* path, const InodeKey& key);
  void closeAbandoned(Lock& lk, Entry* e);
  void redispatch(Lock& lk, Waiter w);
  void lruUnlink(Entry* e);
  void makeIdle(Entry* e);
  void dropIdle(Entry* e);
  void readIdleCap();
  void notifyTransition(const InodeKey& key);
  bool cacheable(const Entry* e) const;
  bool evictOneIdle();
  bool remoteDev(dev_t dev, int fd);
  SysError busyHere(const Entry* e, const std::string& path) const;
  void fillOwnView(const Entry* e, InspectResult& out) const;
  static void closeEntryFd(Entry* e) noexcept;
  void closeOrPark(Lock& lk, UniqueFd& fd, const InodeKey& key);

  std::mutex mu_;
  Stripe stripes_[kStripes];  // an Opening/Closing entry settled (by inode hash)
  FlatSet<Entry, InodeTraits> byInode_;
  // Leases: a slab indexed by the low 24 bits of the lease id; the high bits are a generation, so a
  // stale id never reaches a reused slot. Ids stay below 2^53 (exact in a JS number).
  struct LeaseSlot {
    Entry* entry;
    uint32_t gen;
    uint32_t nextFree;
  };
  std::vector<LeaseSlot> leaseSlots_;
  uint32_t freeLease_ = UINT32_MAX;
  size_t leaseCount_ = 0;
  Entry* leaseEntry(uint64_t lease) const noexcept;
  uint64_t newLease(Entry* e);
  void dropLease(uint64_t lease) noexcept;
  // Owner keys are interned: an owner holding thousands of locks costs one string.
  std::unordered_map<std::string, uint32_t> ownerIds_;
  std::vector<std::pair<std::string, uint32_t>> owners_;  // id -> (key, reference count)
  std::vector<uint32_t> freeOwnerIds_;
  uint32_t internOwner(const std::string& key);
  void unrefOwner(uint32_t id);
  std::unordered_map<uint64_t, std::unique_ptr<Alias>> aliases_;  // by lease, rare
  std::unordered_map<uint64_t, Entry*> requests_;                 // queued request id -> entry
  std::unordered_set<uint64_t> inFlight_;                         // requests being re-dispatched (file replaced)
  std::unordered_set<uint64_t> cancelledInFlight_;
  std::unordered_set<uint64_t> announced_;  // announced requests not run yet (see announce)
  std::unordered_map<dev_t, bool> remoteDevs_;
  std::unordered_set<uint32_t> deadEnvs_;  // JS environments torn down (ids are never reused)
  std::unordered_map<std::string, std::weak_ptr<Dir>> dirs_;
  DirPtr pathDir_;
  std::unordered_map<std::string, bool> remotePaths_;
  Entry* lruHead_ = nullptr;  // idle entries, most recently released first
  Entry* lruTail_ = nullptr;
  size_t idleCount_ = 0;
  size_t idleLimit_ = 1024;  // setIdleLimit
  // The idle fds kept: idleLimit_, or less under a low descriptor limit (see readIdleCap).
  static constexpr size_t kIdleShareOfFdLimit = 8;
  static constexpr uint32_t kIdleLimitReadEvery = 64;
  size_t idleCap_ = 0;
  uint32_t idledSinceLimitRead_ = 0;
  const SinkPtr nullSink_;
  size_t kernelWaits_ = 0;
  uint32_t nextSerial_ = 0;
  uint64_t grantOrder_ = 0;  // stamps each owner (Owner::order)
};

}  // namespace lockspace
