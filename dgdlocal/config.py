"""`run --config FILE.toml`: every option of `run` from a TOML file, command-line flags win.

A key is an option name without the leading dashes, spelled with dashes or
underscores (`log-every = 50` or `log_every = 50`); its value is what the option
takes (a string, number or boolean; `true`/`false` for switches such as `quiet`).
The keys may sit at the top level or in a `[run]` table. The file is turned into
the equivalent flags and placed before the command-line flags, so argparse checks
every value exactly as on the command line and a later (command-line) flag wins.
"""

from __future__ import annotations

import argparse
import difflib
import os
import textwrap
import tomllib

from .errors import InputError

#: Options of `run` that cannot come from a config file.
NOT_IN_FILE = {"help", "config"}


def option_table(run_parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Option name without dashes (e.g. 'log-every') → its argparse action."""
    table = {}
    for action in run_parser._actions:  # argparse keeps no public list of actions
        if action.dest in NOT_IN_FILE or not action.option_strings:
            continue
        long_names = [s for s in action.option_strings if s.startswith("--") and not s.startswith("--no-")]
        table[long_names[0][2:]] = action
    return table


def read_toml(path: str) -> dict:
    """The settings of a config file as a flat dict (a `[run]` table is merged into the top level)."""
    if not os.path.exists(path):
        raise InputError(f"The config file '{path}' does not exist.", collective=True)
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"The config file '{path}' is not valid TOML: {exc}.", collective=True) from None
    except OSError as exc:
        raise InputError(f"The config file '{path}' cannot be read ({exc.strerror}).", collective=True) from None
    settings = {k: v for k, v in document.items() if k != "run"}
    table = document.get("run", {})
    if not isinstance(table, dict):
        raise InputError(f"In the config file '{path}': 'run' must be a table ([run]). Got {table!r} instead.",
                         collective=True)
    for key, value in table.items():
        if key in settings:
            raise InputError(f"In the config file '{path}': '{key}' is set both at the top level and in [run].",
                             collective=True)
        settings[key] = value
    return settings


def _unknown_key(path: str, key: str, valid) -> InputError:
    names = sorted(valid)
    close = difflib.get_close_matches(key.replace("_", "-"), names, n=1, cutoff=0.5)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return InputError(f"The config file '{path}' has an unknown key '{key}'.{hint} "
                      f"Valid keys: {', '.join(names)}.", collective=True)


def file_arguments(path: str, run_parser: argparse.ArgumentParser) -> list[str]:
    """The command-line flags equivalent to the config file at `path`."""
    table = option_table(run_parser)
    arguments = []
    for key, value in read_toml(path).items():
        name = key.replace("_", "-")
        if name not in table:
            raise _unknown_key(path, key, table)
        action = table[name]
        where = f"In the config file '{path}': the key '{key}'"
        if isinstance(action, argparse.BooleanOptionalAction):
            if not isinstance(value, bool):
                raise InputError(f"{where} is a switch and takes true or false. Got {value!r} instead.",
                                 collective=True)
            arguments.append(f"--{name}" if value else f"--no-{name}")
        elif isinstance(value, (bool, dict, list)) or value is None:
            raise InputError(f"{where} takes a single string or number. Got {value!r} instead.", collective=True)
        else:
            arguments += [f"--{name}", repr(value) if isinstance(value, float) else str(value)]
    return arguments


def merge(argv: list[str], config_path: str, run_parser: argparse.ArgumentParser) -> list[str]:
    """`argv` (starting with 'run') with the file's flags inserted first, so the command line overrides them.

    The file's flags are parsed once alone first, so a bad value is reported as coming from the file.
    """
    from_file = file_arguments(config_path, run_parser)
    try:
        run_parser.parse_args(from_file)
    except InputError as exc:
        raise InputError(f"In the config file '{config_path}': {exc}", collective=True) from None
    return [argv[0], *from_file, *argv[1:]]


def format_compact(settings: dict, width: int = 100, indent: str = "  ") -> str:
    """The resolved settings as wrapped `key=value` pairs (printed at the start of a run)."""
    pairs = [f"{key.replace('_', '-')}={'none' if value is None else value}" for key, value in settings.items()]
    return textwrap.fill(" ".join(pairs), width, initial_indent=indent, subsequent_indent=indent,
                         break_long_words=False, break_on_hyphens=False)


def format_toml(settings: dict) -> str:
    """Settings as TOML lines `key = value` (unset ones commented out): a config file that reruns them."""
    lines = []
    for key, value in settings.items():
        name = key.replace("_", "-")
        if value is None or value == "none":
            lines.append(f"# {name} =")
        elif isinstance(value, bool):
            lines.append(f"{name} = {str(value).lower()}")
        elif isinstance(value, (int, float)):
            lines.append(f"{name} = {value!r}")
        else:
            lines.append(f"{name} = " + '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "\n".join(lines)
