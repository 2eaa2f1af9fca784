// The presets in configs/: every tool reads its own [section] through tool_main's --config,
// options on the command line override the preset, and each shipped preset parses with every
// tool's real options and holds the values docs/results.md measured.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "ekv/core/cli.hpp"
#include "ekv/tools/calibrate.hpp"
#include "ekv/tools/check.hpp"
#include "ekv/tools/jlrd.hpp"
#include "ekv/tools/select_rope.hpp"
#include "gguf_builder.hpp"

namespace ekv::test {
namespace {

namespace fs = std::filesystem;

// Runs tool_main as the executable `tool` would, with `args`; returns the parsed options.
template <class Options>
Options parse_as(const std::string& tool, std::vector<std::string> args, int* exit_code = nullptr) {
  Options options;
  args.insert(args.begin(), tool);
  std::vector<char*> argv;
  for (auto& arg : args) argv.push_back(arg.data());
  const int code = tool_main(int(argv.size()), argv.data(), {tool, "test", tool + " --config preset.toml", ""},
                             [&](CLI::App& app) { options.register_with(app); }, [] { return 0; });
  if (exit_code) *exit_code = code;
  else EXPECT_EQ(code, 0) << tool;
  return options;
}

std::vector<fs::path> presets() {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(EKV_CONFIGS_DIR))
    if (entry.path().extension() == ".toml") files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

TEST(Presets, EachToolReadsItsSectionAndTheCommandLineWins) {
  const fs::path dir = temp_dir("presets");
  const fs::path file = dir / "p.toml";
  std::ofstream(file) << "[calibrate]\nnum-seqs = 7\nkeep-seqs = 3\n[jlrd]\nr = 5\nbudget = 0.5\nrefit-output = true\n";
  const auto calibrate = parse_as<CalibrateOptions>("ekv-calibrate", {"--config", file.string()});
  EXPECT_EQ(calibrate.num_seqs, 7);
  EXPECT_EQ(calibrate.keep_seqs, 3);
  const auto jlrd = parse_as<JlrdOptions>("ekv-jlrd", {"--config", file.string(), "--r", "2"});
  EXPECT_EQ(jlrd.r, 2);  // the command line overrides the preset
  EXPECT_EQ(jlrd.budget, 0.5);
  EXPECT_TRUE(jlrd.refit_output);
  // Another tool's section is not read: select-rope keeps its defaults.
  EXPECT_EQ(parse_as<SelectRopeOptions>("ekv-select-rope", {"--config", file.string()}).r_max, SelectRopeOptions().r_max);
  // A preset value is validated like a flag.
  std::ofstream(file) << "[jlrd]\nbudget = 7\n";
  int code = 0;
  parse_as<JlrdOptions>("ekv-jlrd", {"--config", file.string()}, &code);
  EXPECT_NE(code, 0);
  // So is a key no option of the tool has (a typo would otherwise be ignored).
  std::ofstream(file) << "[jlrd]\nrr = 5\n";
  code = 0;
  parse_as<JlrdOptions>("ekv-jlrd", {"--config", file.string()}, &code);
  EXPECT_NE(code, 0);
  fs::remove_all(dir);
}

// ekv-check's subcommands read [check.NAME]; the top [check] keys stay the tool's own.
struct CheckOptions {
  PplOptions ppl;
  CompareOptions compare;
  DecodeOptions decode;
};
CheckOptions parse_check(std::vector<std::string> args, int* exit_code = nullptr) {
  CheckOptions options;
  args.insert(args.begin(), "ekv-check");
  std::vector<char*> argv;
  for (auto& arg : args) argv.push_back(arg.data());
  const int code = tool_main(int(argv.size()), argv.data(), {"ekv-check", "test", "", ""},
                             [&](CLI::App& app) {
                               app.require_subcommand(1);
                               options.ppl.register_with(*app.add_subcommand("ppl", ""));
                               options.compare.register_with(*app.add_subcommand("compare", ""));
                               options.decode.register_with(*app.add_subcommand("decode", ""));
                             },
                             [] { return 0; });
  if (exit_code) *exit_code = code;
  else EXPECT_EQ(code, 0);
  return options;
}

TEST(Presets, SubcommandsReadTheirOwnTables) {
  const fs::path dir = temp_dir("presets-check");
  const fs::path file = dir / "p.toml";
  std::ofstream(file) << "[check.compare]\nmax-windows = 3\n[jlrd]\nr = 5\n[check.decode]\nprompt = 9\nsteps = 7\n"
                         "[check.ppl]\nmax-windows = 11\n";
  auto o = parse_check({"compare", "-m", "m", "-c", "c", "-t", "t", "-o", "o", "--config", file.string()});
  EXPECT_EQ(o.compare.max_windows, 3);
  EXPECT_EQ(o.decode.prompt, 9);  // read, though decode does not run
  o = parse_check({"decode", "-c", "c", "-t", "t", "--config", file.string(), "--steps", "2"});
  EXPECT_EQ(o.decode.prompt, 9);
  EXPECT_EQ(o.decode.steps, 2);  // the command line wins
  EXPECT_EQ(parse_check({"ppl", "-m", "m", "-t", "t", "--config", file.string()}).ppl.max_windows, 11);
  // A misspelt key of a subcommand, or a table for no subcommand, is an error.
  int code = 0;
  std::ofstream(file) << "[check.compare]\nmax-window = 3\n";
  parse_check({"compare", "-m", "m", "-c", "c", "-t", "t", "-o", "o", "--config", file.string()}, &code);
  EXPECT_NE(code, 0);
  code = 0;
  std::ofstream(file) << "[check.comprae]\nmax-windows = 3\n";
  parse_check({"compare", "-m", "m", "-c", "c", "-t", "t", "-o", "o", "--config", file.string()}, &code);
  EXPECT_NE(code, 0);
  fs::remove_all(dir);
}

// Table headers as TOML writes them: a byte-order mark before the first, spaces inside the
// brackets and around the dots, a trailing comment. Each of these was read as no section before,
// so the tool ran on its defaults without a word.
TEST(Presets, HeadersAreReadAsTomlWritesThem) {
  const fs::path dir = temp_dir("presets-headers");
  const fs::path file = dir / "p.toml";
  std::ofstream(file) << "\xEF\xBB\xBF[calibrate]\nnum-seqs = 7\n";
  EXPECT_EQ(parse_as<CalibrateOptions>("ekv-calibrate", {"--config", file.string()}).num_seqs, 7);
  std::ofstream(file) << "[ calibrate ]   # the calibration\nnum-seqs = 5\n[[calibrate.extra]]\nnum-seqs = 9\n";
  EXPECT_EQ(parse_as<CalibrateOptions>("ekv-calibrate", {"--config", file.string()}).num_seqs, 5);
  std::ofstream(file) << "[ check . compare ]\nmax-windows = 4\n";
  EXPECT_EQ(parse_check({"compare", "-m", "m", "-c", "c", "-t", "t", "-o", "o", "--config", file.string()})
                .compare.max_windows,
            4);
  fs::remove_all(dir);
}

// The cache a preset's file name promises ("-25" is 25 %), and the engine formats its comment line
// asks the main job to write ("# engine-formats: gguf hf-deepseek", read by the Makefile).
double cache_in_name(const fs::path& file) {
  static const std::regex pattern(R"(-(12\.5|25|50)(-|\.toml$))");
  const std::string name = file.filename().string();
  std::smatch match;
  return std::regex_search(name, match, pattern) ? std::stod(match[1].str()) / 100 : 0;
}
std::vector<std::string> engine_formats(const fs::path& file) {
  std::ifstream in(file);
  std::vector<std::string> formats;
  for (std::string line; std::getline(in, line);) {
    const std::string key = "# engine-formats:";
    if (line.rfind(key, 0) != 0) continue;
    std::istringstream words(line.substr(key.size()));
    for (std::string word; words >> word;) formats.push_back(word);
  }
  return formats;
}

TEST(Presets, ShippedPresetsParseWithEveryTool) {
  const auto files = presets();
  ASSERT_EQ(files.size(), 8u) << EKV_CONFIGS_DIR;
  for (const auto& file : files) {
    // The SmolLM2 and Qwen2.5 presets (d_h 64) hold what docs/results.md measured; the 7B-shaped scale
    // preset (d_h 128) keeps fewer sequences (8 MiB of X per sequence and layer).
    const bool scale = file.filename().string().rfind("llama2-7b-shape", 0) == 0;
    const int head_dim = scale ? 128 : 64;
    const auto calibrate = parse_as<CalibrateOptions>("ekv-calibrate", {"--config", file.string()});
    EXPECT_EQ(calibrate.keep_seqs, scale ? 4 : 32) << file;
    const auto rope = parse_as<SelectRopeOptions>("ekv-select-rope", {"--config", file.string()});
    EXPECT_EQ(rope.method, "elite") << file;
    const auto jlrd = parse_as<JlrdOptions>("ekv-jlrd", {"--config", file.string()});
    EXPECT_TRUE(jlrd.refit_output) << file;
    EXPECT_LT(jlrd.refit_heldout, calibrate.keep_seqs) << file;
    EXPECT_EQ(jlrd.chunk_map, ChunkMapChoice::automatic) << file;
    // The cache the name promises, as a whole-model budget or one ratio for every layer; the elite
    // dims (2r per KV head) take part of it and leave the latent the rest.
    const double cache = jlrd.budget > 0 ? jlrd.budget : (jlrd.cache_ratios.empty() ? 0 : jlrd.cache_ratios[0]);
    EXPECT_DOUBLE_EQ(cache, cache_in_name(file)) << file;
    EXPECT_EQ(jlrd.budget > 0, jlrd.cache_ratios.empty()) << file;
    EXPECT_GT(jlrd.r, 0) << file;
    EXPECT_LT(jlrd.r, cache * head_dim) << file;
    // An engine layout keeps every layer's r elite keys per head within its slots (r_max · G), and
    // an engine's single latent rank needs one ratio for all layers.
    if (rope.layout != "free") {
      EXPECT_EQ(rope.r_max, jlrd.r) << file;
      EXPECT_FALSE(jlrd.cache_ratios.empty()) << file;
    }
    // The formats the main job writes hold the layout: GGUF only llama.cpp's, DeepseekV3 both.
    for (const auto& format : engine_formats(file)) {
      if (format == "gguf") EXPECT_EQ(rope.layout, "llama.cpp") << file;
      else if (format == "hf-deepseek") EXPECT_NE(rope.layout, "free") << file;
      else ADD_FAILURE() << file << ": unknown engine format " << format;
    }
  }
}

}  // namespace
}  // namespace ekv::test
