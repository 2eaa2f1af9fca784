// Failpoints: named places where a crash-safety test can kill the process for real. With the
// environment variable EKV_FAILPOINT=NAME (or NAME:N, the N-th time that place is reached),
// the process sends itself SIGKILL there; otherwise a failpoint costs one comparison.
// Names: "start" (a tool's body begins, nothing written), "write" (each dataset or tensor
// written to a temporary), "commit" (the temporary is complete and synced, not yet renamed),
// "replaced" (the new output is in place, the previous one not yet removed). docs/reliability.md.
#pragma once

namespace ekv {

void failpoint(const char* name);

}  // namespace ekv
