// Lockspace directories: what a LockSpace handle names, its name rules, and the cache that makes
// every handle on one canonical directory share one Dir. Plain C++/POSIX, no N-API.
//
// The path is the identity (as in libvirt): every syscall on a resource resolves the absolute path
// directory/name from the root, as another process opening it would, so a lockspace directory that is
// renamed, removed, recreated or replaced by a symlink underneath is followed, never held on to.
//
// Interface: Dir (path, pathMode, remote, fullPath, checkName, openError), DirCache (open: create with
// parents and canonicalize; pathMode: the space of absolute names). A Dir belongs to the registry that
// opened it: its name index is that registry's.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "flat.h"
#include "types.h"

namespace lockspace {

struct Entry;
// The registry's index of entries by name, one per Dir (see entry.h for the key).
struct NameTraits {
  using Key = std::string_view;
  static size_t hash(const Key& k) noexcept { return std::hash<std::string_view>()(k); }
  static Key key(const Entry* e) noexcept;
  static bool eq(const Key& a, const Key& b) noexcept { return a == b; }
};

// A lockspace directory, or the path-mode space (absolute names) when pathMode is true.
// Shared by every LockSpace handle on the same canonical directory and by the entries opened in it.
class Dir {
 public:
  ~Dir();
  Dir(const Dir&) = delete;
  Dir& operator=(const Dir&) = delete;

  bool pathMode() const noexcept { return pathMode_; }
  const std::string& path() const noexcept { return path_; }  // canonical; empty in path mode
  bool remote() const noexcept;                               // NFS, CIFS, FUSE, ... (or forced)
  std::string fullPath(std::string_view name) const;
  // The name rules: a single path component here, an absolute path to a file in path mode (ArgError).
  void checkName(const std::string& name) const;
  // The error of an open of path (in this directory) that failed with err: ENOENT names a directory
  // removed or replaced since it was opened.
  SysError openError(int err, const std::string& path) const;

 private:
  friend class DirCache;
  friend class Registry;
  Dir() = default;
  bool pathMode_ = false;
  bool remote_ = false;
  std::string path_;
  // The registry's, guarded by its mutex.
  FlatSet<Entry, NameTraits> byName_;
  size_t entries_ = 0;         // entries opened through this directory
  std::shared_ptr<Dir> self_;  // keeps the Dir alive while entries_ > 0
};

using DirPtr = std::shared_ptr<Dir>;

class DirCache {
 public:
  DirCache();
  // Creates dir (0700, with parents) if missing, like libvirt; returns the shared Dir for its
  // canonical path. A failed open leaves nothing behind.
  DirPtr open(const std::string& dir);
  const DirPtr& pathMode() const noexcept { return pathDir_; }

 private:
  static constexpr size_t kSweepAbove = 64;  // past this many, expired records are dropped
  DirPtr openCanonical(const std::string& dir);
  std::mutex mu_;  // a leaf: nothing is called with it held
  std::unordered_map<std::string, std::weak_ptr<Dir>> dirs_;
  DirPtr pathDir_;
};

}  // namespace lockspace
