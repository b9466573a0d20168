"""The `labctl` command line: one subcommand a job, each in its own module."""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys

from instruments.transport import InstrumentError
from labctl.records.session import RecordError

# (command words, module, help): each module has add_arguments(parser) and run(args) -> int.
COMMANDS = [
    (("station", "check"), "labctl.commands.station_check", "open every instrument and check it"),
    (("station", "selftest"), "labctl.commands.selftest",
     "measure the reference resistor through every SMU channel"),
    (("iv",), "labctl.commands.iv", "I-V sweep of both devices of a pair (CSV + PNG)"),
    (("fd-scan",), "labctl.commands.fd_scan", "derivative error against dI; recommends a dI"),
    (("tune",), "labctl.commands.tune", "pulse a pair's devices to a target I_off and verify it"),
    (("train", "iris"), "labctl.commands.train_iris", "device-in-the-loop training on Iris"),
    (("simulate", "mnist"), "labctl.commands.simulate_mnist", "four hidden MTJ layers on MNIST"),
    (("sessions", "list"), "labctl.commands.sessions", "list recorded sessions"),
    (("sessions", "prune"), "labctl.commands.sessions_prune",
     "remove sessions by age, status or size (a dry run unless --yes)"),
    (("replay",), "labctl.commands.replay", "replay a recorded session offline"),
    (("report",), "labctl.commands.report", "plots of a recorded session"),
    (("view",), "labctl.commands.view", "a local web page following sessions live"),
    (("export",), "labctl.commands.export", "a session's streams as NetCDF or Parquet files"),
    (("wafer",), "labctl.commands.wafer", "wafer characterisation: scan (and its report)"),
    (("bench",), "labctl.commands.bench", "benchmarks (not part of the test suite)"),
    (("sim", "serve"), "labctl.commands.sim_serve", "serve a simulated bench on loopback"),
    (("sweep",), "labctl.commands.sweep", "grids of runs over seeds and settings; report"),
    (("paper",), "labctl.commands.paper", "the method paper's figures over seeds, beside ours"),
]


def _chosen(argv: list[str]) -> tuple[str, ...] | None:
    """The command words ``argv`` selects, so that only that command's module is imported."""
    words = tuple(a for a in argv if not a.startswith("-"))
    for command, _, _ in COMMANDS:
        if words[: len(command)] == command:
            return command
    return None


# Negative numbers in scientific notation (-30e-6) are values, not options, as -30 is.
_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?[a-zA-Zµ]*$")


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" where the help does not already say it and X is a value."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """Every labctl parser: defaults shown in --help, no abbreviated options (``--pai 3``
    is an error, not ``--pairs 3``), negative values in any notation, ``-v`` anywhere."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Help)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = _NEGATIVE_NUMBER


def _verbose(parser: argparse.ArgumentParser, default) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="log instrument traffic")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv``, only the chosen command's module is imported (fast start)."""
    chosen = _chosen(argv) if argv is not None else None
    parser = Parser(prog="labctl", description=__doc__)
    _verbose(parser, False)
    top = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=Parser)
    groups: dict[str, argparse._SubParsersAction] = {}
    for words, module, help_text in COMMANDS:
        if len(words) == 1:
            sub = top.add_parser(words[0], help=help_text, description=help_text)
        else:
            if words[0] not in groups:
                grp = top.add_parser(words[0], help=f"{words[0]} commands")
                groups[words[0]] = grp.add_subparsers(
                    dest="subcommand", required=True, metavar="SUBCOMMAND", parser_class=Parser
                )
            sub = groups[words[0]].add_parser(words[1], help=help_text, description=help_text)
        if argv is not None and words != chosen:
            continue
        mod = importlib.import_module(module)
        # -v after the command too; SUPPRESS keeps a -v given before it
        _verbose(sub, argparse.SUPPRESS)
        mod.add_arguments(sub)
        sub.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args._run(args)
    except KeyboardInterrupt as exc:
        session = getattr(exc, "labctl_session", None)
        kept = f"session {session.name} kept ({session})" if session else "nothing recorded"
        _tell(f"labctl: interrupted ({exc or 'SIGINT'}); {kept}")
        return 130
    except (ValueError, OSError, RuntimeError, InstrumentError, RecordError) as exc:
        session = getattr(exc, "labctl_session", None)
        _tell(f"labctl: error: {exc}" + (f" (session {session.name} kept)" if session else ""))
        return 2


def _tell(message: str) -> None:
    """Print to stderr; after SIGHUP the terminal may be gone, and that must not matter."""
    try:
        print(message, file=sys.stderr, flush=True)
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main())
