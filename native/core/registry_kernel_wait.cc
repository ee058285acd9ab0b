// Kernel waits: a thread per resource that another process holds, blocking in F_SETLKW on behalf of
// the requests queued on it, and how a cancel ends it (see kernel_wait.h for the thread machinery).
#include <errno.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <new>

#include "kernel_wait.h"
#include "lock_file.h"
#include "registry.h"
#include "test_point.h"

namespace lockspace {

// What a kernel-wait thread is given: the registry it serves and the entry it waits for.
struct Registry::KernelWaitJob {
  Registry* registry;
  Entry* entry;
};

void Registry::kernelWaitThread(void* arg) {
  const KernelWaitJob job = *static_cast<KernelWaitJob*>(arg);
  delete static_cast<KernelWaitJob*>(arg);
  job.registry->runKernelWait(job.entry);
}

void Registry::startKernelWait(Entry* e) {
  // Called with the mutex held, e in state KernelWait with at least one waiter.
  e->ext().blocking = false;
  auto* job = new (std::nothrow) KernelWaitJob{this, e};
  int rc = job ? kwait::spawn(kernelWaitThread, job, &e->ext().thread) : ENOMEM;
  if (rc == 0) {
    ++kernelWaits_;
    return;
  }
  delete job;
  // No thread: fail the queued requests and drop the entry (the process holds no lock on it).
  failWaiters(e, SysError(rc, "pthread_create", e->dir->fullPath(e->name()), "cannot start a thread to wait"));
  const InodeKey key = e->key;
  eraseEntry(e);
  notifyTransition(key);
}

void Registry::interrupt(Entry* e) {
  // Called with the mutex held. A kernel-wait thread that is not blocking will look at the queue again
  // before it blocks; one that is blocking (or about to) is ended there, and a new one takes over.
  if (!e->extra->blocking) return;
  e->extra->blocking = false;
  kwait::interrupt(e->extra->thread);  // alive: it cannot finish before it has taken the mutex again
}

void Registry::kernelWaitInterrupted(Lock& lk, Entry* e) {
  // Called with the mutex held by the kernel-wait thread of e, which is ending (see kernel_wait.h).
  // Its fcntl may have got the lock just before it ended: nobody in this process holds the file while
  // the entry waits, so let that go, then wait again for what is still queued, on a new thread.
  e->extra->blocking = false;
  lockfile::unlock(e->fd.get(), e->kind);
  --kernelWaits_;
  if (!e->hasWaiters()) return closeAbandoned(lk, e);
  startKernelWait(e);  // counts the new thread in, or fails the queue if there can be none
}

// The cleanup handler of an interrupted kernel wait: runs on that thread as it ends, without the mutex.
void Registry::onKernelWaitInterrupted(void* arg) {
  const KernelWaitJob& job = *static_cast<KernelWaitJob*>(arg);
  Lock lk(job.registry->mu_);
  try {
    job.registry->kernelWaitInterrupted(lk, job.entry);
  } catch (const std::exception&) {  // out of memory: the entry is left to the process's exit
  }
}

void Registry::runKernelWait(Entry* e) {
  Lock lk(mu_, std::defer_lock);
  bool countedOut = false;
  try {
    lk.lock();
    kernelWaitLoop(lk, e, countedOut);  // counts itself out of kernelWaits_ before its outcome is delivered
  } catch (const std::exception&) {
    // Only allocation failures can land here; there is no sane way on: do not take the process down
    // with an exception escaping a thread, leave the entry to the process's exit. (Not catch (...):
    // an interrupt's unwinding must go on to the end of the thread.)
    if (!lk.owns_lock()) lk.lock();
    if (!countedOut) --kernelWaits_;
  }
}

void Registry::closeAbandoned(Lock& lk, Entry* e) {
  // Called with the mutex held by the kernel-wait thread of e. Closing drops the lock if we had it.
  e->state = State::Closing;
  lk.unlock();
  lockfile::closeLocked(e->fd, e->kind, e->remote);
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
    int err = 0;
    bool deadlocked = false;
    KernelWaitJob onInterrupt{this, e};
    pthread_cleanup_push(onKernelWaitInterrupted, &onInterrupt);
    kwait::Interruptible interruptible;  // the fcntl and the back-off sleep below
    err = lockfile::waitLock(e->fd.get(), e->kind, lockfile::modeOf(wantShared));
    if (err == EDEADLK && deadlockSince == Clock::time_point()) deadlockSince = Clock::now();
    if (err != EDEADLK) deadlockSince = Clock::time_point();
    deadlocked = err == EDEADLK && Clock::now() - deadlockSince > kDeadlockPatience;
    if (err == EDEADLK && !deadlocked) {
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
    if (err == 0) LS_TEST_POINT("kwait.locked", e->cname());
    lk.lock();
    e->extra->blocking = false;
    if (err != 0) {
      if (err == EINTR || (err == EDEADLK && !deadlocked)) continue;
      // A lasting EDEADLK is a real deadlock; any other error is final too: fail the queued requests
      // after the entry is gone, so whoever hears of it sees a table without it.
      SysError failure(err, "fcntl", e->dir->fullPath(e->name()),
                       err == EDEADLK ? "the kernel reports a deadlock with another process" : "");
      std::list<Waiter> ws = e->waiters().takeAll();
      for (const Waiter& w : ws) book_.leave(w.request);
      --kernelWaits_;
      countedOut = true;
      closeAbandoned(lk, e);
      for (Waiter& w : ws) w.sink->failed(w.request, failure);
      return;
    }
    // Requests may have been cancelled meanwhile. A lock that no longer fits the head is let go before
    // waiting in the other mode: upgrading in place while another process does the same deadlocks.
    if (!e->hasWaiters() || e->waiters().front().req.shared != wantShared) {
      lockfile::unlock(e->fd.get(), e->kind);
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
      lockfile::unlock(e->fd.get(), e->kind);
      ++kernelWaits_;
      countedOut = false;
    }
    e->state = granted ? State::Held : State::KernelWait;
    notifyTransition(e->key);
    for (Waiter& w : moved) redispatch(lk, std::move(w));
    if (granted) return;
  }
}

}  // namespace lockspace
