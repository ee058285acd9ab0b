// Tests of the plain C++ core (native/core), without Node: built by binding.gyp as `core_test`,
// run by test/core.test.ts and under valgrind. One function a scenario, like libvirt's
// tests/virlockspacetest.c. Exits non-zero on the first failure.
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../core/registry.h"
#include "../core/test_point.h"

using namespace lockspace;

namespace {

int failures = 0;
std::string root;

#define CHECK(cond)                                                       \
  do {                                                                    \
    if (!(cond)) {                                                        \
      fprintf(stderr, "  FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                         \
    }                                                                     \
  } while (0)

template <typename F>
int errnoOf(F&& f) {
  try {
    f();
  } catch (const SysError& e) {
    return e.err;
  }
  return 0;
}

bool exists(const std::string& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0;
}

// Another process's view: can it take the lock on byte 0? (fork; the child uses a fresh fd)
bool outsiderCanLock(const std::string& path, bool shared) {
  pid_t pid = fork();
  if (pid == 0) {
    int fd = ::open(path.c_str(), O_RDWR);
    struct flock fl {};
    fl.l_type = shared ? F_RDLCK : F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_len = 1;
    _exit(fd >= 0 && ::fcntl(fd, F_SETLK, &fl) == 0 ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

Request req(bool shared = false, bool autoCreate = false, const char* owner = "o1") {
  Request r;
  r.shared = shared;
  r.autoCreate = autoCreate;
  r.owner = owner;
  r.env = 1;
  return r;
}

Registry& reg() { return Registry::instance(); }

std::string freshDir(const char* name) { return root + "/" + name; }

void testCreateDelete() {
  DirPtr d = reg().openDir(freshDir("create"));
  struct stat st {};
  CHECK(::stat(d->path().c_str(), &st) == 0 && (st.st_mode & 0777) == 0700);
  reg().create(d, "res");
  CHECK(::stat((d->path() + "/res").c_str(), &st) == 0 && (st.st_mode & 0777) == 0600);
  CHECK(errnoOf([&] { reg().create(d, "res"); }) == EEXIST);
  reg().remove(d, "res", LockKind::Posix);
  CHECK(!exists(d->path() + "/res"));
  reg().remove(d, "res", LockKind::Posix);  // absent: no error
}

void testExclusive() {
  DirPtr d = reg().openDir(freshDir("excl"));
  reg().create(d, "res");
  uint64_t a = reg().acquire(d, "res", req()).lease;
  CHECK(a != 0);
  CHECK(!outsiderCanLock(d->path() + "/res", false));
  CHECK(errnoOf([&] { reg().acquire(d, "res", req(false, false, "o2")); }) == EBUSY);
  CHECK(errnoOf([&] { reg().acquire(d, "res", req(true)); }) == EBUSY);
  CHECK(errnoOf([&] { reg().remove(d, "res", LockKind::Posix); }) == EBUSY);
  CHECK(!outsiderCanLock(d->path() + "/res", false));  // the failed attempts dropped nothing
  CHECK(reg().release(a));
  CHECK(!reg().release(a));  // idempotent
  CHECK(outsiderCanLock(d->path() + "/res", false));
  CHECK(exists(d->path() + "/res"));
}

void testSharedAutoCreate() {
  DirPtr d = reg().openDir(freshDir("shr"));
  std::string p = d->path() + "/res";
  uint64_t a = reg().acquire(d, "res", req(true, true, "a")).lease;
  uint64_t b = reg().acquire(d, "res", req(true, false, "b")).lease;
  CHECK(a && b && a != b);
  CHECK(exists(p));
  CHECK(outsiderCanLock(p, true) && !outsiderCanLock(p, false));
  CHECK(errnoOf([&] { reg().acquire(d, "res", req(false)); }) == EBUSY);
  auto res = reg().resources(d);
  CHECK(res.size() == 1 && res[0].owners.size() == 2 && res[0].shared && res[0].autoCreate);
  reg().release(a);
  CHECK(exists(p) && !outsiderCanLock(p, false));  // still held by b
  reg().release(b);
  CHECK(!exists(p));  // autoCreate: deleted at the last release
}

void testInodeIdentity() {
  DirPtr d = reg().openDir(freshDir("ident"));
  reg().create(d, "res");
  std::string p = d->path() + "/res";
  CHECK(::link(p.c_str(), (d->path() + "/alias").c_str()) == 0);
  CHECK(::symlink(d->path().c_str(), (root + "/ident-link").c_str()) == 0);
  DirPtr viaLink = reg().openDir(root + "/ident-link");
  CHECK(viaLink.get() == d.get());  // canonical directory: the same lockspace
  uint64_t a = reg().acquire(d, "res", req()).lease;
  CHECK(errnoOf([&] { reg().acquire(d, "alias", req()); }) == EBUSY);
  CHECK(errnoOf([&] { reg().acquire(reg().pathModeDir(), p, req()); }) == EBUSY);
  CHECK(errnoOf([&] { reg().acquire(reg().pathModeDir(), d->path() + "/./alias", req()); }) == EBUSY);
  CHECK(!outsiderCanLock(p, false));  // none of those opens closed our lock away
  reg().release(a);
  CHECK(outsiderCanLock(p, false));
}

void testBadInput() {
  DirPtr d = reg().openDir(freshDir("bad"));
  for (const char* bad : {"", ".", "..", "a/b", "/abs"}) {
    bool threw = false;
    try {
      reg().acquire(d, bad, req());
    } catch (const ArgError&) {
      threw = true;
    }
    CHECK(threw);
  }
  CHECK(::symlink("/etc/passwd", (d->path() + "/link").c_str()) == 0);
  CHECK(errnoOf([&] { reg().acquire(d, "link", req(false, true)); }) == ELOOP);
  CHECK(::mkfifo((d->path() + "/fifo").c_str(), 0600) == 0);
  CHECK(errnoOf([&] { reg().acquire(d, "fifo", req()); }) == EINVAL);
  CHECK(::mkdir((d->path() + "/dir").c_str(), 0700) == 0);
  CHECK(errnoOf([&] { reg().acquire(d, "dir", req()); }) == EISDIR);
  CHECK(errnoOf([&] { reg().acquire(d, "missing", req()); }) == ENOENT);
  CHECK(!exists(d->path() + "/missing"));
  Stats s = reg().stats();
  CHECK(s.leases == 0);
}

struct TestSink : Sink {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::pair<uint64_t, uint64_t>> grants;
  std::vector<std::pair<uint64_t, int>> failures;
  void granted(uint64_t r, uint64_t l) override {
    std::lock_guard<std::mutex> lk(mu);
    grants.emplace_back(r, l);
    cv.notify_all();
  }
  void failed(uint64_t r, const SysError& e) override {
    std::lock_guard<std::mutex> lk(mu);
    failures.emplace_back(r, e.err);
    cv.notify_all();
  }
  bool waitFor(size_t n) {
    std::unique_lock<std::mutex> lk(mu);
    return cv.wait_for(lk, std::chrono::seconds(10), [&] { return grants.size() + failures.size() >= n; });
  }
};

void testHandOffFifo() {
  DirPtr d = reg().openDir(freshDir("fifo"));
  reg().create(d, "res");
  auto sink = std::make_shared<TestSink>();
  uint64_t a = reg().acquire(d, "res", req()).lease;
  CHECK(reg().acquire(d, "res", req(), 101, sink).queued);
  CHECK(reg().acquire(d, "res", req(true), 102, sink).queued);
  CHECK(reg().acquire(d, "res", req(true), 103, sink).queued);
  CHECK(reg().cancel(103));
  CHECK(!reg().cancel(103));
  reg().release(a);
  CHECK(sink->waitFor(1) && sink->grants[0].first == 101);
  reg().release(sink->grants[0].second);
  CHECK(sink->waitFor(2) && sink->grants[1].first == 102);
  reg().release(sink->grants[1].second);
  CHECK(reg().stats().leases == 0 && reg().stats().waiters == 0);
}

void testKernelWait() {
  DirPtr d = reg().openDir(freshDir("kwait"));
  reg().create(d, "res");
  std::string p = d->path() + "/res";
  int toChild[2], fromChild[2];
  CHECK(pipe(toChild) == 0 && pipe(fromChild) == 0);
  pid_t pid = fork();
  if (pid == 0) {
    int fd = ::open(p.c_str(), O_RDWR);
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_len = 1;
    ::fcntl(fd, F_SETLK, &fl);
    char c = 'x';
    if (write(fromChild[1], &c, 1) != 1) _exit(2);
    if (read(toChild[0], &c, 1) != 1) _exit(2);
    _exit(0);
  }
  char c;
  CHECK(read(fromChild[0], &c, 1) == 1);
  SysError busy(0, "", "");
  try {
    reg().acquire(d, "res", req());
  } catch (const SysError& e) {
    busy = e;
  }
  CHECK(busy.err == EBUSY && !busy.busyHere && busy.holderPid == pid);
  auto sink = std::make_shared<TestSink>();
  CHECK(reg().acquire(d, "res", req(), 201, sink).queued);
  CHECK(reg().acquire(d, "res", req(), 202, sink).queued);
  CHECK(reg().stats().kernelWaits == 1);
  CHECK(reg().cancel(202));
  CHECK(write(toChild[1], "x", 1) == 1);
  int status;
  waitpid(pid, &status, 0);
  CHECK(sink->waitFor(1) && sink->grants.size() == 1 && sink->grants[0].first == 201);
  CHECK(!outsiderCanLock(p, false));
  reg().release(sink->grants[0].second);
  // A wait that is cancelled while blocked in F_SETLKW: the thread is interrupted and goes away.
  uint64_t mine = reg().acquire(d, "res", req()).lease;
  pid = fork();
  if (pid == 0) _exit(0);
  waitpid(pid, &status, 0);
  reg().release(mine);
  close(toChild[0]);
  close(toChild[1]);
  close(fromChild[0]);
  close(fromChild[1]);
}

void testThreads() {
  DirPtr d = reg().openDir(freshDir("threads"));
  constexpr int kRes = 4, kThreads = 6, kIters = 3000;
  std::atomic<int> state[kRes];
  for (auto& s : state) s = 0;
  std::atomic<int> violations{0}, busy{0}, done{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      unsigned seed = t * 7919u + 1;
      for (int i = 0; i < kIters; ++i) {
        seed = seed * 1103515245u + 12345u;
        int r = (seed >> 8) % kRes;
        bool shared = (seed >> 4) & 1;
        bool autoCreate = (seed >> 5) & 1;
        std::string name = "r" + std::to_string(r);
        try {
          uint64_t lease = reg().acquire(d, name, req(shared, autoCreate)).lease;
          if (shared) {
            if (state[r].fetch_add(1) < 0) ++violations;
            state[r].fetch_sub(1);
          } else {
            int zero = 0;
            if (!state[r].compare_exchange_strong(zero, -1)) ++violations;
            state[r].store(0);
          }
          reg().release(lease);
          ++done;
        } catch (const SysError& e) {
          if (e.err != EBUSY && e.err != ENOENT) ++violations;
          ++busy;
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  printf("  threads: %d done, %d busy/absent, %d violations\n", done.load(), busy.load(), violations.load());
  CHECK(violations == 0);
  CHECK(done > 0);
  Stats s = reg().stats();
  CHECK(s.leases == 0 && s.waiters == 0);
}

void testReleaseOwnerAndEnv() {
  DirPtr d = reg().openDir(freshDir("owner"));
  Request a = req(true, true, "vm1");
  Request b = req(true, true, "vm2");
  b.env = 7;
  reg().acquire(d, "x", a);
  reg().acquire(d, "y", a);
  reg().acquire(d, "x", b);
  CHECK(reg().releaseOwner(d, "vm1") == 2);
  CHECK(exists(d->path() + "/x") && !exists(d->path() + "/y"));
  bool notHeld = false;
  try {
    reg().releaseByName(d, "x", "vm1");
  } catch (const NotHeldError&) {
    notHeld = true;
  }
  CHECK(notHeld);
  CHECK(reg().releaseEnv(7) == 1);
  CHECK(!exists(d->path() + "/x"));
}

// Test points (see test_point.h) take a plain function: the scenario's state lives in statics.
struct PointAction {
  const char* point = nullptr;
  std::string detail;
  std::function<void()> action;
  std::atomic<bool> fired{false};  // entered (set first: the action may pass the same point again)
  std::atomic<bool> done{false};   // the action has returned
};
PointAction pointAction;

void onPoint(const char* point, const char* detail) {
  PointAction& a = pointAction;
  if (a.fired || !a.point || strcmp(point, a.point) != 0 || a.detail != detail) return;
  a.fired = true;  // once: the action may re-enter the registry and pass the same point
  a.action();
  a.done = true;
}

void armPoint(const char* point, const char* detail, std::function<void()> action) {
  pointAction.point = point;
  pointAction.detail = detail;
  pointAction.action = std::move(action);
  pointAction.fired = false;
  pointAction.done = false;
  testing::pointFn = onPoint;
}

void disarmPoint() {
  testing::pointFn = nullptr;
  pointAction.point = nullptr;
}

// Polls cond every millisecond for up to 10 s.
bool eventually(const std::function<bool()>& cond) {
  for (int i = 0; i < 10000; ++i) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return cond();
}

// End of a scenario with an outsider's fd: release what was granted, close it, the table is empty.
void releaseGrantsAndClose(TestSink& sink, int out) {
  for (auto& g : sink.grants) reg().release(g.second);
  ::close(out);
  CHECK(reg().stats().leases == 0 && reg().stats().waiters == 0);
}

// The outsider has let go: exactly `request` is granted, exclusively; then release and clean up.
void expectSoleExclusiveGrant(TestSink& sink, uint64_t request, const std::string& p, int out) {
  CHECK(sink.waitFor(1) && sink.grants.size() == 1 && sink.grants[0].first == request);
  CHECK(!outsiderCanLock(p, true));
  releaseGrantsAndClose(sink, out);
}

// A scenario: a directory with the file "res", and an outsider's fd on it holding an exclusive OFD
// lock (OFD and POSIX locks conflict within a process, so it plays another process).
bool ofdLock(int fd, short type);

struct Scene {
  DirPtr d;
  std::string p;
  int out;
};
Scene sceneWithOutsider(const char* dirName) {
  DirPtr d = reg().openDir(freshDir(dirName));
  reg().create(d, "res");
  std::string p = d->path() + "/res";
  int out = ::open(p.c_str(), O_RDWR | O_CLOEXEC);
  CHECK(out >= 0 && ofdLock(out, F_WRLCK));
  return Scene{d, p, out};
}

ino_t inodeOf(const std::string& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0 ? st.st_ino : 0;
}

// An acquire stats "a"; before it looks the inode up, "a" is deleted and its inode number reused
// (ext4 does so at once) by "b", held in the table. The acquire of "a" must not take b's entry for it.
void testReusedInodeNumber() {
  DirPtr d = reg().openDir(freshDir("reuse"));
  const std::string pa = d->path() + "/a";
  bool reused = false;
  uint64_t b = 0;

  // At the point: "a" is deleted and "b" created and locked (shared or not), likely on a's old inode.
  auto replaceByB = [&](bool shared, bool recreateA) {
    reg().create(d, "a");
    armPoint("acquire.statted", "a", [&, shared, recreateA] {
      ino_t old = inodeOf(pa);
      ::unlink(pa.c_str());
      b = reg().acquire(d, "b", req(shared, true)).lease;
      reused = reused || inodeOf(d->path() + "/b") == old;
      if (recreateA) reg().create(d, "a");
    });
  };

  // 1. "a" is gone for good: ENOENT, not "held exclusively in this process".
  replaceByB(false, false);
  CHECK(errnoOf([&] { reg().acquire(d, "a", req(true)); }) == ENOENT);
  CHECK(pointAction.done);
  disarmPoint();
  reg().release(b);

  // 2. "a" is re-created meanwhile: its lock is its own, not a share of b's.
  replaceByB(true, true);
  uint64_t a = reg().acquire(d, "a", req(true)).lease;
  CHECK(pointAction.done);
  disarmPoint();
  CHECK(!outsiderCanLock(pa, false));  // "a" itself is locked
  reg().release(b);
  CHECK(!outsiderCanLock(pa, false));
  reg().release(a);
  CHECK(outsiderCanLock(pa, false));
  CHECK(reg().stats().leases == 0);
  if (!reused) printf("     (this file system did not reuse the inode number: no collision was provoked)\n");
}

bool kernelWaiterBlocked() {
  FILE* f = fopen("/proc/locks", "r");
  if (!f) return false;
  char line[512];
  const std::string pid = " " + std::to_string(getpid()) + " ";
  bool found = false;
  while (fgets(line, sizeof line, f))
    if (strstr(line, "->") && strstr(line, "POSIX") && strstr(line, pid.c_str())) found = true;
  fclose(f);
  return found;
}

bool ofdLock(int fd, short type) {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_len = 1;
  return ::fcntl(fd, F_OFD_SETLK, &fl) == 0;
}

// The kernel-wait thread gets the shared lock its head request wanted; before it grants, that request
// is cancelled and an exclusive one is the head. It must not be granted on a shared kernel lock.
// An OFD lock on another fd plays the other process (OFD and POSIX locks conflict within a process).
void testKernelWaitHeadChanges() {
  auto [d, p, out] = sceneWithOutsider("kwhead");
  auto sink = std::make_shared<TestSink>();
  CHECK(reg().acquire(d, "res", req(true), 301, sink).queued);   // the kernel wait wants shared
  CHECK(reg().acquire(d, "res", req(false), 302, sink).queued);  // exclusive, behind it
  armPoint("kwait.locked", "res", [] { CHECK(reg().cancel(301)); });
  CHECK(ofdLock(out, F_RDLCK));  // the outsider goes shared: the kernel wait gets its shared lock
  CHECK(eventually([] { return pointAction.done.load(); }));
  // Now either the exclusive request was granted (wrong: the outsider holds a shared lock) or the
  // kernel-wait thread blocks again, for an exclusive lock.
  bool granted = false, blocked = false;
  eventually([&] {
    std::lock_guard<std::mutex> lk(sink->mu);
    granted = !sink->grants.empty();
    blocked = kernelWaiterBlocked();
    return granted || blocked;
  });
  disarmPoint();
  CHECK(blocked && !granted);
  CHECK(ofdLock(out, F_UNLCK));
  expectSoleExclusiveGrant(*sink, 302, p, out);
}

// A kernel wait ends on a file that was replaced meanwhile, so its request starts over; a cancel that
// comes while the restart is between syscalls must withdraw it (before, it answered "too late" and
// the request went on waiting past its timeout).
void testCancelDuringRestart() {
  auto [d, p, out] = sceneWithOutsider("restart");
  auto sink = std::make_shared<TestSink>();
  CHECK(reg().acquire(d, "res", req(), 401, sink).queued);
  ::unlink(p.c_str());
  ::close(::open(p.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));  // another process re-creates it
  bool cancelled = false;
  armPoint("acquire.statted", "res", [&] { cancelled = reg().cancel(401); });
  CHECK(ofdLock(out, F_UNLCK));  // the kernel wait gets the old inode, sees the new one, restarts
  CHECK(eventually([] { return pointAction.done.load(); }) && cancelled);
  CHECK(eventually([] {
    Stats s = reg().stats();
    return s.resources == 0 && s.leases == 0 && s.waiters == 0 && s.kernelWaits == 0;
  }));
  disarmPoint();
  {
    std::lock_guard<std::mutex> lk(sink->mu);
    CHECK(sink->grants.empty() && sink->failures.empty());
  }
  CHECK(outsiderCanLock(p, false));
  ::close(out);
}

// As above, but the outsider then wants to go exclusive too. The kernel-wait thread must have let its
// shared lock go before waiting for an exclusive one: upgrading in place would deadlock with it.
void testKernelWaitNoUpgradeInPlace() {
  auto [d, p, out] = sceneWithOutsider("kwupgrade");
  auto sink = std::make_shared<TestSink>();
  CHECK(reg().acquire(d, "res", req(true), 501, sink).queued);
  CHECK(reg().acquire(d, "res", req(false), 502, sink).queued);
  armPoint("kwait.locked", "res", [] { CHECK(reg().cancel(501)); });
  CHECK(ofdLock(out, F_RDLCK));
  eventually([] { return pointAction.done.load(); });
  // (the kernel-wait thread sees the new head, lets its shared lock go and blocks again, exclusive)
  const bool blocked = eventually(kernelWaiterBlocked);
  disarmPoint();
  CHECK(pointAction.done && blocked);
  CHECK(reg().stats().leases == 0);
  CHECK(ofdLock(out, F_WRLCK));  // this process holds nothing on the file: the outsider may go exclusive
  CHECK(ofdLock(out, F_UNLCK));
  expectSoleExclusiveGrant(*sink, 502, p, out);
}

// Held shared; queued: exclusive, shared, exclusive, shared. When both exclusive requests go, both
// shared ones must join, however they go: their thread ends (its requests are dropped in one sweep),
// or the second is cancelled while the grant let in by the first is checking names.
void testSharedJoinBehindCancelledExclusives() {
  for (int how = 0; how < 2; ++how) {
    DirPtr d = reg().openDir(freshDir(how == 0 ? "joins-env" : "joins-cancel"));
    reg().create(d, "res");
    const std::string p = d->path() + "/res";
    auto sink = std::make_shared<TestSink>();
    uint64_t held = reg().acquire(d, "res", req(true)).lease;
    Request other = req(false);
    other.env = 9;
    CHECK(reg().acquire(d, "res", other, 601, sink).queued);
    CHECK(reg().acquire(d, "res", req(true), 602, sink).queued);
    CHECK(reg().acquire(d, "res", other, 603, sink).queued);
    CHECK(reg().acquire(d, "res", req(true), 604, sink).queued);
    if (how == 0) {
      reg().releaseEnv(9);
    } else {
      armPoint("grant.checking", "res", [] { CHECK(reg().cancel(603)); });
      CHECK(reg().cancel(601));
      disarmPoint();
      CHECK(pointAction.done);
    }
    CHECK(sink->waitFor(2));
    {
      std::lock_guard<std::mutex> lk(sink->mu);
      CHECK(sink->grants.size() == 2 && sink->failures.empty());
    }
    CHECK(reg().stats().waiters == 0 && reg().stats().leases == 3);
    CHECK(outsiderCanLock(p, true) && !outsiderCanLock(p, false));
    reg().release(held);
    for (auto& g : sink->grants) reg().release(g.second);
    CHECK(reg().stats().leases == 0 && outsiderCanLock(p, false));
  }
}

// A request queued through a hard link "b" while the entry is known as "a". "b" is replaced while the
// kernel wait blocks: the request must start over on the new "b", not be granted the old inode.
void testKernelWaitAliasReplaced() {
  DirPtr d = reg().openDir(freshDir("kwalias"));
  reg().create(d, "a");
  const std::string pa = d->path() + "/a", pb = d->path() + "/b";
  CHECK(::link(pa.c_str(), pb.c_str()) == 0);
  int out = ::open(pa.c_str(), O_RDWR | O_CLOEXEC);
  CHECK(out >= 0 && ofdLock(out, F_WRLCK));
  auto sink = std::make_shared<TestSink>();
  CHECK(reg().acquire(d, "a", req(true), 601, sink).queued);
  CHECK(reg().acquire(d, "b", req(true), 602, sink).queued);
  ::unlink(pb.c_str());
  ::close(::open(pb.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  CHECK(ofdLock(out, F_UNLCK));
  CHECK(sink->waitFor(2) && sink->grants.size() == 2);
  CHECK(!outsiderCanLock(pa, false) && !outsiderCanLock(pb, false));  // each name is really locked
  CHECK(inodeOf(pa) != inodeOf(pb));
  releaseGrantsAndClose(*sink, out);
}

// A waiting acquire announced on one thread and run later on another (libuv's pool, on NFS): a
// cancel in between is honoured when it runs, and the runner is the one to report it.
void testAnnouncedRequests() {
  DirPtr d = reg().openDir(freshDir("announced"));
  reg().create(d, "res");
  auto sink = std::make_shared<TestSink>();
  reg().announce(701);
  bool runnerReports = false;
  CHECK(reg().cancel(701, &runnerReports) && runnerReports);
  AcquireResult r = reg().acquireAnnounced(d, "res", req(), 701, sink);
  CHECK(r.cancelled && !r.lease && !r.queued);
  CHECK(!reg().cancel(701));
  CHECK(outsiderCanLock(d->path() + "/res", false));

  reg().announce(702);
  r = reg().acquireAnnounced(d, "res", req(), 702, sink);
  CHECK(!r.cancelled && r.lease != 0);
  const uint64_t held = r.lease;
  reg().announce(703);
  r = reg().acquireAnnounced(d, "res", req(), 703, sink);  // busy in this process: queued
  CHECK(r.queued);
  runnerReports = true;
  CHECK(reg().cancel(703, &runnerReports) && !runnerReports);  // queued: the canceller settles it
  reg().release(held);
  {
    std::lock_guard<std::mutex> lk(sink->mu);
    CHECK(sink->grants.empty() && sink->failures.empty());
  }
  Stats st = reg().stats();
  if (st.leases || st.waiters) printf("     leases %zu waiters %zu\n", st.leases, st.waiters);
  CHECK(st.leases == 0 && st.waiters == 0);
}

// A child process holding an exclusive POSIX lock on path until the returned fd is closed.
struct OutsideHolder {
  pid_t pid = -1;
  int release = -1;
  explicit OutsideHolder(const std::string& path) {
    int toChild[2], fromChild[2];
    if (pipe(toChild) != 0 || pipe(fromChild) != 0) return;
    pid = fork();
    if (pid == 0) {
      ::close(toChild[1]);  // else the read below never sees EOF
      ::close(fromChild[0]);
      int fd = ::open(path.c_str(), O_RDWR);
      struct flock fl {};
      fl.l_type = F_WRLCK;
      fl.l_len = 1;
      char ok = fd >= 0 && ::fcntl(fd, F_SETLK, &fl) == 0 ? 'y' : 'n';
      if (::write(fromChild[1], &ok, 1) != 1) _exit(1);
      char c;
      while (::read(toChild[0], &c, 1) > 0) {
      }
      _exit(0);
    }
    ::close(toChild[0]);
    ::close(fromChild[1]);
    char ok = 0;
    if (::read(fromChild[0], &ok, 1) != 1 || ok != 'y') pid = -1;
    ::close(fromChild[0]);
    release = toChild[1];
  }
  ~OutsideHolder() {
    ::close(release);
    int status;
    if (pid > 0) waitpid(pid, &status, 0);
  }
};

void testVerifyAndInspect() {
  DirPtr d = reg().openDir(freshDir("verify"));
  std::string p = d->path() + "/res";
  uint64_t a = reg().acquire(d, "res", req(false, true)).lease;
  CHECK(reg().verify(a).check == LeaseCheck::Held);
  CHECK(reg().verify(a).path == p);
  ::unlink(p.c_str());
  CHECK(reg().verify(a).check == LeaseCheck::Unlinked);
  reg().release(a);
  CHECK(reg().verify(a).check == LeaseCheck::NotHeld);

  reg().create(d, "res");
  a = reg().acquire(d, "res", req()).lease;
  int other = ::open((d->path() + "/new").c_str(), O_CREAT | O_WRONLY, 0600);
  ::close(other);
  ::rename((d->path() + "/new").c_str(), p.c_str());
  CHECK(reg().verify(a).check == LeaseCheck::Replaced);
  reg().release(a);

  // The close trap drops the lock; another process takes it: verify sees the conflict.
  a = reg().acquire(d, "res", req()).lease;
  ::close(::open(p.c_str(), O_RDONLY));
  {
    OutsideHolder holder(p);
    CHECK(holder.pid > 0);
    CHECK(reg().verify(a).check == LeaseCheck::Conflict);
    reg().release(a);

    // inspect, local and as on a network file system, of a file another process holds.
    InspectResult local = reg().inspect(d, "res");
    CHECK(!local.remote && !local.held && local.owners.empty());
    Registry::setForceRemote(true);
    InspectResult remote = reg().inspect(d, "res");
    CHECK(remote.remote && remote.otherHeld && !remote.otherShared && !remote.held);
    Registry::setForceRemote(false);
  }
  CHECK(reg().stats().resources == 0);  // the inspect reservation is gone

  // As on a network file system: an inspect while this process holds it drops nothing, and an
  // autoCreate file stays at the last release. (Idle entries keep the file system kind they had.)
  reg().closeIdleFds();
  Registry::setForceRemote(true);
  a = reg().acquire(d, "res", req(true, true, "vm")).lease;
  InspectResult mine = reg().inspect(d, "res");
  CHECK(mine.held && mine.heldShared && !mine.otherHeld && mine.owners.size() == 1 && mine.owners[0] == "vm");
  CHECK(!outsiderCanLock(p, false) && outsiderCanLock(p, true));
  CHECK(reg().verify(a).check == LeaseCheck::Held);
  reg().release(a);
  CHECK(exists(p) && outsiderCanLock(p, false));
  CHECK(errnoOf([&] { reg().inspect(d, "missing"); }) == ENOENT);
  Registry::setForceRemote(false);
  CHECK(reg().stats().resources == 0);
}

}  // namespace

// Another library took every real-time signal (main() ignores them all before any scenario runs). A
// kernel wait whose head is cancelled while blocked is ended and taken over by a new thread for the
// request behind it, which then waits in its own mode; a wait cancelled alone ends and leaves nothing.
void testKernelWaitInterruptedWithoutSignals() {
  auto [d, p, out] = sceneWithOutsider("kwnosig");
  auto sink = std::make_shared<TestSink>();
  CHECK(reg().acquire(d, "res", req(false), 801, sink).queued);
  CHECK(reg().acquire(d, "res", req(true), 802, sink).queued);
  CHECK(eventually(kernelWaiterBlocked));
  CHECK(reg().cancel(801));
  CHECK(eventually([] { return reg().stats().waiters == 1; }));
  CHECK(eventually(kernelWaiterBlocked) && reg().stats().kernelWaits == 1);
  CHECK(ofdLock(out, F_RDLCK));  // the outsider goes shared: the shared request gets in beside it
  CHECK(sink->waitFor(1) && sink->grants.size() == 1 && sink->grants[0].first == 802);
  CHECK(!outsiderCanLock(p, false) && outsiderCanLock(p, true));
  releaseGrantsAndClose(*sink, out);

  auto [d2, p2, out2] = sceneWithOutsider("kwnosig2");
  CHECK(reg().acquire(d2, "res", req(), 803, sink).queued);
  CHECK(eventually(kernelWaiterBlocked));
  CHECK(reg().cancel(803));
  CHECK(eventually([] {
    Stats s = reg().stats();
    return s.resources == 0 && s.waiters == 0 && s.kernelWaits == 0;
  }));
  CHECK(!kernelWaiterBlocked());
  CHECK(ofdLock(out2, F_UNLCK) && outsiderCanLock(p2, false));
  ::close(out2);
}

// What another native library may do to the real-time signals: lockspace must not depend on them.
void ignoreRealtimeSignals() {
  for (int sig = SIGRTMIN; sig <= SIGRTMAX; ++sig) {
    struct sigaction sa {};
    sa.sa_handler = SIG_IGN;
    sigaction(sig, &sa, nullptr);
  }
}

int main() {
  setvbuf(stdout, nullptr, _IONBF, 0);
  char tmpl[] = "/tmp/lockspace-core-XXXXXX";
  if (!mkdtemp(tmpl)) return 2;
  root = tmpl;
  ignoreRealtimeSignals();
  struct {
    const char* name;
    void (*fn)();
  } tests[] = {
      {"create/delete", testCreateDelete},
      {"exclusive", testExclusive},
      {"shared autoCreate", testSharedAutoCreate},
      {"inode identity", testInodeIdentity},
      {"bad input", testBadInput},
      {"hand-off FIFO", testHandOffFifo},
      {"kernel wait", testKernelWait},
      {"threads", testThreads},
      {"releaseOwner/env", testReleaseOwnerAndEnv},
      {"reused inode number", testReusedInodeNumber},
      {"kernel wait: head changes", testKernelWaitHeadChanges},
      {"cancel during a restart", testCancelDuringRestart},
      {"kernel wait: no upgrade in place", testKernelWaitNoUpgradeInPlace},
      {"kernel wait: alias replaced", testKernelWaitAliasReplaced},
      {"shared joins behind cancelled exclusives", testSharedJoinBehindCancelledExclusives},
      {"announced requests", testAnnouncedRequests},
      {"kernel wait: interrupted without signals", testKernelWaitInterruptedWithoutSignals},
      {"verify and inspect", testVerifyAndInspect},
  };
  for (auto& t : tests) {
    int before = failures;
    try {
      t.fn();
    } catch (const std::exception& e) {
      fprintf(stderr, "  FAILED: exception %s\n", e.what());
      ++failures;
    }
    printf("%s %s\n", failures == before ? "ok  " : "FAIL", t.name);
  }
  reg().closeIdleFds();
  std::string cmd = "rm -rf '" + root + "'";
  if (system(cmd.c_str()) != 0) fprintf(stderr, "cleanup failed\n");
  printf("%d failures\n", failures);
  return failures == 0 ? 0 : 1;
}
