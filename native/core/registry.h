// The process-wide lock table (libvirt's virLockSpace model), in plain C++ with no N-API types.
//
// One Registry serves the process (Registry::instance(), allocated once and never destroyed; tests
// may make their own). Every resource this process has open and locked is one Entry, keyed by inode
// (dev, ino), so two names that reach the same file are the same resource. A second acquire of a held
// inode never opens a file that it would later have to close (closing any fd of a file drops every
// POSIX lock the process holds on it): it joins (shared on shared), queues (wait) or fails with EBUSY.
//
// Concurrency: one mutex guards the table and the parts below. No syscall on a resource file runs
// while it is held (on a network file system each is a round trip to the server, and every thread of
// the process would wait behind it): the entry a syscall works on is reserved in the table meanwhile
// (state Opening, Granting, Closing; KernelWait for its kernel-wait thread), and other threads that
// meet a reserved entry wait on a condition variable for the few microseconds it lasts. The C++ core
// test checks the rule in every lock_file.h function (table_mutex.h), and checks that an entry
// changes state only under the mutex and only as entry.h's table of transitions allows (setState).
// Not yet outside it: the close of an fd that holds no lock of ours (spare fds, as their entry goes;
// an idle fd dropped; an entry erased after a refused lock on a local file system, or when no
// kernel-wait thread can be had; an fd given up in reserveOpened or closeOrPark), the creation of a
// kernel-wait or writer-check thread, and the signal that interrupts a kernel wait.
//
// The parts it owns, each in its own header, none of them calling back into it:
//   types.h          the records it takes and answers, and its errors
//   dir.h            lockspace directories (Dir), their name rules and the cache of them (DirCache)
//   entry.h          one resource and its owners, spare fds, wait queue and kernel-wait thread
//   lock_file.h      every syscall on a resource file
//   network_fs.h     which files are on a network file system
//   lease_table.h    lease ids (slab + generations)
//   owner_keys.h     interned owner keys
//   idle_list.h      the idle fds kept for a fast re-acquire (LRU, capped)
//   wait_queue.h     the queued requests of one resource and THE grant policy
//   request_book.h   where each waiting request is (announced, queued, restarting)
//   kernel_wait.h    the threads that wait in F_SETLKW for other processes, and their interruption
//   holder_record.h  the holder records in a lock file (its format, writing, reading)
// Its own code: registry.cc (tables, acquire), registry_release.cc (release, hand-off, cancel),
// registry_kernel_wait.cc (kernel waits), registry_deadlock.cc (cycles of waits), registry_inspect.cc
// (resources, queued, stats, verify, inspect), registry_record.cc (holder records).
//
// Interface: the public members below; the binding calls nothing else.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "dir.h"
#include "entry.h"
#include "flat.h"
#include "idle_list.h"
#include "kernel_wait.h"
#include "lease_table.h"
#include "lock_file.h"
#include "network_fs.h"
#include "owner_keys.h"
#include "request_book.h"
#include "table_mutex.h"
#include "types.h"
#include "unique_fd.h"
#include "wait_queue.h"

namespace lockspace {

class Registry {
 public:
  static Registry& instance();  // the process's table (shared with other copies: see shared_table.h)
  // A table of its own (tests). Destroy it only once no thread of it runs (no kernel waits left).
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

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
  // Deadlock detection (registry_deadlock.cc): is queued request `request` in a cycle of waits in this
  // table (owners waiting for owners through resources, by hard and soft edges)? If so it is taken off
  // its queue, as by cancel (the caller fails it with EDEADLK), and the cycle is returned; else empty.
  DeadlockCycle checkDeadlock(uint64_t request);
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
  // The requests queued through dir by every thread, oldest request first.
  std::vector<QueuedRequest> queued(const DirPtr& dir);
  // Is the lease's lock still there? Asks the file system about the held fd (a lock query, never a
  // change of it) and checks that the lease's name still reaches the locked file.
  VerifyResult verify(uint64_t lease);
  // Who holds name: opens nothing for writing, locks nothing, never closes an fd of a locked inode.
  InspectResult inspect(const DirPtr& dir, const std::string& name);
  // Writes this process's holder record for a lease just granted (holder_record.h), through the
  // entry's fd, under its lock; an exclusive lease also counts the generation on. Throws NotHeldError
  // when the lease is not held (released meanwhile), SysError when a read or write fails.
  RecordResult writeRecord(uint64_t lease, const RecordRequest& req);
  Stats stats();
  size_t closeIdleFds();
  void setIdleLimit(size_t limit);

