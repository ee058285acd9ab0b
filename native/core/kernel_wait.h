// The threads that block in F_SETLKW for locks held by other processes, and how they are interrupted.
// Plain C (kernel_wait.c), no N-API, callable from C++. These threads never run in libuv's threadpool.
//
// A blocked F_SETLKW ends only when the lock is granted or a signal interrupts it. lockspace interrupts
// it with thread cancellation (pthread_cancel), not a signal of its own choosing: glibc reserves the
// cancellation signal (sigaction refuses to change it, sigprocmask does not block it), so no other
// library in the process can ignore it or put a restarting handler on it, and a cancel request is
// sticky, so one made just before the thread blocks still ends the wait when it blocks: one request is
// enough, nothing re-signals. The price: an interrupted thread does not go on, it ends; a new thread
// takes over whatever still has to be waited for.
//
// Why C: glibc ends a cancelled thread with a forced unwind driven by the system's libgcc_s, which calls
// the personality routine of every frame it passes. The prebuilt addon links its own C++ runtime
// (libc++abi and LLVM's libunwind, kept private), whose personality routine reads libgcc_s's unwind
// context as if it were libunwind's and jumps to address 0: every interrupted wait crashed the process.
// So no C++ frame may be on this thread's stack while it can be cancelled. The thread's loop is C; its
// C++ owner runs in `turn` and `interrupted`, called as plain functions that return before the thread
// blocks again. (musl ends a cancelled thread without unwinding at all; the cleanup handler runs.)
//
// Interface: lockspace_kwait_spawn (a detached waiting thread), lockspace_kwait_interrupt.
#pragma once

#include <pthread.h>

#ifdef __cplusplus
extern "C" {
#endif

// The one blocking call a kernel-wait thread makes next, and what it gave.
struct lockspace_kwait_call {
  int fd;         // with cmd: fcntl(fd, cmd, {type, SEEK_SET, byte 0, length 1})
  int cmd;        // F_SETLKW or F_OFD_SETLKW; 0: sleep for sleep_ns instead
  short type;     // F_RDLCK or F_WRLCK
  long sleep_ns;  // cmd == 0: the length of the sleep
  int made;       // set by the thread: 1 once the call was made (0 before the first turn)
  int result;     // set by the thread: 0, or the errno of the call
};

// A turn of the thread's owner: called with cancellation disabled and nothing blocking. It reads the
// outcome of the call just made (call->made, call->result) and writes the next one; it returns nonzero
// to make that call, zero to end the thread (then job is not touched again). It must return: no
// exception or unwinding may leave it.
typedef int (*lockspace_kwait_turn)(void* job, struct lockspace_kwait_call* call);
// The cleanup of a thread interrupted in its call: runs on that thread as it ends (job is not touched
// again). Likewise it must return.
typedef void (*lockspace_kwait_interrupted)(void* job);

// Starts a detached thread named "lockspace-wait" with every signal blocked (process signals stay with
// Node's threads) and a small stack, which alternates turn(job, call) and the call it asks for until
// turn returns zero or an interrupt ends it in the call. Returns 0 or an errno value.
int lockspace_kwait_spawn(lockspace_kwait_turn turn, lockspace_kwait_interrupted interrupted, void* job,
                          pthread_t* thread);

// Asks a thread started by lockspace_kwait_spawn to end in its current (or next) call. The thread must
// still be running: the caller knows it has not ended.
void lockspace_kwait_interrupt(pthread_t thread);

#ifdef __cplusplus
}
#endif
