// lockspace-holder: holds a set of locks for the life of another process (LockSpace#holdFor, the CLI's
// `hold`). One small static program per bound set, started detached by the manager that binds the set:
// the locks belong to this process, so the manager can exit, crash or be upgraded and the locks stay;
// they go when the bound process ends (watched through a pidfd, so a reused pid cannot keep them).
//
// It listens on nothing: it reads its argv once, reports on fd 1 (a pipe to the manager that started
// it, which may be gone later: writes that fail are ignored), and takes only signals, which the kernel
// admits from the same user or root. SIGUSR1 releases the set and exits: a release on purpose (the
// manager's release, or its holdFor given up), which leaves the bound process running without its
// locks. SIGTERM, SIGINT or SIGHUP while the bound process runs (a service manager stopping everything,
// a stray kill) would take its locks away as well, so it is fenced first (--on-lost), as on a lost
// lock, and the set goes once it has ended; once it has ended they release at once.
// Who it is bound to is in its environment (LOCKSPACE_BOUND, written by the manager, never read here):
// /proc/PID/environ is readable only by that user and root, which is how a restarted manager finds it.
//
// usage: lockspace-holder --pid PID [--start TICKS] [--kind posix|ofd] [--wait-ms MS] [--auto-create]
//        [--on-lost kill|term|none] [--grace-ms MS] [--check-ms MS] [--fence-after-ms MS]
//        [--records [--label TEXT]] -- (x|s)PATH...
//   x: exclusive, s: shared. --wait-ms -1 waits as long as the bound process lives. --start is the bound
//   process's start time (field 22 of /proc/PID/stat) as the manager saw it: another process with that
//   pid now is an error, not a bind. --records: write a holder record into each member once the set is
//   held (native/core/holder_record.h), as a lockspace opened with { records: true } does for its
//   grants; the record names this process, the locks' owner, and carries the label.
//
// Lines it writes (each "\n"-terminated):
//   held                           every lock is held, the set is bound
//   busy INDEX PID                 member INDEX is held by another process (PID 0: not visible); nothing held
//   error ERRNO SYSCALL INDEX      nothing held (INDEX -1: not about one member; -2: no guardian)
//   lost INDEX ERRNO               a held lock is lost (or its check stopped answering: ETIMEDOUT)
//   terminated                     told to end (not SIGUSR1) while the bound process runs: fencing it
//   fenced SIGNAL|none REASON      the fencing action, done (REASON: lost, holder-exited, terminated)
//
// A guardian process (forked here, it holds no lock) watches this holder: if the holder dies without
// releasing while the bound process runs, the bound process is fenced, as on a lost lock, because its
// locks are gone. Without a guardian the set is not held; one that dies is replaced.
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../core/holder_record.h"
#include "../core/lock_file.h"
#include "../core/network_fs.h"
#include "../core/proc_stat.h"
#include "../core/types.h"
#include "../core/unique_fd.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

