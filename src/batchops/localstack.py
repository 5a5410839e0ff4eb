"""The local Airflow stack (`airflow standalone`: SQLite metadata, LocalExecutor) started, watched and stopped
by pid: scripts/run_local_stack.sh start|stop|status|run.

`start` checks every port the stack binds before starting it, starts `airflow standalone` in a session of
its own, and returns only when the UI answers and every log server has bound its port; a component that
dies or cannot bind is an error with the log's tail, never "ready". `stop` ends every process of that
session (the scheduler, the triggerer, the DAG processor, the api-server and each LocalExecutor worker and
task, which Airflow moves to process groups of their own but not to another session) and waits until none
is left.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

READY_SECONDS = 300.0
STOP_SECONDS = 60.0


@dataclass(frozen=True)
class Port:
    variable: str  # what a user sets
    airflow_setting: str  # the Airflow setting it becomes
    default: int
    serves: str


PORTS = (
    Port("AIRFLOW_PORT", "AIRFLOW__API__PORT", 8080, "the api-server (UI and REST)"),
    Port("AIRFLOW_WORKER_LOG_PORT", "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT", 8793,
         "the log server of the LocalExecutor's workers (task logs in the UI)"),
    Port("AIRFLOW_TRIGGER_LOG_PORT", "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT", 8794,
         "the triggerer's log server (deferred task logs)"),
)


class StackError(Exception):
    """The stack cannot be started, found or stopped as asked; the message says what to do."""


def chosen_ports(env: dict[str, str]) -> dict[str, int]:
    """Port per variable: the user's variable, else the Airflow setting already exported, else the default.
    Two components on one port is refused (AIRFLOW_PORT=8793 used to collide with the worker log server)."""
    ports = {}
    for port in PORTS:
        text = env.get(port.variable) or env.get(port.airflow_setting) or str(port.default)
        if not text.isdigit() or not 1 <= int(text) <= 65535:
            raise StackError(f"{port.variable}={text!r} is not a port number (1-65535)")
        ports[port.variable] = int(text)
    taken: dict[int, str] = {}
    for port in PORTS:
        number = ports[port.variable]
        if number in taken:
            raise StackError(f"{port.variable} and {taken[number]} are both {number}: {port.serves} and "
                             f"{next(p.serves for p in PORTS if p.variable == taken[number])} need a port each; "
                             f"set one of them to another port")
        taken[number] = port.variable
    return ports


def port_in_use(number: int) -> bool:
    """Whether binding the port as the servers do (all addresses) would fail."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", number))
        except OSError:
            return True
    return False


