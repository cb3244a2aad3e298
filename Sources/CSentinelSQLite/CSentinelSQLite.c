// The target's functions are static inline in include/CSentinelSQLite.h; SwiftPM needs a source file.
#include "CSentinelSQLite.h"
