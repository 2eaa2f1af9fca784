// A planted upward include for the layering test: io/ may not use tools/.
#pragma once

#include "ekv/core/error.hpp"
#include "ekv/tools/check.hpp"