def port_answers(number: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(("127.0.0.1", number)) == 0


def session_members(session: int) -> list[int]:
    """Every live process of a session (from /proc): the stack's whole process tree, whatever groups Airflow
    moved its task processes to."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after the command name, which may hold spaces
        if int(fields[3]) == session and fields[0] != "Z":
            members.append(int(entry.name))
    return sorted(members)


class LocalStack:
    def __init__(self, home: Path, env: dict[str, str]):
        self.home = home  # AIRFLOW_HOME
        self.env = env
        self.state_file = home / "local_stack.json"
        self.log_file = home / "local_stack.log"

    # ------------------------------------------------------------ state
    def state(self) -> dict | None:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def running(self) -> list[int]:
        state = self.state()
        return session_members(state["session"]) if state else []

    def password(self) -> str | None:
        try:
            return json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text()).get("admin")
        except (OSError, json.JSONDecodeError):
            return None

    # ------------------------------------------------------------ start
    def start(self, emit=print) -> dict:
        if self.running():
            state = self.state()
            raise StackError(f"the local stack is already running (session {state['session']}, "
                             f"http://localhost:{state['ports']['AIRFLOW_PORT']}); "
                             "stop it first: bash scripts/run_local_stack.sh stop")
        ports = chosen_ports(self.env)
        busy = [p for p in PORTS if port_in_use(ports[p.variable])]
        if busy:
            raise StackError("; ".join(f"port {ports[p.variable]} ({p.variable}, {p.serves}) is already in use"
                                       for p in busy)
                             + ". Stop what holds it (ss -ltnp shows it), or pick free ports, e.g. "
                             + " ".join(f"{p.variable}={ports[p.variable] + 1}" for p in busy))
        env = {**self.env, **{p.airflow_setting: str(ports[p.variable]) for p in PORTS},
               "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{ports['AIRFLOW_PORT']}/execution/"}
        self.home.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("w") as log:
            process = subprocess.Popen(["airflow", "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        state = {"session": process.pid, "ports": ports, "log": str(self.log_file), "started_at": time.time()}
        self.state_file.write_text(json.dumps(state, indent=2))
        emit(f"starting airflow standalone (session {process.pid}); log: {self.log_file}")
        try:
            self._wait_ready(process, ports)
        except (StackError, KeyboardInterrupt):  # Ctrl-C or SIGTERM while starting stops what was started
            self.stop(emit=lambda line: None)
            raise
        emit(f"Airflow is ready: http://localhost:{ports['AIRFLOW_PORT']} (user admin, password "
             f"{self.password() or 'in ' + str(self.home / 'simple_auth_manager_passwords.json.generated')}); "
             f"ports {', '.join(f'{v}={n}' for v, n in ports.items())}")
        emit("stop it with: bash scripts/run_local_stack.sh stop")
        return state

    def _wait_ready(self, process: subprocess.Popen, ports: dict[str, int]) -> None:
        deadline = time.monotonic() + READY_SECONDS
        waiting = [p for p in PORTS]
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise StackError(f"airflow standalone exited with {process.returncode} while starting; "
                                 f"log tail:\n{self._log_tail()}")
            bind_error = next((line for line in self._log_tail(200).splitlines()
                               if "Address already in use" in line or "error while attempting to bind" in line), None)
            if bind_error:
                raise StackError(f"a component could not bind its port ({bind_error.strip()}); the stack was stopped. "
                                 "Pick free ports (AIRFLOW_PORT, AIRFLOW_WORKER_LOG_PORT, AIRFLOW_TRIGGER_LOG_PORT)")
            waiting = [p for p in waiting if not self._serves(p, ports[p.variable])]
            if not waiting:
                return
            time.sleep(2)
        raise StackError(f"not ready within {READY_SECONDS:.0f}s: "
                         + ", ".join(f"{p.serves} on port {ports[p.variable]}" for p in waiting)
                         + f" did not answer; the stack was stopped. Log tail:\n{self._log_tail()}")

    @staticmethod
    def _serves(port: Port, number: int) -> bool:
        if port.variable != "AIRFLOW_PORT":
            return port_answers(number)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{number}/api/v2/monitor/health", timeout=5) as answer:
                return answer.status == 200 and "metadatabase" in json.loads(answer.read() or b"{}")
        except (OSError, urllib.error.URLError, json.JSONDecodeError, ValueError):
            return False

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # ------------------------------------------------------------ stop
    def stop(self, emit=print) -> int:
        """Stop every process of the stack's session; returns how many there were."""
        state = self.state()
        if state is None:
            emit("the local stack is not running (no airflow_home/local_stack.json)")
            return 0
        members = session_members(state["session"])
        for pid in members:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        while session_members(state["session"]) and time.monotonic() < deadline:
            time.sleep(0.5)
        stubborn = session_members(state["session"])
        for pid in stubborn:
            _signal(pid, signal.SIGKILL)
        time.sleep(0.5)
        left = session_members(state["session"])
        if left:
            raise StackError(f"processes {left} of the stack's session {state['session']} are still alive after "
                             "SIGKILL; check them with ps -o pid,stat,cmd -p " + ",".join(map(str, left)))
        self.state_file.unlink(missing_ok=True)
        emit(f"stopped the local stack: {len(members)} process(es) of session {state['session']} ended"
             + (f", {len(stubborn)} of them only by SIGKILL" if stubborn else ""))
        return len(members)

    # ------------------------------------------------------------ status
    def status(self, emit=print) -> bool:
        state = self.state()
        members = self.running()
        if not members:
            emit("the local stack is not running" + (" (a stale local_stack.json was left; start cleans it)"
                                                       if state else ""))
            return False
        emit(f"running: {len(members)} process(es) in session {state['session']}, log {state['log']}")
        for port in PORTS:
            number = state["ports"][port.variable]
            emit(f"  {port.variable}={number}: {port.serves}: "
                 f"{'answers' if self._serves(port, number) else 'NOT answering'}")
        return True


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run_local_stack.sh", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", default="run", choices=("start", "stop", "status", "run"),
                        help="start in the background, stop, status, or run in the foreground until Ctrl-C "
                             "(the default)")
    args = parser.parse_args(argv)
    home = Path(os.environ.get("AIRFLOW_HOME") or Path.cwd() / "airflow_home")
    stack = LocalStack(home, dict(os.environ))
    if args.command in ("start", "run"):
        # SIGTERM while starting, as after, must stop what was started, not leave it running without the script
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        if args.command == "stop":
            stack.stop()
        elif args.command == "status":
            return 0 if stack.status() else 3
        else:
            stack.start()
            if args.command == "run":
                return _follow(stack)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted while starting: the stack was stopped", file=sys.stderr)
        return 0 if args.command == "run" else 130
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _follow(stack: LocalStack) -> int:
    """Foreground: print the log as it grows; Ctrl-C or SIGTERM stops the whole stack."""
    try:
        with stack.log_file.open() as log:
            log.seek(0, os.SEEK_END)
            while stack.running():
                line = log.readline()
                if line:
                    sys.stdout.write(line)
                    sys.stdout.flush()
                else:
                    time.sleep(0.5)
        print("error: the stack stopped by itself; see " + str(stack.log_file), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        stack.stop()
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
