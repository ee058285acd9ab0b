// The N-API binding: unpacks arguments, calls the plain C++ core (native/core), converts results and
// errors, and delivers the outcome of waiting requests to the JS thread that made them. No lock table
// or fd logic lives here. Every copy of the package loaded in the process ends up in the binding of
// one copy, the one that owns the lock table (core/shared_table.h; Init at the end).
//
// Each operation is one struct (see "operations" below and binding/operation.h), exported by here<Op>
// (run on the calling thread) and, where lib may need it, by onPool<Op> as "<name>Async" (run on
// libuv's threadpool). binding/mailbox.h brings the outcomes of queued requests to the JS thread.
#include <dlfcn.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdio>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <napi.h>
#include <vector>

#include "binding/mailbox.h"
#include "binding/operation.h"
#include "core/lock_query.h"
#include "core/registry.h"
#include "core/shared_table.h"

namespace {

using lockspace::binding::Done;
using lockspace::binding::errorRecord;
using lockspace::binding::here;
using lockspace::binding::Mailbox;
using lockspace::binding::onPool;
using lockspace::binding::queueOnPool;

using lockspace::AcquireResult;
using lockspace::ArgError;
using lockspace::DirPtr;
using lockspace::HolderRecord;
using lockspace::HolderRecords;
using lockspace::InspectResult;
using lockspace::LeaseCheck;
using lockspace::LockKind;
using lockspace::NotHeldError;
using lockspace::RecordRequest;
using lockspace::RecordResult;
using lockspace::Registry;
using lockspace::Request;
using lockspace::SysError;
using lockspace::VerifyResult;

// --- constants lib reads (exported as `constants`: lib/native.ts declares no numbers of its own) ---

// Bits of the flags argument of acquire and remove.
constexpr uint32_t kShared = 1, kAutoCreate = 2, kOfd = 4;

Napi::Object constants(Napi::Env env) {
  Napi::Object flags = Napi::Object::New(env);
  flags.Set("shared", Napi::Number::New(env, kShared));
  flags.Set("autoCreate", Napi::Number::New(env, kAutoCreate));
  flags.Set("ofd", Napi::Number::New(env, kOfd));
  Napi::Object checks = Napi::Object::New(env);  // what verify found (LeaseCheck): its record's first field
  const std::pair<const char*, LeaseCheck> names[] = {
      {"Held", LeaseCheck::Held},         {"NotHeld", LeaseCheck::NotHeld},   {"Error", LeaseCheck::Error},
      {"Conflict", LeaseCheck::Conflict}, {"Unlinked", LeaseCheck::Unlinked}, {"Replaced", LeaseCheck::Replaced},
      {"Dropped", LeaseCheck::Dropped}};
  for (const auto& [name, check] : names) checks.Set(name, Napi::Number::New(env, static_cast<double>(check)));
  Napi::Object out = Napi::Object::New(env);
  out.Set("flags", flags);
  out.Set("leaseCheck", checks);
  return out;
}

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
};

Addon& addon(Napi::Env env) { return *env.GetInstanceData<Addon>(); }

// Runs on the env's JS thread when its mailbox has items: one call of the dispatcher for all of them.
void deliverBatch(Napi::Env env);

// --- arguments (each read with one N-API call, which also checks its type) ---------------------------

struct DirHandle {
  DirPtr dir;
};

DirPtr dirArg(const Napi::CallbackInfo& info, size_t i) {
  void* data = nullptr;
  if (napi_get_value_external(info.Env(), info[i], &data) != napi_ok)
    throw Napi::TypeError::New(info.Env(), "invalid lockspace handle");
  return static_cast<DirHandle*>(data)->dir;
}

// Names and owner keys are short: one copy through a stack buffer (Utf8Value measures, then copies).
std::string stringArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  char buf[256];
  size_t len = 0;
  if (napi_get_value_string_utf8(info.Env(), info[i], buf, sizeof buf, &len) != napi_ok)
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a string");
  // Only whole characters (up to 4 bytes) are copied: with less room left than that, it may be cut.
  if (len + 4 < sizeof buf) return std::string(buf, len);
  return info[i].As<Napi::String>().Utf8Value();
}

