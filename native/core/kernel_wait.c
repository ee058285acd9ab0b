// The kernel-wait thread's loop, in C: see kernel_wait.h for why no C++ frame may be on its stack.
#include "kernel_wait.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>

// With exceptions on, glibc's pthread_cleanup_push becomes a cleanup attribute, which gives the loop a
// personality routine (the compiler runtime's): exactly what this file exists to avoid.
#if defined(__EXCEPTIONS) || defined(__cplusplus)
#error "kernel_wait.c must be compiled as C without -fexceptions"
#endif

struct start {
  lockspace_kwait_turn turn;
  lockspace_kwait_interrupted interrupted;
  void* job;
};

static int make_call(const struct lockspace_kwait_call* call) {
  if (call->cmd == 0) {
    struct timespec pause = {call->sleep_ns / 1000000000L, call->sleep_ns % 1000000000L};
    return nanosleep(&pause, NULL) == 0 ? 0 : errno;
  }
  struct flock fl = {0};
  fl.l_type = call->type;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 1;
  return fcntl(call->fd, call->cmd, &fl) == 0 ? 0 : errno;
}

static void* run(void* arg) {
  const struct start s = *(struct start*)arg;
  free(arg);
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);  // enabled only around the call
  pthread_setname_np(pthread_self(), "lockspace-wait");
  struct lockspace_kwait_call call = {0};
  while (s.turn(s.job, &call)) {
    int result;
    pthread_cleanup_push(s.interrupted, s.job);
    pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
    result = make_call(&call);  // an interrupt ends the thread here, through the cleanup handler
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    pthread_cleanup_pop(0);
    call.made = 1;
    call.result = result;
  }
  return NULL;
}

int lockspace_kwait_spawn(lockspace_kwait_turn turn, lockspace_kwait_interrupted interrupted, void* job,
                          pthread_t* thread) {
  struct start* s = malloc(sizeof *s);
  if (s == NULL) return ENOMEM;
  s->turn = turn;
  s->interrupted = interrupted;
  s->job = job;
  sigset_t all, old;
  sigfillset(&all);
  // The new thread inherits this mask: block everything (glibc keeps the cancellation signal open).
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
#ifdef LOCKSPACE_SANITIZED
  pthread_attr_setstacksize(&attr, 1 << 20);  // the turns run the registry's instrumented C++
#else
  pthread_attr_setstacksize(&attr, 128 * 1024);
#endif
  int rc = pthread_create(thread, &attr, run, s);
  if (rc != 0) free(s);
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return rc;
}

void lockspace_kwait_interrupt(pthread_t thread) { pthread_cancel(thread); }
