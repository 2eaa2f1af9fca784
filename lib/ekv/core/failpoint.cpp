#include "ekv/core/failpoint.hpp"

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <string>

namespace ekv {

namespace {
struct Armed {
  std::string name;  // empty: no failpoint armed
  long hit = 1;      // which arrival kills
  long seen = 0;
};

Armed& armed() {
  static Armed a = [] {
    Armed parsed;
    const char* value = std::getenv("EKV_FAILPOINT");
    if (!value || !*value) return parsed;
    std::string text(value);
    const std::size_t colon = text.find(':');
    if (colon != std::string::npos) {
      parsed.hit = std::max(1L, std::strtol(text.c_str() + colon + 1, nullptr, 10));
      text.resize(colon);
    }
    parsed.name = text;
    return parsed;
  }();
  return a;
}
}  // namespace

void failpoint(const char* name) {
  Armed& a = armed();
  if (a.name.empty() || a.name != name) return;
  if (++a.seen == a.hit) std::raise(SIGKILL);
}

}  // namespace ekv
