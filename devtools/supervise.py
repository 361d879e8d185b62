"""Run the Procfile under supervisord, which restarts a process that exits or dies.

``python -m devtools.supervise [--concurrency gpu=N]`` (what ``make run`` does) writes a
supervisord configuration for the Procfile into the run directory (``CUTOUT_RUN_DIR``, default
``.run``) and becomes supervisord in the foreground: every process's output goes to the
terminal, Ctrl-C (or SIGTERM) stops them all, each with a warm shutdown first. Unlike honcho,
one process that exits does not stop the others: supervisord starts it again.

Instances are numbered as honcho numbers them: the process of type t (its line in the
Procfile, from 0) and instance i gets ``PORT=5000 + 100*t + i``, so the Procfile's
``$((PORT % 100))`` is i. ``supervisorctl -c .run/supervisord.conf status`` shows each
process's state, pid and uptime while it runs.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")  # honcho's Procfile grammar

# Seconds a process has for its warm shutdown before it is killed: a Celery worker finishes
# (and acknowledges) the batch in hand; the others stop at once.
STOP_WAIT = {"gpu": 60, "io": 60}
# A process that dies sooner than this after its start did not start; supervisord retries it
# START_RETRIES times with a growing delay, then leaves it FATAL (a misconfiguration, not a crash).
START_SECONDS = 1
START_RETRIES = 10


@dataclass(frozen=True)
class Program:
    name: str
    kind: str
    command: str
    port: int


def read_procfile(path: Path) -> list[tuple[str, str]]:
    """The (type, command) lines of a Procfile, in order; comments and blank lines skipped."""
    entries = []
    for line in path.read_text().splitlines():
        match = _LINE.match(line.strip())
        if match and not line.lstrip().startswith("#"):
            entries.append((match.group(1), match.group(2)))
    return entries


def programs(entries: list[tuple[str, str]], concurrency: dict[str, int]) -> list[Program]:
    """One program per instance; a type with a concurrency other than 1 is named ``type<i>``."""
    unknown = set(concurrency) - {kind for kind, _ in entries}
    if unknown:
        raise ValueError(f"no such process type in the Procfile: {', '.join(sorted(unknown))}")
    out = []
    for index, (kind, command) in enumerate(entries):
        count = concurrency.get(kind, 1)
        if count < 0:
            raise ValueError(f"{kind}: the number of processes cannot be negative")
        for instance in range(count):
            name = kind if kind not in concurrency else f"{kind}{instance}"
            out.append(Program(name, kind, command, 5000 + 100 * index + instance))
    return out


def _escape(value: str) -> str:
    # supervisord expands %(name)s in its values; a literal % is written %%.
    return value.replace("%", "%%")


def config(progs: list[Program], run_dir: Path, workdir: Path) -> str:
    """supervisord's configuration for these programs: logs to stdout, restart on any exit."""
    sections = [
        "[supervisord]",
        "nodaemon=true",
        # In the foreground supervisord also writes its own log (spawned, exited, ...) to stdout.
        "logfile=/dev/null",
        "logfile_maxbytes=0",
        f"pidfile={run_dir / 'supervisord.pid'}",
        f"childlogdir={run_dir}",
        "",
        "[unix_http_server]",
        f"file={run_dir / 'supervisor.sock'}",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{run_dir / 'supervisor.sock'}",
    ]
    for prog in progs:
        command = "/bin/sh -c " + shlex.quote(prog.command)
        sections += [
            "",
            f"[program:{prog.name}]",
            f"command={_escape(command)}",
            f"directory={_escape(str(workdir))}",
            f'environment=PORT="{prog.port}"',
            "autostart=true",
            "autorestart=true",
            f"startsecs={START_SECONDS}",
            f"startretries={START_RETRIES}",
            "stopsignal=TERM",
            f"stopwaitsecs={STOP_WAIT.get(prog.kind, 10)}",
            # The whole process group: gunicorn's and Celery's children go with their parent.
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            "stdout_logfile=/dev/stdout",
            "stdout_logfile_maxbytes=0",
        ]
    return "\n".join(sections) + "\n"


def running(run_dir: Path, timeout: float = 30) -> dict[str, int]:
    """The supervised programs that are RUNNING now and their pids (``supervisorctl status``);
    empty when supervisord does not answer."""
    conf = str(run_dir / "supervisord.conf")
    ctl = [sys.executable, "-m", "supervisor.supervisorctl", "-c", conf, "status"]
    try:
        out = subprocess.run(ctl, capture_output=True, text=True, timeout=timeout).stdout
    except subprocess.TimeoutExpired:
        return {}
    found = {}
    for line in out.splitlines():  # "gpu0   RUNNING   pid 1234, uptime 0:00:09"
        parts = line.split()
        if len(parts) >= 4 and parts[1] == "RUNNING" and parts[2] == "pid":
            found[parts[0]] = int(parts[3].rstrip(","))
    return found


def _concurrency(values: list[str]) -> dict[str, int]:
    out = {}
    for value in values:
        kind, sep, count = value.partition("=")
        if not sep or not count.isdigit():
            raise ValueError(f"--concurrency wants type=N, not {value!r}")
        out[kind] = int(count)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.supervise")
    parser.add_argument("--procfile", type=Path, default=ROOT / "Procfile")
    parser.add_argument(
        "--concurrency", "-c", action="append", default=[], help="type=N, e.g. gpu=2"
    )
    parser.add_argument("--check", action="store_true", help="print the configuration only")
    args = parser.parse_args(argv)
    run_dir = Path(os.environ.get("CUTOUT_RUN_DIR") or ".run").resolve()
    os.environ["CUTOUT_RUN_DIR"] = str(run_dir)  # the Procfile's commands read it too
    try:
        progs = programs(read_procfile(args.procfile), _concurrency(args.concurrency))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = config(progs, run_dir, Path.cwd())
    if args.check:
        print(text, end="")
        return 0
    run_dir.mkdir(parents=True, exist_ok=True)
    conf = run_dir / "supervisord.conf"
    conf.write_text(text)
    sys.stdout.flush()
    supervisord = [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)]
    os.execv(sys.executable, supervisord)  # never returns


if __name__ == "__main__":
    sys.exit(main())
