"""--config FILE: a preset (configs/*.toml) gives ekv-uptrain's options from its [uptrain]
section (or --config-section NAME), as the C++ tools read theirs; the command line overrides
it. Keys are the long option names without dashes' prefix ("layer-steps = 100"); an unknown
key is an error that names the file, the section and the key."""
import argparse
import tomllib


def preset_defaults(parser, argv):
    """Reads --config/--config-section from argv and returns the section as parser defaults."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default="")
    pre.add_argument("--config-section", default="uptrain")
    known, _ = pre.parse_known_args(argv)
    if not known.config:
        return {}
    try:
        with open(known.config, "rb") as f:
            data = f.read()
        # A UTF-8 byte-order mark is skipped, as the C++ tools skip it.
        document = tomllib.loads(data.removeprefix(b"\xef\xbb\xbf").decode("utf-8"))
    except OSError as error:
        parser.error(f"--config {known.config}: {error.strerror}")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        parser.error(f"--config {known.config}: not TOML: {error}")
    if known.config_section not in document:
        parser.error(f"--config {known.config}: no [{known.config_section}] section")
    options = {action.dest: action for action in parser._actions if action.option_strings}
    defaults = {}
    for key, value in document[known.config_section].items():
        dest = key.replace("-", "_")
        if dest not in options or dest in ("help", "config", "config_section"):
            parser.error(f"--config {known.config}: [{known.config_section}] {key}: not an ekv-uptrain option")
        action = options[dest]
        if action.type is not None and not isinstance(value, bool):
            try:
                value = action.type(value)
            except (TypeError, ValueError):
                parser.error(f"--config {known.config}: [{known.config_section}] {key} = {value!r}: not a "
                             f"{action.type.__name__}")
        defaults[dest] = value
    return defaults
