// How the binding runs one operation: on the calling thread, or on libuv's threadpool.
//
// Interface: an operation is a struct written once, with
//   Args                          what it needs, unpacked (and copied) from its JS arguments
//   static Args args(const Napi::CallbackInfo&)                  on the JS thread; throws TypeError
//   static Result run(const Args&)                               on either thread: the core call
//   static Napi::Value toJs(Napi::Env, const Args&, Result&)     on the JS thread: the value JS gets
// here<Op> is its synchronous export; onPool<Op> its "<name>Async" export, for network file systems
// (where even a non-blocking fcntl or open may wait on the server), a Promise of what here<Op> returns.
// Either way, what run throws becomes the same JS value (settle).
#pragma once

#include <napi.h>

#include <string>
#include <utility>
#include <variant>

#include "../core/registry.h"
#include "mailbox.h"

namespace lockspace::binding {

struct Done {};  // the result of a call that returns nothing

// Anything else a core call threw (out of memory, a thread that could not start): a plain Error.
struct Unexpected {
  std::string message;
};

template <typename Result>
using Outcome = std::variant<Result, SysError, NotHeldError, ArgError, Unexpected>;

template <typename Result, typename F>
Outcome<Result> attempt(F&& f) {
  try {
    return Outcome<Result>(std::in_place_index<0>, f());
  } catch (const SysError& e) {
    return e;
  } catch (const NotHeldError& e) {
    return e;
  } catch (const ArgError& e) {
    return e;
  } catch (const std::bad_alloc&) {
    return Unexpected{"lockspace: out of memory"};
  } catch (const std::exception& e) {
    return Unexpected{e.what()};
  }
}

// Error record handed to JS, which builds the Error object (lib/errors.ts):
// [errno, syscall, path, detail, busyHere, holderPid] or ['ERR_LOCK_NOT_HELD', path].
inline Napi::Value errorRecord(Napi::Env env, const SysError& e) {
  Napi::Array a = Napi::Array::New(env, 6);
  a.Set(0u, Napi::Number::New(env, e.err));
  a.Set(1u, Napi::String::New(env, e.syscall));
  a.Set(2u, Napi::String::New(env, e.path));
  a.Set(3u, Napi::String::New(env, e.detail));
  a.Set(4u, Napi::Boolean::New(env, e.busyHere));
  a.Set(5u, Napi::Number::New(env, e.holderPid));
  return a;
}

inline Napi::Value notHeldRecord(Napi::Env env, const NotHeldError& e) {
  Napi::Array a = Napi::Array::New(env, 2);
  a.Set(0u, Napi::String::New(env, "ERR_LOCK_NOT_HELD"));
  a.Set(1u, Napi::String::New(env, e.path));
  return a;
}

// The JS value of an outcome: toJs(result), an error record for an expected failure, or (thrown) a
// TypeError for a broken contract and an Error for the unexpected.
template <typename Result, typename ToJs>
Napi::Value settle(Napi::Env env, Outcome<Result>& outcome, ToJs&& toJs) {
  if (auto* result = std::get_if<0>(&outcome)) return toJs(*result);
  if (auto* e = std::get_if<SysError>(&outcome)) return errorRecord(env, *e);
  if (auto* e = std::get_if<NotHeldError>(&outcome)) return notHeldRecord(env, *e);
  if (auto* e = std::get_if<ArgError>(&outcome)) throw Napi::TypeError::New(env, e->message);
  throw Napi::Error::New(env, std::get<Unexpected>(outcome).message);
}

// here<Op>: runs Op on the calling thread and returns its JS value.
template <typename Op>
Napi::Value here(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  typename Op::Args args = Op::args(info);
  auto outcome = [&] {
    WakeLater wakes;  // the outcomes this call hands to waiting threads
    return attempt<typename Op::Result>([&] { return Op::run(args); });
  }();
  return settle(env, outcome, [&](auto& result) { return Op::toJs(env, args, result); });
}

// Runs Op on libuv's threadpool (network file systems, where even a non-blocking fcntl or open may
// wait on the server) and settles a Promise with what here<Op> returns, or rejects with what it throws.
template <typename Op>
class PoolJob : public Napi::AsyncWorker {
 public:
  // after (optional) runs on the JS thread once the job is done, before the promise settles.
  using After = void (*)(Napi::Env);
  PoolJob(Napi::Env env, typename Op::Args args, After after)
      : Napi::AsyncWorker(env, "lockspace.io"),
        deferred_(Napi::Promise::Deferred::New(env)),
        args_(std::move(args)),
        after_(after) {}
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {  // (no WakeLater: on a network file system the rest of the call may take long)
      outcome_ = attempt<typename Op::Result>([&] { return Op::run(args_); });
    } catch (...) {  // copying what the call threw failed
      outcome_ = Unexpected{"lockspace: out of memory"};
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    try {
      Napi::Value value = settle(env, outcome_, [&](auto& result) { return Op::toJs(env, args_, result); });
      if (after_) after_(env);
      deferred_.Resolve(value);
    } catch (const Napi::Error& e) {
      if (after_) after_(env);
      deferred_.Reject(e.Value());
    }
  }

 private:
  Napi::Promise::Deferred deferred_;  // held by value (node-addon-api#1040)
  typename Op::Args args_;
  After after_;
  Outcome<typename Op::Result> outcome_{Unexpected{"lockspace: the job did not run"}};
};

template <typename Op>
Napi::Promise queueOnPool(Napi::Env env, typename Op::Args args, typename PoolJob<Op>::After after = nullptr) {
  auto* job = new PoolJob<Op>(env, std::move(args), after);
  Napi::Promise p = job->promise();
  job->Queue();
  return p;
}

// onPool<Op>: the "<name>Async" export of Op.
template <typename Op>
Napi::Value onPool(const Napi::CallbackInfo& info) {
  return queueOnPool<Op>(info.Env(), Op::args(info));
}

}  // namespace lockspace::binding
