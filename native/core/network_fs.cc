#include "network_fs.h"

#include <sys/statfs.h>

#include <atomic>

namespace lockspace {
namespace {
std::atomic<bool> forcedRemote{false};
}

bool NetworkFs::isNetworkType(long statfsType) noexcept {
  switch (static_cast<unsigned long>(statfsType)) {
    case 0x6969UL:      // NFS
    case 0x517BUL:      // SMB
    case 0xFF534D42UL:  // CIFS
    case 0xFE534D42UL:  // SMB2
    case 0x65735546UL:  // FUSE
    case 0x00C36400UL:  // Ceph
    case 0x01021997UL:  // 9p
    case 0x5346414FUL:  // AFS
    case 0x73757245UL:  // Coda
    case 0x01161970UL:  // GFS2
    case 0x7461636FUL:  // OCFS2
    case 0x0BD00BD0UL:  // Lustre
      return true;
    default:
      return false;
  }
}

void NetworkFs::setForced(bool on) noexcept { forcedRemote = on; }
bool NetworkFs::forced() noexcept { return forcedRemote.load(std::memory_order_relaxed); }

bool NetworkFs::ofDirectory(const std::string& path) {
  struct statfs sfs {};
  return ::statfs(path.c_str(), &sfs) == 0 && isNetworkType(sfs.f_type);
}

bool NetworkFs::ofParent(const std::string& path) {
  if (forced()) return true;
  size_t slash = path.rfind('/');
  std::string parent = slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = parents_.find(parent);
    if (it != parents_.end()) return it->second;
  }
  const bool remote = ofDirectory(parent);  // outside the mutex: statfs may block on a server
  std::lock_guard<std::mutex> lk(mu_);
  if (parents_.size() > kMaxParents) parents_.clear();
  parents_[parent] = remote;
  return remote;
}

bool NetworkFs::ofDevice(dev_t dev, int fd) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = devices_.find(dev);
  if (it != devices_.end()) return it->second;
  struct statfs sfs {};
  const bool remote = ::fstatfs(fd, &sfs) != 0 || isNetworkType(sfs.f_type);
  devices_.emplace(dev, remote);
  return remote;
}

}  // namespace lockspace
