#include "idle_list.h"

#include <sys/resource.h>

#include <algorithm>

namespace lockspace {

// Idle fds are a cache: they never take more than this share of the process's descriptor limit.
static constexpr size_t kIdleShareOfFdLimit = 8;

size_t idleCapFor(size_t limit) {
  struct rlimit rl {};
  size_t share = limit;
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    share = static_cast<size_t>(rl.rlim_cur / kIdleShareOfFdLimit);
  return std::min(limit, share);
}

}  // namespace lockspace
