// Errors: one exception type whose message always says which file and field failed.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace ekv {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Concatenates anything streamable: cat("layer ", l, ": ", what).
template <class... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

[[noreturn]] inline void fail(const std::string& message) { throw Error(message); }

}  // namespace ekv

// EKV_CHECK(cond, parts...) throws ekv::Error with the concatenated parts when cond is false.
#define EKV_CHECK(cond, ...)                           \
  do {                                                 \
    if (!(cond)) ::ekv::fail(::ekv::cat(__VA_ARGS__)); \
  } while (0)
