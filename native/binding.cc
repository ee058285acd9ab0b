// The N-API binding: unpacks arguments, calls the plain C++ core (native/core), converts results and
// errors, and delivers the outcome of waiting requests to the JS thread that made them. No lock table
// or fd logic lives here. Every copy of the package loaded in the process ends up in the binding of
// one copy, the one that owns the lock table (core/shared_table.h; Init at the end).
#include <dlfcn.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <napi.h>
#include <vector>

#include "core/registry.h"
#include "core/shared_table.h"

namespace {

using lockspace::AcquireResult;
using lockspace::ArgError;
using lockspace::DirPtr;
using lockspace::InspectResult;
using lockspace::LockKind;
using lockspace::NotHeldError;
using lockspace::Registry;
using lockspace::Request;
using lockspace::SysError;
using lockspace::VerifyResult;

constexpr uint32_t kShared = 1, kAutoCreate = 2, kOfd = 4;

struct DirHandle {
  DirPtr dir;
};

// Error record handed to JS, which builds the Error object (lib/errors.ts):
// [errno, syscall, path, detail, busyHere, holderPid] or ['ERR_LOCK_NOT_HELD', path].
Napi::Value errorRecord(Napi::Env env, const SysError& e) {
  Napi::Array a = Napi::Array::New(env, 6);
  a.Set(0u, Napi::Number::New(env, e.err));
  a.Set(1u, Napi::String::New(env, e.syscall));
  a.Set(2u, Napi::String::New(env, e.path));
  a.Set(3u, Napi::String::New(env, e.detail));
  a.Set(4u, Napi::Boolean::New(env, e.busyHere));
  a.Set(5u, Napi::Number::New(env, e.holderPid));
  return a;
}

Napi::Value notHeldRecord(Napi::Env env, const NotHeldError& e) {
  Napi::Array a = Napi::Array::New(env, 2);
  a.Set(0u, Napi::String::New(env, "ERR_LOCK_NOT_HELD"));
  a.Set(1u, Napi::String::New(env, e.path));
  return a;
}

// Runs a core call, turning expected failures into error records and contract violations into TypeErrors.
template <typename F>
Napi::Value guarded(Napi::Env env, F&& f) {
  try {
    return f();
  } catch (const SysError& e) {
    return errorRecord(env, e);
  } catch (const NotHeldError& e) {
    return notHeldRecord(env, e);
  } catch (const ArgError& e) {
    throw Napi::TypeError::New(env, e.message);
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(env, "lockspace: out of memory");
  }
}

void deliver(Napi::Env env, Napi::Function, void*, std::nullptr_t*);
using Tsfn = Napi::TypedThreadSafeFunction<void, std::nullptr_t, deliver>;

// Receives outcomes of queued requests from any thread, hands them to this env's JS thread.
class Mailbox : public lockspace::Sink {
 public:
  struct Item {
    uint64_t request;
    uint64_t lease;
    bool failed;
    SysError error;
  };

  explicit Mailbox(Tsfn tsfn) : tsfn_(std::move(tsfn)) {}

  void granted(uint64_t request, uint64_t lease) override { push(Item{request, lease, false, SysError(0, "", "")}); }
  void failed(uint64_t request, const SysError& error) override { push(Item{request, 0, true, error}); }

  std::vector<Item> drain() {
    std::lock_guard<std::mutex> lk(mu_);
    scheduled_ = false;
    return std::move(items_);
  }

  // Env teardown: no calls into the TSFN after this.
  void close() {
    std::lock_guard<std::mutex> lk(mu_);
    if (!open_) return;
    open_ = false;
    items_.clear();
    tsfn_.Release();
  }

  Tsfn& tsfn() { return tsfn_; }

 private:
  void push(Item item) {
    std::lock_guard<std::mutex> lk(mu_);
    if (!open_) return;  // the env is gone; its leases are released by its cleanup hook
    items_.push_back(std::move(item));
    if (!scheduled_) {
      scheduled_ = true;
      tsfn_.NonBlockingCall();
    }
  }

