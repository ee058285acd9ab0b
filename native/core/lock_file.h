// Every syscall on a resource file, in one place: how it is opened and created (never following a
// symlink, never blocking on a FIFO, never becoming a controlling terminal), locked and unlocked per
// lock kind, asked who holds it, checked against its name, unlinked and closed. Plain C++/POSIX, no
// N-API, no state: the registry decides when; these functions only know how.
//
// One error convention: every function that can fail returns 0 or the errno value (never -1 and a
// global errno, never an exception), and gives its answer through a parameter; a caller never reads a
// stale errno and turns the value into its own error (a SysError, a holder's outcome). Predicates
// (isBusy, namesInode, writerBlocked) and holderPid answer "no" (0) when the kernel cannot tell.
//
// Interface: open/createNew/openOrCreate/openForQuery/makeFile/checkRegular (names to fds),
// tryLock/blockingLock/unlock/isBusy/holderPid/query/shownHeld (the lock on byte 0), namesInode/deleteHeld
// (names against the locked inode), closeLocked (the last fd of a locked file), staleNamePause. Each one
// that makes a syscall checks that the calling thread holds no table mutex (table_mutex.h).
#pragma once

#include <fcntl.h>
#include <sys/stat.h>

#include <cstdint>
#include <string>

#include "types.h"
#include "unique_fd.h"

namespace lockspace::lockfile {

enum class Mode : uint8_t { Exclusive, Shared };
inline Mode modeOf(bool shared) noexcept { return shared ? Mode::Shared : Mode::Exclusive; }

// --- names to fds (0 or errno; fd is set on success) ----------------------------------------------
int open(const char* path, UniqueFd& fd);          // an existing file, read-write
int createNew(const char* path, UniqueFd& fd);     // only if nothing is there (O_EXCL): mode 0600
int openOrCreate(const char* path, UniqueFd& fd);  // mode 0600 if created
int openForQuery(const char* path, UniqueFd& fd);  // read-only: to ask about locks, never to take one
// A new empty regular file, mode 0600, without opening it (no fd to close).
int makeFile(const char* path);
// 0 for a regular file; else the errno an acquire reports for what is there, and *why says what it is.
int checkRegular(mode_t mode, const char** why) noexcept;

// --- the lock (byte 0 of the file, as libvirt's virLockSpace) -------------------------------------
int tryLock(int fd, LockKind kind, Mode mode) noexcept;  // 0, or errno (isBusy: another holds it)
// The blocking lock (F_SETLKW, F_OFD_SETLKW) is made by a kernel-wait thread's C loop, where it can be
// interrupted (kernel_wait.h): this says what that call is.
struct BlockingCall {
  int fd;
  int cmd;
  short type;
};
BlockingCall blockingLock(int fd, LockKind kind, Mode mode) noexcept;
int unlock(int fd, LockKind kind) noexcept;  // 0 or errno; every byte (a holder record's locks too)
bool isBusy(int err) noexcept;               // the errno of a lock that another process (or fd) holds
// The pid of another process holding a lock that conflicts with mode, or 0 (none, or an OFD lock).
int holderPid(int fd, LockKind kind, Mode mode) noexcept;
// The first lock of another owner that conflicts with mode (F_UNLCK in conflict.l_type: none); 0 or errno.
int query(int fd, LockKind kind, Mode mode, struct flock& conflict) noexcept;
// Whether this process still holds its lock (kind, mode) on byte 0 taken through fd, as
// /proc/self/fdinfo/<fd> shows it: the kernel prints there, under the file's lock list lock, the
// locks taken through that open file and owned by this process (POSIX) or by it (OFD): held. 0, or
// the errno when it cannot tell (no /proc; ENOSYS: a kernel whose fdinfo lists no locks).
int shownHeld(int fd, LockKind kind, Mode mode, bool& held);

// --- names against the locked inode ---------------------------------------------------------------
bool namesInode(const char* path, const InodeKey& key) noexcept;
// Does another process wait (blocked, "->" in /proc/locks) for an exclusive lock on byte 0 of the
// file? False when /proc/locks cannot be read. Reads all of /proc/locks: call it rarely.
bool writerBlocked(const InodeKey& key) noexcept;  // path reaches that very file now
// Unlinks path, held through fd in mode `held`, only if it still reaches key's file and no other
// process holds it (a shared lock is upgraded first). 0, EBUSY (held elsewhere), ENOENT (the name
// reaches another file now: not ours to delete) or the unlink's errno.
int deleteHeld(int fd, LockKind kind, Mode held, const char* path, const InodeKey& key) noexcept;

// Closes the fd of a locked file, which drops the lock. On a network file system close() alone lets
// the unlock reach the server after it returns (another host still sees the lock for a while): there
// it unlocks first, so that a release is seen when it is done.
void closeLocked(UniqueFd& fd, LockKind kind, bool remote) noexcept;

// ESTALE: the client's cached name of a file that another host deleted or replaced. A fresh lookup
// finds the current file; give the client's cache a moment to let go (grows with the attempt).
void staleNamePause(int attempt);

}  // namespace lockspace::lockfile
