// Threads that block in F_SETLKW for locks held by other processes, and the signal used to interrupt
// them. Plain C++/POSIX, no N-API. These threads never run in libuv's threadpool.
#pragma once

#include <pthread.h>

namespace lockspace::kwait {

// The real-time signal used to interrupt a blocked F_SETLKW (installed once, without SA_RESTART, with
// an empty handler). Returns 0 if no free signal could be found.
int interruptSignal();

// Starts a detached thread running fn(arg) with every signal blocked except the interrupt signal and a
// small stack. Returns 0 or an errno value.
int spawn(void (*fn)(void*), void* arg, pthread_t* thread);

}  // namespace lockspace::kwait