uint32_t flagsArg(const Napi::CallbackInfo& info, size_t i) {
  uint32_t flags = 0;
  if (napi_get_value_uint32(info.Env(), info[i], &flags) != napi_ok)
    throw Napi::TypeError::New(info.Env(), "flags must be a number");
  return flags;
}

// A lease or request id; 0 (no such id) for anything but an integer from 1 to 2^53.
uint64_t idOf(double d) { return d >= 1 && d < 9007199254740992.0 ? static_cast<uint64_t>(d) : 0; }

uint64_t idArg(const Napi::CallbackInfo& info, size_t i) {
  double d = 0;
  if (napi_get_value_double(info.Env(), info[i], &d) != napi_ok)
    throw Napi::TypeError::New(info.Env(), "id must be a number");
  return idOf(d);
}

LockKind kindOf(uint32_t flags) { return flags & kOfd ? LockKind::Ofd : LockKind::Posix; }

// The (handle, name, flags, owner) arguments of the acquire calls.
struct AcquireArgs {
  DirPtr dir;
  std::string name;
  Request req;
};

AcquireArgs acquireArgs(const Napi::CallbackInfo& info) {
  AcquireArgs a{dirArg(info, 0), stringArg(info, 1, "name"), {}};
  uint32_t flags = flagsArg(info, 2);
  a.req.shared = flags & kShared;
  a.req.autoCreate = flags & kAutoCreate;
  a.req.kind = kindOf(flags);
  a.req.owner = stringArg(info, 3, "owner");
  a.req.env = addon(info.Env()).envId;
  // awaitedBy (acquireWait only): the owners that await this request (lib/locks.ts's nesting).
  if (info.Length() > 4 && info[4].IsArray()) {
    Napi::Array by = info[4].As<Napi::Array>();
    for (uint32_t i = 0; i < by.Length(); ++i) {
      Napi::Value v = by.Get(i);
      if (!v.IsString()) throw Napi::TypeError::New(info.Env(), "awaitedBy must be an array of strings");
      a.req.awaitedBy.push_back(v.As<Napi::String>().Utf8Value());
    }
  }
  return a;
}

// The (handle, name) arguments.
struct NameArgs {
  DirPtr dir;
  std::string name;
};

NameArgs nameArgs(const Napi::CallbackInfo& info) { return NameArgs{dirArg(info, 0), stringArg(info, 1, "name")}; }

Napi::Value number(Napi::Env env, uint64_t n) { return Napi::Number::New(env, static_cast<double>(n)); }

// A JS array of `values` in order: one row of a list answer.
Napi::Array tuple(Napi::Env env, std::initializer_list<Napi::Value> values) {
  Napi::Array out = Napi::Array::New(env, values.size());
  uint32_t i = 0;
  for (const Napi::Value& v : values) out.Set(i++, v);
  return out;
}

// A JS array of toJs(item) for each item of `items`.
template <typename List, typename ToJs>
Napi::Array arrayOf(Napi::Env env, const List& items, ToJs toJs) {
  Napi::Array out = Napi::Array::New(env, items.size());
  uint32_t i = 0;
  for (const auto& item : items) out.Set(i++, toJs(item));
  return out;
}

Napi::Array strings(Napi::Env env, const std::vector<std::string>& list) {
  return arrayOf(env, list, [&](const std::string& s) { return Napi::String::New(env, s); });
}

// --- operations: Args args(info) on the JS thread; Result run(Args&) here or on the pool; toJs --------

// openDir(path | null) -> { handle, path, remote } | error record
struct OpenDir {
  using Args = std::string;  // empty: the path-mode lockspace
  using Result = DirPtr;
  static Args args(const Napi::CallbackInfo& info) {
    return info[0].IsNull() ? std::string() : stringArg(info, 0, "directory");
  }
  static Result run(const Args& path) {
    return path.empty() ? Registry::instance().pathModeDir() : Registry::instance().openDir(path);
  }
  static Napi::Value toJs(Napi::Env env, const Args&, const DirPtr& dir) {
    Napi::Object out = Napi::Object::New(env);
    out.Set("handle",
            Napi::External<DirHandle>::New(env, new DirHandle{dir}, [](Napi::Env, DirHandle* h) { delete h; }));
    out.Set("path", dir->pathMode() ? env.Null() : Napi::String::New(env, dir->path()));
    out.Set("remote", Napi::Boolean::New(env, dir->remote()));
    return out;
  }
};

