// The shape every ekv executable shares (STYLE.md): usage text, parse, run the library,
// one top-level catch that turns an exception into a message and exit code 1.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace ekv {

struct ToolDescription {
  std::string name;      // "ekv-info"
  std::string purpose;   // one sentence
  std::string example;   // one command line
  std::string see_also;  // related tools
};

// Builds the CLI::App with the usage text and the common --verbose/--quiet flags, lets
// `add_options` register the tool's options, parses, logs the first line, and calls `body`.
// Returns the process exit code.
int tool_main(int argc, char** argv, const ToolDescription& description,
              const std::function<void(CLI::App&)>& add_options, const std::function<int()>& body);

// A comma-separated list in one argument ("--rank 64,128"): a multi-value option would
// swallow the arguments that follow it.
template <class T>
void add_list_option(CLI::App& app, const char* name, std::vector<T>& values, const char* help) {
  app.add_option_function<std::string>(
      name,
      [&values](const std::string& text) {
        values.clear();
        std::istringstream in(text);
        std::string item;
        while (std::getline(in, item, ',')) values.push_back(T(std::stod(item)));
      },
      help);
}

}  // namespace ekv
