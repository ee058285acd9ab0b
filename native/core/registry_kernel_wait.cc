// Kernel waits: a thread per resource that another process holds, blocking in F_SETLKW on behalf of
// the requests queued on it, and how a cancel ends it (see kernel_wait.h for the thread machinery: its
// loop is C and calls kernelWaitTurn between its blocking calls).
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

// What a kernel-wait thread works for: the registry it serves, the entry it waits for, and what its
// turns remember between calls. Owned by the thread; freed when it ends.
struct Registry::KernelWaitJob {
  using Clock = std::chrono::steady_clock;
  Registry* registry;
  Entry* entry;
  bool countedOut = false;  // counted out of kernelWaits_ (before its outcome is delivered)
  bool wantShared = false;  // the mode of the lock the call asks for
  Clock::time_point deadlockSince{};
  long deadlockBackoffNs = 500'000;
};

int Registry::kernelWaitTurn(void* arg, lockspace_kwait_call* call) noexcept {
  auto* job = static_cast<KernelWaitJob*>(arg);
  Registry& r = *job->registry;
  if (call->made && call->cmd != 0 && call->result == 0) LS_TEST_POINT("kwait.locked", job->entry->cname());
  Lock lk(r.mu_, std::defer_lock);
  bool again = false;
  try {
    lk.lock();
    again = r.kernelWaitStep(lk, *job, *call);
  } catch (...) {
    // Only allocation failures can land here; there is no sane way on: end the thread and leave the
    // entry to the process's exit.
    if (!lk.owns_lock()) lk.lock();
    if (!job->countedOut) --r.kernelWaits_;
  }
  if (lk.owns_lock()) lk.unlock();
  if (!again) delete job;
  return again ? 1 : 0;
}

void Registry::startKernelWait(Lock& lk, Entry* e) {
  LS_CHECK_HELD(mu_);
  // Called with the mutex held, e in state KernelWait with at least one waiter.
  e->ext().blocking = false;
  auto* job = new (std::nothrow) KernelWaitJob{this, e};
  int rc = job ? lockspace_kwait_spawn(kernelWaitTurn, onKernelWaitInterrupted, job, &e->ext().thread) : ENOMEM;
  if (rc == 0) {
    ++kernelWaits_;
    return;
  }
  delete job;
  // No thread: fail the queued requests and drop the entry (the process holds no lock on it).
  // (Not before a thread asking who holds it is done with the fd.)
  waitForAskers(lk, e);
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
  lockspace_kwait_interrupt(e->extra->thread);  // alive: it cannot end before it has taken the mutex again
}

void Registry::kernelWaitInterrupted(Lock& lk, Entry* e) {
  LS_CHECK_HELD(mu_);
  // Called with the mutex held by the kernel-wait thread of e, which is ending (see kernel_wait.h).
  // Its fcntl may have got the lock just before it ended: nobody in this process holds the file while
  // the entry waits, so let that go, then wait again for what is still queued, on a new thread.
  e->extra->blocking = false;
  fitKernelLock(lk, e, false, Fit::LetGo);
  --kernelWaits_;
  if (!e->hasWaiters()) return closeAbandoned(lk, e);
  startKernelWait(lk, e);  // counts the new thread in, or fails the queue if there can be none
}

// The cleanup of an interrupted kernel wait: runs on that thread as it ends, without the mutex.
void Registry::onKernelWaitInterrupted(void* arg) noexcept {
  auto* job = static_cast<KernelWaitJob*>(arg);
  {
    Lock lk(job->registry->mu_);
    try {
      job->registry->kernelWaitInterrupted(lk, job->entry);
    } catch (...) {  // out of memory: the entry is left to the process's exit
    }
  }
  delete job;
}

void Registry::closeAbandoned(Lock& lk, Entry* e) {
  LS_CHECK_HELD(mu_);
  // Called with the mutex held by the kernel-wait thread of e. Closing drops the lock if we had it.
  setState(e, State::Closing);
  waitForAskers(lk, e);
  lk.unlock();
  lockfile::closeLocked(e->fd, e->kind, e->remote);
  lk.lock();
  const InodeKey key = e->key;
  eraseEntry(e);
  notifyTransition(key);
}