// --- an acquire's answer: its one shape (lib/native.ts AcquireAnswer), built here only ---------------
//   granted  the lease id, a number (> 0)
//   failed   an error record: settle builds it from what the core threw, as for any call
//   queued   { request, started }: it waits as request `request` (cancel, checkDeadlock take that id),
//            and its outcome arrives as a delivery to the dispatcher, [request, granted | failed].
//            `started` (its first attempt runs on the threadpool) is a Promise of that attempt's answer,
//            which comes first; queued there, the outcome comes otherwise: as a delivery, or through
//            the cancel that took the request off. Undefined: the dispatcher only.

Napi::Value grantedAnswer(Napi::Env env, uint64_t lease) { return number(env, lease); }

Napi::Value queuedAnswer(Napi::Env env, uint64_t request, Napi::Value started) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("request", number(env, request));
  out.Set("started", started);
  return out;
}

// What an attempt that did not throw answers: granted, or queued as `request` (cancelled too: the
// cancel settled it, the answer brings nothing).
Napi::Value attemptAnswer(Napi::Env env, const AcquireResult& r, uint64_t request) {
  return r.lease != 0 ? grantedAnswer(env, r.lease) : queuedAnswer(env, request, env.Undefined());
}

// A delivery to the dispatcher: [request id, granted | failed].
Napi::Value delivery(Napi::Env env, const Mailbox::Item& it) {
  return tuple(env, {number(env, it.request), it.failed ? errorRecord(env, it.error) : grantedAnswer(env, it.lease)});
}

// acquire(handle, name, flags, owner) -> granted | failed (EBUSY when held: it never waits)
struct Acquire {
  using Args = AcquireArgs;
  using Result = uint64_t;
  static Args args(const Napi::CallbackInfo& info) { return acquireArgs(info); }
  static Result run(const Args& a) { return Registry::instance().acquire(a.dir, a.name, a.req).lease; }
  static Napi::Value toJs(Napi::Env env, const Args&, uint64_t lease) { return grantedAnswer(env, lease); }
};

// acquireWait(handle, name, flags, owner, awaitedBy?) -> granted | failed | queued (started undefined).
// acquireWaitAsync(...) -> queued, started: the request is announced before it goes to the pool, and
// its id comes back at once, so that the caller can route its outcome and cancel it before it has run.
struct AcquireWait {
  struct Args {
    AcquireArgs at;
    uint64_t request;
    std::shared_ptr<Mailbox> mailbox;
    bool announced = false;
  };
  using Result = AcquireResult;
  static Args args(const Napi::CallbackInfo& info) {
    return Args{acquireArgs(info), nextRequestId++, addon(info.Env()).mailbox};
  }
  static Result run(const Args& a) {
    Registry& r = Registry::instance();
    return a.announced ? r.acquireAnnounced(a.at.dir, a.at.name, a.at.req, a.request, a.mailbox)
                       : r.acquire(a.at.dir, a.at.name, a.at.req, a.request, a.mailbox);
  }
  static Napi::Value toJs(Napi::Env env, const Args& a, const AcquireResult& r) {
    if (r.queued) a.mailbox->waiting(env);
    return attemptAnswer(env, r, a.request);
  }
  static Napi::Value startOnPool(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Args args = AcquireWait::args(info);
    args.announced = true;
    const uint64_t request = args.request;
    Registry::instance().announce(request);
    // Announced, it waits until the job is done (which counts it again if it stays queued).
    args.mailbox->waiting(env);
    Napi::Promise started =
        queueOnPool<AcquireWait>(env, std::move(args), [](Napi::Env e) { addon(e).mailbox->settled(e); });
    return queuedAnswer(env, request, started);
  }
};

