// What the C++ core test's scenarios share: a failure count instead of an abort (every scenario runs
// and reports), a registry, a scratch directory, another process's view of a lock, a Sink that
// records, and test points to act inside the core's short windows.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "../core/registry.h"

namespace lockspace::test {

extern int failures;
extern std::string root;  // the scratch directory of this run

#define CHECK(cond)                                                       \
  do {                                                                    \
    if (!(cond)) {                                                        \
      fprintf(stderr, "  FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      ++::lockspace::test::failures;                                      \
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

bool exists(const std::string& p);
ino_t inodeOf(const std::string& p);
// Another process's view: can it take the lock on byte 0? (fork; the child uses a fresh fd)
bool outsiderCanLock(const std::string& path, bool shared);
Request req(bool shared = false, bool autoCreate = false, const char* owner = "o1");
Registry& reg();  // the process's table
std::string freshDir(const char* name);

struct TestSink : Sink {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::pair<uint64_t, uint64_t>> grants;
  std::vector<std::pair<uint64_t, int>> failures;
  void granted(uint64_t r, uint64_t l) override;
  void failed(uint64_t r, const SysError& e) override;
  bool waitFor(size_t n);  // n outcomes, within 10 s
};

// Test points (see test_point.h) take a plain function: the scenario's state lives in statics.
struct PointAction {
  const char* point = nullptr;
  std::string detail;
  std::function<void()> action;
  std::atomic<bool> fired{false};  // entered (set first: the action may pass the same point again)
  std::atomic<bool> done{false};   // the action has returned
};
extern PointAction pointAction;
void armPoint(const char* point, const char* detail, std::function<void()> action);
void disarmPoint();

// Polls cond every millisecond for up to 10 s.
bool eventually(const std::function<bool()>& cond);

// An OFD lock on fd (OFD and POSIX locks conflict within a process, so an fd of ours plays another process).
bool ofdLock(int fd, short type);
// A thread of this process blocks in F_SETLKW (from /proc/locks).
bool kernelWaiterBlocked();

// A child process holding an exclusive POSIX lock on path until the object goes.
struct OutsideHolder {
  pid_t pid = -1;
  int release = -1;
  explicit OutsideHolder(const std::string& path);
  ~OutsideHolder();
};

// The scenarios, by file.
void testCreateDelete();
void testExclusive();
void testSharedAutoCreate();
void testInodeIdentity();
void testBadInput();
void testThreads();
void testReleaseOwnerAndEnv();
void testReusedInodeNumber();
void testVerifyAndInspect();
void testOwnRegistry();
void testNetworkJoinOfReplacedFile();
void testJoinAfterHandOffTookLockBack();
void testNameKeepsMoving();
void testInspectDuringHandOffs();
// wait_test.cc
void testHandOffFifo();
void testKernelWait();
void testKernelWaitHeadChanges();
void testCancelDuringRestart();
void testKernelWaitNoUpgradeInPlace();
void testKernelWaitAliasReplaced();
void testSharedJoinBehindCancelledExclusives();
void testAnnouncedRequests();
void testKernelWaitInterruptedWithoutSignals();
void testSharedYieldsToOutsideWriter();
void testSharedYieldsToOutsideWriterAcrossHandOffs();
// parts_test.cc
void testWaitQueuePolicy();
void testGrantRound();
void testWaitQueueHandles();
void testRequestBook();
void testLeaseTable();
void testLeaseIdsNeverRepeat();
void testOwnerKeys();
void testIdleList();
void testFlatContainers();
void testLockFile();
void testTableMutexChecks();
void testNetworkFs();
void testDirCache();
void testProcStat();
void testHolderRecords();
// deadlock_test.cc
void testDeadlockOracle();
void testDeadlockReport();
void testDeadlockPastOwnRun();

}  // namespace lockspace::test