bool Registry::kernelWaitStep(Lock& lk, KernelWaitJob& job, lockspace_kwait_call& call) {
  LS_CHECK_HELD(mu_);
  Entry* e = job.entry;
  if (call.made) e->extra->blocking = false;
  if (call.made && call.cmd != 0) {  // the blocking fcntl returned (a back-off sleep just waits again)
    switch (lockCallEnded(lk, job, call.result)) {
      case AfterLockCall::Ended:
        return false;
      case AfterLockCall::BackOff:
        call = {};
        call.sleep_ns = job.deadlockBackoffNs;
        job.deadlockBackoffNs = std::min<long>(job.deadlockBackoffNs * 2, 32'000'000);
        e->extra->blocking = true;  // until the mutex is taken again, interrupt() ends this thread
        return true;
      case AfterLockCall::WaitAgain:
        break;
    }
  }
  if (!e->hasWaiters()) {
    --kernelWaits_;
    job.countedOut = true;
    closeAbandoned(lk, e);
    return false;
  }
  if (e->extra->yieldFirst) {  // let go for another process's writer: give it time to take the lock
    e->extra->yieldFirst = false;
    call = {};
    call.sleep_ns = 20'000'000;
    e->extra->blocking = true;  // until the mutex is taken again, interrupt() ends this thread
    return true;
  }
  job.wantShared = e->waiters().front().req.shared;
  const lockfile::BlockingCall lock = lockfile::blockingLock(e->fd.get(), e->kind, lockfile::modeOf(job.wantShared));
  call = {};
  call.fd = lock.fd;
  call.cmd = lock.cmd;
  call.type = lock.type;
  e->extra->blocking = true;  // until the mutex is taken again, interrupt() ends this thread
  return true;
}

Registry::AfterLockCall Registry::lockCallEnded(Lock& lk, KernelWaitJob& job, int err) {
  LS_CHECK_HELD(mu_);
  using Clock = KernelWaitJob::Clock;
  // POSIX deadlock detection counts processes, not threads: see below. EDEADLK that lasts this long
  // is taken for a real deadlock.
  constexpr auto kDeadlockPatience = std::chrono::milliseconds(1000);
  Entry* e = job.entry;
  if (err == EDEADLK) {
    if (job.deadlockSince == Clock::time_point()) job.deadlockSince = Clock::now();
    // POSIX locks belong to processes, so the kernel sees a cycle when two processes each have one
    // thread holding what a thread of the other waits for, although every thread will go on and
    // release. It refuses to block: retry after a bounded back-off instead (an interrupt ends the
    // sleep too, so timeouts and aborts still work). One that lasts is a real deadlock: it fails.
    if (Clock::now() - job.deadlockSince <= kDeadlockPatience) return AfterLockCall::BackOff;
  } else {
    job.deadlockSince = Clock::time_point();
    job.deadlockBackoffNs = 500'000;
  }
  if (err == EINTR) return AfterLockCall::WaitAgain;
  if (err != 0) {
    // Final: fail the queued requests after the entry is gone, so whoever hears of it sees a table
    // without it.
    SysError failure(err, "fcntl", e->dir->fullPath(e->name()),
                     err == EDEADLK ? "the kernel reports a deadlock with another process" : "");
    std::list<Waiter> ws = e->waiters().takeAll();
    for (const Waiter& w : ws) book_.leave(w.request);
    --kernelWaits_;
    job.countedOut = true;
    closeAbandoned(lk, e);
    for (Waiter& w : ws) w.sink->failed(w.request, failure);
    return AfterLockCall::Ended;
  }
  // Requests may have been cancelled meanwhile. A lock that no longer fits the head is let go before
  // waiting in the other mode: upgrading in place while another process does the same deadlocks.
  if (!e->hasWaiters() || e->waiters().front().req.shared != job.wantShared) {
    fitKernelLock(lk, e, job.wantShared, Fit::LetGo);
    return AfterLockCall::WaitAgain;
  }
  // Locked: grant the front of the queue, each request only if its name still reaches this file.
  setState(e, State::Granting);
  e->shared = job.wantShared;
  e->joins = 0;
  e->writerWaits = false;
  --kernelWaits_;
  job.countedOut = true;
  std::vector<Waiter> moved;
  if (grantReserved(lk, e, moved)) return AfterLockCall::Ended;
  // Every name checked reaches another file now (or the batch was cancelled meanwhile): let the lock
  // go, and wait again (on this thread) for whoever is still queued.
  fitKernelLock(lk, e, job.wantShared, Fit::LetGo);
  ++kernelWaits_;
  job.countedOut = false;
  settle(lk, e, State::KernelWait, moved, WaitBy::ThisThread);
  return AfterLockCall::WaitAgain;
}

}  // namespace lockspace