// cancel(request id) -> true if it was still queued or not run yet (the caller settles it), false if
// an outcome is on its way
struct Cancel {
  using Args = uint64_t;
  struct Result {
    bool cancelled;
    bool runnerReports;  // announced, not run yet: acquireWaitAsync's job reports it (and settles it)
  };
  static Args args(const Napi::CallbackInfo& info) { return idArg(info, 0); }
  static Result run(uint64_t request) {
    Result r{false, false};
    r.cancelled = Registry::instance().cancel(request, &r.runnerReports);
    return r;
  }
  static Napi::Value toJs(Napi::Env env, uint64_t, const Result& r) {
    if (r.cancelled && !r.runnerReports) addon(env).mailbox->settled(env);
    return Napi::Boolean::New(env, r.cancelled);
  }
};

// checkDeadlock(request id) -> undefined, or the cycle of waits the request was in: it is no longer
// queued (the caller fails it with EDEADLK). Each step [owner, path, soft]: owner waits for path, held
// (soft: queued ahead) by the next step's owner.
struct CheckDeadlock {
  using Args = uint64_t;
  using Result = lockspace::DeadlockCycle;
  static Args args(const Napi::CallbackInfo& info) { return idArg(info, 0); }
  static Result run(uint64_t request) { return Registry::instance().checkDeadlock(request); }
  static Napi::Value toJs(Napi::Env env, uint64_t, const Result& cycle) {
    if (cycle.empty()) return env.Undefined();
    addon(env).mailbox->settled(env);  // as a cancel: it waits no more
    return arrayOf(env, cycle, [&](const lockspace::DeadlockStep& step) {
      return tuple(env, {Napi::String::New(env, step.owner), Napi::String::New(env, step.path),
                         Napi::Boolean::New(env, step.soft)});
    });
  }
};

// release(lease) -> true, or false if it was not held (released already)
struct Release {
  using Args = uint64_t;
  using Result = bool;
  static Args args(const Napi::CallbackInfo& info) { return idArg(info, 0); }
  static Result run(uint64_t lease) { return Registry::instance().release(lease); }
  static Napi::Value toJs(Napi::Env env, uint64_t, bool released) { return Napi::Boolean::New(env, released); }
};

// isHeld(lease) -> boolean
struct IsHeld {
  using Args = uint64_t;
  using Result = bool;
  static Args args(const Napi::CallbackInfo& info) { return idArg(info, 0); }
  static Result run(uint64_t lease) { return Registry::instance().isHeld(lease); }
  static Napi::Value toJs(Napi::Env env, uint64_t, bool held) { return Napi::Boolean::New(env, held); }
};

// releaseByName(handle, name, owner) -> undefined | error record (ERR_LOCK_NOT_HELD)
struct ReleaseByName {
  struct Args {
    NameArgs at;
    std::string owner;
  };
  using Result = Done;
  static Args args(const Napi::CallbackInfo& info) { return Args{nameArgs(info), stringArg(info, 2, "owner")}; }
  static Result run(const Args& a) {
    Registry::instance().releaseByName(a.at.dir, a.at.name, a.owner);
    return {};
  }
  static Napi::Value toJs(Napi::Env env, const Args&, Done) { return env.Undefined(); }
};

// releaseOwner(handle, owner) -> how many leases it released
struct ReleaseOwner {
  struct Args {
    DirPtr dir;
    std::string owner;
  };
  using Result = size_t;
  static Args args(const Napi::CallbackInfo& info) { return Args{dirArg(info, 0), stringArg(info, 1, "owner")}; }
  static Result run(const Args& a) { return Registry::instance().releaseOwner(a.dir, a.owner); }
  static Napi::Value toJs(Napi::Env env, const Args&, size_t count) { return number(env, count); }
};

// create(handle, name) -> undefined | error record
struct Create {
  using Args = NameArgs;
  using Result = Done;
  static Args args(const Napi::CallbackInfo& info) { return nameArgs(info); }
  static Result run(const Args& a) {
    Registry::instance().create(a.dir, a.name);
    return {};
  }
  static Napi::Value toJs(Napi::Env env, const Args&, Done) { return env.Undefined(); }
};

