// The C++ core test's scenarios of each part of the core on its own (see native/core/registry.h for
// the parts): the wait queue's policy against the cases of the TypeScript reference model
// (test/model.test.ts), grant rounds, the request book, the lease table, owner keys, the idle list,
// the compact containers, the syscalls on a resource file, the network-fs detector, the directories,
// the start time of a process, the holder records.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "../core/dir.h"
#include "../core/flat.h"
#include "../core/holder_record.h"
#include "../core/idle_list.h"
#include "../core/lease_table.h"
#include "../core/lock_file.h"
#include "../core/lock_query.h"
#include "../core/network_fs.h"
#include "../core/owner_keys.h"
#include "../core/proc_stat.h"
#include "../core/request_book.h"
#include "../core/table_mutex.h"
#include "../core/wait_queue.h"
#include "support.h"

namespace lockspace::test {
namespace {

Waiter waiter(uint64_t request, bool shared) {
  Waiter w{};
  w.request = request;
  w.req.shared = shared;
  return w;
}

// The requests a round admits, as ids.
std::vector<uint64_t> admitted(const WaitQueue& q, bool heldShared, bool hasOwners) {
  std::vector<uint64_t> out;
  q.forAdmitted(heldShared, hasOwners, [&](const Waiter& w) { out.push_back(w.request); });
  return out;
}

using Ids = std::vector<uint64_t>;

}  // namespace

// The model's rules: join only while nobody is queued; after the last release the head decides the
// mode (FIFO) and the shared requests right behind a shared head ride along, up to the first exclusive
// one; while held shared, shared requests at the front join.
void testWaitQueuePolicy() {
  // Join: shared on shared, and only while nobody is queued.
  CHECK(WaitQueue::admitsJoin(true, true, false));
  CHECK(!WaitQueue::admitsJoin(true, true, true));
  CHECK(!WaitQueue::admitsJoin(true, false, false));
  CHECK(!WaitQueue::admitsJoin(false, true, false));
  CHECK(!WaitQueue::admitsJoin(false, false, false));

  WaitQueue q;
  for (auto [id, shared] : {std::pair<uint64_t, bool>{1, true}, {2, true}, {3, false}, {4, true}})
    q.push(waiter(id, shared));
  // A hand-off to a shared head: the shared batch up to the first exclusive request.
  CHECK(admitted(q, true, false) == (Ids{1, 2}));
  // Locked in the other mode than the head wants: nothing (the caller changes the mode first).
  CHECK(admitted(q, false, false).empty());
  // Held shared by others: the shared requests at the front join.
  CHECK(admitted(q, true, true) == (Ids{1, 2}));
  q.popFront();
  q.popFront();
  // An exclusive head: alone, FIFO, and never while others hold it.
  CHECK(admitted(q, false, false) == Ids{3});
  CHECK(admitted(q, true, true).empty());
  CHECK(admitted(q, false, true).empty());
  q.popFront();
  CHECK(admitted(q, true, false) == Ids{4});
  // Exclusive behind exclusive: one at a time.
  WaitQueue x;
  x.push(waiter(5, false));
  x.push(waiter(6, false));
  CHECK(admitted(x, false, false) == Ids{5});
}

// Rule 4: a round checks the requests it admitted; cancels meanwhile are skipped, and a request at the
// front that it did not check stops it, so that the policy is asked again.
void testGrantRound() {
  // Held shared; queued X1 S2 X3 S4 (the model's counterexample).
  WaitQueue q;
  std::vector<WaitQueue::Handle> at;
  for (auto [id, shared] : {std::pair<uint64_t, bool>{1, false}, {2, true}, {3, false}, {4, true}})
    at.push_back(q.push(waiter(id, shared)));
  CHECK(GrantRound(q, true, true).empty());  // an exclusive head: nobody joins
  q.erase(at[0]);                            // X1 cancelled
  GrantRound first(q, true, true);
  CHECK(first.admitted() == Ids{2});
  q.erase(at[2]);  // X3 cancelled while S2's name is checked
  CHECK(first.checked(2));
  q.popFront();                              // S2 granted
  CHECK(!first.checked(q.front().request));  // S4: not checked by this round
  GrantRound second(q, true, true);          // asked again: S4 joins
  CHECK(second.admitted() == Ids{4} && second.checked(4));

  // Members cancelled during the check are skipped; the others are still checked, in order.
  WaitQueue s;
  std::vector<WaitQueue::Handle> h;
  for (uint64_t id : {7, 8, 9}) h.push_back(s.push(waiter(id, true)));
  GrantRound round(s, true, false);
  CHECK(round.admitted() == (Ids{7, 8, 9}));
  s.erase(h[0]);
  s.erase(h[1]);
  CHECK(round.checked(s.front().request) && s.front().request == 9);
  s.push(waiter(10, true));  // queued after the round was admitted: not one of its
  s.popFront();
  CHECK(!round.checked(s.front().request));
}

// Handles stay valid while others come and go: a cancel is one erase, whatever the queue's length.
void testWaitQueueHandles() {
  WaitQueue q;
  std::vector<WaitQueue::Handle> at;
  constexpr uint64_t kN = 40000;
  for (uint64_t id = 1; id <= kN; ++id) at.push_back(q.push(waiter(id, id % 3 == 0)));
  CHECK(q.isFront(at[0]) && !q.isFront(at[1]));
  for (uint64_t i = kN; i-- > 1;)
    if (i % 2 == 1) q.erase(at[i]);  // from the back, every other one
  CHECK(q.size() == kN / 2);
  uint64_t expect = 1;
  bool inOrder = true;
  for (const Waiter& w : q) {
    inOrder = inOrder && w.request == expect;
    expect += 2;
  }
  CHECK(inOrder);
  std::list<Waiter> all = q.takeAll();
  CHECK(q.empty() && all.size() == kN / 2);
}

void testRequestBook() {
  RequestBook book;
  Entry* const e = reinterpret_cast<Entry*>(&book);  // an address: the book never reads through it
  WaitQueue q;
  // Queued: a cancel takes it off (the caller erases the waiter at the handle it gets).
  WaitQueue::Handle h = q.push(waiter(1, false));
  book.queue(1, e, h);
  CHECK(book.waiting() == 1);
  RequestBook::Cancel c = book.cancel(1);
  CHECK(c.found == RequestBook::Cancel::Queued && c.entry == e && c.at == h);
  CHECK(book.waiting() == 0 && book.cancel(1).found == RequestBook::Cancel::Nothing);
  // Announced, cancelled before it runs: the runner hears it, and reports it.
  book.announce(2);
  CHECK(book.waiting() == 0);  // not waiting yet
  CHECK(book.cancel(2).found == RequestBook::Cancel::Announced && book.withdrawn(2));
  CHECK(book.cancel(2).found == RequestBook::Cancel::Announced);  // again: still the runner's
  CHECK(book.settle(2) && !book.find(2));
  // Announced, run, queued: settled by the runner, then an ordinary queued request.
  book.announce(3);
  book.queue(3, e, q.push(waiter(3, false)));
  CHECK(!book.settle(3) && book.find(3) && book.find(3)->phase == RequestBook::Phase::Queued);
  CHECK(book.waiting() == 1);
  book.leave(3);  // granted
  CHECK(!book.find(3) && book.waiting() == 0);
  // Announced, cancelled while its acquire runs, which then queues it: the runner sees the mark and
  // takes it off the queue with a cancel.
  book.announce(4);
  CHECK(book.cancel(4).found == RequestBook::Cancel::Announced);
  book.queue(4, e, q.push(waiter(4, false)));
  CHECK(book.settle(4));
  CHECK(book.cancel(4).found == RequestBook::Cancel::Queued && book.waiting() == 0);
  // Restarting (its name reaches another file now): counted as waiting; a cancel marks it.
  book.queue(5, e, q.push(waiter(5, false)));
  book.restart(5);
  CHECK(book.waiting() == 1 && book.find(5)->phase == RequestBook::Phase::Restarting);
  CHECK(book.cancel(5).found == RequestBook::Cancel::Restarting);
  CHECK(book.settle(5) && book.waiting() == 0 && !book.find(5));
  // A withdrawn request failed off its queue before its runner is back stays booked for the runner.
  book.announce(6);
  book.cancel(6);
  book.queue(6, e, q.push(waiter(6, false)));
  book.leave(6);
  CHECK(book.withdrawn(6) && book.waiting() == 0);
  CHECK(book.settle(6) && !book.find(6));
}

void testLeaseTable() {
  LeaseTable<int> t;
  int a = 1, b = 2;
  const uint64_t la = t.add(&a), lb = t.add(&b);
  CHECK(la != 0 && lb != 0 && la != lb && la < (1ULL << 53) && lb < (1ULL << 53));
  CHECK(t.find(la) == &a && t.find(lb) == &b && t.size() == 2);
  t.drop(la);
  CHECK(!t.find(la) && t.size() == 1);
  const uint64_t lc = t.add(&a);  // reuses la's slot, with another generation
  CHECK(lc != la && (lc & 0xFFFFFF) == (la & 0xFFFFFF) && !t.find(la) && t.find(lc) == &a);
  t.drop(la);  // stale: ignored
  t.drop(0);
  t.drop(~0ULL);
  CHECK(t.size() == 2 && t.find(lc) == &a && !t.find(0) && !t.find(~0ULL));
}

void testLeaseIdsNeverRepeat() {
  // A slot with 3 generations: used up, it is retired, and the next lease takes a new slot.
  LeaseTable<int, 3> t;
  int a = 1;
  std::vector<uint64_t> given;
  for (int i = 0; i < 5; ++i) {
    const uint64_t id = t.add(&a);
    CHECK(std::find(given.begin(), given.end(), id) == given.end());
    given.push_back(id);
    t.drop(id);
  }
  CHECK((given[0] & 0xFFFFFF) == (given[2] & 0xFFFFFF) && (given[3] & 0xFFFFFF) != (given[0] & 0xFFFFFF));
  for (uint64_t id : given) CHECK(!t.find(id));
  CHECK(t.size() == 0);
}

void testOwnerKeys() {
  OwnerKeys keys;
  const uint32_t a = keys.intern("vm1");
  CHECK(keys.intern("vm1") == a && keys.key(a) == "vm1" && keys.size() == 1);
  const uint32_t b = keys.intern("vm2");
  CHECK(b != a && keys.size() == 2);
  keys.unref(a);
  CHECK(keys.key(a) == "vm1");  // one reference left
  keys.unref(a);
  CHECK(keys.size() == 1);
  CHECK(keys.intern("vm3") == a);  // the free id again
  CHECK(keys.key(a) == "vm3" && keys.key(b) == "vm2");
}

namespace {
struct Node {
  Node* lruPrev = nullptr;
  Node* lruNext = nullptr;
};
}  // namespace

void testIdleList() {
  IdleList<Node> idle;
  CHECK(idle.enabled() && idle.size() == 0 && !idle.oldest());
  Node n[3];
  for (Node& x : n) idle.push(&x);
  CHECK(idle.size() == 3 && idle.oldest() == &n[0] && !idle.overCap());
  idle.unlink(&n[0]);
  CHECK(idle.oldest() == &n[1]);
  idle.push(&n[0]);  // most recently used again
  idle.unlink(&n[2]);
  CHECK(idle.oldest() == &n[1] && idle.size() == 2);
  idle.setLimit(1);
  CHECK(idle.overCap());
  idle.unlink(idle.oldest());
  CHECK(!idle.overCap() && idle.oldest() == &n[0]);
  idle.setLimit(0);
  CHECK(!idle.enabled() && idle.overCap());
  CHECK(idleCapFor(1u << 30) <= (1u << 30) && idleCapFor(5) <= 5);
}

namespace {
struct Item {
  int key;
};
struct ItemTraits {
  using Key = int;
  static size_t hash(const Key& k) noexcept { return static_cast<size_t>(k) * 7; }  // collisions on purpose
  static Key key(const Item* i) noexcept { return i->key; }
  static bool eq(const Key& a, const Key& b) noexcept { return a == b; }
};
}  // namespace

void testFlatContainers() {
  std::vector<Item> items(1000);
  FlatSet<Item, ItemTraits> set;
  for (int i = 0; i < 1000; ++i) {
    items[i].key = i;
    CHECK(set.insert(&items[i]) == &items[i]);
  }
  Item dup{5};
  CHECK(set.insert(&dup) == &items[5] && set.size() == 1000);
  for (int i = 0; i < 1000; i += 2) CHECK(set.erase(&items[i]));
  CHECK(!set.erase(&items[0]) && set.size() == 500);
  bool found = true;
  for (int i = 0; i < 1000; ++i) found = found && (set.find(i) == (i % 2 ? &items[i] : nullptr));
  CHECK(found);  // backward-shift deletion kept every probe run reachable
  size_t seen = 0;
  set.forEach([&](Item*) { ++seen; });
  CHECK(seen == 500);

  SmallVec<uint64_t, 1> v;
  for (uint64_t i = 0; i < 10; ++i) v.push_back(i);
  v.erase(v.begin() + 3);
  CHECK(v.size() == 9 && v.begin()[3] == 4 && v.front() == 0);
}

// The checks of table_mutex.h fire: a syscall on a resource file made while this thread holds a table
// mutex, and an entry's change of state that entry.h's table does not allow. (Every other scenario
// runs with them on: core_test counts a failed check as a failure.)
void testTableMutexChecks() {
  static std::vector<std::string> heard;
  heard.clear();
  const checks::FailFn before =
      checks::failFn.exchange([](const char* what, const char*, int) { heard.push_back(what); });
  const std::string dir = freshDir("checks");
  CHECK(::mkdir(dir.c_str(), 0700) == 0);
  const std::string p = dir + "/res";
  UniqueFd fd;
  CHECK(lockfile::createNew(p.c_str(), fd) == 0 && heard.empty());
  TableMutex mu;
  {
    std::unique_lock<TableMutex> lk(mu);
    CHECK(mu.heldByThisThread());
    lockfile::tryLock(fd.get(), LockKind::Posix, lockfile::Mode::Exclusive);  // fires
    lk.unlock();
    CHECK(!mu.heldByThisThread());
    lockfile::unlock(fd.get(), LockKind::Posix);  // does not
    lk.lock();
    std::condition_variable cv;
    std::thread other([&] {
      std::lock_guard<TableMutex> g(mu);  // taken while the waiter lets it go
      cv.notify_all();
    });
    waitReleasing(cv, lk);  // (a spurious wake-up ends it early: the checks below hold either way)
    CHECK(mu.heldByThisThread());
    lk.unlock();
    other.join();
  }
  CHECK(heard.size() == 1 && heard[0] == std::string("fcntl with the table mutex held"));
  CHECK(transitionAllowed(State::Opening, State::Held) && transitionAllowed(State::Granting, State::KernelWait));
  CHECK(!transitionAllowed(State::Idle, State::Held) && !transitionAllowed(State::Closing, State::Opening));
  checks::failFn.store(before);
  ::unlink(p.c_str());
}

void testLockFile() {
  const std::string dir = freshDir("lockfile");
  CHECK(::mkdir(dir.c_str(), 0700) == 0);
  const std::string p = dir + "/res", q = dir + "/other", link = dir + "/link";
  UniqueFd fd;
  CHECK(lockfile::createNew(p.c_str(), fd) == 0);
  struct stat st {};
  CHECK(fd && ::fstat(fd.get(), &st) == 0 && (st.st_mode & 0777) == 0600);
  UniqueFd none;
  CHECK(lockfile::createNew(p.c_str(), none) == EEXIST && !none);
  CHECK(lockfile::makeFile(p.c_str()) == EEXIST);
  CHECK(::symlink(p.c_str(), link.c_str()) == 0);
  CHECK(lockfile::open(link.c_str(), none) == ELOOP && !none);  // never follows a symlink
  const char* why = "";
  CHECK(lockfile::checkRegular(S_IFREG | 0600, &why) == 0);
  CHECK(lockfile::checkRegular(S_IFDIR | 0700, &why) == EISDIR &&
        std::string(why).find("directory") != std::string::npos);
  CHECK(lockfile::checkRegular(S_IFLNK | 0777, &why) == ELOOP &&
        std::string(why).find("symbolic link") != std::string::npos);
  CHECK(lockfile::checkRegular(S_IFIFO | 0600, &why) == EINVAL && std::string(why).find("FIFO") != std::string::npos);

  const InodeKey key{st.st_dev, st.st_ino};
  CHECK(lockfile::namesInode(p.c_str(), key) && !lockfile::namesInode(link.c_str(), key));
  CHECK(lockfile::tryLock(fd.get(), LockKind::Posix, lockfile::Mode::Shared) == 0);
  CHECK(outsiderCanLock(p, true) && !outsiderCanLock(p, false));
  struct flock fl {};
  CHECK(lockfile::query(fd.get(), LockKind::Posix, lockfile::Mode::Exclusive, fl) == 0 && fl.l_type == F_UNLCK);
  CHECK(lockfile::unlock(fd.get(), LockKind::Posix) == 0 && outsiderCanLock(p, false));
  {
    OutsideHolder holder(p);
    CHECK(holder.pid > 0);
    const int err = lockfile::tryLock(fd.get(), LockKind::Posix, lockfile::Mode::Exclusive);
    CHECK(lockfile::isBusy(err));
    CHECK(lockfile::holderPid(fd.get(), LockKind::Posix, lockfile::Mode::Shared) == holder.pid);
    CHECK(lockfile::query(fd.get(), LockKind::Ofd, lockfile::Mode::Shared, fl) == 0 && fl.l_type == F_WRLCK);
    // Held by another process: a delete refuses, the file stays.
    CHECK(lockfile::deleteHeld(fd.get(), LockKind::Ofd, lockfile::Mode::Shared, p.c_str(), key) == EBUSY);
    CHECK(exists(p));
  }
  // The name reaches another file now: not ours to delete.
  CHECK(lockfile::tryLock(fd.get(), LockKind::Ofd, lockfile::Mode::Exclusive) == 0);
  ::close(::open(q.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
  CHECK(::rename(q.c_str(), p.c_str()) == 0);
  CHECK(lockfile::deleteHeld(fd.get(), LockKind::Ofd, lockfile::Mode::Exclusive, p.c_str(), key) == ENOENT);
  CHECK(exists(p));
  // Our own file again: deleted.
  UniqueFd again;
  CHECK(lockfile::open(p.c_str(), again) == 0 && ::fstat(again.get(), &st) == 0);
  const InodeKey key2{st.st_dev, st.st_ino};
  CHECK(lockfile::tryLock(again.get(), LockKind::Posix, lockfile::Mode::Exclusive) == 0);
  CHECK(lockfile::deleteHeld(again.get(), LockKind::Posix, lockfile::Mode::Exclusive, p.c_str(), key2) == 0);
  CHECK(!exists(p));
  // Closing the locked fd drops the lock (also the remote way: unlock first).
  UniqueFd created;
  CHECK(lockfile::openOrCreate(p.c_str(), created) == 0 &&
        lockfile::tryLock(created.get(), LockKind::Posix, lockfile::Mode::Exclusive) == 0);
  CHECK(!outsiderCanLock(p, false));
  lockfile::closeLocked(created, LockKind::Posix, true);
  CHECK(!created && outsiderCanLock(p, false));
  UniqueFd query;
  CHECK(lockfile::openForQuery(p.c_str(), query) == 0 &&
        lockfile::tryLock(query.get(), LockKind::Posix, lockfile::Mode::Exclusive) != 0);  // read-only
}

void testNetworkFs() {
  CHECK(NetworkFs::isNetworkType(0x6969) && NetworkFs::isNetworkType(0x65735546));    // NFS, FUSE
  CHECK(!NetworkFs::isNetworkType(0xEF53) && !NetworkFs::isNetworkType(0x01021994));  // ext4, tmpfs
  struct statfs sfs {};
  CHECK(::statfs(root.c_str(), &sfs) == 0);
  const bool here = NetworkFs::isNetworkType(sfs.f_type);
  NetworkFs fs;
  CHECK(NetworkFs::ofDirectory(root) == here);
  CHECK(fs.ofParent(root + "/x") == here && fs.ofParent(root + "/y") == here);
  int fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  struct stat st {};
  CHECK(fd >= 0 && ::fstat(fd, &st) == 0 && fs.ofDevice(st.st_dev, fd) == here);
  ::close(fd);
  CHECK(fs.ofDevice(st.st_dev, -1) == here);  // cached by device
  NetworkFs::setForced(true);
  CHECK(fs.ofParent(root + "/x"));
  NetworkFs::setForced(false);
  CHECK(fs.ofParent(root + "/x") == here);
}

void testDirCache() {
  DirCache dirs;
  const std::string deep = freshDir("dirs") + "/a/b";
  DirPtr d = dirs.open(deep);
  struct stat st {};
  CHECK(d && !d->pathMode() && ::stat(deep.c_str(), &st) == 0 && (st.st_mode & 0777) == 0700);
  CHECK(::symlink(deep.c_str(), (freshDir("dirs") + "/via").c_str()) == 0);
  CHECK(dirs.open(freshDir("dirs") + "/via").get() == d.get());  // one Dir per canonical directory
  CHECK(d->fullPath("res") == d->path() + "/res");
  d->checkName("res");
  for (const char* bad : {"", ".", "..", "a/b"}) {
    bool threw = false;
    try {
      d->checkName(bad);
    } catch (const ArgError&) {
      threw = true;
    }
    CHECK(threw);
  }
  const DirPtr& paths = dirs.pathMode();
  CHECK(paths->pathMode() && paths->fullPath("/x/y") == "/x/y");
  paths->checkName("/x/y");
  bool threw = false;
  try {
    dirs.open("relative");
  } catch (const ArgError&) {
    threw = true;
  }
  CHECK(threw);
  // A file in the way: ENOTDIR, and nothing this call created is left.
  const std::string file = freshDir("dirs") + "/file";
  ::close(::open(file.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
  CHECK(errnoOf([&] { dirs.open(file); }) == ENOTDIR);
  CHECK(errnoOf([&] { dirs.open(file + "/sub"); }) == ENOTDIR && !exists(file + "/sub"));
  CHECK(d->openError(ENOENT, d->fullPath("x")).detail.empty());
}

// A process's start time (proc_stat.h): field 22, counted after the command's LAST ')' (a command
// may hold spaces, '(' and ') '), and nothing for a text without it.
void testProcStat() {
  // Fields 3..21 of a real line, then the start time 987654, then the rest.
  const std::string tail = " S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 2048 100";
  uint64_t v = 0;
  CHECK(procstat::startTimeIn("1234 (sleep)" + tail, &v) && v == 987654);
  CHECK(procstat::startTimeIn("1234 (a) b 1 2 3)" + tail, &v) && v == 987654);
  CHECK(procstat::startTimeIn("1234 (x) S 9 (y) ) ) 7)" + tail, &v) && v == 987654);
  CHECK(procstat::startTimeIn("1234 ()" + tail, &v) && v == 987654);
  // Too few fields, no command, a field 22 that is not a number: not a start time.
  CHECK(!procstat::startTimeIn("1234 (sleep) S 1 1234", &v));
  CHECK(!procstat::startTimeIn("1234 sleep" + tail, &v));
  CHECK(!procstat::startTimeIn("1234 (sleep) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 x 1", &v));
  CHECK(!procstat::startTimeIn("", &v));
  // This process: the same as the holder records' identity; a pid nobody has: none.
  uint64_t mine = 0;
  CHECK(procstat::startTimeOf(::getpid(), &mine) && mine > 0 && mine == record::self().startTime);
  CHECK(record::startTimeOf(::getpid()) == mine);
  CHECK(!procstat::startTimeOf(1 << 23, &v) && record::startTimeOf(1 << 23) == 0);
}

// Holder records (holder_record.h): the count goes on under the exclusive lock, a record is read only
// while its holder holds its live byte, a torn cell or slot is never believed.
void testHolderRecords() {
  const std::string dir = freshDir("records");
  DirPtr d = reg().openDir(dir);
  reg().create(d, "disk");
  const std::string path = dir + "/disk";
  auto live = [&] { return lockquery::ask({path}, lockquery::Records::All)[0].records; };

  uint64_t a = reg().acquire(d, "disk", req()).lease;
  RecordRequest rr;
  rr.label = "vm-42";
  const RecordResult first = reg().writeRecord(a, rr);
  CHECK(first.last == 0 && first.recorded && !first.changed);
  CHECK(first.generation == record::nextGeneration(0) || first.generation > record::nextGeneration(0) - (1ULL << 30));
  HolderRecords seen = live();
  CHECK(seen.err == 0 && seen.generation == first.generation && seen.live.size() == 1);
  if (seen.live.size() == 1) {
    const HolderRecord& h = seen.live[0];
    CHECK(h.exclusive && h.generation == first.generation && h.label == "vm-42" && h.pid == ::getpid());
    CHECK(h.host == record::self().host && h.startTime == record::self().startTime && h.startTime > 0);
  }
  struct stat st {};
  CHECK(::stat(path.c_str(), &st) == 0 && st.st_size == record::kFileSize);
  CHECK(reg().release(a));
  CHECK(live().live.empty());  // released: the record is in the file, its live byte is not locked

  // The next exclusive grant counts on; ifGeneration of an older one changes nothing.
  a = reg().acquire(d, "disk", req()).lease;
  CHECK(reg().writeRecord(a, {}).generation == first.generation + 1);
  CHECK(reg().release(a));
  a = reg().acquire(d, "disk", req()).lease;
  RecordRequest stale;
  stale.checkGeneration = true;
  stale.ifGeneration = first.generation;
  const RecordResult refused = reg().writeRecord(a, stale);
  CHECK(refused.changed && refused.last == first.generation + 1);
  CHECK(live().live.empty());  // nothing written for the refused grant
  stale.ifGeneration = first.generation + 1;
  CHECK(reg().writeRecord(a, stale).generation == first.generation + 2);

  // A cell write cut short: the other cell still holds the last count.
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  record::Count count;
  CHECK(record::readCount(fd.get(), false, &count) == 0 && count.last == first.generation + 2);
  const char junk[8] = {'t', 'o', 'r', 'n', 0, 0, 0, 1};
  CHECK(::pwrite(fd.get(), junk, sizeof junk, count.target * record::kCellSize + 8) ==
        static_cast<ssize_t>(sizeof junk));
  record::Count after;
  CHECK(record::readCount(fd.get(), false, &after) == 0 && after.last == count.last && after.target == count.target);
  // A torn slot: not a record, although its live byte is locked.
  CHECK(live().live.size() == 1);
  for (int slot = 0; slot < record::kSlots; ++slot) {
    char magic[4];
    if (::pread(fd.get(), magic, 4, record::kSlotBase + slot * record::kSlotSize) != 4 ||
        std::memcmp(magic, "LSR1", 4) != 0)
      continue;
    CHECK(::pwrite(fd.get(), "X", 1, record::kSlotBase + slot * record::kSlotSize + 20) == 1);  // its time
  }
  CHECK(live().live.empty());
  CHECK(reg().release(a));
  fd.reset();  // after the release: closing an fd of the file drops this process's POSIX locks on it

  // Shared: two leases of this process share one kernel lock and one record, the latest grant's label.
  uint64_t s1 = reg().acquire(d, "disk", req(true, false, "o1")).lease;
  uint64_t s2 = reg().acquire(d, "disk", req(true, false, "o2")).lease;
  RecordRequest r1, r2;
  r1.label = "one";
  r2.label = "two";
  CHECK(reg().writeRecord(s1, r1).generation == first.generation + 2);  // shared: the last exclusive one
  reg().writeRecord(s2, r2);
  seen = live();
  CHECK(seen.live.size() == 1 && !seen.live[0].exclusive && seen.live[0].label == "two");
  CHECK(reg().release(s1) && reg().release(s2));
  bool notHeld = false;
  try {
    reg().writeRecord(s1, {});
  } catch (const NotHeldError&) {
    notHeld = true;
  }
  CHECK(notHeld);
}

}  // namespace lockspace::test
