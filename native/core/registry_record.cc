// Holder records of granted leases (see holder_record.h for the format and why it is safe to read).
#include <errno.h>

#include "holder_record.h"
#include "registry.h"

namespace lockspace {

// Every grant path (a fresh lock, a join, a hand-off, a grant after a kernel wait, a set's member) ends
// in a lease id that the caller turns into a Lease; with records on, the caller writes the record
// here first, so one step covers them all and records off costs nothing on the table's paths.
//
// The entry is reserved (Granting) while its fd is used outside the mutex, as a hand-off does: no
// release, join or other record write of it runs meanwhile, so one process claims one slot per
// locking period and an exclusive lease's read-increment-write of the generation is alone, under the
// exclusive lock, in this process as in every other.
RecordResult Registry::writeRecord(uint64_t lease, const RecordRequest& req) {
  Lock lk(mu_);
  Entry* e = leases_.find(lease);
  while (e && e->transient()) {
    waitTransition(lk, e->key);
    e = leases_.find(lease);
  }
  if (!e || e->state != State::Held) throw NotHeldError(e ? e->path() : std::string());
  Extra& x = e->ext();
  const bool claimed = x.recordSerial == e->serial && x.recordSlot >= 0;
  const bool sized = x.recordFileSized;
  record::Holder h;
  h.slot = claimed ? x.recordSlot : -1;
  h.live = claimed ? x.recordLive : 0;
  const bool exclusive = !e->shared;
  const int fd = e->fd.get();
  const LockKind kind = e->kind;
  const bool remote = e->remote;
  const InodeKey key = e->key;
  const uint32_t serial = e->serial;
  const std::string path = e->path();
  setState(e, State::Granting);
  lk.unlock();

  RecordResult out;
  int err = 0;
  const char* syscall = "";
  record::Count count;
  if ((err = record::readCount(fd, remote, &count)) != 0) {
    syscall = "read";
  } else {
    out.last = count.last;
    out.generation = out.last;
    if (req.checkGeneration && req.ifGeneration != out.last) out.changed = true;
  }
  // Before the first write in the file: its full size (see holder_record.h; once per entry).
  if (err == 0 && !out.changed && !sized && (err = record::extend(fd)) != 0) syscall = "ftruncate";
  if (err == 0 && !out.changed && exclusive) {
    out.generation = record::nextGeneration(out.last);
    // Stored before anyone is told: a holder killed after this leaves a count that the next one
    // continues; killed during it, the other cell still holds the last one (never handed out twice).
    if ((err = record::writeCount(fd, count, out.generation)) != 0) syscall = "write";
  }
  if (err == 0 && !out.changed && h.slot >= 0) {
    // Its bytes go with the file's other locks (a descriptor closed elsewhere in this process, which
    // a hand-off survives by taking the lock back): locked again, or another slot claimed.
    const int kept = record::reclaimSlot(fd, kind, h.slot, h.live);
    if (kept != 0) h.slot = -1;
    if (kept != 0 && kept != EAGAIN) {
      err = kept;
      syscall = "fcntl";
    }
  }
  if (err == 0 && !out.changed && h.slot < 0) {
    h.slot = record::claimSlot(fd, kind, &h.live, &err);
    if (err != 0) syscall = "fcntl";
  }
  if (err == 0 && !out.changed && h.slot >= 0) {
    h.exclusive = exclusive;
    h.generation = out.generation;
    if ((err = record::writeOwnSlot(fd, h, req.label)) != 0) syscall = "write";
    out.recorded = err == 0;
  }
  // Network file systems: the count and the record reach the server before the grant is reported.
  if (err == 0 && !out.changed && remote && (err = record::flush(fd)) != 0) syscall = "fdatasync";

  lk.lock();
  // Still reserved by this thread: nothing of the entry changed meanwhile.
  if (err == 0 && !out.changed) x.recordFileSized = true;
  if (h.slot >= 0) {
    x.recordSlot = h.slot;
    x.recordLive = h.live;
    x.recordSerial = serial;
  }
  setState(e, State::Held);
  notifyTransition(key);
  if (err != 0) throw SysError(err, syscall, path, "cannot write the holder record");
  return out;
}

}  // namespace lockspace
