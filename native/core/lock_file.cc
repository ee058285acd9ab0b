#include "lock_file.h"

#include <errno.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <string_view>

#include "table_mutex.h"

namespace lockspace::lockfile {
namespace {

constexpr int kOpenFlags = O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY;

short typeOf(Mode mode) { return mode == Mode::Shared ? F_RDLCK : F_WRLCK; }

int setLock(int fd, LockKind kind, short type) {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 1;
  const int cmd = kind == LockKind::Ofd ? F_OFD_SETLK : F_SETLK;
  return ::fcntl(fd, cmd, &fl) == 0 ? 0 : errno;
}

}  // namespace

namespace {
int openWith(const char* path, int flags, UniqueFd& fd) {
  LS_CHECK_NO_TABLE_LOCK("open");
  fd.reset(::open(path, flags, 0600));
  return fd ? 0 : errno;
}
}  // namespace

int open(const char* path, UniqueFd& fd) { return openWith(path, kOpenFlags, fd); }
int createNew(const char* path, UniqueFd& fd) { return openWith(path, kOpenFlags | O_CREAT | O_EXCL, fd); }
int openOrCreate(const char* path, UniqueFd& fd) { return openWith(path, kOpenFlags | O_CREAT, fd); }
int openForQuery(const char* path, UniqueFd& fd) {
  return openWith(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, fd);
}

int makeFile(const char* path) {
  // mknod: a regular file, never following a symlink and never truncating.
  LS_CHECK_NO_TABLE_LOCK("mknod");
  return ::mknod(path, S_IFREG | 0600, 0) == 0 ? 0 : errno;
}

int checkRegular(mode_t mode, const char** why) noexcept {
  *why = "";
  if (S_ISREG(mode)) return 0;
  if (S_ISLNK(mode)) {
    *why = "resource path is a symbolic link";
    return ELOOP;
  }
  if (S_ISDIR(mode)) {
    *why = "resource path is a directory";
    return EISDIR;
  }
  *why = S_ISFIFO(mode)   ? "resource path is a FIFO, not a regular file"
         : S_ISSOCK(mode) ? "resource path is a socket, not a regular file"
                          : "resource path is a device, not a regular file";
  return EINVAL;
}

int tryLock(int fd, LockKind kind, Mode mode) noexcept {
  LS_CHECK_NO_TABLE_LOCK("fcntl");
  return setLock(fd, kind, typeOf(mode));
}
BlockingCall blockingLock(int fd, LockKind kind, Mode mode) noexcept {
  return {fd, kind == LockKind::Ofd ? F_OFD_SETLKW : F_SETLKW, typeOf(mode)};
}
int unlock(int fd, LockKind kind) noexcept {
  // The whole file: byte 0 and the bytes a holder record locks (holder_record.h) go together.
  LS_CHECK_NO_TABLE_LOCK("fcntl");
  struct flock fl {};
  fl.l_type = F_UNLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 0;
  return ::fcntl(fd, kind == LockKind::Ofd ? F_OFD_SETLK : F_SETLK, &fl) == 0 ? 0 : errno;
}
bool isBusy(int err) noexcept { return err == EAGAIN || err == EACCES; }

int query(int fd, LockKind kind, Mode mode, struct flock& conflict) noexcept {
  LS_CHECK_NO_TABLE_LOCK("fcntl");
  conflict = {};
  conflict.l_type = typeOf(mode);
  conflict.l_whence = SEEK_SET;
  conflict.l_start = 0;
  conflict.l_len = 1;
  return ::fcntl(fd, kind == LockKind::Ofd ? F_OFD_GETLK : F_GETLK, &conflict) == 0 ? 0 : errno;
}

int holderPid(int fd, LockKind kind, Mode mode) noexcept {
  struct flock fl {};
  if (query(fd, kind, mode, fl) != 0) return 0;
  return fl.l_type == F_UNLCK || fl.l_pid <= 0 ? 0 : fl.l_pid;  // OFD locks report -1
}

namespace {

// The text of /proc/self/fdinfo/<fd>: 0 or errno.
int readFdinfo(int fd, std::string& text) {
  const std::string file = "/proc/self/fdinfo/" + std::to_string(fd);
  UniqueFd info(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!info) return errno;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(info.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) return 0;
    text.append(buf, static_cast<size_t>(n));
  }
}

// Whether fdinfo lists locks on this kernel (Linux 4.1 and later): asked once, of an OFD lock on a
// memfd of our own, which nothing else can see.
bool fdinfoListsLocks() {
  static const bool lists = [] {
    UniqueFd probe(::memfd_create("lockspace-probe", MFD_CLOEXEC));
    std::string text;
    return probe && setLock(probe.get(), LockKind::Ofd, F_WRLCK) == 0 && readFdinfo(probe.get(), text) == 0 &&
           text.find("\nlock:") != std::string::npos;
  }();
  return lists;
}

// Splits text at spaces and tabs into at most max words; returns how many it found.
size_t splitWords(std::string_view text, std::string_view* words, size_t max) {
  size_t n = 0;
  for (size_t at = 0; n < max;) {
    at = text.find_first_not_of(" \t", at);
    if (at == std::string_view::npos) break;
    const size_t end = std::min(text.find_first_of(" \t", at), text.size());
    words[n++] = text.substr(at, end - at);
    at = end;
  }
  return n;
}

}  // namespace