  std::mutex mu_;
  bool open_ = true;
  bool scheduled_ = false;
  std::vector<Item> items_;
  Tsfn tsfn_;
};

std::atomic<uint32_t> nextEnvId{1};
std::atomic<uint64_t> nextRequestId{1};

// Per-env state (instance data): never shared between threads.
struct Addon {
  uint32_t envId = 0;
  std::shared_ptr<Mailbox> mailbox;
  // NODE_DEBUG=lockspace in a worker (set by lib through setDispatcher): log what the env's exit
  // releases. Shared with the cleanup hook, which may run after the instance data is gone.
  std::shared_ptr<std::atomic<bool>> logExitReleases = std::make_shared<std::atomic<bool>>(false);
  Napi::FunctionReference dispatcher;
  size_t pending = 0;  // queued requests: keep the event loop alive while there are any
};

Addon& addon(Napi::Env env) { return *env.GetInstanceData<Addon>(); }

DirPtr dirArg(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsExternal()) throw Napi::TypeError::New(info.Env(), "invalid lockspace handle");
  return info[i].As<Napi::External<DirHandle>>().Data()->dir;
}

std::string stringArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (!info[i].IsString()) throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

uint32_t flagsArg(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), "flags must be a number");
  return info[i].As<Napi::Number>().Uint32Value();
}

uint64_t idArg(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), "id must be a number");
  double d = info[i].As<Napi::Number>().DoubleValue();
  return d >= 1 && d < 9007199254740992.0 ? static_cast<uint64_t>(d) : 0;
}

Request requestArg(const Napi::CallbackInfo& info, size_t flagsAt, size_t ownerAt) {
  uint32_t flags = flagsArg(info, flagsAt);
  Request req;
  req.shared = flags & kShared;
  req.autoCreate = flags & kAutoCreate;
  req.kind = flags & kOfd ? LockKind::Ofd : LockKind::Posix;
  req.owner = stringArg(info, ownerAt, "owner");
  req.env = addon(info.Env()).envId;
  return req;
}

// The (handle, name, flags, owner) arguments of the acquire calls.
struct AcquireArgs {
  DirPtr dir;
  std::string name;
  Request req;
};

AcquireArgs acquireArgs(const Napi::CallbackInfo& info) {
  return AcquireArgs{dirArg(info, 0), stringArg(info, 1, "name"), requestArg(info, 2, 3)};
}