 private:
  using Lock = std::unique_lock<TableMutex>;
  // Why a resource is locked: to hold it, or (delete) to unlink it, never joining nor waiting.
  enum class Purpose : uint8_t { Lock, Delete };
  // What the last release does with the file: keep it, unlink it (autoCreate), or unlink it and report
  // why not (delete).
  enum class Unlink : uint8_t { No, Yes, Must };
  enum class NameCheck : uint8_t { Reaches, Moved, EntryChanged };
  // Where a step of an acquire leaves it: look again, answered (result set), or an entry reserved to lock.
  enum class Next : uint8_t { Retry, Answered, Reserved };
  enum class Round : uint8_t { Done, StoppedUnchecked };  // StoppedUnchecked: the queue changed under the round

  // One acquire as acquireLocked runs it. A delete is exclusive and never joins nor waits (request 0,
  // no sink): an exclusive, non-waiting acquire followed by an unlink.
  struct Attempt {
    const DirPtr& dir;
    const std::string& name;
    const Request& req;
    uint64_t request;     // 0 when it must not wait
    const SinkPtr& sink;  // null when it must not wait
    Purpose purpose;
    // Set by a join that is due to look for another process's writer (see noteJoin): the entry, by
    // its serial, for the caller to check once the mutex can be let go.
    mutable InodeKey writerCheck{};
    mutable uint32_t writerCheckSerial = 0;
  };
  // THE retry rule for a name whose file went away or was replaced under a lookup (acquire, inspect):
  // look again, at most kMaxAttempts times (waits for another thread's transition are not counted:
  // they always end); after ESTALE, or a file gone on a network file system's server, first pause
  // (stalePause: the mutex let go). Out of descriptors, the idle ones are given back once.
  struct Tries {
    static constexpr int kMaxAttempts = 64;
    int stale = 0;
    bool droppedIdleFds = false;
    bool exhausted() const noexcept { return stale >= kMaxAttempts; }
  };
  void stalePause(Lock& lk, const Tries& tries);
  struct NameNow;  // what a name is now (registry.cc)

  // --- tables (registry.cc) ---
  struct Stripe {
    std::condition_variable cv;
    int waiters = 0;
  };
  static constexpr size_t kStripes = 32;
  Stripe& stripe(const InodeKey& key);
  void waitTransition(Lock& lk, const InodeKey& key);
  // Every change of an entry's state goes through here (checked: under the mutex, and allowed by
  // entry.h's table of transitions).
  void setState(Entry* e, State to);
  void notifyTransition(const InodeKey& key);
  bool onNetworkFs(const Dir& dir, dev_t dev, int fd) noexcept;
  Entry* insertEntry(const DirPtr& dir, const std::string& name, InodeKey key, UniqueFd fd, const Request& req,
                     bool remote);
  void eraseEntry(Entry* e);
  // An owner granted e through `via`/`name`; an autoCreate one makes the last release delete e's file.
  uint64_t addOwner(Entry* e, const DirPtr& via, const std::string& name, const Request& req);
  void removeOwner(Entry* e, uint64_t lease);
  const std::string& ownerKey(uint32_t id) const { return owners_.key(id); }
  const Dir* ownerDir(const Entry* e, uint64_t lease) const;
  std::string_view ownerName(const Entry* e, uint64_t lease) const;
  NameCheck checkName(Lock& lk, const char* path, const InodeKey& key, uint32_t serial);
  Entry* confirmEntry(Lock& lk, Entry* e, const std::string& path, NameCheck* check);
  void detachName(Entry* e);
  SysError busyHere(const Entry* e, const std::string& path) const;
  void closeOrPark(Lock& lk, UniqueFd& fd, const InodeKey& key);
  void park(Entry* holder, UniqueFd& fd);
  void queueWaiter(Entry* e, Waiter&& w);

  // --- acquire (registry.cc) ---
  AcquireResult acquireLocked(Lock& lk, const Attempt& a);
  Next useKnown(Lock& lk, const Attempt& a, Entry* known, Tries& tries, Entry*& e, AcquireResult& res);
  Next openByName(Lock& lk, const Attempt& a, Tries& tries, Entry*& e, AcquireResult& res);
  static void lookUpName(const char* path, bool create, NameNow& now);
  static void requireRegular(mode_t mode, const std::string& path);
  Next meetEntry(Lock& lk, const Attempt& a, Entry* other, const std::string& path, Tries& tries, AcquireResult& res);
  Next openFailed(Lock& lk, const Attempt& a, Tries& tries, const NameNow& now, const std::string& path);
  Next reserveOpened(Lock& lk, const Attempt& a, Tries& tries, NameNow& now, const std::string& path, Entry*& e);
  Next lockReserved(Lock& lk, const Attempt& a, Entry* e, Tries& tries, AcquireResult& res);
  Next joinOrQueue(Lock& lk, Entry* e, const Attempt& a, AcquireResult& res);
  int holderPidOf(Lock& lk, Entry* e, lockfile::Mode mode);
  void waitForAskers(Lock& lk, Entry* e);
  void noteJoin(Entry* e, const Attempt& a);
  void checkWriter(const Attempt& a);
  void writerCheck(InodeKey key, uint32_t serial) noexcept;

