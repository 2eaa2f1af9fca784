// The fixture's tools/ header (tools/ may use every module).
#pragma once

#include "ekv/io/upward.hpp"
