// A process's start time: field 22 of /proc/PID/stat, in clock ticks after the host's boot. With the
// pid it names one process for good (a pid number is reused, a pid and its start time are not), and it
// is the same in every pid namespace. The holder of bound sets checks the bound process with it and
// holder records name their holder with it; this is the one parse of it in C++ (the TypeScript side,
// which runs without the addon, has its own in lib/bound-holders.ts). Plain C++/POSIX, no N-API.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

namespace lockspace::procstat {

// Field 22 of a /proc/PID/stat text. The command (field 2, in parentheses) may hold spaces, '(' and
// ')': the fields are counted after its LAST ')'. false when the text has no such field, or it is
// not a number.
bool startTimeIn(const std::string& stat, uint64_t* out);

// The start time of pid in this pid namespace; false when there is no such process (or its stat
// cannot be read).
bool startTimeOf(pid_t pid, uint64_t* out);

}  // namespace lockspace::procstat