// Runs a core call on libuv's threadpool (network file systems only, where even a non-blocking
// fcntl or open may wait on the server). Resolves with what the synchronous binding would return.
class CoreWorker : public Napi::AsyncWorker {
 public:
  enum class Kind { Number, Undefined };
  // done (optional) runs on the JS thread before the promise settles: (env, value, failed).
  using Done = std::function<void(Napi::Env, double, bool)>;
  CoreWorker(Napi::Env env, Kind kind, std::function<double()> work, Done done = nullptr)
      : Napi::AsyncWorker(env, "lockspace.io"),
        deferred_(Napi::Promise::Deferred::New(env)),
        kind_(kind),
        work_(std::move(work)),
        done_(std::move(done)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      value_ = work_();
    } catch (const SysError& e) {
      sys_.reset(new SysError(e));
    } catch (const NotHeldError& e) {
      notHeld_.reset(new NotHeldError(e));
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (done_) done_(env, value_, sys_ || notHeld_);
    if (sys_) return deferred_.Resolve(errorRecord(env, *sys_));
    if (notHeld_) return deferred_.Resolve(notHeldRecord(env, *notHeld_));
    deferred_.Resolve(kind_ == Kind::Number ? Napi::Number::New(env, value_) : env.Undefined());
  }
  void OnError(const Napi::Error& e) override {
    if (done_) done_(Env(), 0, true);
    deferred_.Reject(e.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;  // held by value (node-addon-api#1040)
  Kind kind_;
  std::function<double()> work_;
  Done done_;
  double value_ = 0;
  std::unique_ptr<SysError> sys_;
  std::unique_ptr<NotHeldError> notHeld_;
};

Napi::Value queueWork(Napi::Env env, CoreWorker::Kind kind, std::function<double()> work,
                      CoreWorker::Done done = nullptr) {
  auto* worker = new CoreWorker(env, kind, std::move(work), std::move(done));
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

// openDir(path | null) -> handle
Napi::Value OpenDir(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    DirPtr dir = info[0].IsNull() ? Registry::instance().pathModeDir()
                                  : Registry::instance().openDir(stringArg(info, 0, "directory"));
    auto* handle = new DirHandle{dir};
    Napi::Object out = Napi::Object::New(env);
    out.Set("handle", Napi::External<DirHandle>::New(env, handle, [](Napi::Env, DirHandle* h) { delete h; }));
    out.Set("path", dir->pathMode() ? env.Null() : Napi::String::New(env, dir->path()));
    out.Set("remote", Napi::Boolean::New(env, dir->remote()));
    return out;
  });
}

// acquire(handle, name, flags, owner) -> lease id | error record
Napi::Value Acquire(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AcquireArgs args = acquireArgs(info);
  return guarded(env, [&]() -> Napi::Value {
    AcquireResult r = Registry::instance().acquire(args.dir, args.name, args.req);
    return Napi::Number::New(env, static_cast<double>(r.lease));
  });
}

Napi::Value AcquireAsync(const Napi::CallbackInfo& info) {
  return queueWork(info.Env(), CoreWorker::Kind::Number, [args = acquireArgs(info)]() {
    return static_cast<double>(Registry::instance().acquire(args.dir, args.name, args.req).lease);
  });
}

Napi::Value ReleaseByNameAsync(const Napi::CallbackInfo& info) {
  DirPtr dir = dirArg(info, 0);
  std::string name = stringArg(info, 1, "name");
  std::string owner = stringArg(info, 2, "owner");
  return queueWork(info.Env(), CoreWorker::Kind::Undefined, [dir, name, owner]() {
    Registry::instance().releaseByName(dir, name, owner);
    return 0.0;
  });
}

Napi::Value ReleaseOwnerAsync(const Napi::CallbackInfo& info) {
  DirPtr dir = dirArg(info, 0);
  std::string owner = stringArg(info, 1, "owner");
  return queueWork(info.Env(), CoreWorker::Kind::Number,
                   [dir, owner]() { return static_cast<double>(Registry::instance().releaseOwner(dir, owner)); });
}

Napi::Value ReleaseAsync(const Napi::CallbackInfo& info) {
  uint64_t lease = idArg(info, 0);
  return queueWork(info.Env(), CoreWorker::Kind::Number,
                   [lease]() { return Registry::instance().release(lease) ? 1.0 : 0.0; });
}

Napi::Value CreateAsync(const Napi::CallbackInfo& info) {
  DirPtr dir = dirArg(info, 0);
  std::string name = stringArg(info, 1, "name");
  return queueWork(info.Env(), CoreWorker::Kind::Undefined, [dir, name]() {
    Registry::instance().create(dir, name);
    return 0.0;
  });
}

Napi::Value RemoveAsync(const Napi::CallbackInfo& info) {
  DirPtr dir = dirArg(info, 0);
  std::string name = stringArg(info, 1, "name");
  LockKind kind = flagsArg(info, 2) & kOfd ? LockKind::Ofd : LockKind::Posix;
  return queueWork(info.Env(), CoreWorker::Kind::Undefined, [dir, name, kind]() {
    Registry::instance().remove(dir, name, kind);
    return 0.0;
  });
}

// acquireWait(handle, name, flags, owner) -> lease id | -request id (queued) | error record
Napi::Value AcquireWait(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AcquireArgs args = acquireArgs(info);
  Addon& a = addon(env);
  uint64_t request = nextRequestId++;
  return guarded(env, [&]() -> Napi::Value {
    AcquireResult r = Registry::instance().acquire(args.dir, args.name, args.req, request, a.mailbox);
    if (!r.queued) return Napi::Number::New(env, static_cast<double>(r.lease));
    if (a.pending++ == 0) a.mailbox->tsfn().Ref(env);
    return Napi::Number::New(env, -static_cast<double>(request));
  });
}

void settled(Napi::Env env) {
  Addon& a = addon(env);
  if (a.pending > 0 && --a.pending == 0) a.mailbox->tsfn().Unref(env);
}

// acquireWaitAsync(handle, name, flags, owner) -> [request id, Promise<lease id | 0 (queued) | -1
// (cancelled) | error record>]: acquireWait on the threadpool (network file systems). The request id
// comes back at once so that the caller can route its outcome and cancel it before it has run.
Napi::Value AcquireWaitAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AcquireArgs args = acquireArgs(info);
  Addon& a = addon(env);
  const uint64_t request = nextRequestId++;
  std::shared_ptr<Mailbox> sink = a.mailbox;
  Registry::instance().announce(request);
  if (a.pending++ == 0) a.mailbox->tsfn().Ref(env);
  Napi::Value promise = queueWork(
      env, CoreWorker::Kind::Number,
      [args = std::move(args), request, sink]() {
        AcquireResult r = Registry::instance().acquireAnnounced(args.dir, args.name, args.req, request, sink);
        return r.cancelled ? -1.0 : r.queued ? 0.0 : static_cast<double>(r.lease);
      },
      // Queued: the mailbox delivery (or a cancel) settles it. Anything else is settled here.
      [](Napi::Env e, double value, bool failed) {
        if (failed || value != 0) settled(e);
      });
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, Napi::Number::New(env, static_cast<double>(request)));
  out.Set(1u, promise);
  return out;
}

