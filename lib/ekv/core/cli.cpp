#include "ekv/core/cli.hpp"

#include <exception>
#include <memory>
#include <sstream>

#include "ekv/core/error.hpp"
#include "ekv/core/failpoint.hpp"
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