namespace lockspace::holder {
namespace {

using lockfile::Mode;

enum class Action { Kill, Term, None };

struct Config {
  pid_t pid = 0;
  bool checkStart = false;  // --start given: the bound process must have started then
  uint64_t start = 0;
  LockKind kind = LockKind::Posix;
  long waitMs = 0;  // -1: as long as the bound process lives
  bool autoCreate = false;
  Action onLost = Action::Kill;
  int graceMs = 5000;
  int checkMs = 2000;
  int fenceAfterMs = 0;  // 0: 3 check intervals
  bool records = false;
  std::string label;
  std::vector<std::pair<Mode, std::string>> specs;
};

// One file of the set, locked through fd. Other names that reached the same file keep their
// descriptors open in `aliases`: closing one would drop this process's POSIX lock on the file.
struct Member {
  size_t index = 0;  // of its first spec
  std::string path;
  Mode mode = Mode::Exclusive;
  UniqueFd fd;
  std::vector<UniqueFd> aliases;
  std::vector<std::pair<size_t, std::string>> aliasNames;  // the other specs that reach it: checked too
  InodeKey key;
  bool created = false;  // autoCreate made it: deleted at the end, as an autoCreate lease's file
  bool remote = false;
};

int64_t nowMs() {
  struct timespec ts {};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

// One line on fd 1. The manager may be gone (EPIPE, SIGPIPE ignored): the line is then dropped.
void say(const std::string& line) {
  const std::string text = line + "\n";
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(STDOUT_FILENO, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

[[noreturn]] void usage(const char* why) {
  std::string line = "lockspace-holder: ";
  line += why;
  line += "\n";
  (void)!::write(STDERR_FILENO, line.data(), line.size());
  _exit(64);
}

long number(const char* text, long min) {
  char* end = nullptr;
  errno = 0;
  const long v = strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v < min) usage("bad number");
  return v;
}

uint64_t startTicks(const char* text) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = strtoull(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || text[0] == '-') usage("bad start time");
  return v;
}

Config parse(int argc, char** argv) {
  Config c;
  int i = 1;
  auto value = [&]() -> const char* {
    if (i + 1 >= argc) usage("missing value");
    return argv[++i];
  };
  for (; i < argc; i++) {
    const std::string a = argv[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (a == "--pid")
      c.pid = static_cast<pid_t>(number(value(), 1));
    else if (a == "--start") {
      c.checkStart = true;
      c.start = startTicks(value());
    } else if (a == "--kind")
      c.kind = std::string(value()) == "ofd" ? LockKind::Ofd : LockKind::Posix;
    else if (a == "--wait-ms")
      c.waitMs = number(value(), -1);
    else if (a == "--auto-create")
      c.autoCreate = true;
    else if (a == "--records")
      c.records = true;
    else if (a == "--label")
      c.label = value();
    else if (a == "--grace-ms")
      c.graceMs = static_cast<int>(number(value(), 0));
    else if (a == "--check-ms")
      c.checkMs = static_cast<int>(number(value(), 1));
    else if (a == "--fence-after-ms")
      c.fenceAfterMs = static_cast<int>(number(value(), 0));
    else if (a == "--on-lost") {
      const std::string v = value();
      c.onLost = v == "none" ? Action::None : v == "term" ? Action::Term : Action::Kill;
    } else
      usage("unknown option");
  }
  for (; i < argc; i++) {
    const char* s = argv[i];
    if ((s[0] != 'x' && s[0] != 's') || s[1] != '/') usage("a member is (x|s)/absolute/path");
    c.specs.emplace_back(s[0] == 's' ? Mode::Shared : Mode::Exclusive, s + 1);
  }
  if (c.pid == 0 || c.specs.empty()) usage("--pid and at least one member are required");
  if (c.fenceAfterMs == 0) c.fenceAfterMs = 3 * c.checkMs;
  if (c.label.size() > record::kMaxLabel) usage("the label is longer than a record holds");
  return c;
}

bool exited(int pidfd, int timeoutMs = 0) {
  struct pollfd p {
    pidfd, POLLIN, 0
  };
  int r;
  while ((r = ::poll(&p, 1, timeoutMs)) < 0 && errno == EINTR) {
  }
  return r > 0;
}

// The fencing action on the bound process: its locks are gone or may be.
const char* fence(int pidfd, Action action, int graceMs) {
  if (action == Action::None) return "none";
  if (action == Action::Term) {
    ::syscall(SYS_pidfd_send_signal, pidfd, SIGTERM, nullptr, 0);
    if (exited(pidfd, graceMs)) return "SIGTERM";
  }
  ::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
  return action == Action::Term ? "SIGTERM,SIGKILL" : "SIGKILL";
}

bool isRemote(int fd) {
  struct statfs sfs {};
  return ::fstatfs(fd, &sfs) != 0 || NetworkFs::isNetworkType(sfs.f_type);
}

// Lets every member go, last first: autoCreate files this holder made are deleted while still held
// (never on a network file system, where another host may still see the old name: README, Shared storage).
void releaseAll(std::vector<Member>& held, LockKind kind) {
  for (auto it = held.rbegin(); it != held.rend(); ++it) {
    if (it->created && !it->remote) lockfile::deleteHeld(it->fd.get(), kind, it->mode, it->path.c_str(), it->key);
    it->aliases.clear();
    it->aliasNames.clear();
    lockfile::closeLocked(it->fd, kind, it->remote);
  }
  held.clear();
}

struct Outcome {
  enum { Held, Busy, Error } what = Held;
  size_t index = 0;
  int err = 0;
  const char* syscall = "";
  int pid = 0;
};

Outcome failure(size_t index, int err, const char* syscall) { return {Outcome::Error, index, err, syscall, 0}; }

// Takes spec i, or finds it is a file the set holds already. Retries when the name moved meanwhile.
Outcome takeOne(const Config& c, size_t i, std::vector<Member>& held) {
  const Mode mode = c.specs[i].first;
  const char* path = c.specs[i].second.c_str();
  for (int attempt = 0;; attempt++) {
    bool created = false;
    UniqueFd fd;
    int openErr = lockfile::open(path, fd);
    if (openErr == ENOENT && c.autoCreate) {
      openErr = lockfile::createNew(path, fd);
      if (openErr == EEXIST) continue;
      created = openErr == 0;
    }
    if (openErr != 0) return failure(i, openErr, "open");
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return failure(i, errno, "fstat");
    const char* why = "";
    if (const int notRegular = lockfile::checkRegular(st.st_mode, &why)) return failure(i, notRegular, "open");
    const InodeKey key{st.st_dev, st.st_ino};
    Member* same = nullptr;
    for (Member& m : held)
      if (m.key == key) same = &m;
    if (same != nullptr) {
      // Another name of a file the set holds: one lock. Its descriptor stays open with the member,
      // whatever follows (closing it would drop this process's lock on the file).
      same->aliases.push_back(std::move(fd));
      if (!lockfile::namesInode(path, key)) {  // the name moved since it was opened: look again
        if (attempt >= 8) return failure(i, ESTALE, "open");
        continue;
      }
      // Exclusive if either name asks (a conversion of our own lock).
      if (mode == Mode::Exclusive && same->mode == Mode::Shared) {
        const int err = lockfile::tryLock(same->fd.get(), c.kind, Mode::Exclusive);
        if (lockfile::isBusy(err)) return {Outcome::Busy, i, err, "fcntl", 0};
        if (err != 0) return failure(i, err, "fcntl");
        same->mode = Mode::Exclusive;
      }
      same->aliasNames.emplace_back(i, path);
      return {};
    }
    const int err = lockfile::tryLock(fd.get(), c.kind, mode);
    if (lockfile::isBusy(err)) {
      const int pid = lockfile::holderPid(fd.get(), c.kind, mode);
      return {Outcome::Busy, i, err, "fcntl", pid};
    }
    if ((err == ESTALE || err == ENOENT) && attempt < 8) {
      lockfile::staleNamePause(attempt);
      continue;
    }
    if (err != 0) return failure(i, err, "fcntl");
    if (!lockfile::namesInode(path, key)) {  // unlinked or replaced since it was opened: look again
      if (attempt >= 8) return failure(i, ESTALE, "open");
      continue;
    }
    Member m;
    m.index = i;
    m.path = path;
    m.mode = mode;
    m.key = key;
    m.created = created;
    m.remote = isRemote(fd.get());
    m.fd = std::move(fd);
    held.push_back(std::move(m));
    return {};
  }
}

// Every spec, in the order given (the manager sorts them canonically), or nothing.
Outcome takeAll(const Config& c, std::vector<Member>& held) {
  for (size_t i = 0; i < c.specs.size(); i++) {
    const Outcome o = takeOne(c, i, held);
    if (o.what != Outcome::Held) {
      releaseAll(held, c.kind);
      return o;
    }
  }
  return {};
}

// The holder record of each member (holder_record.h), in the steps a lockspace's grant takes
// (registry_record.cc): under the lock just taken, the count goes on for an exclusive member, then this
// process claims a slot and writes its record; on a network file system it reaches the server before
// "held" is said. Every slot claimed by other live holders: no record, as for a lockspace's grant.
Outcome writeRecords(const Config& c, const std::vector<Member>& held) {
  for (const Member& m : held) {
    const int fd = m.fd.get();
    record::Count count;
    int err = record::readCount(fd, m.remote, &count);
    if (err != 0) return failure(m.index, err, "read");
    if ((err = record::extend(fd)) != 0) return failure(m.index, err, "ftruncate");
    record::Holder h;
    h.exclusive = m.mode == Mode::Exclusive;
    h.generation = count.last;
    if (h.exclusive) {
      h.generation = record::nextGeneration(count.last);
      if ((err = record::writeCount(fd, count, h.generation)) != 0) return failure(m.index, err, "write");
    }
    h.slot = record::claimSlot(fd, c.kind, &h.live, &err);
    if (err != 0) return failure(m.index, err, "fcntl");
    if (h.slot >= 0 && (err = record::writeOwnSlot(fd, h, c.label)) != 0) return failure(m.index, err, "write");
    if (m.remote && (err = record::flush(fd)) != 0) return failure(m.index, err, "fdatasync");
  }
  return {};
}

// --- the guardian -------------------------------------------------------------------------------
// Closes every descriptor from `from` on but `keepA` and `keepB`: close_range where the kernel has it
// (5.9), else one close per possible descriptor. Async-signal-safe.
void closeAllBut(int from, int keepA, int keepB) {
  const int lo = std::min(keepA, keepB), hi = std::max(keepA, keepB);
  const std::pair<int, int> ranges[] = {{from, lo - 1}, {lo + 1, hi - 1}, {hi + 1, INT_MAX}};
  for (const auto& [first, last] : ranges) {
    if (first > last) continue;
    if (::syscall(SYS_close_range, static_cast<unsigned>(first), static_cast<unsigned>(last), 0u) == 0) continue;
    struct rlimit limit {};
    const rlim_t open = ::getrlimit(RLIMIT_NOFILE, &limit) == 0 ? limit.rlim_cur : 1024;
    const int end = static_cast<int>(std::min<rlim_t>(open, static_cast<rlim_t>(last) + 1));
    for (int fd = first; fd < end; fd++) ::close(fd);
  }
}

// Forked from the holder; only async-signal-safe calls (the holder may have threads). It holds no
// lock: it closes every descriptor but the bound process's pidfd, its end of the pipe and stdout (an
// OFD lock's descriptor kept here would keep that lock after the holder).
[[noreturn]] void guard(int vmPidfd, int fromHolder, const Config& c) {
  prctl(PR_SET_NAME, "lockspace-guard", 0, 0, 0);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  closeAllBut(3, vmPidfd, fromHolder);
  struct pollfd p[2] = {{vmPidfd, POLLIN, 0}, {fromHolder, POLLIN, 0}};
  for (;;) {
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      _exit(1);
    }
    if (p[0].revents != 0) _exit(0);  // the bound process ended: nothing to guard
    char byte = 0;
    const ssize_t n = ::read(fromHolder, &byte, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n == 1 && byte == 'r') _exit(0);  // released on purpose
    // The holder is gone without releasing: the bound process runs without its locks.
    const char* done = fence(vmPidfd, c.onLost, c.graceMs);
    const char* fenced = "fenced ";
    (void)!::write(STDOUT_FILENO, fenced, strlen(fenced));
    (void)!::write(STDOUT_FILENO, done, strlen(done));
    (void)!::write(STDOUT_FILENO, " holder-exited\n", 15);
    _exit(0);
  }
}

struct Guardian {
  pid_t pid = -1;  // -1: none runs (err and failed say why it could not be started)
  int err = 0;
  const char* failed = "";
  UniqueFd pidfd;       // watched by the holder: a guardian that dies is replaced
  UniqueFd toGuardian;  // the holder's end: 'r' says "released on purpose"; EOF says "holder died"
};

// A guardian watched through a pidfd, or none (pid -1, err set): a guardian the holder cannot watch
// could die unnoticed, so one whose pidfd cannot be had is ended at once.
Guardian startGuardian(int vmPidfd, const Config& c) {
  Guardian g;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    g.err = errno;
    g.failed = "pipe2";
    return g;
  }
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[1]);
    guard(vmPidfd, fds[0], c);
  }
  const int forkErr = errno;  // before close() may change it
  ::close(fds[0]);
  UniqueFd toGuardian(fds[1]);
  if (pid < 0) {
    g.err = forkErr;
    g.failed = "fork";
    return g;
  }
  // Our child: its pid is not reused before we reap it.
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) {
    g.err = errno;
    g.failed = "pidfd_open";
    ::kill(pid, SIGKILL);  // before it reads EOF from the pipe and fences as for a dead holder
    ::waitpid(pid, nullptr, 0);
    return g;
  }
  g.pid = pid;
  g.pidfd = std::move(pidfd);
  g.toGuardian = std::move(toGuardian);
  return g;
}