// cancel(request id) -> true if it was still queued or not run yet (the caller settles it), false if
// an outcome is on its way
Napi::Value Cancel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    bool runnerReports = false;
    bool cancelled = Registry::instance().cancel(idArg(info, 0), &runnerReports);
    if (cancelled && !runnerReports) settled(env);  // else acquireWaitAsync's runner settles it
    return Napi::Boolean::New(env, cancelled);
  });
}

Napi::Value Release(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t lease = idArg(info, 0);
  return guarded(env, [&]() -> Napi::Value { return Napi::Boolean::New(env, Registry::instance().release(lease)); });
}

Napi::Value IsHeld(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), Registry::instance().isHeld(idArg(info, 0)));
}

Napi::Value ReleaseByName(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DirPtr dir = dirArg(info, 0);
  std::string name = stringArg(info, 1, "name");
  std::string owner = stringArg(info, 2, "owner");
  return guarded(env, [&]() -> Napi::Value {
    Registry::instance().releaseByName(dir, name, owner);
    return env.Undefined();
  });
}

Napi::Value ReleaseOwner(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DirPtr dir = dirArg(info, 0);
  std::string owner = stringArg(info, 1, "owner");
  return guarded(env, [&]() -> Napi::Value {
    return Napi::Number::New(env, static_cast<double>(Registry::instance().releaseOwner(dir, owner)));
  });
}

Napi::Value Create(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DirPtr dir = dirArg(info, 0);
  std::string name = stringArg(info, 1, "name");
  return guarded(env, [&]() -> Napi::Value {
    Registry::instance().create(dir, name);
    return env.Undefined();
  });
}

Napi::Value Remove(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DirPtr dir = dirArg(info, 0);
  std::string name = stringArg(info, 1, "name");
  LockKind kind = flagsArg(info, 2) & kOfd ? LockKind::Ofd : LockKind::Posix;
  return guarded(env, [&]() -> Napi::Value {
    Registry::instance().remove(dir, name, kind);
    return env.Undefined();
  });
}

// resources(handle) -> [name, path, shared, autoCreate, ownerKeys[]][]
Napi::Value Resources(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DirPtr dir = dirArg(info, 0);
  auto list = Registry::instance().resources(dir);
  Napi::Array out = Napi::Array::New(env, list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    const auto& r = list[i];
    Napi::Array owners = Napi::Array::New(env, r.owners.size());
    for (size_t j = 0; j < r.owners.size(); ++j) owners.Set(j, Napi::String::New(env, r.owners[j]));
    Napi::Array row = Napi::Array::New(env, 5);
    row.Set(0u, Napi::String::New(env, r.name));
    row.Set(1u, Napi::String::New(env, r.path));
    row.Set(2u, Napi::Boolean::New(env, r.shared));
    row.Set(3u, Napi::Boolean::New(env, r.autoCreate));
    row.Set(4u, owners);
    out.Set(i, row);
  }
  return out;
}

