#include "support.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "../core/test_point.h"

namespace lockspace::test {

int failures = 0;
std::string root;

bool exists(const std::string& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0;
}

ino_t inodeOf(const std::string& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0 ? st.st_ino : 0;
}

// Another process's view: can it take the lock on byte 0? (fork; the child uses a fresh fd)
bool outsiderCanLock(const std::string& path, bool shared) {
  pid_t pid = fork();
  if (pid == 0) {
    int fd = ::open(path.c_str(), O_RDWR);
    struct flock fl {};
    fl.l_type = shared ? F_RDLCK : F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_len = 1;
    _exit(fd >= 0 && ::fcntl(fd, F_SETLK, &fl) == 0 ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

Request req(bool shared, bool autoCreate, const char* owner) {
  Request r;
  r.shared = shared;
  r.autoCreate = autoCreate;
  r.owner = owner;
  r.env = 1;
  return r;
}

Registry& reg() { return Registry::instance(); }

std::string freshDir(const char* name) { return root + "/" + name; }

void TestSink::granted(uint64_t r, uint64_t l) {
  std::lock_guard<std::mutex> lk(mu);
  grants.emplace_back(r, l);
  cv.notify_all();
}
void TestSink::failed(uint64_t r, const SysError& e) {
  std::lock_guard<std::mutex> lk(mu);
  failures.emplace_back(r, e.err);
  cv.notify_all();
}
bool TestSink::waitFor(size_t n) {
  std::unique_lock<std::mutex> lk(mu);
  return cv.wait_for(lk, std::chrono::seconds(10), [&] { return grants.size() + failures.size() >= n; });
}

PointAction pointAction;

namespace {

void onPoint(const char* point, const char* detail) {
  PointAction& a = pointAction;
  if (a.fired || !a.point || strcmp(point, a.point) != 0 || a.detail != detail) return;
  a.fired = true;  // once: the action may re-enter the registry and pass the same point
  a.action();
  a.done = true;
}

}  // namespace

void armPoint(const char* point, const char* detail, std::function<void()> action) {
  pointAction.point = point;
  pointAction.detail = detail;
  pointAction.action = std::move(action);
  pointAction.fired = false;
  pointAction.done = false;
  testing::pointFn = onPoint;
}

void disarmPoint() {
  testing::pointFn = nullptr;
  pointAction.point = nullptr;
}

// Polls cond every millisecond for up to 10 s.
bool eventually(const std::function<bool()>& cond) {
  for (int i = 0; i < 10000; ++i) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return cond();
}

bool kernelWaiterBlocked() {
  FILE* f = fopen("/proc/locks", "r");
  if (!f) return false;
  char line[512];
  const std::string pid = " " + std::to_string(getpid()) + " ";
  bool found = false;
  while (fgets(line, sizeof line, f))
    if (strstr(line, "->") && strstr(line, "POSIX") && strstr(line, pid.c_str())) found = true;
  fclose(f);
  return found;
}

bool ofdLock(int fd, short type) {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_len = 1;
  return ::fcntl(fd, F_OFD_SETLK, &fl) == 0;
}

// A child process holding an exclusive POSIX lock on path until the returned fd is closed.
OutsideHolder::OutsideHolder(const std::string& path) {
  int toChild[2], fromChild[2];
  if (pipe(toChild) != 0 || pipe(fromChild) != 0) return;
  pid = fork();
  if (pid == 0) {
    ::close(toChild[1]);  // else the read below never sees EOF
    ::close(fromChild[0]);
    int fd = ::open(path.c_str(), O_RDWR);
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_len = 1;
    char ok = fd >= 0 && ::fcntl(fd, F_SETLK, &fl) == 0 ? 'y' : 'n';
    if (::write(fromChild[1], &ok, 1) != 1) _exit(1);
    char c;
    while (::read(toChild[0], &c, 1) > 0) {
    }
    _exit(0);
  }
  ::close(toChild[0]);
  ::close(fromChild[1]);
  char ok = 0;
  if (::read(fromChild[0], &ok, 1) != 1 || ok != 'y') pid = -1;
  ::close(fromChild[0]);
  release = toChild[1];
}
OutsideHolder::~OutsideHolder() {
  ::close(release);
  int status;
  if (pid > 0) waitpid(pid, &status, 0);
}

}  // namespace lockspace::test
