// The grant policy for the requests queued on one resource, stated once. Plain C++, no N-API.
//
//  1. A shared request joins a shared holder at once only while nobody is queued, so a stream of
//     shared requests in this process never starves a queued exclusive one.
//  2. When the last owner leaves, the head of the queue decides the lock mode (FIFO); the shared
//     requests right behind a shared head ride along, up to the first exclusive one.
//  3. Nobody is granted anything unless the name the request came through reaches the locked file
//     at that moment: the registry checks it while it holds the kernel lock (Registry::grantFront),
//     and a request whose name reaches another file now starts over as a new acquire.
//
// Interface: admitsJoin (a new request meets a holder), admitsQueued (the front of the queue, in order).
#pragma once

namespace lockspace {

struct WaitQueue {
  // A new request of mode wantShared meets the resource held in mode heldShared.
  static bool admitsJoin(bool heldShared, bool wantShared, bool anyQueued) noexcept {
    return heldShared && wantShared && !anyQueued;
  }
  // The next request at the front of the queue (head: nothing granted before it in this round) may be
  // granted while the lock is held in mode heldShared, by `hasOwners` owners or none.
  static bool admitsQueued(bool heldShared, bool wantShared, bool head, bool hasOwners) noexcept {
    return head && !hasOwners ? wantShared == heldShared : wantShared && heldShared;
  }
};

}  // namespace lockspace
