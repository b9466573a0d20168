"""Every injected fault x every instrument command: a clean end, never wrong data.

Each case serves the built-in bench with one fault (``[simulation.faults.NAME]`` of a
station file, :class:`simulators.faults.FaultSpec`) in a ``labctl sim serve --station``
subprocess and runs one real ``labctl`` command against the station file it writes. The
outcome must be a clean end: exit 0 with the same data as a fault-free run of the same
seed (for ``iv``: iv.csv identical, or the rows that differ flagged as compliance or
overrange), or exit 2 with one ``labctl: error:`` naming the instrument; never a traceback,
never a hang. Either way the session has its stop document, and asked over their own
sockets afterwards both SMUs report output off at 0 A, the ADC is not armed and the
switch matrix has nothing closed. A training that did not succeed is resumed (on the same
bench when the fault was a one-off, on a repaired bench when it persists: a stuck
compliance, a broken device, a slow link) and must then complete both folds.

Where each fault strikes is taken from the wire logs of a fault-free run of the same
command (:func:`target`): the message number of the measurement's data query (an SMU's
``:READ?``, the ADC's ``ACQ:DATA?``) or the switch's close, so the fault is spent by the
command and the checks afterwards are not hit. No ``every``: each fault strikes once
(``delay_s``, ``stick_compliance_after`` and ``break_device_after`` persist by nature).
The commands are small (:data:`COMMANDS`: an I-V sweep of 21 points, a training of 2 folds
x 2 epochs of 4 neurons at NPLC 0.1): the target follows them, a third into the
measurement, and a training has recorded its first epoch when the fault strikes.

The cases run two at a time (this is a 2-core machine). The outcome table is printed and,
if the environment variable ``LABCTL_FAULT_TABLE`` names a file, written there as JSON.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from instruments.transport import WireLog
from labctl.bench.storm import bench_state, labctl, served, unsafe
from labctl.records.session import Session
from labctl.station.file import BUILTIN_TEXT

TIMEOUT_S = 1.0  # every instrument's reply timeout in the served station file
DELAY_S = 1.5  # beyond TIMEOUT_S: every reply comes too late
COMMAND_TIMEOUT_S = 90.0  # a command still running then hangs
PAIR = 2
BROKEN = f"{PAIR}B"
EPOCHS, FOLDS, HIDDEN = 2, 2, 4
# Small runs of each command: a fault strikes the same code as in a long one. At time scale 0
# the NPLC only sets the noise and how long a list sweep's reply is waited for (TIMEOUT_S
# plus the sweep's duration bound, 6.8 s at NPLC 1 for a training's sweep), which a stalled
# reply waits out.
COMMANDS = {
    "iv": ("iv", "--pair", PAIR, "--points", 21),
    "fd-scan": ("fd-scan", "--pair", PAIR, "--steps", "1e-6,2e-6", "--points", 11),
    "tune": ("tune", "--pair", PAIR, "--i-off", "45e-6"),
    "train": ("train", "iris", "--folds", FOLDS, "--epochs", EPOCHS, "--hidden", HIDDEN,
              "--nplc", 0.1, "--json", "--no-progress"),
}
SMU_FAULTS = ("drop", "stall", "delay", "garble", "truncate", "duplicate", "non_ascii",
              "stick_compliance", "break_device")
#: Faults that outlive the message they strike: a resume needs a repaired bench.
PERSISTENT = {"delay", "stick_compliance", "break_device"}
#: (fault, instrument, command): every fault x iv, a subset x the others.
CASES = (
    [(f, "smu_a", "iv") for f in SMU_FAULTS]
    + [(f, i, "iv") for i in ("adc", "switch") for f in ("drop", "garble")]
    + [(f, i, c) for c in ("fd-scan", "tune")
       for f, i in (("drop", "smu_a"), ("garble", "smu_a"), ("stick_compliance", "smu_a"),
                    ("break_device", "smu_a"), ("garble", "adc"), ("drop", "switch"))]
    + [(f, i, "train")
       for f, i in (("drop", "smu_a"), ("stall", "smu_a"), ("garble", "smu_a"),
                    ("duplicate", "smu_a"), ("stick_compliance", "smu_a"),
                    ("break_device", "smu_a"), ("garble", "adc"), ("drop", "switch"))]
)
EPOCH_KEYS = ("fold", "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr")
SESSION_PATH = re.compile(r"\S*\d{8}-\d{6}-[\w-]+-[0-9a-f]{4}\S*")


def case_id(case: tuple[str, str, str]) -> str:
    return "-".join(case)


# -- station files -------------------------------------------------------------------------
def station_text(faults: dict[str, dict] | None = None) -> str:
    """The built-in station with short reply timeouts and ``faults`` (instrument -> keys)."""
    text = re.sub(r"(?m)^(\[instruments\.\w+\]\n)", rf"\g<1>timeout_s = {TIMEOUT_S}\n",
                  BUILTIN_TEXT)
    for name, spec in (faults or {}).items():
        text += f"\n[simulation.faults.{name}]\n"
        text += "".join(f"{key} = {json.dumps(value)}\n" for key, value in spec.items())
    return text


def writes(session: Path, instrument: str) -> list[str]:
    """The messages labctl wrote to ``instrument``, in order (message n is writes[n - 1])."""
    log = session / "wire" / f"{instrument}.wlog"
    if not log.is_file():
        return []
    return [e["w"] for e in WireLog.load(log) if "w" in e]


def target(baseline: Path, instrument: str, fault: str) -> int:
    """The message number (from 1) where ``fault`` strikes ``instrument``, from the
    fault-free run's wire log: the data query of the measurement (about a third into the
    command, so a training has recorded epochs first); instrument faults strike the message
    before it, so that the query itself reads the broken state."""
    sent = writes(baseline, instrument)
    if instrument == "switch":
        closes = [n for n, w in enumerate(sent, 1) if "close(" in w and "get" not in w]
        close = closes[len(closes) // 3]
        if fault == "drop":
            return close
        return next(n for n, w in enumerate(sent, 1) if n > close and w.startswith("print("))
    query = ":READ?" if instrument.startswith("smu") else "ACQ:DATA?"
    queries = [n for n, w in enumerate(sent, 1) if w.strip() == query]
    assert queries, f"no {query} in the fault-free {baseline.name} ({instrument})"
    n = queries[len(queries) // 3]
    return n - 1 if fault in ("stick_compliance", "break_device") else n


def fault_spec(fault: str, n: int) -> dict:
    if fault == "delay":
        return {"delay_s": DELAY_S}
    if fault == "break_device":
        return {"break_device_after": n, "break_device": BROKEN}
    return {f"{fault}_after": n}


# -- what a run leaves ---------------------------------------------------------------------
def only_session(sessions: Path) -> Path | None:
    dirs = sorted(p for p in sessions.iterdir() if p.is_dir()) if sessions.is_dir() else []
    return dirs[0] if len(dirs) == 1 else None


def iv_rows(session: Path) -> list[list[str]]:
    with open(session / "iv.csv", newline="") as f:
        return list(csv.reader(f))


def epochs(session: Path) -> list[tuple]:
    return [tuple(e[k] for k in EPOCH_KEYS) for e in Session.open(session).events("epoch")]


def printed(stdout: str) -> str:
    """stdout with session ids and paths left out (they differ from run to run)."""
    return SESSION_PATH.sub("<session>", stdout)


def data_verdict(fault: str, command: str, session: Path, stdout: str, reference: dict) -> str:
    """For a run that exited 0: "identical", "flagged" (iv: only rows flagged as compliance
    or overrange differ) or "WRONG: ..." against the fault-free run.

    A stuck compliance leaves the voltages as they were: there the readings must be flagged
    (iv.csv) or the compliance at least said (the other commands), not used in silence."""
    verdict = _compare(command, session, stdout, reference)
    if fault == "stick_compliance" and not verdict.startswith("WRONG"):
        if command == "iv" and verdict != "flagged":
            return "WRONG: the SMU reported compliance at every reading; iv.csv flags none"
        if command != "iv" and "compliance" not in printed(stdout).lower():
            return (f"WRONG: the SMU reported compliance at every reading; {command} used them "
                    "and said nothing")
    return verdict


def _compare(command: str, session: Path, stdout: str, reference: dict) -> str:
    if command == "iv":
        rows, ref = iv_rows(session), reference["iv_rows"]
        if rows == ref:
            return "identical"
        header = rows[0]
        flags = [i for i, h in enumerate(header) if h in ("compliance", "overrange")]
        if len(rows) != len(ref) or header[: len(ref[0])] != ref[0]:
            return f"WRONG: iv.csv has {len(rows) - 1} rows, columns {header}"
        bad = [j for j, (r, f) in enumerate(zip(rows[1:], ref[1:], strict=True), 1)
               if r[: len(f)] != f and not any(r[i] not in ("0", "") for i in flags)]
        if bad:
            j = bad[0]
            return (f"WRONG: {len(bad)} unflagged rows differ from the fault-free run, e.g. "
                    f"row {j}: {rows[j]} (fault-free {ref[j]})")
        return "flagged"
    if command == "train":
        got = json.loads(stdout)
        got.pop("session", None)
        if got != reference["summary"]:
            return f"WRONG: summary {got} (fault-free {reference['summary']})"
        if epochs(session) != reference["epochs"]:
            return "WRONG: the recorded epochs differ from the fault-free run's"
        return "identical"
    if printed(stdout) != reference["stdout"]:
        return f"WRONG: printed {printed(stdout)!r} (fault-free {reference['stdout']!r})"
    return "identical"


def run_command(command: str, station: Path, work: Path) -> dict:
    sessions = work / "sessions"
    try:
        proc = labctl(*COMMANDS[command], "--station", station, "--sessions-dir", sessions,
                      cwd=work, timeout=COMMAND_TIMEOUT_S)
        out = {"exit": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}
    except subprocess.TimeoutExpired as exc:
        out = {"exit": "hang", "stdout": str(exc.stdout or ""), "stderr": str(exc.stderr or "")}
    out["session"] = only_session(sessions)
    return out


def baseline(command: str, root: Path) -> dict:
    work = root / f"baseline-{command}"
    with served(station_text(), work) as bench:
        run = run_command(command, bench.station, work)
    assert run["exit"] == 0 and run["session"], f"fault-free {command}: {run}"
    session = run["session"]
    ref = {"session": session, "stdout": printed(run["stdout"])}
    if command == "iv":
        ref["iv_rows"] = iv_rows(session)
    if command == "train":
        ref["summary"] = {k: v for k, v in json.loads(run["stdout"]).items() if k != "session"}
        ref["epochs"] = epochs(session)
    return ref


def run_case(case: tuple[str, str, str], ref: dict, root: Path) -> dict:
    fault, instrument, command = case
    work = root / case_id(case)
    n = None if fault == "delay" else target(ref["session"], instrument, fault)
    spec = fault_spec(fault, n)
    rec: dict = {"fault": fault, "instrument": instrument, "command": command, "spec": spec,
                 "message": n}
    with served(station_text({instrument: spec}), work) as bench:
        rec |= run_command(command, bench.station, work)
        rec["state"] = bench_state(bench.resources)
        session = rec["session"]
        rec["reached"] = n is None or len(writes(session, instrument)) >= n if session else None
        stop = Session.open(session).stop if session else None
        rec["stop"] = stop
        if rec["exit"] == 0 and session:
            rec["data"] = data_verdict(fault, command, session, rec["stdout"], ref)
        resumable = session is not None and Session.open(session).resumable
        if command == "train" and rec["exit"] != 0 and resumable:
            if fault in PERSISTENT:
                with served(station_text(), work / "repaired") as repaired:
                    rec["resume"] = resume(session, repaired.station, work)
                    rec["resume_state"] = bench_state(repaired.resources)
            else:
                rec["resume"] = resume(session, None, work)
                rec["resume_state"] = bench_state(bench.resources)
    rec["outcome"] = outcome(rec)
    return rec


def resume(session: Path, station: Path | None, work: Path) -> dict:
    extra = ("--station", station) if station else ()
    try:
        proc = labctl("train", "iris", "--resume", session, "--json", "--no-progress",
                      "--sessions-dir", session.parent, *extra, cwd=work,
                      timeout=COMMAND_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"exit": "hang", "stderr": ""}
    out = {"exit": proc.returncode, "stderr": proc.stderr[-2000:]}
    if proc.returncode == 0:
        out["summary"] = json.loads(proc.stdout)
        out["stop"] = Session.open(session).stop
    return out


def error_line(stderr: str) -> str:
    lines = [x for x in stderr.splitlines() if x.startswith(("labctl: error:", "labctl: failed:"))]
    return lines[-1] if lines else ""


def outcome(rec: dict) -> str:
    """One line for the table."""
    if rec["exit"] == 0:
        text = f"exit 0, data {rec.get('data', '?')}"
    elif rec["exit"] == 2 and error_line(rec["stderr"]):
        text = "exit 2: " + error_line(rec["stderr"]).removeprefix("labctl: error: ")[:110]
    else:
        text = f"exit {rec['exit']}: {rec['stderr'].strip()[-160:]!r}"
    if "Traceback" in rec["stderr"]:
        text += " [TRACEBACK]"
    if rec["session"] is None:
        text += " [NO SESSION]"
    elif rec["stop"] is None:
        text += " [NO STOP DOCUMENT]"
    elif not rec["stop"].get("labctl_shutdown", {}).get("confirmed"):
        text += " [shutdown not confirmed]"
    if unsafe(rec["state"]):
        text += f" [UNSAFE: {'; '.join(unsafe(rec['state']))}]"
    if "resume" in rec:
        r = rec["resume"]
        text += "; resume ok" if r["exit"] == 0 else f"; RESUME exit {r['exit']}"
    return text


# -- the matrix ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("faults")
    with ThreadPoolExecutor(max_workers=2) as pool:
        refs = dict(zip(COMMANDS, pool.map(lambda c: baseline(c, root), COMMANDS),
                        strict=True))
        # The long cases (trainings) first, so that the two workers end together.
        order = sorted(CASES, key=lambda c: c[2] != "train")
        futures = {case_id(c): pool.submit(run_case, c, refs[c[2]], root) for c in order}
        records = {k: f.result() for k, f in futures.items()}
    table = [{k: rec[k] for k in ("fault", "instrument", "command", "spec", "outcome")}
             | {"exit": rec["exit"], "resume_exit": rec.get("resume", {}).get("exit")}
             for rec in (records[case_id(c)] for c in CASES)]
    width = max(len(f"{r['fault']} @ {r['instrument']}") for r in table)
    print("\nfault x command outcomes:")
    for r in table:
        print(f"  {r['fault'] + ' @ ' + r['instrument']:<{width}}  {r['command']:<8} "
              f"{r['outcome']}")
    if os.environ.get("LABCTL_FAULT_TABLE"):
        Path(os.environ["LABCTL_FAULT_TABLE"]).write_text(json.dumps(table, indent=2) + "\n")
    return records


def names_the_culprit(rec: dict) -> bool:
    """The error names the faulty instrument (a broken device: its pair will do)."""
    line = error_line(rec["stderr"])
    names = [rec["instrument"]]
    if rec["fault"] == "break_device":
        names += [f"pair {PAIR}", "smu_b"]
    return any(name in line for name in names)


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_fault_ends_cleanly(matrix, case):
    rec = matrix[case_id(case)]
    where = f"{case_id(case)} ({rec['spec']}): {rec['outcome']}\n{rec['stderr'][-3000:]}"
    # 0: success; 1: ran to its end, result not good (flagged, not tuned), named; 2: error.
    assert rec["exit"] in (0, 1, 2), where
    assert "Traceback" not in rec["stderr"], where
    if rec["exit"] in (1, 2):
        assert error_line(rec["stderr"]), where
        assert names_the_culprit(rec), f"the error does not name {rec['instrument']}: {where}"
    else:
        assert rec["data"] in ("identical", "flagged"), where
    assert rec["session"] is not None, f"no session directory: {where}"
    assert rec["reached"], f"the command never sent message {rec['message']}: {where}"
    stop = rec["stop"]
    assert stop is not None, f"no stop document: {where}"
    assert stop["exit_status"] == ("success" if rec["exit"] == 0 else "fail"), where
    assert "labctl_shutdown" in stop, where
    assert not unsafe(rec["state"]), f"{unsafe(rec['state'])}: {where}"


@pytest.mark.parametrize("case", [c for c in CASES if c[2] == "train"],
                         ids=[case_id(c) for c in CASES if c[2] == "train"])
def test_failed_training_resumes_to_the_end(matrix, case):
    rec = matrix[case_id(case)]
    if rec["exit"] == 0:
        assert rec.get("data") == "identical", rec["outcome"]
        return  # nothing to resume: it completed, with the fault-free run's results
    assert "resume" in rec, f"not resumable: {rec['outcome']} {rec['stop']}"
    r = rec["resume"]
    assert r["exit"] == 0, f"{rec['outcome']}\n{r['stderr']}"
    assert r["summary"]["folds"] == FOLDS, r["summary"]
    assert r["summary"]["session"] == rec["session"].name
    assert r["stop"]["exit_status"] == "success", r["stop"]
    assert not unsafe(rec["resume_state"]), unsafe(rec["resume_state"])
