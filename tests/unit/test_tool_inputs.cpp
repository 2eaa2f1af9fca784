// What every tool refuses before any work (issue 21): output paths that are devices, that sit in
// no directory, or that would overwrite an input; numeric options that are not whole numbers, out
// of range, or NaN. Each error must name the option or the path and the value.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "ekv/core/atomic_output.hpp"
#include "ekv/core/cli.hpp"
#include "ekv/core/output_path.hpp"
#include "ekv/tools/calibrate.hpp"
#include "ekv/tools/check.hpp"
#include "ekv/tools/convert.hpp"
#include "ekv/tools/jlrd.hpp"
#include "ekv/tools/select_rope.hpp"
#include "expect_error.hpp"
#include "gguf_builder.hpp"

namespace ekv::test {
namespace {

namespace fs = std::filesystem;

// Parses `args` with the options of one tool; returns CLI11's message, or "" when accepted.
template <class Options>
std::string parse_error(std::vector<std::string> args) {
  Options options;
  CLI::App app;
  options.register_with(app);
  hold_integers_to_decimal(app);  // as tool_main does
  std::vector<std::string> reversed(args.rbegin(), args.rend());
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    return e.what();
  }
  return "";
}

TEST(OutputPath, DevicesAndMissingDirectoriesAreRefused) {
  // As root, renaming the temporary over /dev/null replaced the device node.
  EXPECT_EKV_ERROR(require_output_path("/dev/null"), "/dev/null", "not a regular file or folder");
  EXPECT_EKV_ERROR(AtomicOutput("/dev/null"), "/dev/null", "not a regular file or folder");
  EXPECT_EKV_ERROR(require_output_path("/no/such/dir/out.h5"), "/no/such/dir", "does not exist");
  const fs::path dir = temp_dir("output-path");
  EXPECT_NO_THROW(require_output_path(dir / "new.h5"));
  std::ofstream(dir / "old.h5") << "x";
  EXPECT_NO_THROW(require_output_path(dir / "old.h5"));  // replaced atomically: allowed
  fs::remove_all(dir);
}

TEST(OutputPath, AnInputIsNeverAnOutput) {
  const fs::path dir = temp_dir("output-input");
  const fs::path input = dir / "calib.h5";
  std::ofstream(input) << "x";
  EXPECT_EKV_ERROR(require_output_path(input, {"model.gguf", input}), "would overwrite the input", "calib.h5");
  // The same file under another spelling, or through a symbolic link.
  const fs::path spelled = dir / "." / "sub" / ".." / "calib.h5";
  fs::create_directory(dir / "sub");
  EXPECT_EKV_ERROR(require_output_path(spelled, {input}), "would overwrite the input");
  fs::create_symlink(input, dir / "link.h5");
  EXPECT_EKV_ERROR(require_output_path(dir / "link.h5", {input}), "would overwrite the input");
  EXPECT_NO_THROW(require_output_path(dir / "rope.h5", {input}));
  fs::remove_all(dir);
}

// Issue 33's data loss: an output folder replaced by exchange took every file in it, the inputs
// among them (ekv-export -o DIR with DIR/rope.h5, -o ., ekv-convert -o .., -o HF/..).
TEST(OutputPath, AFolderThatHoldsAnInputIsNeverTheOutput) {
  const fs::path dir = temp_dir("output-holds-input");
  fs::create_directories(dir / "work" / "hf");
  std::ofstream(dir / "work" / "rope.h5") << "x";
  std::ofstream(dir / "work" / "hf" / "config.json") << "{}";
  EXPECT_EKV_ERROR(require_output_path(dir / "work", {dir / "work" / "rope.h5"}), "holds the input", "rope.h5");
  EXPECT_EKV_ERROR(require_output_path(dir / "work" / "hf" / "..", {dir / "work" / "hf"}), "holds the input");
  EXPECT_EKV_ERROR(require_output_path(dir, {dir / "work" / "rope.h5"}), "holds the input");
  const fs::path here = fs::current_path();
  fs::current_path(dir / "work");
  EXPECT_EKV_ERROR(require_output_path(".", {"rope.h5"}), "holds the input", "rope.h5");
  fs::current_path(here);
  EXPECT_NO_THROW(require_output_path(dir / "work" / "out", {dir / "work" / "rope.h5"}));
  ConvertOptions convert;
  convert.model = (dir / "work" / "hf").string();
  convert.output = (dir / "work").string();
  EXPECT_EKV_ERROR(convert.check(), "holds the input");
  fs::remove_all(dir);
}

TEST(OutputPath, OnlyAnEkvFolderIsReplacedAndOnlyWithNothingForeignInIt) {
  const fs::path dir = temp_dir("output-folder-kind");
  const fs::path user = dir / "user";
  fs::create_directory(user);
  std::ofstream(user / "notes.txt") << "mine";
  EXPECT_EKV_ERROR(AtomicOutput{user}, "user", "not a folder an ekv tool wrote");
  ConvertOptions convert;
  convert.model = (dir / "m.gguf").string();
  convert.output = user.string();
  EXPECT_EKV_ERROR(convert.check(), "not a folder an ekv tool wrote");
  // A previous output of ekv, where someone left a file: the new output is written, then refused
  // at the exchange, and the folder keeps everything.
  const fs::path ours = dir / "export";
  fs::create_directory(ours);
  std::ofstream(ours / "config.json") << R"({"ekv_source": {"path": "m.gguf"}})";
  std::ofstream(ours / "notes.txt") << "mine";
  {
    AtomicOutput output(ours);
    fs::create_directory(output.temp_path());
    std::ofstream(output.temp_path() / "config.json") << R"({"ekv_source": {}})";
    EXPECT_EKV_ERROR(output.commit(), "export", "holds notes.txt");
  }
  EXPECT_TRUE(fs::exists(ours / "notes.txt"));
  EXPECT_FALSE(fs::exists(dir / "export.tmp"));
  // Without the foreign file it is replaced.
  fs::remove(ours / "notes.txt");
  AtomicOutput output(ours);
  fs::create_directory(output.temp_path());
  std::ofstream(output.temp_path() / "config.json") << R"({"ekv_source": {"new": 1}})";
  output.commit();
  std::ifstream in(ours / "config.json");
  EXPECT_NE(std::string(std::istreambuf_iterator<char>(in), {}).find("new"), std::string::npos);
  fs::remove_all(dir);
}

TEST(OutputPath, ToolsApplyTheGuardBeforeWork) {
  const fs::path dir = temp_dir("tool-guard");
  const fs::path calib = dir / "calib.h5", text = dir / "text.txt";
  std::ofstream(calib) << "x";
  std::ofstream(text) << "x";
  SelectRopeOptions rope;
  rope.model = (dir / "m.gguf").string();
  rope.calib = calib.string();
  rope.output = calib.string();
  EXPECT_EKV_ERROR(rope.check(), "would overwrite the input", "calib.h5");
  JlrdOptions jlrd;
  jlrd.model = (dir / "m.gguf").string();
  jlrd.rope = (dir / "rope.h5").string();
  jlrd.calib = calib.string();
  jlrd.budget = 0.25;
  jlrd.output = jlrd.rope;
  EXPECT_EKV_ERROR(jlrd.check(), "would overwrite the input", "rope.h5");
  jlrd.output = (dir / "calib.out").string();  // its sweep table would be calib.csv: not an input
  EXPECT_NO_THROW(jlrd.check());
  CalibrateOptions calibrate;
  calibrate.model = (dir / "m.gguf").string();
  calibrate.texts = {text.string()};
  calibrate.output = text.string();
  EXPECT_EKV_ERROR(calibrate.check(), "would overwrite the input", "text.txt");
  fs::remove_all(dir);
}

TEST(NumericOptions, ListsParseWholeItemsOnly) {
  EXPECT_EQ(parse_error<JlrdOptions>({"--rank", "64,128"}), "");
  for (const std::string bad : {"64.7", "10,abc", "10,,20", "-"}) {
    const std::string message = parse_error<JlrdOptions>({"--rank", bad});
    EXPECT_NE(message.find("--rank"), std::string::npos) << bad << ": " << message;
    EXPECT_NE(message.find("not an integer"), std::string::npos) << bad << ": " << message;
  }
  EXPECT_NE(parse_error<JlrdOptions>({"--rank", ""}).find("empty list"), std::string::npos);
  EXPECT_NE(parse_error<EvaluateRopeOptions>({"m", "--r", "2,x"}).find("--r"), std::string::npos);
}

TEST(NumericOptions, RangesAreCheckedByName) {
  for (const std::string bad : {"0", "-1", "nan", "1.5", "abc"}) {
    const std::string message = parse_error<JlrdOptions>({"--budget", bad});
    EXPECT_NE(message.find("--budget"), std::string::npos) << bad << ": " << message;
  }
  EXPECT_EQ(parse_error<JlrdOptions>({"--budget", "0.25"}), "");
  EXPECT_NE(parse_error<JlrdOptions>({"--threads", "-2"}).find("--threads"), std::string::npos);
  EXPECT_NE(parse_error<JlrdOptions>({"--attention-seqs", "-1"}).find("--attention-seqs"), std::string::npos);
  EXPECT_NE(parse_error<CalibrateOptions>({"-K", "-3"}).find("--keep-seqs"), std::string::npos);
  EXPECT_NE(parse_error<CalibrateOptions>({"--seed", "-5"}).find("--seed"), std::string::npos);
  EXPECT_NE(parse_error<SelectRopeOptions>({"--pair-seed", "-5"}).find("--pair-seed"), std::string::npos);
  JlrdOptions ranks;
  ranks.model = "m", ranks.rope = "r", ranks.output = "out.h5";
  ranks.ranks = {-5};
  EXPECT_EKV_ERROR(ranks.check(), "--rank -5", "at least 1");
}

// Issue 30: a choice is read into its enum once, at the command line; the help lists the names of
// the enum's table and the default, and any other word is refused naming the option.
TEST(ChoiceOptions, NamesParseIntoTheirEnumAndNothingElse) {
  auto parsed = [](std::vector<std::string> args) {
    JlrdOptions options;
    CLI::App app;
    options.register_with(app);
    std::vector<std::string> reversed(args.rbegin(), args.rend());
    app.parse(reversed);
    return options;
  };
  const JlrdOptions defaults = parsed({});
  EXPECT_EQ(defaults.mode, FactorMode::joint);
  EXPECT_EQ(defaults.chunk_map, ChunkMapChoice::none);
  const JlrdOptions chosen = parsed({"--mode", "values", "--svd", "whitened", "--chunk-map", "auto", "--weighting",
                                     "attention", "--precision", "f32"});
  EXPECT_EQ(chosen.mode, FactorMode::values);
  EXPECT_EQ(chosen.svd, SvdBasis::whitened);
  EXPECT_EQ(chosen.chunk_map, ChunkMapChoice::automatic);
  EXPECT_EQ(chosen.weighting, RowWeighting::attention);
  EXPECT_EQ(chosen.precision, SvdPrecision::f32);
  for (const auto& [option, word] : std::vector<std::pair<std::string, std::string>>{
           {"--mode", "Joint"}, {"--chunk-map", "automatic"}, {"--svd", ""}, {"--weighting", "1"}}) {
    const std::string message = parse_error<JlrdOptions>({option, word});
    EXPECT_NE(message.find(option), std::string::npos) << option << " " << word << ": " << message;
  }
  CLI::App app;
  JlrdOptions options;
  options.register_with(app);
  const std::string help = app.help();
  EXPECT_NE(help.find("{none,scalar,matrix,per-chunk,head,auto}=none"), std::string::npos) << help;
  EXPECT_NE(help.find("{joint,separate,values}=joint"), std::string::npos) << help;
  // Every name of a table maps back to its own value: the tables are one-to-one.
  for (const std::string& name : names_of<ChunkMapChoice>())
    EXPECT_EQ(name_of(parsed({"--chunk-map", name}).chunk_map), name);
}

// Issue 33: CLI11 alone read "" as 0 (every window), "010" as 8, and seeds past 64 bits saturated.
TEST(NumericOptions, IntegersAreDecimalDigitsInRange) {
  auto says = [](const std::string& message, const std::string& option, const std::string& why) {
    return message.find(option) != std::string::npos && message.find(why) != std::string::npos;
  };
  EXPECT_TRUE(says(parse_error<PplOptions>({"--max-windows", ""}), "--max-windows", "not an integer"));
  EXPECT_TRUE(says(parse_error<PplOptions>({"--max-windows", "010"}), "--max-windows", "leading zero"));
  EXPECT_TRUE(says(parse_error<PplOptions>({"--max-windows", "0x10"}), "--max-windows", "not an integer"));
  EXPECT_TRUE(says(parse_error<CalibrateOptions>({"--seed", "99999999999999999999"}), "--seed", "out of range"));
  EXPECT_TRUE(says(parse_error<SelectRopeOptions>({"--pair-seed", "18446744073709551616"}), "--pair-seed",
                   "out of range"));
  EXPECT_TRUE(says(parse_error<JlrdOptions>({"--rank", "64,010"}), "--rank", "leading zero"));
  EXPECT_EQ(parse_error<CalibrateOptions>({"--seed", "18446744073709551615"}), "");
  EXPECT_EQ(parse_error<PplOptions>({"-m", "m", "-t", "t", "--max-windows", "0"}), "");
  EXPECT_EQ(parse_error<PplOptions>({"-m", "m", "-t", "t", "--max-windows", "10"}), "");
  EXPECT_EQ(decimal_integer_error("-1", true), "-1 is negative");
  EXPECT_EQ(decimal_integer_error("-9223372036854775808", false), "");
  EXPECT_NE(decimal_integer_error("9223372036854775808", false), "");
}

}  // namespace
}  // namespace ekv::test