// Tells the guardian the release is on purpose, and reaps it (it exits on reading that).
void dismissGuardian(Guardian& g) {
  if (g.toGuardian) (void)!::write(g.toGuardian.get(), "r", 1);
  g.toGuardian.reset();
  if (g.pid > 0) ::waitpid(g.pid, nullptr, 0);
}

// --- checks of held locks -----------------------------------------------------------------------
// A thread asks, every check interval, whether each lock is still held: a lock query through the held
// descriptor (another owner's conflicting lock, or an error from the server, is a loss) and the name
// (unlinked or replaced: a loss). On a network file system a query can hang for the server's whole
// timeout; the main loop then fences on the time since the last full pass, not on the answer.
struct CheckedLock {
  int index;
  int fd;
  Mode mode;
  std::string path;
  InodeKey key;
};
struct Checks {
  LockKind kind = LockKind::Posix;
  int intervalMs = 0;
  std::vector<CheckedLock> locks;  // a copy: the thread never touches the holder's members
  std::atomic<int64_t> lastPass{0};
  std::atomic<int> lostIndex{-1};
  std::atomic<int> lostErr{0};
  std::atomic<bool> stopping{false};
};

// Never returns while the locks are held; the Checks are never freed (the process ends with _exit).
void checkLoop(Checks* checks) {
  for (;;) {
    struct timespec pause {
      checks->intervalMs / 1000, (checks->intervalMs % 1000) * 1'000'000L
    };
    nanosleep(&pause, nullptr);
    for (const CheckedLock& l : checks->locks) {
      if (checks->stopping.load()) return;
      struct flock conflict {};
      int err = lockfile::query(l.fd, checks->kind, l.mode, conflict);
      if (err == 0 && conflict.l_type != F_UNLCK) err = EAGAIN;
      if (err == 0 && !lockfile::namesInode(l.path.c_str(), l.key)) err = ENOENT;
      if (checks->stopping.load()) return;
      if (err != 0) {
        checks->lostErr.store(err);
        checks->lostIndex.store(l.index);
        return;
      }
    }
    checks->lastPass.store(nowMs());
  }
}

