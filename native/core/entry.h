// One resource of the lock table, and what hangs off it. Plain C++, no N-API; the registry's mutex
// guards every field (the registry reserves an entry, Opening/Granting/Closing, to use its fd outside
// the mutex).
//
// Interface: State and its transitions (an entry's life), Entry (make/destroy, path and name, owners, the rare Extra:
// spare fds, the wait queue, the kernel-wait thread), Owner (one lease of it), Alias (where a lease
// reached it, when that is not the entry's own name), InodeTraits (the table's index by inode).
#pragma once

#include <pthread.h>

#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "dir.h"
#include "flat.h"
#include "types.h"
#include "unique_fd.h"
#include "wait_queue.h"

namespace lockspace {

enum class State : uint8_t {
  Opening,     // reserved by a thread that is opening/locking it (outside the mutex)
  Held,        // locked, with at least one owner
  Granting,    // locked, reserved by a thread that grants queued requests or changes the lock (outside the mutex)
  KernelWait,  // not held: a kernel-wait thread blocks in F_SETLKW on behalf of the queued requests
  Closing,     // last owner gone: being unlocked/unlinked/closed (outside the mutex)
  Idle,        // not locked, fd kept open for a fast re-acquire (bounded LRU, local file systems)
};
constexpr int kStates = 6;

// The life of an entry: every change of state it may go through, and nothing else (Registry::setState
// checks each one, under the mutex). An entry is born Opening (insertEntry) and leaves the table from
// Opening, KernelWait (no thread could be had), Closing or Idle (eraseEntry).
//
//   from        to          when
//   Idle        Opening     an acquire takes the idle fd to lock it again
//   Opening     Held        locked, and the name still reaches the file
//   Opening     KernelWait  another process holds it and the request waits
//   Opening     Idle        another process holds it, no wait: the fd is kept
//   Held        Granting    the last owner left with requests queued (hand-off), requests may join
//                           a held lock (grant in place), a join asks the kernel whether the lock
//                           is still there (stillLocked), a holder record is written
//   Held        Closing     the last owner left and nobody waits
//   Granting    Held        granted (or the record written): someone holds it
//   Granting    KernelWait  let go to wait in the kernel (another mode, another process's writer,
//                           or every name granted reaches another file now)
//   Granting    Closing     the requests it was handed to are all gone
//   KernelWait  Granting    the kernel granted the lock the queue's head asked for
//   KernelWait  Closing     nobody waits any more, or the kernel wait failed
//   Closing     Idle        unlocked, the fd kept for a fast re-acquire
constexpr bool kTransitions[kStates][kStates] = {
    // to: Opening Held   Granting KernelWait Closing Idle
    {false, true, false, true, false, true},    // from Opening
    {false, false, true, false, true, false},   // from Held
    {false, true, false, true, true, false},    // from Granting
    {false, false, true, false, true, false},   // from KernelWait
    {false, false, false, false, false, true},  // from Closing
    {true, false, false, false, false, false},  // from Idle
};
constexpr bool transitionAllowed(State from, State to) noexcept {
  return kTransitions[static_cast<int>(from)][static_cast<int>(to)];
}

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
  uint64_t order;  // when it was granted: leases released together go oldest first
};

// What few entries need: allocated on first use.
struct Extra {
  std::vector<UniqueFd> spare;  // other fds of this inode: closing them while locked would drop the lock
  WaitQueue waiters;            // queued requests, FIFO
  pthread_t thread{};           // the kernel-wait thread while KernelWait
  bool blocking = false;        // that thread is between unlocking to block and locking again
  // Threads asking the kernel about the fd without the mutex (who holds it, while KernelWait): the fd
  // is not closed until they are done (Registry::waitForAskers).
  uint32_t askers = 0;
  // Holder records (holder_record.h): the slot of this process's record and its live byte, claimed in
  // the locking period whose serial is recordSerial (0: none). A later period claims again: the
  // unlock that ended this one dropped both locks.
  int recordSlot = -1;
  uint64_t recordLive = 0;
  uint32_t recordSerial = 0;
  bool recordFileSized = false;  // its file was made kFileSize long (an entry keeps its inode)
  bool yieldFirst = false;       // let go to let another process's writer in: pause before blocking
};

// One resource. Allocated with its full path right behind it (see make), the name being the path's
// last nameLen characters: with a short directory and a 64-character name an entry is one ~200-byte
// allocation, and the fast paths stat the path without building a string.
struct Entry {
  InodeKey key;
  UniqueFd fd;
  State state = State::Opening;  // changed by Registry::setState only
  bool shared = false;           // kernel lock mode while Held
  bool autoCreate = false;       // delete the file at the last release
  bool remote = false;
  bool named = true;  // in its Dir's name index; false once its name was found to reach another file
  LockKind kind = LockKind::Posix;
  uint16_t nameLen = 0;
  uint16_t pathLen = 0;
  // Fairness to another process's exclusive waiter (see Registry::joinOrQueue): shared joins since
  // the kernel lock was last taken (saturating), and whether a check found a writer waiting, after
  // which shared requests queue instead of joining and the last release lets the lock go.
  uint8_t joins = 0;
  bool writerWaits = false;
  // Unique per insertion, and renewed whenever the entry lets its kernel lock go while staying in the
  // table (idle, or unlocked to wait in another mode). The same serial before and after an unlocked
  // window means the same file (the open fd pins its inode number), and no let-go meanwhile.
  uint32_t serial = 0;
  // Counts the hand-offs that took the kernel lock again (it may have been lost, and is this
  // process's again only from then). Locked throughout an unlocked window: same serial, same count.
  // (A network join's lockAgain takes it again too, without counting: each joiner there looks at its
  // own name after it, and each waiter granted in place is looked at by the grant.)
  uint32_t takenAgain = 0;
  uint32_t writerCheckAt = 0;  // when /proc/locks may be read for it again (coarse monotonic ms; 0: now)
  Dir* dir = nullptr;          // kept alive by Dir::self_ while it has entries
  Entry* lruPrev = nullptr;    // idle list links while Idle
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
  WaitQueue& waiters() { return ext().waiters; }
  bool transient() const noexcept {
    return state == State::Opening || state == State::Closing || state == State::Granting;
  }
  bool locked() const noexcept { return state == State::Held || state == State::Granting; }
};

struct InodeTraits {
  using Key = InodeKey;
  static size_t hash(const Key& k) noexcept { return InodeHash()(k); }
  static Key key(const Entry* e) noexcept { return e->key; }
  static bool eq(const Key& a, const Key& b) noexcept { return a == b; }
};

inline std::string_view NameTraits::key(const Entry* e) noexcept { return e->name(); }

}  // namespace lockspace
