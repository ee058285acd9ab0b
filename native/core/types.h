// The vocabulary every part of the core shares: errors, requests, outcomes, inode keys. Plain C++, no
// N-API; the binding converts these records to and from JavaScript.
//
// Interface: SysError / NotHeldError / ArgError (what the core throws), Request and Sink (an acquire
// and who hears a queued one's outcome), AcquireResult, ResourceInfo, QueuedRequest, VerifyResult,
// InspectResult, DeadlockCycle, Stats (what it answers), InodeKey (a file's identity).
#pragma once

#include <fcntl.h>
#include <sys/types.h>

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <vector>

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

// A file's identity: what the lock table is keyed by.
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

// POSIX record locks (owned by the process) or open file description locks (owned by the fd).
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
  // Other owners that wait for this request while it waits (a Web Locks callback that awaits a request
  // made inside it): in the wait-for graph, they wait for what this request waits for.
  std::vector<std::string> awaitedBy;
};

struct AcquireResult {
  uint64_t lease = 0;      // non-zero: granted now
  bool queued = false;     // the request waits; its Sink hears the outcome
  bool cancelled = false;  // acquireAnnounced: cancelled before it was done; nothing held or queued
};

// A cycle of waits the deadlock search found: step i's owner waits for path, which step i+1's owner
// (the first step's, after the last) holds, or has queued ahead of it in a mode that conflicts (soft).
struct DeadlockStep {
  std::string owner;
  std::string path;
  bool soft = false;
};
using DeadlockCycle = std::vector<DeadlockStep>;  // empty: no cycle

struct ResourceInfo {
  std::string name;
  std::string path;
  bool shared;
  bool autoCreate;
  std::vector<std::string> owners;
};

// A request queued in the table (waiting for its lock): the name it came through, its mode and owner.
struct QueuedRequest {
  uint64_t request;
  std::string name;
  bool shared;
  std::string owner;
};

// What verify() found about a lease.
enum class LeaseCheck : uint8_t {
  Held,      // still locked (as far as the file system tells) and the name still reaches the file
  NotHeld,   // released meanwhile: nothing to say
  Error,     // the file system failed the lock query (ENOTCONN, EBADFD, EIO, ...): error says which
  Conflict,  // another host or process holds a conflicting lock: ours is gone
  Unlinked,  // the name no longer exists
  Replaced,  // the name reaches another file now
  Dropped,   // this process's lock is gone, and nobody else holds the file (yet)
};

struct VerifyResult {
  LeaseCheck check = LeaseCheck::Held;
  int err = 0;               // Error: the errno
  const char* syscall = "";  // Error: the syscall that failed
  std::string path;          // the name the lease was acquired by, in full
};

// One holder record as read from a lock file (holder_record.h has the format).
struct HolderRecord {
  bool exclusive = false;
  uint64_t generation = 0;  // exclusive: its grant's; shared: the last exclusive one's at its grant
  uint64_t since = 0;       // ms after the epoch
  uint64_t live = 0;        // its live byte
  pid_t pid = 0;            // on its host, in its pid namespace
  uint64_t startTime = 0;   // clock ticks after its host's boot
  std::string host, machineId, label;
  int slot = -1;  // where it was found
};

// The records of a file's live holders (a record counts only while its holder holds its lock).
struct HolderRecords {
  int err = 0;               // 0, or the errno of syscall: they could not be read
  const char* syscall = "";  //
  uint64_t generation = 0;   // the last exclusive generation (0: none counted)
  std::vector<HolderRecord> live;
};

// The kernel's and this process's view of one resource (inspect). Nothing is locked to learn it.
struct InspectResult {
  std::string path;
  dev_t dev = 0;  // the file the name reaches now
  ino_t ino = 0;
  bool remote = false;
  // Local file systems: the lock query of every owner's locks (lock_query.h), this process's too.
  int queryErr = 0;  // 0, or the errno of querySyscall: the kernel was not asked
  const char* querySyscall = "";
  short lockType = F_UNLCK;  // F_UNLCK (free), F_RDLCK (shared) or F_WRLCK (exclusive)
  pid_t lockPid = 0;         // the lock found: its owner's pid here, 0 if this pid namespace cannot see it, -1 OFD
  // Network file systems: one conflicting lock of another host or process (F_GETLK/F_OFD_GETLK with
  // a write lock), if any.
  bool otherHeld = false;
  bool otherShared = false;
  bool otherOfd = false;  // the lock reports pid -1: an OFD lock
  // This process.
  bool held = false;  // Held in the table (leases exist)
  bool heldShared = false;
  LockKind heldKind = LockKind::Posix;
  std::vector<std::string> owners;  // owner keys
  size_t waiters = 0;
  HolderRecords records;  // read from the file (read-only, no lock taken)
};

// A holder record to write for a lease just granted (holder_record.h).
struct RecordRequest {
  std::string label;
  bool checkGeneration = false;  // ifGeneration given: fail unless the last exclusive generation is it
  uint64_t ifGeneration = 0;
};

struct RecordResult {
  uint64_t generation = 0;  // exclusive: this grant's; shared: the last exclusive one's
  bool changed = false;     // checkGeneration and the last exclusive generation is `last`: nothing written
  uint64_t last = 0;
  bool recorded = false;  // false: every slot is claimed by other holders (the grant stands, unrecorded)
};

struct Stats {
  size_t resources = 0;  // entries held, waited for or in transition (not the idle ones)
  size_t leases = 0;
  size_t waiters = 0;      // requests queued (or starting over because their file was replaced)
  size_t kernelWaits = 0;  // threads blocked in F_SETLKW
  size_t idleFds = 0;
  size_t spareFds = 0;
};

}  // namespace lockspace
