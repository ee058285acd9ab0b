// Holder records: who holds a lock file, written into the file itself, so that every host that sees
// the file can tell (sanlock's host id and lease version, for fcntl locks). Opt-in per lockspace. The
// record format is stated here and nowhere else. Plain C++/POSIX, no N-API.
//
// File layout (little-endian; virtlockd and lockspace without records ignore the content):
//   [0, 64), [64, 128)   two generation cells {magic "LSG1", u32 0, u64 generation, ..., u32 crc32}:
//                        the count is the larger valid one; a write goes to the other cell (the one
//                        with the smaller or no valid value), so a write cut short (SIGKILL, a host
//                        crash) leaves the last count readable and a count never goes back.
//   [512 + 512*i, +512)  record slot i (0 <= i < kSlots), layout in holder_record.cc (encode), ending
//                        with a crc32 of the rest: a torn slot reads as no record.
// Lock bytes (byte 0 is the resource's lock; these are far from it and from each other):
//   kClaimBase + i       slot i's claim: a holder locks it exclusively (non-blocking) before it writes
//                        slot i, so two live holders (two hosts, shared) never write one slot. It
//                        starts at a slot chosen by a hash of host and pid and probes the next ones.
//   live (in the record) a byte chosen at random in [kLiveBase, kLiveBase + kLiveSpan), locked
//                        exclusively before the record is written. A record counts only while its
//                        live byte is locked: the kernel (or the lock server) drops it with the
//                        holder's lock, so a record of a holder that crashed or released, or one
//                        being overwritten by the slot's next holder (who locks a new byte first),
//                        is never taken for a live holder.
// Every lock the holder takes here goes when the resource's lock goes: lockfile::unlock unlocks the
// whole file, and closing the descriptor drops them too. A holder extends the file to kFileSize
// (sparse) before its first record.
//
// Network file systems: a client caches file content, and taking a lock does not make it look again.
// Measured on GlusterFS 10 (default client caching, two hosts, one writing with fdatasync, the
// other reading through a fresh descriptor): plain reads returned the old bytes in 31 of 40, 28 of
// 60 and 153 of 200 reads (the kernel's page cache of the FUSE file); O_DIRECT reads of a 40 KB file were
// still stale once in 40 (Gluster's quick-read keeps the whole content of files up to 64 KiB);
// with a 1 MiB file and the page cache dropped before reading, none of 260 was. Before this rule
// the multihost suite saw a generation handed out twice. So: writes are flushed (fdatasync) before
// the grant is reported, reads drop this host's cached pages of the file first (POSIX_FADV_DONTNEED
// of the whole file: it drops only pages wholly inside the range it is given), and a file with
// records is at least kFileSize.
//
// Writes (claim, write) happen under the resource's lock, through the holder's own descriptor; the
// generation is read, incremented and written only under the exclusive lock. Reads (readLive) take
// no lock and need only a read-only descriptor; they must run where this process's own locks are
// visible to F_GETLK (the lock query thread, lock_query.h).
//
// Interface: Identity/self (this host and process), Holder (one record), extend, readCount/
// writeCount/nextGeneration (the count), claimSlot/writeSlot (a holder's record), readLive
// (the records of live holders, for inspect and status).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "types.h"

namespace lockspace::record {

constexpr off_t kCellSize = 64;
constexpr off_t kSlotBase = 512;
constexpr off_t kSlotSize = 512;
constexpr int kSlots = 64;
constexpr off_t kFileSpan = kSlotBase + kSlotSize * kSlots;  // the most a reader reads
constexpr off_t kFileSize = off_t{1} << 20;                  // a file with records is at least this
constexpr off_t kClaimBase = off_t{1} << 30;
constexpr off_t kLiveBase = off_t{1} << 40;
constexpr off_t kLiveSpan = off_t{1} << 39;
constexpr size_t kMaxHost = 64;
constexpr size_t kMaxMachineId = 32;
constexpr size_t kMaxLabel = 256;

// This host and process, as records name them.
struct Identity {
  std::string host;       // uname nodename
  std::string machineId;  // /etc/machine-id ("" if none)
  pid_t pid = 0;
  uint64_t startTime = 0;  // /proc/self/stat field 22: clock ticks after boot
};
const Identity& self();  // read once per process (lockspace never forks)
// The start time of pid in this pid namespace (0: no such process, or unreadable).
uint64_t startTimeOf(pid_t pid);

using Holder = HolderRecord;  // (types.h)

// The count in the file: the last exclusive generation (0: none yet), and the cell the next one goes
// to (the one not holding the larger valid value). remote: read past this host's caches (see
// "Network file systems" above), as every read of a remote file is. 0 or errno.
struct Count {
  uint64_t last = 0;
  int target = 0;
};
int readCount(int fd, bool remote, Count* out);
// What the next exclusive holder gets after `last`: last + 1; for a file with no count yet (new, or
// recreated after an autoCreate deletion), the wall clock in ms times 2^20, so that a recreated file
// counts on above the old one unless the clock went back.
uint64_t nextGeneration(uint64_t last);
// Makes the file at least kFileSize long (before a holder's first write in it). 0 or errno.
int extend(int fd);
// Stores `generation` in count.target's cell (as readCount found it, under the same exclusive lock).
// 0 or errno.
int writeCount(int fd, const Count& count, uint64_t generation);

// Claims a slot for this process: locks its claim byte, then a fresh live byte (kind: the resource's
// lock kind). The slot index, or -1 when every slot is claimed by another holder; *err the errno of a
// failure other than a busy byte (then -1 too).
int claimSlot(int fd, LockKind kind, uint64_t* live, int* err);
// Keeps a slot claimed earlier in the same locking period: locks its claim byte and live byte again
// (nothing changes while they are held; they are gone if a descriptor of the file was closed
// elsewhere in this process). 0; EAGAIN when another holder has either byte now (claim another slot);
// else the errno.
int reclaimSlot(int fd, LockKind kind, int slot, uint64_t live);
// Writes h (h.slot, h.live set) with one pwrite. 0 or errno.
int writeSlot(int fd, const Holder& h);
// Writes this process's record in h's slot (h.slot, h.live, exclusive and generation set): stamped
// with self(), the wall clock now and label. 0 or errno.
int writeOwnSlot(int fd, Holder& h, const std::string& label);
// On a network file system: make the writes reach the server before the grant is reported.
int flush(int fd);

using Records = HolderRecords;  // (types.h)
// The records of live holders in the file open read-only at fd: checksum valid, live byte locked
// (F_GETLK), and, on a local file system where F_GETLK names the live byte's owner (pid > 0), that
// process started when the record says (start times are the same in every pid namespace).
Records readLive(int fd, bool remote);

}  // namespace lockspace::record
