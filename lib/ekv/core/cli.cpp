#include "ekv/core/cli.hpp"

#include <charconv>
#include <cstdint>
#include <exception>
#include <memory>
#include <sstream>

#include "ekv/core/error.hpp"
#include "ekv/core/failpoint.hpp"
#include "ekv/core/leniency.hpp"
#include "ekv/core/log.hpp"
#include "ekv/core/run_context.hpp"
#include "ekv/core/version.hpp"

namespace ekv {

namespace {

// The table a TOML header line names, as TOML reads it: "[ check . compare ]  # note" is
// "check.compare" (spaces around the name and its dots, a trailing comment); "[[" for an array of
// tables (none of ekv's sections: its keys are nobody's); "" when the line is not a header.
std::string table_header(const std::string& line) {
  const std::string text = CLI::detail::trim_copy(line);
  if (text.size() < 2 || text.front() != '[') return "";
  if (text[1] == '[') return "[[";
  const auto close = text.find(']');
  if (close == std::string::npos) return "";
  const std::string rest = CLI::detail::trim_copy(text.substr(close + 1));
  if (!rest.empty() && rest.front() != '#') return "";
  std::string name;
  std::istringstream parts(text.substr(1, close - 1));
  for (std::string part; std::getline(parts, part, '.');) name += (name.empty() ? "" : ".") + CLI::detail::trim_copy(part);
  return name;
}

// Reads one [section] of a TOML preset as if its keys stood at the top, and its [section.sub]
// tables as the options of subcommand `sub` (ekv-check's [check.compare]). (CLI11 2.1's own
// section() keeps only the first key of a section: the later ones are taken for a subcommand's.)
// A UTF-8 byte-order mark before the first line is skipped, as TOML readers do.
class PresetSection : public CLI::ConfigBase {
 public:
  explicit PresetSection(std::string section) : section_(std::move(section)) {}
  std::vector<CLI::ConfigItem> from_config(std::istream& input) const override {
    std::stringstream top, subcommands;  // the top keys first: after a [sub] header they would be its
    std::stringstream* inside = nullptr;
    const std::string prefix = section_ + ".";
    bool first = true;
    for (std::string line; std::getline(input, line); first = false) {
      if (first && line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);
      const std::string name = table_header(line);
      if (!name.empty()) {
        inside = nullptr;
        if (name == section_) {
          inside = &top;
        } else if (name.rfind(prefix, 0) == 0) {
          inside = &subcommands;
          subcommands << '[' << name.substr(prefix.size()) << "]\n";
        }
        continue;
      }
      if (inside) *inside << line << '\n';
    }
    top << subcommands.str();
    return CLI::ConfigBase::from_config(top);
  }

 private:
  std::string section_;
};

}  // namespace

std::string decimal_integer_error(const std::string& text, bool is_unsigned) {
  const std::size_t digits = !text.empty() && text[0] == '-' ? 1 : 0;
  const bool plain = text.size() > digits && text.find_first_not_of("0123456789", digits) == std::string::npos;
  if (!plain) return "'" + text + "' is not an integer (decimal digits)";
  if (text.size() > digits + 1 && text[digits] == '0')
    return "'" + text + "' has a leading zero (write it without: decimal, not octal)";
  if (is_unsigned && digits) return text + " is negative";
  std::errc status{};
  if (is_unsigned) {
    std::uint64_t value = 0;
    status = std::from_chars(text.data(), text.data() + text.size(), value).ec;
  } else {
    std::int64_t value = 0;
    status = std::from_chars(text.data(), text.data() + text.size(), value).ec;
  }
  if (status == std::errc::result_out_of_range)
    return text + " is out of range (at most " +
           (is_unsigned ? std::to_string(UINT64_MAX) : std::to_string(INT64_MAX)) + ")";
  return {};
}

void hold_integers_to_decimal(CLI::App& app) {
  for (CLI::Option* option : app.get_options()) {
    const std::string type = option->get_type_name();  // "UINT:NONNEGATIVE" with a check
    const std::string base = type.substr(0, type.find(':'));
    if (base == "INT" || base == "UINT") {
      const bool is_unsigned = base == "UINT";
      option->check(CLI::Validator(
          [is_unsigned](std::string& text) { return decimal_integer_error(text, is_unsigned); }, ""));
    }
  }
  for (CLI::App* command : app.get_subcommands({})) hold_integers_to_decimal(*command);
}

std::string config_section(const std::string& tool_name) {
  return tool_name.rfind("ekv-", 0) == 0 ? tool_name.substr(4) : tool_name;
}

int tool_main(int argc, char** argv, const ToolDescription& description,
              const std::function<void(CLI::App&)>& add_options, const std::function<int()>& body) {
  set_run_context(description.name, argc, argv);
  CLI::App app(description.purpose, description.name);
  app.footer("Example:\n  " + description.example + "\n\nSee also: " + description.see_also);
  app.set_version_flag("--version", producer(description.name));
  bool verbose = false, quiet = false;
  app.fallthrough();  // --verbose and --quiet also work after a subcommand
  app.add_flag("-v,--verbose", verbose, "Also print debug messages");
  app.add_flag("-q,--quiet", quiet, "Print only warnings and errors");
  app.add_flag("--allow-unused-tensors", leniency().unused_tensors,
               "Read a model that holds tensors ekv does not use (refused otherwise: a GGUF block_count one "
               "short would silently drop a layer)");
  // A preset (configs/*.toml) holds every tool's options, each tool's under its own [section],
  // so one file drives a whole pipeline; what the command line gives overrides it.
  const std::string section = config_section(description.name);
  app.set_config("--config", "", "Preset file (TOML, see configs/): this tool's options under [" + section +
                                     "] (a subcommand's under [" + section +
                                     ".NAME]); options given on the command line override it");
  app.config_formatter(std::make_shared<PresetSection>(section));
  app.allow_config_extras(CLI::config_extras_mode::error);  // a misspelt key is an error, not ignored
  try {
    add_options(app);
    hold_integers_to_decimal(app);
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    log::error(e.what());
    return 1;
  }
  if (verbose) log::set_level(log::Level::debug);
  if (quiet) log::set_level(log::Level::warn);
  try {
    log::start();
    failpoint("start");
    return body();
  } catch (const std::exception& e) {
    log::error(e.what());
    return 1;
  }
}

}  // namespace ekv
