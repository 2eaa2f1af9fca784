#include "ekv/core/leniency.hpp"

namespace ekv {

Leniency& leniency() {
  static Leniency settings;
  return settings;
}

}  // namespace ekv