// remove(handle, name, flags) -> undefined | error record ("delete": flags give the lock kind)
struct Remove {
  struct Args {
    NameArgs at;
    LockKind kind;
  };
  using Result = Done;
  static Args args(const Napi::CallbackInfo& info) { return Args{nameArgs(info), kindOf(flagsArg(info, 2))}; }
  static Result run(const Args& a) {
    Registry::instance().remove(a.at.dir, a.at.name, a.kind);
    return {};
  }
  static Napi::Value toJs(Napi::Env env, const Args&, Done) { return env.Undefined(); }
};

// resources(handle) -> [name, path, shared, autoCreate, ownerKeys[]][]
struct Resources {
  using Args = DirPtr;
  using Result = std::vector<lockspace::ResourceInfo>;
  static Args args(const Napi::CallbackInfo& info) { return dirArg(info, 0); }
  static Result run(const DirPtr& dir) { return Registry::instance().resources(dir); }
  static Napi::Value toJs(Napi::Env env, const DirPtr&, const Result& list) {
    return arrayOf(env, list, [&](const lockspace::ResourceInfo& r) {
      return tuple(env,
                   {Napi::String::New(env, r.name), Napi::String::New(env, r.path), Napi::Boolean::New(env, r.shared),
                    Napi::Boolean::New(env, r.autoCreate), strings(env, r.owners)});
    });
  }
};

// queued(handle) -> [name, shared, ownerKey][]: the requests queued through this directory by every
// thread, oldest first
struct Queued {
  using Args = DirPtr;
  using Result = std::vector<lockspace::QueuedRequest>;
  static Args args(const Napi::CallbackInfo& info) { return dirArg(info, 0); }
  static Result run(const DirPtr& dir) { return Registry::instance().queued(dir); }
  static Napi::Value toJs(Napi::Env env, const DirPtr&, const Result& list) {
    return arrayOf(env, list, [&](const lockspace::QueuedRequest& q) {
      return tuple(
          env, {Napi::String::New(env, q.name), Napi::Boolean::New(env, q.shared), Napi::String::New(env, q.owner)});
    });
  }
};

// isRemote(handle, name): should calls on this resource go to the threadpool?
struct IsRemote {
  using Args = NameArgs;
  using Result = bool;
  static Args args(const Napi::CallbackInfo& info) {
    DirPtr dir = dirArg(info, 0);
    return NameArgs{dir, dir->pathMode() ? stringArg(info, 1, "name") : std::string()};
  }
  static Result run(const Args& a) {
    return a.dir->pathMode() ? Registry::instance().isRemotePath(a.name) : a.dir->remote();
  }
  static Napi::Value toJs(Napi::Env env, const Args&, bool remote) { return Napi::Boolean::New(env, remote); }
};

// verify(leases[]) -> [check, errno, syscall, path][]: check is a constants.leaseCheck value. On the
// pool, one job checks them all.
struct Verify {
  using Args = std::vector<uint64_t>;
  using Result = std::vector<VerifyResult>;
  static Args args(const Napi::CallbackInfo& info) {
    if (!info[0].IsArray()) throw Napi::TypeError::New(info.Env(), "leases must be an array");
    Napi::Array ids = info[0].As<Napi::Array>();
    Args leases;
    for (uint32_t i = 0; i < ids.Length(); ++i) {
      Napi::Value v = ids.Get(i);
      leases.push_back(v.IsNumber() ? idOf(v.As<Napi::Number>().DoubleValue()) : 0);
    }
    return leases;
  }
  static Result run(const Args& leases) {
    Result out;
    for (uint64_t lease : leases) out.push_back(Registry::instance().verify(lease));
    return out;
  }
  static Napi::Value toJs(Napi::Env env, const Args&, const Result& results) {
    return arrayOf(env, results, [&](const VerifyResult& r) {
      return tuple(env, {Napi::Number::New(env, static_cast<double>(r.check)), Napi::Number::New(env, r.err),
                         Napi::String::New(env, r.syscall), Napi::String::New(env, r.path)});
    });
  }
};

const char* lockState(short type) { return type == F_WRLCK ? "exclusive" : type == F_RDLCK ? "shared" : "free"; }

