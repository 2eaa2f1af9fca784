// Fuzz target: an HF config.json as ekv reads it (architecture refusals, rope scaling, the
// EliteKV fields of an export), its validation, and writing it back.
#include <nlohmann/json.hpp>

#include "ekv/model/config.hpp"
#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Parse errors are read_json's to report (tested there); the fuzzer explores valid JSON.
  const nlohmann::json json = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return 0;
  ekv::fuzz::expect_clear_errors([&] {
    const ekv::ModelConfig config = ekv::config_from_hf(json, "config.json");
    config.validate("config.json");
    (void)config.describe();
    const ekv::ModelConfig again = ekv::config_from_hf(ekv::config_to_hf(config), "config.json (written back)");
    if (again.describe() != config.describe()) ekv::fuzz::finding("config.json does not survive writing back");
  });
  return 0;
}