// isRemote(handle, name): should async calls on this resource go to the threadpool?
Napi::Value IsRemote(const Napi::CallbackInfo& info) {
  DirPtr dir = dirArg(info, 0);
  if (!dir->pathMode()) return Napi::Boolean::New(info.Env(), dir->remote());
  return Napi::Boolean::New(info.Env(), Registry::instance().isRemotePath(stringArg(info, 1, "name")));
}

// --- lost locks and inspection ---------------------------------------------------------------------

// [check, errno, syscall, path]: check is the LeaseCheck value (0 held, 1 not held, 2 error,
// 3 conflict, 4 unlinked, 5 replaced).
Napi::Value verifyRecord(Napi::Env env, const VerifyResult& r) {
  Napi::Array a = Napi::Array::New(env, 4);
  a.Set(0u, Napi::Number::New(env, static_cast<double>(r.check)));
  a.Set(1u, Napi::Number::New(env, r.err));
  a.Set(2u, Napi::String::New(env, r.syscall));
  a.Set(3u, Napi::String::New(env, r.path));
  return a;
}

Napi::Value inspectRecord(Napi::Env env, const InspectResult& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("path", Napi::String::New(env, r.path));
  o.Set("major", Napi::Number::New(env, major(r.dev)));
  o.Set("minor", Napi::Number::New(env, minor(r.dev)));
  o.Set("ino", Napi::String::New(env, std::to_string(r.ino)));  // 64-bit on some network file systems
  o.Set("remote", Napi::Boolean::New(env, r.remote));
  o.Set("otherHeld", Napi::Boolean::New(env, r.otherHeld));
  o.Set("otherShared", Napi::Boolean::New(env, r.otherShared));
  o.Set("otherOfd", Napi::Boolean::New(env, r.otherOfd));
  o.Set("held", Napi::Boolean::New(env, r.held));
  o.Set("heldShared", Napi::Boolean::New(env, r.heldShared));
  o.Set("heldOfd", Napi::Boolean::New(env, r.heldKind == LockKind::Ofd));
  Napi::Array owners = Napi::Array::New(env, r.owners.size());
  for (size_t i = 0; i < r.owners.size(); ++i) owners.Set(i, Napi::String::New(env, r.owners[i]));
  o.Set("owners", owners);
  o.Set("waiters", Napi::Number::New(env, static_cast<double>(r.waiters)));
  return o;
}

// Runs work on the threadpool and resolves with convert(result), or with the error record of a
// SysError it threw (network file systems: every query may wait on the server).
template <typename Result>
class ResultWorker : public Napi::AsyncWorker {
 public:
  using Work = std::function<Result()>;
  using Convert = std::function<Napi::Value(Napi::Env, const Result&)>;
  ResultWorker(Napi::Env env, Work work, Convert convert)
      : Napi::AsyncWorker(env, "lockspace.io"),
        deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)),
        convert_(std::move(convert)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      result_ = work_();
    } catch (const SysError& e) {
      sys_.reset(new SysError(e));
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    deferred_.Resolve(sys_ ? errorRecord(env, *sys_) : convert_(env, result_));
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Work work_;
  Convert convert_;
  Result result_{};
  std::unique_ptr<SysError> sys_;
};

template <typename Result>
Napi::Value queueResult(Napi::Env env, typename ResultWorker<Result>::Work work,
                        typename ResultWorker<Result>::Convert convert) {
  auto* worker = new ResultWorker<Result>(env, std::move(work), std::move(convert));
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

// verify(lease) -> [check, errno, syscall, path]
Napi::Value Verify(const Napi::CallbackInfo& info) {
  return verifyRecord(info.Env(), Registry::instance().verify(idArg(info, 0)));
}

// verifyAsync(leases[]) -> Promise<[check, errno, syscall, path][]>: one threadpool job for them all.
Napi::Value VerifyAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) throw Napi::TypeError::New(env, "leases must be an array");
  Napi::Array ids = info[0].As<Napi::Array>();
  std::vector<uint64_t> leases;
  for (uint32_t i = 0; i < ids.Length(); ++i) {
    Napi::Value v = ids.Get(i);
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : 0;
    leases.push_back(d >= 1 && d < 9007199254740992.0 ? static_cast<uint64_t>(d) : 0);
  }
  using Results = std::vector<VerifyResult>;
  return queueResult<Results>(
      env,
      [leases]() {
        Results out;
        for (uint64_t lease : leases) out.push_back(Registry::instance().verify(lease));
        return out;
      },
      [](Napi::Env e, const Results& results) -> Napi::Value {
        Napi::Array a = Napi::Array::New(e, results.size());
        for (size_t i = 0; i < results.size(); ++i) a.Set(i, verifyRecord(e, results[i]));
        return a;
      });
}