  // --- release, hand-off and cancel (registry_release.cc) ---
  int releaseLocked(Lock& lk, uint64_t lease, Purpose purpose);
  int finishLastRelease(Lock& lk, Entry* e, Unlink unlink);
  void handOff(Lock& lk, Entry* e);
  enum class Fit : uint8_t { TryInPlace, LetGo };
  bool fitKernelLock(Lock& lk, Entry* e, bool shared, Fit how);
  bool grantReserved(Lock& lk, Entry* e, std::vector<Waiter>& moved);
  enum class WaitBy : uint8_t { NewThread, ThisThread };  // who waits in the kernel for an entry settled KernelWait
  void settle(Lock& lk, Entry* e, State to, std::vector<Waiter>& moved, WaitBy by = WaitBy::ThisThread);
  void grantFront(Lock& lk, Entry* e, std::vector<Waiter>& moved);
  void releaseOldestFirst(Lock& lk, std::vector<std::pair<uint64_t, uint64_t>>& leases);  // (order, lease)
  Round grantRound(Lock& lk, Entry* e, std::vector<Waiter>& moved);
  void grantInPlace(Lock& lk, Entry* e);
  void dropDeadHead(Entry* e);
  void failWaiters(Entry* e, const SysError& err);
  bool cancelLocked(Lock& lk, uint64_t request, bool* runnerReports = nullptr);
  void redispatch(Lock& lk, Waiter w);
  bool runnerGone(uint64_t request, uint32_t env) const;
  void makeIdle(Entry* e);
  void dropIdle(Entry* e);
  void trimIdle();
  bool cacheable(const Entry* e) const { return idle_.enabled() && !e->remote; }

  // --- kernel waits (registry_kernel_wait.cc) ---
  void startKernelWait(Lock& lk, Entry* e);
  void interrupt(Entry* e);
  void kernelWaitInterrupted(Lock& lk, Entry* e);
  void closeAbandoned(Lock& lk, Entry* e);
  struct KernelWaitJob;
  enum class AfterLockCall : uint8_t { WaitAgain, BackOff, Ended };
  bool kernelWaitStep(Lock& lk, KernelWaitJob& job, lockspace_kwait_call& call);
  AfterLockCall lockCallEnded(Lock& lk, KernelWaitJob& job, int err);
  static int kernelWaitTurn(void* job, lockspace_kwait_call* call) noexcept;
  static void onKernelWaitInterrupted(void* job) noexcept;

  // --- deadlock detection (registry_deadlock.cc) ---
  struct DeadlockSearch;

  // --- lost locks and inspect (registry_inspect.cc) ---
  struct LockNow {
    LeaseCheck check;  // Held, Dropped, Conflict or Error (stillLocked: or Replaced)
    int err;           // Error: the query's errno
  };
  static LockNow kernelLockNow(int fd, LockKind kind, lockfile::Mode mode, bool remote);
  static LockNow lockAgain(int fd, LockKind kind, lockfile::Mode mode);
  bool stillLocked(Lock& lk, Entry* e, LockNow& now, const char* joinerPath = nullptr);
  void fillOwnView(const Entry* e, InspectResult& out) const;

  TableMutex mu_;
  Stripe stripes_[kStripes];  // an Opening/Closing entry settled (by inode hash)
  DirCache dirs_;             // (its own leaf mutex)
  NetworkFs networkFs_;       // (its own leaf mutex)
  FlatSet<Entry, InodeTraits> byInode_;
  LeaseTable<Entry> leases_;
  OwnerKeys owners_;
  std::unordered_map<uint64_t, std::unique_ptr<Alias>> aliases_;  // by lease, rare
  RequestBook book_;
  IdleList<Entry> idle_;
  std::unordered_set<uint32_t> deadEnvs_;  // JS environments torn down (ids are never reused)
  size_t kernelWaits_ = 0;
  uint32_t nextSerial_ = 0;
  uint64_t grantOrder_ = 0;  // stamps each owner (Owner::order)
  size_t writerChecks_ = 0;  // threads reading /proc/locks for noteJoin (the destructor waits for them)
  std::condition_variable writerChecksDone_;
};

}  // namespace lockspace
