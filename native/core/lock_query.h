// Lock queries that see every lock on a file, this process's own included, and can drop none of
// this process's locks. Plain C++/POSIX, no N-API, no state.
//
// A POSIX lock is owned by the descriptor table of the process that took it: F_GETLK through any of
// this process's descriptors never reports the process's own POSIX locks, and closing any descriptor
// of the file drops them all. So the queries run on a short-lived thread that first gives itself a
// descriptor table of its own (empty: close_range(CLOSE_RANGE_UNSHARE); before Linux 5.9 a copy:
// unshare(CLONE_FILES)). Its descriptors belong to that table, so F_GETLK through them sees this
// process's locks like any other process's, and closing them drops only that table's locks: none.
// The thread blocks every signal: a handler must never run with another descriptor table.
//
// The answer is the kernel's, consistent at the moment of each query (unlike /proc/locks, which is
// read a page at a time while lines come and go, and which leaves out the locks of processes that
// the reader's pid namespace cannot see).
//
// Interface: ask (byte 0 of each path, in one thread, and the holder records), Answer, Records.
#pragma once

#include <fcntl.h>
#include <sys/types.h>

#include <string>
#include <vector>

#include "holder_record.h"

namespace lockspace::lockquery {

struct Answer {
  int err = 0;               // 0, or the errno of `syscall` (stat, open, fstat, fcntl; unshare, pthread_create)
  const char* syscall = "";  // what failed
  dev_t dev = 0;             // the file the name reached when it was opened
  ino_t ino = 0;
  bool remote = false;      // on a network file system: the pid is then the holder's on its own host
  short type = F_UNLCK;     // F_UNLCK: nobody holds byte 0; F_RDLCK / F_WRLCK: the first lock on it found
  pid_t pid = 0;            // its owner's pid in this pid namespace, 0 if the namespace cannot see it, -1 OFD
  record::Records records;  // the live holders' records, when asked for (see Records below)
};

// Which files' holder records (holder_record.h) to read, through the same read-only descriptor and
// from the same thread (which sees this process's own locks): none, those found held, or all.
enum class Records : uint8_t { None, IfHeld, All };

// Asks about byte 0 of each path, read-only, never following a symlink and opening only a regular
// file (EINVAL for anything else). One thread for all of them.
std::vector<Answer> ask(const std::vector<std::string>& paths, Records records = Records::None);

}  // namespace lockspace::lockquery