// The holder records read from a file: { errno, syscall, generation, live: [[exclusive, generation,
// since, pid, host, machineId, label, startTime], ...] } (bigints for the 64-bit counts).
Napi::Value recordsToJs(Napi::Env env, const HolderRecords& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("errno", Napi::Number::New(env, r.err));
  o.Set("syscall", Napi::String::New(env, r.syscall));
  o.Set("generation", Napi::BigInt::New(env, r.generation));
  Napi::Array live = Napi::Array::New(env, r.live.size());
  for (size_t i = 0; i < r.live.size(); ++i) {
    const HolderRecord& h = r.live[i];
    Napi::Array row = Napi::Array::New(env, 8);
    row.Set(0u, Napi::Boolean::New(env, h.exclusive));
    row.Set(1u, Napi::BigInt::New(env, h.generation));
    row.Set(2u, number(env, h.since));
    row.Set(3u, Napi::Number::New(env, h.pid));
    row.Set(4u, Napi::String::New(env, h.host));
    row.Set(5u, Napi::String::New(env, h.machineId));
    row.Set(6u, Napi::String::New(env, h.label));
    row.Set(7u, Napi::BigInt::New(env, h.startTime));
    live.Set(i, row);
  }
  o.Set("live", live);
  return o;
}

// inspect(handle, name) -> inspect record | error record
struct Inspect {
  using Args = NameArgs;
  using Result = InspectResult;
  static Args args(const Napi::CallbackInfo& info) { return nameArgs(info); }
  static Result run(const Args& a) { return Registry::instance().inspect(a.dir, a.name); }
  static Napi::Value toJs(Napi::Env env, const Args&, const InspectResult& r) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("path", Napi::String::New(env, r.path));
    o.Set("major", Napi::Number::New(env, major(r.dev)));
    o.Set("minor", Napi::Number::New(env, minor(r.dev)));
    o.Set("ino", Napi::String::New(env, std::to_string(r.ino)));  // 64-bit on some network file systems
    o.Set("remote", Napi::Boolean::New(env, r.remote));
    o.Set("queryErrno", Napi::Number::New(env, r.queryErr));
    o.Set("querySyscall", Napi::String::New(env, r.querySyscall));
    o.Set("lockState", Napi::String::New(env, lockState(r.lockType)));
    o.Set("lockPid", Napi::Number::New(env, r.lockPid));
    o.Set("otherHeld", Napi::Boolean::New(env, r.otherHeld));
    o.Set("otherShared", Napi::Boolean::New(env, r.otherShared));
    o.Set("otherOfd", Napi::Boolean::New(env, r.otherOfd));
    o.Set("held", Napi::Boolean::New(env, r.held));
    o.Set("heldShared", Napi::Boolean::New(env, r.heldShared));
    o.Set("heldOfd", Napi::Boolean::New(env, r.heldKind == LockKind::Ofd));
    o.Set("owners", strings(env, r.owners));
    o.Set("waiters", number(env, r.waiters));
    o.Set("records", recordsToJs(env, r.records));
    return o;
  }
};

// writeRecord(lease, label, ifGeneration: bigint | undefined) -> { generation, changed, last, recorded }
// | error record: the holder record of a lease just granted (core/holder_record.h).
struct WriteRecord {
  struct Args {
    uint64_t lease;
    RecordRequest req;
  };
  using Result = RecordResult;
  static Args args(const Napi::CallbackInfo& info) {
    Args a{idArg(info, 0), {}};
    a.req.label = stringArg(info, 1, "label");
    if (info[2].IsBigInt()) {
      bool lossless = false;
      a.req.ifGeneration = info[2].As<Napi::BigInt>().Uint64Value(&lossless);
      if (!lossless) throw Napi::TypeError::New(info.Env(), "ifGeneration must fit in 64 bits");
      a.req.checkGeneration = true;
    }
    return a;
  }
  static Result run(const Args& a) { return Registry::instance().writeRecord(a.lease, a.req); }
  static Napi::Value toJs(Napi::Env env, const Args&, const RecordResult& r) {
    Napi::Object out = Napi::Object::New(env);
    out.Set("generation", Napi::BigInt::New(env, r.generation));
    out.Set("changed", Napi::Boolean::New(env, r.changed));
    out.Set("last", Napi::BigInt::New(env, r.last));
    out.Set("recorded", Napi::Boolean::New(env, r.recorded));
    return out;
  }
};

