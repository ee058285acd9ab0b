#include "dir.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vector>

#include "network_fs.h"

namespace lockspace {

Dir::~Dir() = default;

bool Dir::remote() const noexcept { return remote_ || NetworkFs::forced(); }

std::string Dir::fullPath(std::string_view name) const {
  if (pathMode_) return std::string(name);
  std::string p;
  p.reserve(path_.size() + 1 + name.size());
  p.append(path_);
  if (p.empty() || p.back() != '/') p.push_back('/');
  p.append(name);
  return p;
}

void Dir::checkName(const std::string& name) const {
  if (name.find('\0') != std::string::npos) throw ArgError("resource name must not contain NUL bytes");
  if (pathMode_) {
    if (name.empty() || name[0] != '/' || name.back() == '/' || name.size() >= 4096)
      throw ArgError("resource name must be an absolute path to a file");
    return;
  }
  if (name.empty() || name.size() > 255 || name == "." || name == ".." || name.find('/') != std::string::npos)
    throw ArgError("resource name must be a single path component");
}

SysError Dir::openError(int err, const std::string& path) const {
  if (err == ENOENT && !pathMode_) {
    struct stat st {};
    if (::stat(path_.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      return SysError(err, "open", path,
                      "the lockspace directory " + path_ + " was removed or replaced since it was opened");
  }
  return SysError(err, "open", path);
}

DirCache::DirCache() : pathDir_(new Dir()) { pathDir_->pathMode_ = true; }

DirPtr DirCache::open(const std::string& dir) {
  if (dir.empty() || dir[0] != '/' || dir.find('\0') != std::string::npos)
    throw ArgError("directory must be an absolute path without NUL bytes");
  // If opening it fails, remove what this call created.
  std::vector<std::string> created;
  auto undo = [&created] {
    for (auto it = created.rbegin(); it != created.rend(); ++it) ::rmdir(it->c_str());
  };
  try {
    for (size_t pos = 1;; ++pos) {
      pos = dir.find('/', pos);
      std::string prefix = dir.substr(0, pos);
      if (!prefix.empty()) {
        if (::mkdir(prefix.c_str(), 0700) == 0)
          created.push_back(prefix);
        else if (errno != EEXIST)
          throw SysError(errno, "mkdir", prefix);
      }
      if (pos == std::string::npos) break;
    }
    return openCanonical(dir);
  } catch (...) {
    undo();
    throw;
  }
}

DirPtr DirCache::openCanonical(const std::string& dir) {
  char* real = ::realpath(dir.c_str(), nullptr);
  if (!real) throw SysError(errno, "realpath", dir);
  std::string canonical(real);
  ::free(real);

  std::lock_guard<std::mutex> lk(mu_);
  auto it = dirs_.find(canonical);
  if (it != dirs_.end()) {
    if (DirPtr existing = it->second.lock()) return existing;
    dirs_.erase(it);
  }
  struct stat st {};
  if (::stat(canonical.c_str(), &st) != 0) throw SysError(errno, "stat", canonical);
  if (!S_ISDIR(st.st_mode)) throw SysError(ENOTDIR, "open", canonical);
  DirPtr d(new Dir());
  d->path_ = canonical;
  d->remote_ = NetworkFs::ofDirectory(canonical);
  if (dirs_.size() > kSweepAbove) {
    for (auto i = dirs_.begin(); i != dirs_.end();) i = i->second.expired() ? dirs_.erase(i) : std::next(i);
  }
  dirs_.emplace(canonical, d);
  return d;
}

}  // namespace lockspace
