#include "shared_table.h"

#include <dlfcn.h>
#include <link.h>

#include <vector>

namespace lockspace::shared {
namespace {

constexpr const char* kSymbol = "lockspace_shared_table";

// The table a loaded object defines itself (not one of its dependencies), or null.
lockspace_table* tableIn(const std::string& file, ElfW(Addr) base) {
  // RTLD_NOLOAD: never loads anything, only takes a reference to an object that is already there.
  void* handle = ::dlopen(file.c_str(), RTLD_LAZY | RTLD_LOCAL | RTLD_NOLOAD);
  if (handle == nullptr) return nullptr;
  auto* symbol = static_cast<lockspace_table* const*>(::dlsym(handle, kSymbol));
  Dl_info info{};
  const bool own =
      symbol != nullptr && ::dladdr(symbol, &info) != 0 && reinterpret_cast<ElfW(Addr)>(info.dli_fbase) == base;
  lockspace_table* table = own ? *symbol : nullptr;
  ::dlclose(handle);
  return table;
}

}  // namespace

const lockspace_table* electOwner(lockspace_table* mine) {
  // The loaded objects in load order. Collected first and opened afterwards: dlopen inside the
  // dl_iterate_phdr callback could deadlock with a dlopen on another thread.
  std::vector<std::pair<std::string, ElfW(Addr)>> objects;
  ::dl_iterate_phdr(
      [](struct dl_phdr_info* info, size_t, void* out) {
        if (info->dlpi_name != nullptr && info->dlpi_name[0] != '\0')
          static_cast<decltype(objects)*>(out)->emplace_back(info->dlpi_name, info->dlpi_addr);
        return 0;
      },
      &objects);
  lockspace_table* earliest = mine;
  for (const auto& [file, base] : objects) {
    if (lockspace_table* table = tableIn(file, base)) {
      earliest = table;
      break;
    }
  }
  // The first copy to put itself into the earliest copy's field owns the table.
  const lockspace_table* owner = nullptr;
  if (__atomic_compare_exchange_n(&earliest->owner, &owner, mine, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
    owner = mine;
  // Also here, should a copy ever find this one first (if the earliest were unloaded after all).
  if (earliest != mine) __atomic_store_n(&mine->owner, owner, __ATOMIC_RELEASE);
  return owner;
}

std::string pathOf(const lockspace_table* table) {
  Dl_info info{};
  if (::dladdr(table, &info) == 0 || info.dli_fname == nullptr) return "(unknown path)";
  return info.dli_fname;
}

std::string refusal(const lockspace_table* mine, const lockspace_table* owner) {
  auto describe = [](const lockspace_table* t) {
    return pathOf(t) + " (version " + t->version + ", table format " + std::to_string(t->format) + ")";
  };
  return "lockspace: cannot load " + describe(mine) + ": another copy of lockspace in this process, " +
         describe(owner) +
         ", owns the lock table and its table format differs, so the two cannot share one table (two "
         "tables would drop each other's locks). Make both dependents use compatible lockspace versions "
         "(npm dedupe, or an npm override).";
}

}  // namespace lockspace::shared