// queryLocks((string | Buffer)[], records?: boolean) -> [errno, syscall, state, pid, major, minor, ino,
// remote, records?][]: the kernel's answer about byte 0 of each file (core/lock_query.h), from one
// thread; errno 0 when asked. With records, each held file's live holder records (recordsToJs).
struct QueryLocks {
  struct Args {
    std::vector<std::string> paths;
    bool records = false;
  };
  using Result = std::vector<lockspace::lockquery::Answer>;
  static Args args(const Napi::CallbackInfo& info) {
    if (!info[0].IsArray()) throw Napi::TypeError::New(info.Env(), "paths must be an array");
    Napi::Array list = info[0].As<Napi::Array>();
    Args a;
    std::vector<std::string>& paths = a.paths;
    for (uint32_t i = 0; i < list.Length(); ++i) {
      Napi::Value v = list.Get(i);
      if (v.IsBuffer()) {  // a name that is not UTF-8: its bytes
        Napi::Buffer<char> b = v.As<Napi::Buffer<char>>();
        paths.emplace_back(b.Data(), b.Length());
      } else if (v.IsString()) {
        paths.push_back(v.As<Napi::String>().Utf8Value());
      } else {
        throw Napi::TypeError::New(info.Env(), "paths must be strings or Buffers");
      }
      if (paths.back().find('\0') != std::string::npos) throw Napi::TypeError::New(info.Env(), "a path contains NUL");
    }
    a.records = info.Length() > 1 && info[1].ToBoolean().Value();
    return a;
  }
  static Result run(const Args& a) {
    return lockspace::lockquery::ask(
        a.paths, a.records ? lockspace::lockquery::Records::IfHeld : lockspace::lockquery::Records::None);
  }
  static Napi::Value toJs(Napi::Env env, const Args& args, const Result& answers) {
    Napi::Array out = Napi::Array::New(env, answers.size());
    for (size_t i = 0; i < answers.size(); ++i) {
      const auto& a = answers[i];
      Napi::Array row = Napi::Array::New(env, args.records ? 9 : 8);
      row.Set(0u, Napi::Number::New(env, a.err));
      row.Set(1u, Napi::String::New(env, a.syscall));
      row.Set(2u, Napi::String::New(env, lockState(a.type)));
      row.Set(3u, Napi::Number::New(env, a.pid));
      row.Set(4u, Napi::Number::New(env, major(a.dev)));
      row.Set(5u, Napi::Number::New(env, minor(a.dev)));
      row.Set(6u, Napi::String::New(env, std::to_string(a.ino)));
      row.Set(7u, Napi::Boolean::New(env, a.remote));
      if (args.records) row.Set(8u, recordsToJs(env, a.records));
      out.Set(i, row);
    }
    return out;
  }
};

// --- process-wide settings and statistics --------------------------------------------------------------

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
  o.Set("resources", number(env, s.resources));
  o.Set("leases", number(env, s.leases));
  o.Set("waiters", number(env, s.waiters));
  o.Set("kernelWaits", number(env, s.kernelWaits));
  o.Set("idleFds", number(env, s.idleFds));
  o.Set("spareFds", number(env, s.spareFds));
  // The bench divides its growth by the locks it holds; absent where the C library cannot say.
  if (double heap = mallocBytesInUse(); heap >= 0) o.Set("heapBytes", Napi::Number::New(env, heap));
  o.Set("pendingInThisThread", number(env, addon(env).mailbox->pending()));
  return o;
}

