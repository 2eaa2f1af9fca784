#include "ekv/engine/engine_input.hpp"

#include "ekv/core/error.hpp"

namespace ekv {

EngineInput engine_input(const ModelSource& compressed, const ModelSource& original) {
  EKV_CHECK(compressed.config().elitekv.enabled(), compressed.path().string(),
            ": config.json: not an EliteKV model (make one with ekv-export)");
  EKV_CHECK(!original.config().elitekv.enabled(), original.path().string(),
            ": --model must be the original model the export was made from, not an EliteKV export");
  const ModelConfig& c = compressed.config(), &o = original.config();
  EKV_CHECK(c.vocab == o.vocab && c.hidden == o.hidden && c.layers == o.layers, compressed.path().string(), ": ",
            c.layers, " layers, hidden ", c.hidden, ", vocabulary ", c.vocab, " do not match ",
            original.path().string(), " (", o.layers, ", ", o.hidden, ", ", o.vocab, "): not its original model");
  EngineInput input;
  input.config = c;
  input.layer = [&compressed](int l) { return compressed.layer(l); };
  input.load = [&compressed](const std::string& name) { return compressed.load(name); };
  input.original = &original;
  return input;
}

}  // namespace ekv
