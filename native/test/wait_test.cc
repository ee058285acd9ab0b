// The C++ core test's scenarios of waiting: FIFO hand-off, kernel waits for other processes, cancels
// in every phase of a request (queued, announced, restarting), the shared joins behind cancelled
// exclusive requests, and the list of queued requests.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../core/lock_file.h"
#include "support.h"

namespace lockspace::test {
namespace {

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

// Another process: blocks in F_SETLKW for an exclusive lock of path, says so on a pipe once it has
// it, holds it 100 ms and exits.
struct OutsideWriter {
  pid_t pid = -1;
  int fromChild = -1;
  explicit OutsideWriter(const std::string& path) {
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid = fork();
    if (pid == 0) {
      ::close(fds[0]);
      const int fd = ::open(path.c_str(), O_RDWR);
      struct flock fl {};
      fl.l_type = F_WRLCK;
      fl.l_len = 1;
      const char c = fd >= 0 && ::fcntl(fd, F_SETLKW, &fl) == 0 ? 'g' : 'n';
      if (::write(fds[1], &c, 1) != 1) _exit(1);
      usleep(100000);
      _exit(0);
    }
    ::close(fds[1]);
    fromChild = fds[0];
    struct stat st {};
    CHECK(::stat(path.c_str(), &st) == 0);
    CHECK(eventually([&] { return lockfile::writerBlocked(InodeKey{st.st_dev, st.st_ino}); }));
  }
  OutsideWriter(const OutsideWriter&) = delete;
  OutsideWriter& operator=(const OutsideWriter&) = delete;
  // Has it had the lock? (waits for that when `wait`)
  bool hadLock(bool wait) const {
    struct pollfd p {
      fromChild, POLLIN, 0
    };
    if (!wait && ::poll(&p, 1, 0) != 1) return false;
    char c = 0;
    return ::read(fromChild, &c, 1) == 1 && c == 'g';
  }
  // It ended by itself, after its 100 ms with the lock.
  bool endedWell() {
    int status = 0;
    const bool reaped = waitpid(pid, &status, 0) == pid;
    pid = -1;
    return reaped && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }
  ~OutsideWriter() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    ::close(fromChild);
  }
};

}  // namespace

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
  // queued() lists what waits, oldest first, by the name, mode and owner it was requested with; a
  // cancelled request is gone, another directory's list is empty.
  const std::vector<QueuedRequest> waiting = reg().queued(d);
  CHECK(waiting.size() == 2 && waiting[0].request == 101 && waiting[1].request == 102);
  CHECK(waiting[0].name == "res" && !waiting[0].shared && waiting[1].shared && waiting[1].owner == req(true).owner);
  CHECK(reg().queued(reg().openDir(freshDir("fifo-other"))).empty());
  reg().release(a);
  CHECK(sink->waitFor(1) && sink->grants[0].first == 101);
  CHECK(reg().queued(d).size() == 1 && reg().queued(d)[0].request == 102);  // granted: no longer listed
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
  // An acquire that must not wait, while this process waits in the kernel: busy, held by that process
  // (asked through the waiting entry's fd, without the table mutex: the checks would count it).
  SysError waited(0, "", "");
  try {
    reg().acquire(d, "res", req());
  } catch (const SysError& e) {
    waited = e;
  }
  CHECK(waited.err == EBUSY && !waited.busyHere && waited.holderPid == pid);
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

}  // namespace lockspace::test

namespace lockspace::test {

// Shared holds here that keep overlapping yield to another process's exclusive waiter: once a join
// has had /proc/locks read, new shared requests are refused (EBUSY without wait) or queued, the last
// release lets the lock go, the writer gets it, and the queued request is granted after it.
void testSharedYieldsToOutsideWriter() {
  DirPtr d = reg().openDir(freshDir("fair"));
  reg().create(d, "res");
  const std::string p = d->path() + "/res";
  std::vector<uint64_t> held{reg().acquire(d, "res", req(true)).lease};
  OutsideWriter writer(p);
  // Joins go on until one has had the writer seen: then a shared request is refused.
  std::string refusal;
  CHECK(eventually([&] {
    try {
      held.push_back(reg().acquire(d, "res", req(true)).lease);
      return false;
    } catch (const SysError& e) {
      refusal = e.detail;
      return e.err == EBUSY;
    }
  }));
  CHECK(refusal.find("another process waits to lock it exclusively") != std::string::npos);
  auto sink = std::make_shared<TestSink>();
  CHECK(reg().acquire(d, "res", req(true), 601, sink).queued);
  for (uint64_t l : held) reg().release(l);
  CHECK(writer.hadLock(true));  // the writer's turn
  CHECK(sink->grants.empty());
  CHECK(sink->waitFor(1) && sink->grants[0].first == 601);  // then ours, once it has let go
  CHECK(writer.endedWell());
  for (auto& g : sink->grants) reg().release(g.second);
  CHECK(reg().stats().leases == 0 && reg().stats().waiters == 0);
}

// As above, with this process's own exclusive request handed the lock between overlapping shared
// holds, again and again (hand-offs in place: the kernel lock is never let go): a writer check that
// a join asked for still counts after a hand-off came meanwhile, or the writer would wait for ever.
void testSharedYieldsToOutsideWriterAcrossHandOffs() {
  DirPtr d = reg().openDir(freshDir("fair-handoffs"));
  reg().create(d, "res");
  const std::string p = d->path() + "/res";
  std::vector<uint64_t> held{reg().acquire(d, "res", req(true)).lease};
  OutsideWriter writer(p);
  uint64_t request = 700;
  bool stuck = false;
  const bool writerGotIn = eventually([&] {
    for (int k = 0; k < 10; ++k) {  // shared joins (some ask for a writer check), until one is refused
      try {
        held.push_back(reg().acquire(d, "res", req(true)).lease);
      } catch (const SysError& e) {
        CHECK(e.err == EBUSY);
        break;
      }
    }
    // This process's own writer is handed the lock, and hands it back to a reader.
    auto x = std::make_shared<TestSink>();
    CHECK(reg().acquire(d, "res", req(false, false, "x"), request++, x).queued);
    for (uint64_t l : held) reg().release(l);
    held.clear();
    stuck = !x->waitFor(1) || x->grants.empty();
    if (stuck) return true;
    auto y = std::make_shared<TestSink>();
    CHECK(reg().acquire(d, "res", req(true, false, "y"), request++, y).queued);
    reg().release(x->grants[0].second);
    stuck = !y->waitFor(1) || y->grants.empty();
    if (stuck) return true;
    held.push_back(y->grants[0].second);
    return writer.hadLock(false);
  });
  CHECK(writerGotIn && !stuck);
  for (uint64_t l : held) reg().release(l);
  CHECK(writer.endedWell());
  CHECK(reg().stats().leases == 0 && reg().stats().waiters == 0);
}

}  // namespace lockspace::test