Checks* startChecks(const Config& c, const std::vector<Member>& held) {
  auto* checks = new Checks;
  checks->kind = c.kind;
  checks->intervalMs = c.checkMs;
  for (const Member& m : held) {
    checks->locks.push_back({static_cast<int>(m.index), m.fd.get(), m.mode, m.path, m.key});
    for (const auto& [index, path] : m.aliasNames)
      checks->locks.push_back({static_cast<int>(index), m.fd.get(), m.mode, path, m.key});
  }
  checks->lastPass.store(nowMs());
  // Detached: it may be stuck in a network file system's call; it is never joined, the process exits.
  std::thread(checkLoop, checks).detach();
  return checks;
}

constexpr int kReleaseSignal = SIGUSR1;

int signalFd() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, kReleaseSignal);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  return ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

// Reads the signals that arrived; true when one of them is the release signal.
bool releaseAsked(int signals) {
  bool release = false;
  struct signalfd_siginfo info {};
  while (::read(signals, &info, sizeof info) == static_cast<ssize_t>(sizeof info))
    if (static_cast<int>(info.ssi_signo) == kReleaseSignal) release = true;
  return release;
}

int run(int argc, char** argv) {
  prctl(PR_SET_NAME, "lockspace-hold", 0, 0, 0);
  signal(SIGPIPE, SIG_IGN);
  const Config c = parse(argc, argv);
  UniqueFd signals(signalFd());
  UniqueFd vm(static_cast<int>(::syscall(SYS_pidfd_open, c.pid, 0)));
  if (!vm) {
    say("error " + std::to_string(errno) + " pidfd_open -1");
    return 1;
  }
  // The pidfd names the process that has the pid now: it must be the one the manager meant.
  uint64_t start = 0;
  if (c.checkStart && (!procstat::startTimeOf(c.pid, &start) || start != c.start)) {
    say("error " + std::to_string(ESRCH) + " pidfd_open -1");
    return 1;
  }

  // Take the set, all or nothing; waiting holds nothing (polls, backing off up to 50 ms).
  std::vector<Member> held;
  const int64_t deadline = c.waitMs < 0 ? INT64_MAX : nowMs() + c.waitMs;
  for (int round = 0;; round++) {
    Outcome o = takeAll(c, held);
    if (o.what == Outcome::Held && c.records) {
      o = writeRecords(c, held);
      if (o.what != Outcome::Held) releaseAll(held, c.kind);
    }
    if (o.what == Outcome::Held) break;
    if (o.what == Outcome::Error) {
      say("error " + std::to_string(o.err) + " " + o.syscall + " " + std::to_string(o.index));
      return 1;
    }
    const int64_t left = deadline - nowMs();
    if (left <= 0) {
      say("busy " + std::to_string(o.index) + " " + std::to_string(o.pid));
      return 75;
    }
    const int pauseMs = static_cast<int>(std::min<int64_t>(left, std::min(1 << std::min(round, 6), 50)));
    struct pollfd p[2] = {{vm.get(), POLLIN, 0}, {signals.get(), POLLIN, 0}};
    if (::poll(p, 2, pauseMs) > 0) {
      if (p[0].revents != 0) say("error " + std::to_string(ESRCH) + " pidfd_open -1");
      return 1;  // bound process gone, or the manager gave up (its signal): nothing is held
    }
  }
  if (exited(vm.get())) {  // it ended while we took the locks: nothing may stay held for it
    releaseAll(held, c.kind);
    say("error " + std::to_string(ESRCH) + " pidfd_open -1");
    return 1;
  }

  // Without a guardian nobody would fence the bound process if this holder died: not held.
  Guardian guardian = startGuardian(vm.get(), c);
  if (guardian.pid < 0) {
    releaseAll(held, c.kind);
    say("error " + std::to_string(guardian.err) + " " + guardian.failed + " -2");
    return 1;
  }
  say("held");
  Checks* checks = startChecks(c, held);

  bool lost = false;
  bool fenced = false;  // for a loss or an ending signal: the set goes when the bound process has ended
  for (;;) {
    struct pollfd p[3] = {{vm.get(), POLLIN, 0}, {signals.get(), POLLIN, 0}, {guardian.pidfd.get(), POLLIN, 0}};
    const int r = ::poll(p, 3, std::min(c.checkMs, 1000));
    if (r < 0 && errno != EINTR) break;
    if (p[0].revents != 0) break;  // the bound process ended
    if (p[1].revents != 0) {
      if (releaseAsked(signals.get()) || exited(vm.get())) break;
      if (!fenced) {
        prctl(PR_SET_NAME, "lockspace-lost", 0, 0, 0);  // as for a loss: status and boundSets say lost
        say("terminated");
        say(std::string("fenced ") + fence(vm.get(), c.onLost, c.graceMs) + " terminated");
        fenced = true;
      }
      if (c.onLost == Action::None) break;  // reported, nothing fenced: the locks go now
      continue;
    }
    if (p[2].revents != 0) {  // the guardian died: another one
      ::waitpid(guardian.pid, nullptr, 0);
      guardian = Guardian{};
    }
    if (guardian.pid < 0) guardian = startGuardian(vm.get(), c);  // tried again each turn until one runs
    if (lost) continue;
    const int index = checks->lostIndex.load();
    const bool stale = nowMs() - checks->lastPass.load() > c.fenceAfterMs;
    if (index < 0 && !stale) continue;
    lost = true;
    if (index >= 0)
      say("lost " + std::to_string(index) + " " + std::to_string(checks->lostErr.load()));
    else
      say("lost -1 " + std::to_string(ETIMEDOUT));
    prctl(PR_SET_NAME, "lockspace-lost", 0, 0, 0);
    if (!fenced) say(std::string("fenced ") + fence(vm.get(), c.onLost, c.graceMs) + " lost");
    fenced = true;
  }
  checks->stopping.store(true);
  dismissGuardian(guardian);
  releaseAll(held, c.kind);
  return 0;
}

}  // namespace
}  // namespace lockspace::holder

int main(int argc, char** argv) {
  // _exit: the checker thread may still be inside a syscall; nothing is left to destroy.
  _exit(lockspace::holder::run(argc, argv));
}
