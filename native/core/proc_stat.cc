#include "proc_stat.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "unique_fd.h"

namespace lockspace::procstat {

bool startTimeIn(const std::string& stat, uint64_t* out) {
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return false;
  // After ")": " " then field 3 (the state); field 22 follows the 20th space from here.
  size_t at = close;
  for (int field = 3; field <= 22; ++field) {
    at = stat.find(' ', at + 1);
    if (at == std::string::npos) return false;
  }
  const size_t end = stat.find_first_not_of("0123456789", at + 1);
  const size_t digits = (end == std::string::npos ? stat.size() : end) - (at + 1);
  if (digits == 0 || digits > 19 || (end != std::string::npos && stat[end] != ' ' && stat[end] != '\n')) return false;
  uint64_t v = 0;
  for (size_t i = at + 1; i < at + 1 + digits; ++i) v = v * 10 + static_cast<uint64_t>(stat[i] - '0');
  *out = v;
  return true;
}

bool startTimeOf(pid_t pid, uint64_t* out) {
  if (pid <= 0) return false;
  const std::string file = "/proc/" + std::to_string(pid) + "/stat";
  UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return false;
  // The whole text: short (a command name and numbers), read to its end whatever its length.
  std::string text;
  char buf[512];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > 16384) return false;
  }
  return startTimeIn(text, out);
}

}  // namespace lockspace::procstat
