#include "kernel_wait.h"

#include <errno.h>
#include <signal.h>

#include <mutex>
#include <new>

namespace lockspace::kwait {
namespace {

extern "C" void onInterrupt(int) {}  // only there to make F_SETLKW return EINTR

int chooseSignal() {
  // Highest real-time signal nobody has claimed (glibc keeps the lowest ones for itself).
  for (int sig = SIGRTMAX - 1; sig >= SIGRTMIN + 2; --sig) {
    struct sigaction old {};
    if (sigaction(sig, nullptr, &old) != 0) continue;
    if ((old.sa_flags & SA_SIGINFO) != 0 || old.sa_handler != SIG_DFL) continue;
    struct sigaction sa {};
    sa.sa_handler = onInterrupt;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: the blocked fcntl must return EINTR
    if (sigaction(sig, &sa, nullptr) == 0) return sig;
  }
  return 0;
}

struct Start {
  void (*fn)(void*);
  void* arg;
};

extern "C" void* trampoline(void* p) {
  Start start = *static_cast<Start*>(p);
  delete static_cast<Start*>(p);
  start.fn(start.arg);  // fn is noexcept by contract
  return nullptr;
}

}  // namespace

int interruptSignal() {
  static int sig = chooseSignal();
  return sig;
}

int spawn(void (*fn)(void*), void* arg, pthread_t* thread) {
  int sig = interruptSignal();
  if (sig == 0) return ENOSYS;
  sigset_t all, old;
  sigfillset(&all);
  sigdelset(&all, sig);
  // The new thread inherits this mask: block everything (process signals stay with Node's threads).
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
#if defined(__SANITIZE_ADDRESS__)
  pthread_attr_setstacksize(&attr, 1 << 20);
#else
  pthread_attr_setstacksize(&attr, 128 * 1024);
#endif
  auto* start = new (std::nothrow) Start{fn, arg};
  int rc = start ? pthread_create(thread, &attr, trampoline, start) : ENOMEM;
  if (rc != 0) delete start;
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return rc;
}

}  // namespace lockspace::kwait
