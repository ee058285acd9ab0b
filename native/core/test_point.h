// Named points in the core where a test can act inside a window that is otherwise too short to hit
// on purpose (between a stat and the table lookup it feeds, between a kernel grant and the check that
// follows it). Compiled in only for the C++ core test (LOCKSPACE_TEST_POINTS, set by binding.gyp for
// core_test); in the addon LS_TEST_POINT expands to nothing.
#pragma once

#ifdef LOCKSPACE_TEST_POINTS
#include <atomic>

namespace lockspace::testing {
// Called without the registry mutex held, on the thread that reaches the point.
using PointFn = void (*)(const char* point, const char* detail);
extern std::atomic<PointFn> pointFn;
inline void point(const char* p, const char* detail) {
  if (PointFn f = pointFn.load()) f(p, detail);
}
}  // namespace lockspace::testing

#define LS_TEST_POINT(p, detail) ::lockspace::testing::point(p, detail)
#else
#define LS_TEST_POINT(p, detail) ((void)0)
#endif
