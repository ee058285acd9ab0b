#include "kernel_wait.h"

#include <errno.h>
#include <signal.h>

#include <new>

namespace lockspace::kwait {
namespace {

struct Start {
  void (*fn)(void*);
  void* arg;
};

extern "C" void* trampoline(void* p) {
  Start start = *static_cast<Start*>(p);
  delete static_cast<Start*>(p);
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, nullptr);  // enabled only inside Interruptible
  pthread_setname_np(pthread_self(), "lockspace-wait");
  start.fn(start.arg);  // an interrupt unwinds through here to the end of the thread
  return nullptr;
}

}  // namespace

Interruptible::Interruptible() noexcept { pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &old_); }
void Interruptible::end() noexcept {
  if (open_) pthread_setcancelstate(old_, nullptr);
  open_ = false;
}

void interrupt(pthread_t thread) noexcept { pthread_cancel(thread); }

int spawn(void (*fn)(void*), void* arg, pthread_t* thread) {
  sigset_t all, old;
  sigfillset(&all);
  // The new thread inherits this mask: block everything (glibc keeps the cancellation signal open).
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