Napi::Value CloseIdleFds(const Napi::CallbackInfo& info) {
  return number(info.Env(), Registry::instance().closeIdleFds());
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

// --- deliveries ------------------------------------------------------------------------------------------

// setDispatcher(fn, logExitReleases?): fn(batch) receives this thread's deliveries (an array of them).
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

void deliverBatch(Napi::Env env) {
  Addon& a = addon(env);
  auto items = a.mailbox->drain();
  if (items.empty() || a.dispatcher.IsEmpty()) return;
  Napi::Array batch = Napi::Array::New(env, items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    batch.Set(i, delivery(env, items[i]));
    a.mailbox->settled(env);
  }
  a.dispatcher.Call({batch});
}

// --- module init -----------------------------------------------------------------------------------------

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

template <Napi::Function::Callback F>
void put(Napi::Env env, Napi::Object exports, const char* name) {
  exports.Set(name, Napi::Function::New<F>(env, name));
}

// Registers the binding on env: this copy owns the process's lock table (see core/shared_table.h).
Napi::Object InitOwner(Napi::Env env, Napi::Object exports) {
  auto* a = new Addon();
  a->envId = nextEnvId++;
  env.SetInstanceData<Addon>(a);
  a->mailbox = std::make_shared<Mailbox>(env);
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
          lockspace::binding::WakeLater wakes;
          Registry::instance().releaseEnv(data->envId, log ? &released : nullptr);
          for (const auto& r : released) logExitRelease(r);
        } catch (...) {
        }
      },
      new HookData{a->envId, a->mailbox, a->logExitReleases});

  exports.Set("constants", constants(env));
  put<here<OpenDir>>(env, exports, "openDir");
  put<here<Acquire>>(env, exports, "acquire");
  put<onPool<Acquire>>(env, exports, "acquireAsync");
  put<here<AcquireWait>>(env, exports, "acquireWait");
  put<AcquireWait::startOnPool>(env, exports, "acquireWaitAsync");
  put<here<Cancel>>(env, exports, "cancel");
  put<here<CheckDeadlock>>(env, exports, "checkDeadlock");
  put<here<Release>>(env, exports, "release");
  put<onPool<Release>>(env, exports, "releaseAsync");
  put<here<IsHeld>>(env, exports, "isHeld");
  put<here<WriteRecord>>(env, exports, "writeRecord");
  put<onPool<WriteRecord>>(env, exports, "writeRecordAsync");
  put<here<ReleaseByName>>(env, exports, "releaseByName");
  put<onPool<ReleaseByName>>(env, exports, "releaseByNameAsync");
  put<here<ReleaseOwner>>(env, exports, "releaseOwner");
  put<onPool<ReleaseOwner>>(env, exports, "releaseOwnerAsync");
  put<here<Create>>(env, exports, "create");
  put<onPool<Create>>(env, exports, "createAsync");
  put<here<Remove>>(env, exports, "remove");
  put<onPool<Remove>>(env, exports, "removeAsync");
  put<here<Resources>>(env, exports, "resources");
  put<here<Queued>>(env, exports, "queued");
  put<here<IsRemote>>(env, exports, "isRemote");
  put<here<Verify>>(env, exports, "verify");
  put<onPool<Verify>>(env, exports, "verifyAsync");
  put<here<Inspect>>(env, exports, "inspect");
  put<onPool<Inspect>>(env, exports, "inspectAsync");
  put<here<QueryLocks>>(env, exports, "queryLocks");
  put<Stats>(env, exports, "stats");
  put<CloseIdleFds>(env, exports, "closeIdleFds");
  put<SetIdleLimit>(env, exports, "setIdleLimit");
  put<SetForceRemote>(env, exports, "setForceRemote");
  put<SetDispatcher>(env, exports, "setDispatcher");
  return exports;
}

void* ownerModuleInit(void* env, void* exports) {
  return Napi::RegisterModule(static_cast<napi_env>(env), static_cast<napi_value>(exports), InitOwner);
}

// This copy's table entry (see core/shared_table.h). This copy refers to it directly: if the
// process loaded another copy RTLD_GLOBAL, its exported symbol would win over ours by name.
lockspace_table thisCopy = {LOCKSPACE_TABLE_FORMAT, LOCKSPACE_VERSION, nullptr, ownerModuleInit};

}  // namespace

void lockspace::binding::deliver(Napi::Env env, Napi::Function, void*, std::nullptr_t*) {
  if (env != nullptr) deliverBatch(env);  // (null: teardown)
}

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