// inspect(handle, name) -> inspect record | error record
Napi::Value Inspect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DirPtr dir = dirArg(info, 0);
  std::string name = stringArg(info, 1, "name");
  return guarded(env, [&]() -> Napi::Value { return inspectRecord(env, Registry::instance().inspect(dir, name)); });
}

Napi::Value InspectAsync(const Napi::CallbackInfo& info) {
  DirPtr dir = dirArg(info, 0);
  std::string name = stringArg(info, 1, "name");
  return queueResult<InspectResult>(
      info.Env(), [dir, name]() { return Registry::instance().inspect(dir, name); }, inspectRecord);
}

// Bytes in use from malloc, process-wide (glibc's mallinfo2), or -1 where the C library cannot say.
// mallinfo2 is new in glibc 2.33 and musl has no mallinfo at all, so the prebuilt binaries (glibc 2.28
// and musl) look it up in the running process instead of linking it. The struct mirrors glibc's
// `struct mallinfo2` (ten size_t fields), which the headers of older glibc and of musl do not declare.
struct GlibcMallinfo2 {
  size_t arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks, uordblks, fordblks, keepcost;
};

double mallocBytesInUse() {
  using Mallinfo2Fn = GlibcMallinfo2 (*)();
  static const auto mallinfo2 = reinterpret_cast<Mallinfo2Fn>(dlsym(RTLD_DEFAULT, "mallinfo2"));
  return mallinfo2 != nullptr ? static_cast<double>(mallinfo2().uordblks) : -1;
}

Napi::Value Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = Registry::instance().stats();
  Napi::Object o = Napi::Object::New(env);
  o.Set("resources", Napi::Number::New(env, static_cast<double>(s.resources)));
  o.Set("leases", Napi::Number::New(env, static_cast<double>(s.leases)));
  o.Set("waiters", Napi::Number::New(env, static_cast<double>(s.waiters)));
  o.Set("kernelWaits", Napi::Number::New(env, static_cast<double>(s.kernelWaits)));
  o.Set("idleFds", Napi::Number::New(env, static_cast<double>(s.idleFds)));
  o.Set("spareFds", Napi::Number::New(env, static_cast<double>(s.spareFds)));
  // The bench divides its growth by the locks it holds; absent where the C library cannot say.
  if (double heap = mallocBytesInUse(); heap >= 0) o.Set("heapBytes", Napi::Number::New(env, heap));
  o.Set("pendingInThisThread", Napi::Number::New(env, static_cast<double>(addon(env).pending)));
  return o;
}

Napi::Value CloseIdleFds(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(Registry::instance().closeIdleFds()));
}

Napi::Value SetIdleLimit(const Napi::CallbackInfo& info) {
  if (!info[0].IsNumber()) throw Napi::TypeError::New(info.Env(), "limit must be a number");
  Registry::instance().setIdleLimit(info[0].As<Napi::Number>().Uint32Value());
  return info.Env().Undefined();
}

Napi::Value SetForceRemote(const Napi::CallbackInfo& info) {
  if (!info[0].IsBoolean()) throw Napi::TypeError::New(info.Env(), "on must be a boolean");
  Registry::setForceRemote(info[0].As<Napi::Boolean>().Value());
  return info.Env().Undefined();
}

