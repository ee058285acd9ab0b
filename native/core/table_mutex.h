// The lock table's mutex, and the checks of who holds it. In checked builds (LOCKSPACE_CHECKS; the C++
// core test, built with test points, is one) the mutex knows which thread holds it and each thread counts the table
// mutexes it holds, so that the code can assert its two rules: an entry changes state only under the mutex
// (Registry::setState), and no syscall on a resource file runs while the calling thread holds a table
// mutex (LS_CHECK_NO_TABLE_LOCK, in every lock_file.h function). Elsewhere the checks compile to
// nothing and TableMutex is a std::mutex.
//
// Interface: TableMutex (lock/unlock/try_lock, native() for a condition variable, heldByThisThread),
// waitReleasing (a condition-variable wait that keeps the bookkeeping right), LS_CHECK, LS_CHECK_HELD,
// LS_CHECK_NO_TABLE_LOCK, checks::failFn (tests: hear a failed check instead of aborting).
#pragma once

#include <condition_variable>
#include <mutex>

#if defined(LOCKSPACE_TEST_POINTS) && !defined(LOCKSPACE_CHECKS)
#define LOCKSPACE_CHECKS
#endif

#ifdef LOCKSPACE_CHECKS
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <thread>

namespace lockspace::checks {
// A failed check: tests may set failFn to hear of it; otherwise it is printed and the process aborts.
using FailFn = void (*)(const char* what, const char* file, int line);
inline std::atomic<FailFn> failFn{nullptr};
inline void failed(const char* what, const char* file, int line) {
  if (FailFn f = failFn.load()) return f(what, file, line);
  fprintf(stderr, "lockspace: check failed at %s:%d: %s\n", file, line, what);
  abort();
}
// How many table mutexes the calling thread holds.
inline thread_local int tableLocksHeld = 0;
}  // namespace lockspace::checks

#define LS_CHECK(cond, what)                                            \
  do {                                                                  \
    if (!(cond)) ::lockspace::checks::failed(what, __FILE__, __LINE__); \
  } while (0)
// Every syscall on a resource file runs without the table's mutex: on a network file system each one
// is a round trip to the server, and every thread of the process would wait behind it.
#define LS_CHECK_NO_TABLE_LOCK(syscall) \
  LS_CHECK(::lockspace::checks::tableLocksHeld == 0, syscall " with the table mutex held")
// At the top of every function that takes the caller's lock of the mutex (and may let it go and take
// it again): the caller holds it.
#define LS_CHECK_HELD(mu) LS_CHECK((mu).heldByThisThread(), "the table mutex not held where it must be")
#else
#define LS_CHECK_HELD(mu) ((void)0)
#define LS_CHECK(cond, what) ((void)0)
#define LS_CHECK_NO_TABLE_LOCK(syscall) ((void)0)
#endif

namespace lockspace {

class TableMutex {
 public:
  void lock() {
    // Held for a few hundred nanoseconds at a time (no syscall runs under it): a thread that finds it
    // taken tries again a little before it sleeps in the kernel, which costs a futex wait and a wake.
    for (int spins = 0; !mu_.try_lock(); ++spins) {
      if (spins == kSpinsBeforeSleep) {
        mu_.lock();
        break;
      }
      cpuRelax();
    }
    noteLocked();
  }
  bool try_lock() {
    if (!mu_.try_lock()) return false;
    noteLocked();
    return true;
  }
  void unlock() {
    noteUnlocking();
    mu_.unlock();
  }
  // For a condition variable only, through waitReleasing.
  std::mutex& native() noexcept { return mu_; }
#ifdef LOCKSPACE_CHECKS
  bool heldByThisThread() const noexcept { return owner_.load() == std::this_thread::get_id(); }
  void noteLocked() noexcept {
    owner_.store(std::this_thread::get_id());
    ++checks::tableLocksHeld;
  }
  void noteUnlocking() noexcept {
    owner_.store(std::thread::id());
    --checks::tableLocksHeld;
  }
#else
  void noteLocked() noexcept {}
  void noteUnlocking() noexcept {}
#endif

 private:
  static constexpr int kSpinsBeforeSleep = 100;
  static void cpuRelax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }
  std::mutex mu_;
#ifdef LOCKSPACE_CHECKS
  std::atomic<std::thread::id> owner_{};
#endif
};

// cv.wait(lk) for a lock of a TableMutex: the mutex is let go while waiting, and the checks know it.
template <typename Lock>
void waitReleasing(std::condition_variable& cv, Lock& lk) {
  TableMutex& mu = *lk.mutex();
  std::unique_lock<std::mutex> raw(mu.native(), std::adopt_lock);
  mu.noteUnlocking();
  cv.wait(raw);
  mu.noteLocked();
  (void)raw.release();  // still held: lk unlocks it
}

}  // namespace lockspace
