"""The command line as a new user meets it: defaults in --help, values with units,
negative values in scientific notation, no silently abbreviated options, -v anywhere."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labctl.cli import build_parser
from labctl.commands.units import quantity

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}


def labctl(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labctl.cli", *map(str, args)], cwd=cwd,
                          env=ENV, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("text", "value"), [
    ("50e-6", 50e-6), ("-30e-6", -30e-6), ("50uA", 50e-6), ("50 µA", 50e-6),
    ("0.05mA", 50e-6), ("1A", 1.0), ("-2.5nA", -2.5e-9), (".5", 0.5), ("3", 3.0),
])
def test_currents_take_plain_numbers_and_si_units(text, value):
    assert quantity("A")(text) == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize("text", ["50uX", "50 uV", "fifty", "", "1e", "--5", "50uAA"])
def test_other_units_and_garbage_are_refused_naming_the_unit(text):
    with pytest.raises(argparse.ArgumentTypeError, match="not a current in A"):
        quantity("A")(text)


def test_negative_scientific_values_parse_as_values():
    args = build_parser(["tune"]).parse_args(["tune", "--pair", "1", "--i-off", "-30e-6"])
    assert args.i_off == pytest.approx(-30e-6)
    args = build_parser(["tune"]).parse_args(["tune", "--pair", "1", "--i-off", "-30uA"])
    assert args.i_off == pytest.approx(-30e-6)


def test_every_option_has_help_and_help_shows_the_defaults():
    parser = build_parser()

    def walk(p, path):
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, [*path, name])
            elif action.option_strings:
                yield " ".join(path), action

    missing = [(cmd, a.option_strings) for cmd, a in walk(parser, []) if not a.help]
    assert missing == []
    help_text = subprocess.run([sys.executable, "-m", "labctl.cli", "train", "iris", "--help"],
                               env=ENV, capture_output=True, text=True, check=True).stdout
    assert "(default: 100)" in help_text and "(default: adam)" in help_text


def test_abbreviations_are_refused_and_v_works_after_the_command(tmp_path):
    proc = labctl("train", "iris", "--pai", "3", cwd=tmp_path)
    assert proc.returncode == 2 and "unrecognized arguments: --pai" in proc.stderr
    proc = labctl("iv", "--pair", "1", "--i-max", "50uX", cwd=tmp_path)
    assert proc.returncode == 2 and "'50uX' is not a current in A" in proc.stderr
    proc = labctl("iv", "--pair", "2", "--points", "5", "--i-max", "40uA", "-v",
                  "--sessions-dir", tmp_path / "s", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "DEBUG" in proc.stderr  # instrument traffic logged
