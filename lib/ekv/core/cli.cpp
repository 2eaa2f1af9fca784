#include "ekv/core/cli.hpp"

#include <exception>

#include "ekv/core/error.hpp"
#include "ekv/core/log.hpp"
#include "ekv/core/run_context.hpp"
#include "ekv/core/version.hpp"

namespace ekv {

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
    return body();
  } catch (const std::exception& e) {
    log::error(e.what());
    return 1;
  }
}

}  // namespace ekv