// setDispatcher(fn): fn(batch) receives [request, lease, errorRecord | undefined][] on this thread.
// setDispatcher(fn, logExitReleases?)
Napi::Value SetDispatcher(const Napi::CallbackInfo& info) {
  if (!info[0].IsFunction()) throw Napi::TypeError::New(info.Env(), "dispatcher must be a function");
  Addon& a = addon(info.Env());
  a.dispatcher = Napi::Persistent(info[0].As<Napi::Function>());
  if (info.Length() > 1 && info[1].IsBoolean()) *a.logExitReleases = info[1].As<Napi::Boolean>().Value();
  return info.Env().Undefined();
}

// One NODE_DEBUG=lockspace line for a lease an env's exit released, as lib's debuglog writes them
// ("LOCKSPACE <pid>: release <path> owner=<JSON> (worker exit)"): no JavaScript runs at that point.
void logExitRelease(const Registry::ReleasedLease& r) {
  std::string owner;
  if (!r.owner.empty() && r.owner[0] == 'n') {
    owner = r.owner.substr(1);
  } else {
    owner = "\"";
    for (size_t i = 1; i < r.owner.size(); ++i) {
      const unsigned char c = static_cast<unsigned char>(r.owner[i]);
      if (c == '"' || c == '\\') {
        owner += '\\';
        owner += static_cast<char>(c);
      } else if (c < 0x20) {
        char esc[8];
        std::snprintf(esc, sizeof esc, "\\u%04x", c);
        owner += esc;
      } else {
        owner += static_cast<char>(c);
      }
    }
    owner += '"';
  }
  const std::string line =
      "LOCKSPACE " + std::to_string(getpid()) + ": release " + r.path + " owner=" + owner + " (worker exit)\n";
  (void)!::write(STDERR_FILENO, line.data(), line.size());
}

// Runs on the env's JS thread when the mailbox has items.
void deliver(Napi::Env env, Napi::Function, void*, std::nullptr_t*) {
  if (env == nullptr) return;  // teardown
  Addon& a = addon(env);
  auto items = a.mailbox->drain();
  if (items.empty() || a.dispatcher.IsEmpty()) return;
  Napi::Array batch = Napi::Array::New(env, items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    const auto& it = items[i];
    Napi::Array row = Napi::Array::New(env, 3);
    row.Set(0u, Napi::Number::New(env, static_cast<double>(it.request)));
    row.Set(1u, Napi::Number::New(env, static_cast<double>(it.lease)));
    row.Set(2u, it.failed ? errorRecord(env, it.error) : env.Undefined());
    batch.Set(i, row);
    settled(env);
  }
  a.dispatcher.Call({batch});
}

// Keep the shared object mapped for the life of the process: the lock table and its threads live in
// it, and Node would otherwise dlclose an addon loaded only by workers when the last one exits. (A copy
// that does not own the table stays too: the earliest copy holds the election, see shared_table.h.)
void pinSelf() {
  static std::once_flag once;
  std::call_once(once, [] {
    Dl_info dli{};
    if (dladdr(reinterpret_cast<void*>(&pinSelf), &dli) != 0 && dli.dli_fname != nullptr)
      dlopen(dli.dli_fname, RTLD_NOW | RTLD_NODELETE);
  });
}

struct HookData {
  uint32_t envId;
  std::shared_ptr<Mailbox> mailbox;
  std::shared_ptr<std::atomic<bool>> logExitReleases;
};

