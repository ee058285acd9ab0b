// Threads that block in F_SETLKW for locks held by other processes, and how they are interrupted.
// Plain C++/POSIX, no N-API. These threads never run in libuv's threadpool.
//
// A blocked F_SETLKW ends only when the lock is granted or a signal interrupts it. lockspace interrupts
// it with thread cancellation (pthread_cancel), not a signal of its own choosing: glibc reserves the
// cancellation signal (sigaction refuses to change it, sigprocmask does not block it), so no other
// library in the process can ignore it or put a restarting handler on it, and a cancel request is
// sticky, so one made just before the thread blocks still ends the wait when it blocks: one request is
// enough, nothing re-signals. The price: an interrupted thread does not go on, it ends; a new thread
// takes over whatever still has to be waited for. Its owner does its bookkeeping in a pthread cleanup
// handler pushed around the Interruptible section (pthread_cleanup_push), not in a destructor or a
// catch: musl ends a cancelled thread without unwinding its C++ frames, glibc unwinds them (a forced
// unwind, abi::__forced_unwind, that no catch (...) may swallow and no noexcept function may meet) and
// runs the handler on the way.
//
// Interface: spawn (a detached waiting thread), Interruptible (where an interrupt may end it),
// interrupt. The registry's side (what the thread waits for, what its handler does) is in
// registry_kernel_wait.cc.
#pragma once

#include <pthread.h>

namespace lockspace::kwait {

// Starts a detached thread named "lockspace-wait" running fn(arg) with every signal blocked (process
// signals stay with Node's threads), cancellation disabled (see Interruptible) and a small stack.
// fn must let an interrupt end the thread (see above). Returns 0 or an errno value.
int spawn(void (*fn)(void*), void* arg, pthread_t* thread);

// While one exists, an interrupt() of this thread ends it at its blocking call (fcntl F_SETLKW,
// nanosleep), or at once if one is pending. Only around calls made without any lock held: the thread
// unwinds from there.
class Interruptible {
 public:
  Interruptible() noexcept;
  ~Interruptible() { end(); }
  Interruptible(const Interruptible&) = delete;
  Interruptible& operator=(const Interruptible&) = delete;
  void end() noexcept;  // the section ends here (or at the end of the scope)

 private:
  int old_;
  bool open_ = true;
};

// Asks a thread started by spawn() to end at its next (or current) blocking call in an Interruptible
// section. The thread must still be running: the caller knows it has not finished.
void interrupt(pthread_t thread) noexcept;

}  // namespace lockspace::kwait
