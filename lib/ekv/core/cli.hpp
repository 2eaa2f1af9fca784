// The shape every ekv executable shares (STYLE.md): usage text, parse, run the library,
// one top-level catch that turns an exception into a message and exit code 1.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "ekv/core/name_table.hpp"

namespace ekv {

struct ToolDescription {
  std::string name;      // "ekv-info"
  std::string purpose;   // one sentence
  std::string example;   // one command line
  std::string see_also;  // related tools
};

// The preset section a tool reads with --config: its name without "ekv-" ("jlrd").
std::string config_section(const std::string& tool_name);

// Builds the CLI::App with the usage text, the common --verbose/--quiet flags and --config
// (a TOML preset: the tool's options under its section; the command line overrides), lets
// `add_options` register the tool's options, parses, logs the first line, and calls `body`.
// Returns the process exit code.
int tool_main(int argc, char** argv, const ToolDescription& description,
              const std::function<void(CLI::App&)>& add_options, const std::function<int()>& body);

// "" when `text` is a plain decimal integer that fits 64 bits (unsigned: and is not negative),
// else why not. CLI11 reads integers with strtoll(base 0) and takes an empty argument as the
// type's default: "010" would be 8, "0x10" 16, "" 0, "-1" for an unsigned option 2^64 - 1, and
// a number past 64 bits saturates.
std::string decimal_integer_error(const std::string& text, bool is_unsigned);

// Holds every integer option of `app` and its subcommands to decimal_integer_error (tool_main
// calls it after the tool registers its options; add_list_option holds list items to it).
void hold_integers_to_decimal(CLI::App& app);

// --threads, as every tool has it: 0 is one per core, negatives are refused by the parser
// (and counts past 4× the cores by set_compute_threads).
inline CLI::Option* add_threads_option(CLI::App& app, int& threads) {
  return app.add_option("--threads", threads, "Compute threads (0: one per core)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
}

// A finite number in (0, 1] (cache ratios, budgets): CLI11's ranges let "nan" through.
inline CLI::Validator unit_fraction() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        double value = 0;
        if (!CLI::detail::lexical_cast(text, value)) return "'" + text + "' is not a number";
        if (!(value > 0 && value <= 1)) return text + " is not in (0, 1]";
        return {};
      },
      "in (0, 1]");
}

// An option naming one value of an enum with a name table (core/name_table.hpp): the help lists
// the names and the default, the parser refuses any other word, and `value` receives the enum.
template <class E>
CLI::Option* add_choice_option(CLI::App& app, const char* name, E& value, const char* help) {
  return app
      .add_option_function<std::string>(
          name,
          [&value](const std::string& text) {
            for (const auto& [word, entry] : name_table(value))
              if (word == text) value = entry;
          },
          help)
      ->check(CLI::IsMember(names_of<E>()))
      ->default_str(name_of(value));
}

// A comma-separated list in one argument ("--rank 64,128"): a multi-value option would
// swallow the arguments that follow it. Every item must parse whole as a T ("64.7" is not an
// integer, "abc" is not a number); the error names the option and the item.
template <class T>
CLI::Option* add_list_option(CLI::App& app, const char* name, std::vector<T>& values, const char* help) {
  const std::string option = name;
  return app.add_option_function<std::string>(
      name,
      [&values, option](const std::string& text) {
        values.clear();
        std::istringstream in(text);
        std::string item;
        while (std::getline(in, item, ',')) {
          T value{};
          if constexpr (std::is_integral_v<T>) {
            const std::string why = decimal_integer_error(item, std::is_unsigned_v<T>);
            if (!why.empty()) throw CLI::ValidationError(option, why + " in '" + text + "'");
          }
          if (item.empty() || !CLI::detail::lexical_cast(item, value))
            throw CLI::ValidationError(option, "'" + item + "' in '" + text + "' is not " +
                                                   (std::is_integral_v<T> ? "an integer" : "a number"));
          values.push_back(value);
        }
        if (values.empty()) throw CLI::ValidationError(option, "an empty list");
      },
      help);
}

}  // namespace ekv
