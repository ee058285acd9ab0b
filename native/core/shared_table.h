// One lock table per process, however many copies of lockspace are loaded in it.
//
// npm installs two copies of a package when two dependencies need different versions of it. Each
// copy's addon is another file, which Node loads with RTLD_LOCAL, so each would have its own statics
// and so its own table: two fds on one file, and a release in one copy closing the fd whose close drops
// the POSIX lock the other copy still reports held. Instead, every copy exports one C symbol,
// `lockspace_shared_table` (default visibility, plain data: a pointer to its lockspace_table). When a
// copy is first loaded into a Node environment it looks for the copies in the process: it walks the
// loaded objects in load order (dl_iterate_phdr), opens each with dlopen(RTLD_NOLOAD) and asks it
// for that symbol (Node loads addons RTLD_LOCAL: dlsym(RTLD_DEFAULT) would not see it). The earliest
// loaded copy holds the election: each copy compare-and-swaps itself into that copy's `owner` field,
// and the first one there owns the table, even when copies load at once on several threads. Every
// copy stays loaded from then on (RTLD_NODELETE), so the earliest copy never changes. A copy that
// joins hands its Node environments to the owner's module init, so all of them run the owner's
// binding and table (one registry, one set of environment and request ids, one kernel-wait
// machinery), in the main thread and in workers alike. A copy whose table format differs from the
// owner's refuses to load, naming both copies' paths and versions.
#pragma once

#include <stdint.h>

#include <string>

#ifndef LOCKSPACE_TABLE_FORMAT  // (defined elsewhere only by tests: LOCKSPACE_TEST_TABLE_FORMAT in binding.gyp)
// Bump it whenever a copy's lib/ could not use another copy's binding: the binding's exports (names,
// arguments, results, error records) or what the table does with them changed. A copy that joins
// runs the owner's native code under its own lib/.
#define LOCKSPACE_TABLE_FORMAT 6
#endif
#ifndef LOCKSPACE_VERSION
#define LOCKSPACE_VERSION "unknown"
#endif

extern "C" {
// What every copy exports. The first three fields keep this layout in every format, so that any two
// copies can at least tell each other apart; the fields after them belong to the format.
struct lockspace_table {
  uint32_t format;               // LOCKSPACE_TABLE_FORMAT of this copy
  const char* version;           // this copy's package version
  const lockspace_table* owner;  // the elected owner, once known (atomic: see electOwner)
  // Formats 1 to 6 (2: the binding exports its constants; releaseAsync answers a boolean, verify takes
  // an array of leases; 3: queryLocks, inspect's lock query fields, verify's Dropped; 4: writeRecord,
  // holder records in inspect and queryLocks; 5: checkDeadlock, acquireWait's awaitedBy; 6: one shape
  // of an acquire's answer, queued as { request, started }, deliveries [request, answer]; queued): the
  // owner's module init, napi_value (napi_env, napi_value) behind void pointers. It registers the
  // binding on the environment it is given, as the owner's own module init does.
  void* (*moduleInit)(void* env, void* exports);
};
}

namespace lockspace::shared {

// Which copy owns the process's table (perhaps this one). Once per copy, before its first use.
const lockspace_table* electOwner(lockspace_table* mine);

// The file a copy was loaded from (dladdr of its table), or "(unknown path)".
std::string pathOf(const lockspace_table* table);

// Why this copy cannot load next to the owner, for the error it throws.
std::string refusal(const lockspace_table* mine, const lockspace_table* owner);

}  // namespace lockspace::shared
