// The mailbox of a Node environment: where the outcomes of its queued requests arrive from any thread,
// and what keeps its event loop alive while some are still to come.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "../core/registry.h"

namespace lockspace::binding {

// Hands a batch of outcomes to JS (binding.cc): the mailbox's threadsafe function calls it.
void deliver(Napi::Env env, Napi::Function, void*, std::nullptr_t*);

using Tsfn = Napi::TypedThreadSafeFunction<void, std::nullptr_t, deliver>;

class Mailbox;

// While a synchronous binding call runs the core on this thread (a WakeLater on its stack), the
// mailboxes it fills wake their JS threads when it returns, not at once: the core hands outcomes
// over with its mutex held, and a wake is a syscall (the TSFN's uv_async_send) that would lengthen
// the critical section every other thread waits on. Elsewhere (the core's own threads, the pool) a
// mailbox wakes at once.
class WakeLater {
 public:
  WakeLater() : outer_(current_) { current_ = this; }
  ~WakeLater();
  WakeLater(const WakeLater&) = delete;
  WakeLater& operator=(const WakeLater&) = delete;

  // Takes the wake of m if a WakeLater is on this thread's stack.
  static bool defer(std::shared_ptr<Mailbox> m) {
    if (current_ == nullptr) return false;
    try {
      current_->due_.push_back(std::move(m));
    } catch (const std::bad_alloc&) {
      return false;  // then at once
    }
    return true;
  }

 private:
  static inline thread_local WakeLater* current_ = nullptr;
  WakeLater* outer_;
  std::vector<std::shared_ptr<Mailbox>> due_;
};

// Receives the outcomes of an env's queued requests from any thread and wakes the env's JS thread once
// per batch (deliver drains everything pushed until it runs). It also counts, on the JS thread, the
// requests whose outcome is still to come: while there are any, it keeps the env's event loop alive.
class Mailbox : public lockspace::Sink, public std::enable_shared_from_this<Mailbox> {
 public:
  struct Item {
    uint64_t request;
    uint64_t lease;
    bool failed;
    SysError error;
  };

  explicit Mailbox(Napi::Env env) : tsfn_(Tsfn::New(env, "lockspace.deliver", 0, 1)) { tsfn_.Unref(env); }

  void granted(uint64_t request, uint64_t lease) override { push(Item{request, lease, false, SysError(0, "", "")}); }
  void failed(uint64_t request, const SysError& error) override { push(Item{request, 0, true, error}); }

  std::vector<Item> drain() {
    std::lock_guard<std::mutex> lk(mu_);
    scheduled_ = false;
    return std::move(items_);
  }

  // JS thread: a request of this env waits (its outcome comes through the mailbox or a cancel).
  void waiting(Napi::Env env) {
    if (pending_++ == 0) tsfn_.Ref(env);
  }
  // JS thread: a waiting request has its outcome.
  void settled(Napi::Env env) {
    if (pending_ > 0 && --pending_ == 0) tsfn_.Unref(env);
  }
  size_t pending() const { return pending_; }

  // Wakes the JS thread for what push queued (a wake WakeLater deferred).
  void wake() {
    std::lock_guard<std::mutex> lk(mu_);
    if (open_) tsfn_.NonBlockingCall();
  }

  // Env teardown: no calls into the TSFN after this.
  void close() {
    std::lock_guard<std::mutex> lk(mu_);
    if (!open_) return;
    open_ = false;
    items_.clear();
    tsfn_.Release();
  }

 private:
  void push(Item item) {
    std::lock_guard<std::mutex> lk(mu_);
    if (!open_) return;  // the env is gone; its leases are released by its cleanup hook
    items_.push_back(std::move(item));
    if (scheduled_) return;  // a wake is on its way: deliver drains everything
    scheduled_ = true;
    if (!WakeLater::defer(shared_from_this())) tsfn_.NonBlockingCall();
  }

  std::mutex mu_;
  bool open_ = true;
  bool scheduled_ = false;
  std::vector<Item> items_;
  size_t pending_ = 0;  // JS thread only
  Tsfn tsfn_;
};

inline WakeLater::~WakeLater() {
  current_ = outer_;
  for (const auto& m : due_) m->wake();
}

}  // namespace lockspace::binding
