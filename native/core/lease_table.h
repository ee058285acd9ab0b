// Lease ids and what they lead to: a slab indexed by the low 24 bits of the id, whose high bits are a
// generation, so a stale id (a lease released long ago) never reaches a reused slot. No id is ever
// given twice: a slot whose generations are used up is retired, not reused (a JavaScript Lease keeps
// its id after a release by name; were the id given again, its releaseSync would release another's
// lease). Ids are never 0 and stay below 2^53 (exact in a JavaScript number). Plain C++, not thread-safe (the
// registry's mutex guards it).
//
// Interface: add (a new id for a target), find (the target of a live id, or null), drop, size.
#pragma once

#include <cerrno>
#include <cstdint>
#include <vector>

#include "types.h"

namespace lockspace {

// MaxGeneration: tests retire slots sooner.
template <typename T, uint32_t MaxGeneration = (1u << 29) - 1>
class LeaseTable {
 public:
  static constexpr uint32_t kMaxSlots = 0xFFFFFF;
  static constexpr uint32_t kMaxGeneration = MaxGeneration;

  T* find(uint64_t lease) const noexcept {
    const uint64_t index = lease & kMaxSlots;
    if (index >= slots_.size()) return nullptr;
    const Slot& slot = slots_[index];
    return slot.gen == (lease >> 24) ? slot.target : nullptr;
  }

  // Throws SysError(ENOLCK) when every slot is in use or retired.
  uint64_t add(T* target) {
    uint32_t index;
    if (free_ != kNone) {
      index = free_;
      free_ = slots_[index].nextFree;
    } else {
      if (slots_.size() >= kMaxSlots) throw SysError(ENOLCK, "acquire", "", "too many leases");
      index = static_cast<uint32_t>(slots_.size());
      slots_.push_back(Slot{nullptr, 0, kNone});
    }
    Slot& slot = slots_[index];
    // Generations run 1..kMaxGeneration: an id is never 0.
    ++slot.gen;
    slot.target = target;
    ++count_;
    return (static_cast<uint64_t>(slot.gen) << 24) | index;
  }

  // Forgets a live id; anything else (stale, unknown) is ignored.
  void drop(uint64_t lease) noexcept {
    const uint64_t index = lease & kMaxSlots;
    if (index >= slots_.size() || slots_[index].gen != (lease >> 24) || !slots_[index].target) return;
    Slot& slot = slots_[index];
    slot.target = nullptr;
    --count_;
    if (slot.gen == kMaxGeneration) return;  // retired: its ids are all given
    slot.nextFree = free_;
    free_ = static_cast<uint32_t>(index);
  }

  size_t size() const noexcept { return count_; }

 private:
  static constexpr uint32_t kNone = UINT32_MAX;
  struct Slot {
    T* target;
    uint32_t gen;
    uint32_t nextFree;
  };
  std::vector<Slot> slots_;
  uint32_t free_ = kNone;
  size_t count_ = 0;
};

}  // namespace lockspace
