// Which files live on a network file system (NFS, CIFS, FUSE, ...), decided in one place. There the
// table keeps no idle fds, unlocks before it closes, never unlinks an autoCreate file at the last
// release, and the binding runs the syscalls on libuv's pool (they may block on the server).
// Plain C++/POSIX, no N-API. Thread-safe: its caches have their own leaf mutex (it calls nothing).
//
// Interface: isNetworkType (the statfs magic numbers), ofDirectory (a lockspace directory),
// ofParent (a path-mode name, cached by parent directory), ofDevice (an open file, cached by device);
// setForced/forced (tests: every file counts as remote).
#pragma once

#include <sys/types.h>

#include <mutex>
#include <string>
#include <unordered_map>

namespace lockspace {

class NetworkFs {
 public:
  static bool isNetworkType(long statfsType) noexcept;
  static void setForced(bool on) noexcept;
  static bool forced() noexcept;

  // A lockspace directory (statfs; a failure counts as local, as the open that follows will tell).
  static bool ofDirectory(const std::string& path);
  // The directory a path-mode name is in: forced, or by statfs of the parent, cached.
  bool ofParent(const std::string& path);
  // The file system of an open file on device dev (fstatfs, cached by device; a failure counts as remote).
  bool ofDevice(dev_t dev, int fd);

 private:
  static constexpr size_t kMaxParents = 4096;  // the parent cache starts over beyond this
  std::mutex mu_;
  std::unordered_map<dev_t, bool> devices_;
  std::unordered_map<std::string, bool> parents_;
};

}  // namespace lockspace
