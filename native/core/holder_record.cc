#include "holder_record.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>

#include "proc_stat.h"
#include "unique_fd.h"

namespace lockspace::record {
namespace {

// --- bytes ------------------------------------------------------------------------------------------

constexpr std::array<uint32_t, 256> makeCrcTable() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320U ^ (c >> 1) : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr std::array<uint32_t, 256> kCrcTable = makeCrcTable();

uint32_t crc32(const unsigned char* p, size_t n) {
  uint32_t c = 0xFFFFFFFFU;
  for (size_t i = 0; i < n; ++i) c = kCrcTable[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFU;
}

void putU16(unsigned char* p, uint16_t v) {
  for (int i = 0; i < 2; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
void putU32(unsigned char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
void putU64(unsigned char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
uint16_t getU16(const unsigned char* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t getU32(const unsigned char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
uint64_t getU64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// --- the two formats --------------------------------------------------------------------------------

// Generation cell (kCellSize bytes): "LSG1", u32 0, u64 generation, zeros, u32 crc32 of bytes [0, 60).
constexpr unsigned char kCellMagic[4] = {'L', 'S', 'G', '1'};
constexpr size_t kCellCrc = kCellSize - 4;

// Record slot (kSlotSize bytes):
//   0 "LSR1"   4 u8 version (1)   5 u8 mode (1 exclusive, 2 shared)   6 u8 host length
//   7 u8 machine-id length   8 u16 label length   10 u16 0   12 u32 pid   16 u64 start time
//   24 u64 since (ms after the epoch)   32 u64 generation   40 u64 live byte   48 host[64]
//   112 machine id[32]   144 label[256]   400 zeros   508 u32 crc32 of bytes [0, 144 + label length)
// (the rest is zeros, written with it: the checksum covers what is read)
constexpr unsigned char kSlotMagic[4] = {'L', 'S', 'R', '1'};
constexpr size_t kHostAt = 48, kMachineAt = 112, kLabelAt = 144, kSlotCrc = kSlotSize - 4;
static_assert(kMachineAt - kHostAt == kMaxHost && kLabelAt - kMachineAt == kMaxMachineId, "slot layout");
static_assert(kLabelAt + kMaxLabel <= kSlotCrc, "slot layout");

void encodeSlot(const Holder& h, unsigned char* s) {
  std::memset(s, 0, kSlotSize);
  std::memcpy(s, kSlotMagic, 4);
  const size_t hostLen = std::min(h.host.size(), kMaxHost);
  const size_t idLen = std::min(h.machineId.size(), kMaxMachineId);
  const size_t labelLen = std::min(h.label.size(), kMaxLabel);
  s[4] = 1;
  s[5] = h.exclusive ? 1 : 2;
  s[6] = static_cast<unsigned char>(hostLen);
  s[7] = static_cast<unsigned char>(idLen);
  putU16(s + 8, static_cast<uint16_t>(labelLen));
  putU32(s + 12, static_cast<uint32_t>(h.pid));
  putU64(s + 16, h.startTime);
  putU64(s + 24, h.since);
  putU64(s + 32, h.generation);
  putU64(s + 40, h.live);
  std::memcpy(s + kHostAt, h.host.data(), hostLen);
  std::memcpy(s + kMachineAt, h.machineId.data(), idLen);
  std::memcpy(s + kLabelAt, h.label.data(), labelLen);
  putU32(s + kSlotCrc, crc32(s, kLabelAt + labelLen));
}

bool decodeSlot(const unsigned char* s, Holder& h) {
  if (std::memcmp(s, kSlotMagic, 4) != 0 || s[4] != 1 || (s[5] != 1 && s[5] != 2)) return false;
  const size_t hostLen = s[6], idLen = s[7], labelLen = getU16(s + 8);
  if (hostLen > kMaxHost || idLen > kMaxMachineId || labelLen > kMaxLabel) return false;
  if (getU32(s + kSlotCrc) != crc32(s, kLabelAt + labelLen)) return false;
  h.exclusive = s[5] == 1;
  h.pid = static_cast<pid_t>(getU32(s + 12));
  h.startTime = getU64(s + 16);
  h.since = getU64(s + 24);
  h.generation = getU64(s + 32);
  h.live = getU64(s + 40);
  h.host.assign(reinterpret_cast<const char*>(s + kHostAt), hostLen);
  h.machineId.assign(reinterpret_cast<const char*>(s + kMachineAt), idLen);
  h.label.assign(reinterpret_cast<const char*>(s + kLabelAt), labelLen);
  return h.live >= static_cast<uint64_t>(kLiveBase) && h.live < static_cast<uint64_t>(kLiveBase + kLiveSpan);
}

// A valid cell's generation, or -1.
int64_t decodeCell(const unsigned char* c) {
  if (std::memcmp(c, kCellMagic, 4) != 0 || getU32(c + kCellCrc) != crc32(c, kCellCrc)) return -1;
  const uint64_t g = getU64(c + 8);
  return g > static_cast<uint64_t>(INT64_MAX) ? -1 : static_cast<int64_t>(g);
}

// --- syscalls ---------------------------------------------------------------------------------------

// Reads up to n bytes at off; the count read (short at the end of the file) or a negated errno.
// remote: past this host's page cache (see "Network file systems" in holder_record.h).
ssize_t readAt(int fd, unsigned char* buf, size_t n, off_t off, bool remote) {
  // The whole file: DONTNEED drops only the pages wholly inside the range it is given.
  if (remote) ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  size_t done = 0;
  while (done < n) {
    const ssize_t r = ::pread(fd, buf + done, n - done, off + static_cast<off_t>(done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -errno;
    if (r == 0) break;
    done += static_cast<size_t>(r);
  }
  return static_cast<ssize_t>(done);
}

int writeAt(int fd, const unsigned char* buf, size_t n, off_t off) {
  size_t done = 0;
  while (done < n) {
    const ssize_t w = ::pwrite(fd, buf + done, n - done, off + static_cast<off_t>(done));
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return errno;
    if (w == 0) return EIO;
    done += static_cast<size_t>(w);
  }
  return 0;
}

// Sets byte `at`'s lock to `type` (F_WRLCK, F_UNLCK) without waiting: 0, or errno (EAGAIN/EACCES: busy).
int setByte(int fd, LockKind kind, off_t at, short type) {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = at;
  fl.l_len = 1;
  return ::fcntl(fd, kind == LockKind::Ofd ? F_OFD_SETLK : F_SETLK, &fl) == 0 ? 0 : errno;
}
int lockByte(int fd, LockKind kind, off_t at) { return setByte(fd, kind, at, F_WRLCK); }
int unlockByte(int fd, LockKind kind, off_t at) { return setByte(fd, kind, at, F_UNLCK); }
bool busy(int err) { return err == EAGAIN || err == EACCES; }

// A live byte: distinct per call; unpredictable enough that two holders rarely pick one byte (a
// collision only makes the second lock attempt fail and pick again). splitmix64 over a counter
// seeded once per process from getrandom (or, without entropy yet, the clock and the pid).
uint64_t randomU64() {
  static std::atomic<uint64_t> state{[]() -> uint64_t {
    uint64_t seed = 0;
    if (::getrandom(&seed, sizeof seed, GRND_NONBLOCK) == static_cast<ssize_t>(sizeof seed)) return seed;
    struct timespec ts {};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return (static_cast<uint64_t>(ts.tv_sec) * 1000000007ULL) ^ static_cast<uint64_t>(ts.tv_nsec) ^
           (static_cast<uint64_t>(::getpid()) << 32);
  }()};
  uint64_t z = state.fetch_add(0x9E3779B97F4A7C15ULL, std::memory_order_relaxed) + 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

uint64_t fnv1a(const std::string& s, uint64_t h = 1469598103934665603ULL) {
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

std::string readSmallFile(const char* path) {
  UniqueFd fd(::open(path, O_RDONLY | O_CLOEXEC));
  if (!fd) return {};
  std::string text;
  char buf[512];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > 4096) break;
  }
  return text;
}

}  // namespace

const Identity& self() {
  static const Identity* id = [] {
    auto* out = new Identity();  // never destroyed, like the registry
    struct utsname u {};
    if (::uname(&u) == 0) out->host.assign(u.nodename, ::strnlen(u.nodename, sizeof u.nodename));
    if (out->host.size() > kMaxHost) out->host.resize(kMaxHost);
    std::string mid = readSmallFile("/etc/machine-id");
    while (!mid.empty() && (mid.back() == '\n' || mid.back() == ' ')) mid.pop_back();
    out->machineId = mid.substr(0, kMaxMachineId);
    out->pid = ::getpid();
    // By pid: the very file readers check it against (startTimeOf).
    out->startTime = startTimeOf(::getpid());
    return out;
  }();
  return *id;
}

uint64_t startTimeOf(pid_t pid) {
  uint64_t start = 0;
  return procstat::startTimeOf(pid, &start) ? start : 0;
}

int readCount(int fd, bool remote, Count* out) {
  unsigned char cells[2 * kCellSize];
  const ssize_t n = readAt(fd, cells, sizeof cells, 0, remote);
  if (n < 0) return static_cast<int>(-n);
  const int64_t a = n >= kCellSize ? decodeCell(cells) : -1;
  const int64_t b = n >= 2 * kCellSize ? decodeCell(cells + kCellSize) : -1;
  out->last = static_cast<uint64_t>(std::max<int64_t>(0, std::max(a, b)));
  out->target = a <= b ? 0 : 1;  // overwrite the smaller (or invalid) one: the larger stays readable
  return 0;
}

uint64_t nextGeneration(uint64_t last) {
  if (last > 0) return last + 1;
  struct timespec ts {};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  const uint64_t ms = static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
  return std::max<uint64_t>(1, ms << 20);
}

int extend(int fd) {
  // Sparse: no blocks. Never shrinks (two shared holders may both extend it: the same size).
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno;
  return st.st_size >= kFileSize || ::ftruncate(fd, kFileSize) == 0 ? 0 : errno;
}

int writeCount(int fd, const Count& count, uint64_t generation) {
  unsigned char cell[kCellSize] = {};
  std::memcpy(cell, kCellMagic, 4);
  putU64(cell + 8, generation);
  putU32(cell + kCellCrc, crc32(cell, kCellCrc));
  return writeAt(fd, cell, sizeof cell, count.target * kCellSize);
}

int claimSlot(int fd, LockKind kind, uint64_t* live, int* err) {
  *err = 0;
  const Identity& me = self();
  const uint64_t h = fnv1a(me.host + '/' + me.machineId + '/' + std::to_string(me.pid));
  const int first = static_cast<int>(h % kSlots);
  for (int k = 0; k < kSlots; ++k) {
    const int slot = (first + k) % kSlots;
    const int e = lockByte(fd, kind, kClaimBase + slot);
    if (busy(e)) continue;
    if (e != 0) {
      *err = e;
      return -1;
    }
    for (int tries = 0; tries < 16; ++tries) {
      const uint64_t at = static_cast<uint64_t>(kLiveBase) + randomU64() % static_cast<uint64_t>(kLiveSpan);
      const int le = lockByte(fd, kind, static_cast<off_t>(at));
      if (le == 0) {
        *live = at;
        return slot;
      }
      if (!busy(le)) {
        *err = le;
        break;
      }
    }
    unlockByte(fd, kind, kClaimBase + slot);
    if (*err == 0) *err = EAGAIN;  // 16 live bytes in a row taken: not by chance
    return -1;
  }
  return -1;
}

int reclaimSlot(int fd, LockKind kind, int slot, uint64_t live) {
  int err = lockByte(fd, kind, kClaimBase + slot);
  if (err != 0) return busy(err) ? EAGAIN : err;
  err = lockByte(fd, kind, static_cast<off_t>(live));
  if (err == 0) return 0;
  unlockByte(fd, kind, kClaimBase + slot);  // as claimSlot: a slot without its live byte is not kept
  return busy(err) ? EAGAIN : err;
}

int writeSlot(int fd, const Holder& h) {
  unsigned char s[kSlotSize];
  encodeSlot(h, s);
  return writeAt(fd, s, sizeof s, kSlotBase + h.slot * kSlotSize);
}

int writeOwnSlot(int fd, Holder& h, const std::string& label) {
  const Identity& me = self();
  struct timespec ts {};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  h.since = static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
  h.pid = me.pid;
  h.startTime = me.startTime;
  h.host = me.host;
  h.machineId = me.machineId;
  h.label = label;
  return writeSlot(fd, h);
}

int flush(int fd) { return ::fdatasync(fd) == 0 ? 0 : errno; }

Records readLive(int fd, bool remote) {
  Records out;
  // Not sized by fstat, which a network file system's client may answer from its cache: a short
  // read ends it (an empty file, of virtlockd or of records off, reads nothing).
  std::vector<unsigned char> buf(static_cast<size_t>(kFileSpan));
  const ssize_t n = readAt(fd, buf.data(), buf.size(), 0, remote);
  if (n < 0) {
    out.err = static_cast<int>(-n);
    out.syscall = "read";
    return out;
  }
  for (int i = 0; i < 2; ++i)
    if (n >= (i + 1) * kCellSize)
      out.generation = std::max<uint64_t>(out.generation, std::max<int64_t>(0, decodeCell(buf.data() + i * kCellSize)));
  for (int slot = 0; slot < kSlots; ++slot) {
    const off_t at = kSlotBase + slot * kSlotSize;
    if (n < at + kSlotSize) break;
    Holder h;
    if (!decodeSlot(buf.data() + at, h)) continue;
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = static_cast<off_t>(h.live);
    fl.l_len = 1;
    if (::fcntl(fd, F_GETLK, &fl) != 0) {
      out.err = errno;
      out.syscall = "fcntl";
      return out;
    }
    if (fl.l_type == F_UNLCK) continue;  // its holder is gone (or the slot is being rewritten)
    // A local POSIX lock of a process this pid namespace sees (pid > 0; 0: another namespace, -1: an
    // OFD lock): it must be the record's process, started when the record says. The start time (clock
    // ticks after boot) is the same in every pid namespace; the pid is the record's when the holder is
    // in this one (a holder in a container wrote its own namespace's pid).
    if (!remote && fl.l_pid > 0 && startTimeOf(fl.l_pid) != h.startTime) continue;
    h.slot = slot;
    out.live.push_back(std::move(h));
  }
  return out;
}

}  // namespace lockspace::record
