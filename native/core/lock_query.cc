#include "lock_query.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <new>

#include "lock_file.h"
#include "network_fs.h"

namespace lockspace::lockquery {
namespace {

#ifdef __NR_close_range
constexpr long kCloseRange = __NR_close_range;
#else
constexpr long kCloseRange = 436;  // the same on every architecture; older headers lack it
#endif
constexpr unsigned kCloseRangeUnshare = 1U << 1;  // CLOSE_RANGE_UNSHARE

// Gives the calling thread a descriptor table of its own; 0 or errno.
int ownTable() noexcept {
  // From 0 to the end: the kernel copies nothing and closes nothing of the process's table.
  if (::syscall(kCloseRange, 0U, ~0U, kCloseRangeUnshare) == 0) return 0;
  // Before Linux 5.9: a copy. Its descriptors close when the thread ends, dropping this table's
  // locks (none), never the process's.
  return ::unshare(CLONE_FILES) == 0 ? 0 : errno;
}

// The file system of the last device seen (the files of one call are mostly in one directory).
struct LastDevice {
  bool known = false;
  dev_t dev = 0;
  bool remote = false;
};

void askOne(const std::string& path, Records records, Answer& a, LastDevice& last) {
  struct stat st {};
  // Only a regular file is opened: a FIFO or device planted at the name is never opened.
  if (::lstat(path.c_str(), &st) != 0) {
    a.err = errno;
    a.syscall = "stat";
    return;
  }
  if (!S_ISREG(st.st_mode)) {
    a.err = EINVAL;
    a.syscall = "open";
    return;
  }
  UniqueFd fd;
  if (const int err = lockfile::openForQuery(path.c_str(), fd)) {
    a.err = err;
    a.syscall = "open";
    return;
  }
  if (::fstat(fd.get(), &st) != 0) {
    a.err = errno;
    a.syscall = "fstat";
    return;
  }
  if (!S_ISREG(st.st_mode)) {  // replaced between the two
    a.err = EINVAL;
    a.syscall = "open";
    return;
  }
  a.dev = st.st_dev;  // the file asked about
  a.ino = st.st_ino;
  if (!last.known || last.dev != st.st_dev) {
    struct statfs fs {};
    last = {true, st.st_dev,
            NetworkFs::forced() || (::fstatfs(fd.get(), &fs) == 0 && NetworkFs::isNetworkType(fs.f_type))};
  }
  a.remote = last.remote;
  struct flock fl {};
  // A write lock conflicts with every lock on the byte: the first one found, if any, is the answer.
  if (const int err = lockfile::query(fd.get(), LockKind::Posix, lockfile::Mode::Exclusive, fl)) {
    a.err = err;
    a.syscall = "fcntl";
    return;
  }
  a.type = fl.l_type;
  a.pid = fl.l_type == F_UNLCK ? 0 : fl.l_pid;
  if (records == Records::All || (records == Records::IfHeld && a.type != F_UNLCK)) try {
      a.records = record::readLive(fd.get(), a.remote);
    } catch (const std::bad_alloc&) {
      a.records.err = ENOMEM;
      a.records.syscall = "read";
    }
}

struct Job {
  const std::vector<std::string>* paths;
  Records records;
  std::vector<Answer>* out;
};

void* run(void* arg) noexcept {
  Job* job = static_cast<Job*>(arg);
  pthread_setname_np(pthread_self(), "lockspace-query");
  const int err = ownTable();
  LastDevice last;
  for (size_t i = 0; i < job->paths->size(); ++i) {
    Answer& a = (*job->out)[i];
    if (err != 0) {
      a.err = err;
      a.syscall = "unshare";
    } else {
      askOne((*job->paths)[i], job->records, a, last);
    }
  }
  return nullptr;
}

}  // namespace

std::vector<Answer> ask(const std::vector<std::string>& paths, Records records) {
  std::vector<Answer> out(paths.size());
  if (paths.empty()) return out;
  Job job{&paths, records, &out};
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);  // the thread inherits it
  pthread_attr_t attr;
  pthread_attr_init(&attr);
#ifdef LOCKSPACE_SANITIZED
  pthread_attr_setstacksize(&attr, 1 << 20);
#else
  pthread_attr_setstacksize(&attr, 128 * 1024);
#endif
  pthread_t thread;
  const int rc = pthread_create(&thread, &attr, run, &job);
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (rc != 0) {
    for (Answer& a : out) {
      a.err = rc;
      a.syscall = "pthread_create";
    }
    return out;
  }
  pthread_join(thread, nullptr);
  return out;
}

}  // namespace lockspace::lockquery