int shownHeld(int fd, LockKind kind, Mode mode, bool& held) {
  LS_CHECK_NO_TABLE_LOCK("read");
  held = false;
  if (!fdinfoListsLocks()) return ENOSYS;
  std::string text;
  if (const int err = readFdinfo(fd, text)) return err;
  // "lock:\t1: POSIX  ADVISORY  WRITE 4242 fe:00:1234 0 0" (OFD: OFDLCK; shared: READ; then start, end)
  const char* type = kind == LockKind::Ofd ? "OFDLCK" : "POSIX";
  const char* access = mode == Mode::Shared ? "READ" : "WRITE";
  for (size_t at = 0; at < text.size();) {
    const size_t end = std::min(text.find('\n', at), text.size());
    const std::string_view line(text.data() + at, end - at);
    at = end + 1;
    if (line.substr(0, 5) != "lock:") continue;
    // Words: id, type, ADVISORY, access, pid, where, start, end.
    std::string_view words[7];
    if (splitWords(line.substr(5), words, 7) == 7 && words[1] == type && words[3] == access && words[6] == "0") {
      held = true;
      break;
    }
  }
  return 0;
}

bool writerBlocked(const InodeKey& key) noexcept {
  LS_CHECK_NO_TABLE_LOCK("read");
  try {
    UniqueFd locks(::open("/proc/locks", O_RDONLY | O_CLOEXEC));
    if (!locks) return false;
    char where[64];
    snprintf(where, sizeof where, "%02x:%02x:%llu", major(key.dev), minor(key.dev),
             static_cast<unsigned long long>(key.ino));
    const std::string pid = std::to_string(::getpid());
    std::string text;
    char buf[16384];
    for (;;) {
      const ssize_t n = ::read(locks.get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      text.append(buf, static_cast<size_t>(n));
    }
    // "12: -> POSIX  ADVISORY  WRITE 4242 fe:00:1234 0 0": blocked behind line 12 (OFD: OFDLCK, pid -1).
    for (size_t at = 0; at < text.size();) {
      const size_t end = std::min(text.find('\n', at), text.size());
      const std::string_view line(text.data() + at, end - at);
      at = end + 1;
      std::string_view words[8];
      if (splitWords(line, words, 8) != 8 || words[1] != "->") continue;
      // Words: id, ->, type, ADVISORY, access, pid, where, start (then end).
      if (words[4] == "WRITE" && words[6] == where && words[7] == "0" && words[5] != pid) return true;
    }
  } catch (...) {  // out of memory: no writer seen
  }
  return false;
}

bool namesInode(const char* path, const InodeKey& key) noexcept {
  LS_CHECK_NO_TABLE_LOCK("stat");
  struct stat st {};
  return ::lstat(path, &st) == 0 && st.st_dev == key.dev && st.st_ino == key.ino;
}

int deleteHeld(int fd, LockKind kind, Mode held, const char* path, const InodeKey& key) noexcept {
  // Never delete a file another process still holds: be exclusive first (upgrade a shared lock).
  LS_CHECK_NO_TABLE_LOCK("unlink");
  if (held == Mode::Shared) {
    const int err = tryLock(fd, kind, Mode::Exclusive);
    if (err != 0) return isBusy(err) ? EBUSY : err;
  }
  if (!namesInode(path, key)) return ENOENT;
  return ::unlink(path) == 0 ? 0 : errno;
}

void closeLocked(UniqueFd& fd, LockKind kind, bool remote) noexcept {
  LS_CHECK_NO_TABLE_LOCK("close");
  if (remote && fd) unlock(fd.get(), kind);
  fd.reset();
}

void staleNamePause(int attempt) {
  LS_CHECK_NO_TABLE_LOCK("nanosleep");
  struct timespec pause {
    0, std::min(1L << std::min(attempt, 5), 32L) * 1'000'000L
  };
  ::nanosleep(&pause, nullptr);
}

}  // namespace lockspace::lockfile