// Registers the binding on env: this copy owns the process's lock table (see core/shared_table.h).
Napi::Object InitOwner(Napi::Env env, Napi::Object exports) {
  auto* a = new Addon();
  a->envId = nextEnvId++;
  env.SetInstanceData<Addon>(a);
  Tsfn tsfn = Tsfn::New(env, "lockspace.deliver", 0, 1);
  tsfn.Unref(env);
  a->mailbox = std::make_shared<Mailbox>(tsfn);
  // When this env goes away (worker exit or terminate, process exit): stop deliveries to it, cancel its
  // queued requests and release every lease it acquired.
  napi_add_env_cleanup_hook(
      env,
      [](void* arg) {
        std::unique_ptr<HookData> data(static_cast<HookData*>(arg));
        data->mailbox->close();
        try {
          std::vector<Registry::ReleasedLease> released;
          const bool log = *data->logExitReleases;
          Registry::instance().releaseEnv(data->envId, log ? &released : nullptr);
          for (const auto& r : released) logExitRelease(r);
        } catch (...) {
        }
      },
      new HookData{a->envId, a->mailbox, a->logExitReleases});

  exports.Set("openDir", Napi::Function::New(env, OpenDir));
  exports.Set("acquire", Napi::Function::New(env, Acquire));
  exports.Set("acquireAsync", Napi::Function::New(env, AcquireAsync));
  exports.Set("releaseAsync", Napi::Function::New(env, ReleaseAsync));
  exports.Set("createAsync", Napi::Function::New(env, CreateAsync));
  exports.Set("removeAsync", Napi::Function::New(env, RemoveAsync));
  exports.Set("acquireWait", Napi::Function::New(env, AcquireWait));
  exports.Set("cancel", Napi::Function::New(env, Cancel));
  exports.Set("release", Napi::Function::New(env, Release));
  exports.Set("isHeld", Napi::Function::New(env, IsHeld));
  exports.Set("releaseByName", Napi::Function::New(env, ReleaseByName));
  exports.Set("releaseOwner", Napi::Function::New(env, ReleaseOwner));
  exports.Set("create", Napi::Function::New(env, Create));
  exports.Set("remove", Napi::Function::New(env, Remove));
  exports.Set("resources", Napi::Function::New(env, Resources));
  exports.Set("isRemote", Napi::Function::New(env, IsRemote));
  exports.Set("stats", Napi::Function::New(env, Stats));
  exports.Set("closeIdleFds", Napi::Function::New(env, CloseIdleFds));
  exports.Set("setIdleLimit", Napi::Function::New(env, SetIdleLimit));
  exports.Set("setForceRemote", Napi::Function::New(env, SetForceRemote));
  exports.Set("acquireWaitAsync", Napi::Function::New(env, AcquireWaitAsync));
  exports.Set("releaseByNameAsync", Napi::Function::New(env, ReleaseByNameAsync));
  exports.Set("releaseOwnerAsync", Napi::Function::New(env, ReleaseOwnerAsync));
  exports.Set("setDispatcher", Napi::Function::New(env, SetDispatcher));
  exports.Set("verify", Napi::Function::New(env, Verify));
  exports.Set("verifyAsync", Napi::Function::New(env, VerifyAsync));
  exports.Set("inspect", Napi::Function::New(env, Inspect));
  exports.Set("inspectAsync", Napi::Function::New(env, InspectAsync));
  return exports;
}

void* ownerModuleInit(void* env, void* exports) {
  return Napi::RegisterModule(static_cast<napi_env>(env), static_cast<napi_value>(exports), InitOwner);
}

// This copy's table entry (see core/shared_table.h). This copy refers to it directly: if the
// process loaded another copy RTLD_GLOBAL, its exported symbol would win over ours by name.
lockspace_table thisCopy = {LOCKSPACE_TABLE_FORMAT, LOCKSPACE_VERSION, nullptr, ownerModuleInit};

}  // namespace

// What the copies loaded after this one look for.
extern "C" {
__attribute__((visibility("default"))) lockspace_table* lockspace_shared_table = &thisCopy;
}

namespace {

// Every Node environment that loads this copy: the binding of the copy that owns the table.
Napi::Object Init(Napi::Env env, Napi::Object exports) {
  pinSelf();
  const lockspace_table* mine = &thisCopy;
  const lockspace_table* owner;
  try {
    static const lockspace_table* const elected = lockspace::shared::electOwner(&thisCopy);
    owner = elected;
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(env, "lockspace: out of memory");
  }
  if (owner == mine) return InitOwner(env, exports);
  if (owner->format != mine->format) {
    Napi::Error err = Napi::Error::New(env, lockspace::shared::refusal(mine, owner));
    err.Set("code", Napi::String::New(env, "ERR_LOCKSPACE_INCOMPATIBLE_COPY"));
    throw err;
  }
  napi_value joined = static_cast<napi_value>(owner->moduleInit(env, exports));
  if (joined == nullptr) throw Napi::Error::New(env);  // the owner's init threw: pass its exception on
  return Napi::Object(env, joined);
}

}  // namespace

NODE_API_MODULE(lockspace, Init)
