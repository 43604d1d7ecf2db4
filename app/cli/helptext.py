"""One look for every `--help`: each subcommand describes itself (its one-line help when
it has no longer description), and options show their defaults where they have one."""

from __future__ import annotations

import argparse


class DefaultsFormatter(argparse.HelpFormatter):
    """Like argparse's ArgumentDefaultsHelpFormatter, without "(default: None)" noise and
    without repeating a default the help already names."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (default in (None, False, argparse.SUPPRESS) or "default" in text
                or action.option_strings == [] or isinstance(default, bool)):
            return text
        return f"{text} (default: {default})"


# Names for values argparse would show as the option's name in capitals (DELAY_MS).
_UNITS = {"ms": "MS", "mbit": "MBIT", "s": "SECONDS", "seconds": "SECONDS",
          "duration": "SECONDS", "timeout": "SECONDS", "pps": "N", "flows": "N",
          "runs": "N", "rounds": "N", "minutes": "MINUTES"}


def polish(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` and every subcommand below it the formatter, a description, and
    value names that say what to write (MS, SECONDS) rather than the option's name."""
    parser.formatter_class = DefaultsFormatter
    for action in parser._actions:
        if action.option_strings and action.metavar is None and action.nargs is None \
                and action.choices is None and action.type is not None:
            unit = _UNITS.get(action.dest.rsplit("_", 1)[-1])
            if unit is not None:
                action.metavar = unit
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {a.dest: a.help for a in action._choices_actions}
        for name, sub in action.choices.items():
            if sub.description is None and helps.get(name):
                text = str(helps[name])
                sub.description = text[0].upper() + text[1:] + "."
            polish(sub)
