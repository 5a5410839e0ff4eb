"""scripts/run_local_stack.sh start|stop|status|run (batchops.localstack): ports checked before start, ready only
when every port answers, and stop (or SIGTERM to the foreground run) leaves no process behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airflow_stack import free_port, shell_environment
from batchops.localstack import PORTS, LocalStack, StackError, chosen_ports, session_members

from conftest import REPO


def test_two_components_on_one_port_are_refused(bad_input):
    with pytest.raises(StackError, match="AIRFLOW_WORKER_LOG_PORT and AIRFLOW_PORT are both 8793") as error:
        chosen_ports({"AIRFLOW_PORT": "8793"})
    bad_input.record("conf", "AIRFLOW_PORT=8793 (the worker log server's default port)", error.value,
                     kept="nothing started")
    with pytest.raises(StackError, match="'80a' is not a port number"):
        chosen_ports({"AIRFLOW_TRIGGER_LOG_PORT": "80a"})
    assert chosen_ports({}) == {"AIRFLOW_PORT": 8080, "AIRFLOW_WORKER_LOG_PORT": 8793, "AIRFLOW_TRIGGER_LOG_PORT": 8794}


def stack_env(home: Path) -> dict[str, str]:
    env = shell_environment()
    env.update({"BATCHOPS_HOME": str(home), "AIRFLOW_HOME": str(home / "airflow_home"),
                "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"), "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}",
                "AIRFLOW_PORT": str(free_port()), "AIRFLOW_WORKER_LOG_PORT": str(free_port()),
                "AIRFLOW_TRIGGER_LOG_PORT": str(free_port())})
    for folder in ("configs", "pipelines", "sql"):
        (home / "include").mkdir(parents=True, exist_ok=True)
        if not (home / "include" / folder).exists():
            (home / "include" / folder).symlink_to(REPO / "include" / folder)
    return env


def command(env: dict[str, str], verb: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "batchops.localstack", verb], env=env, capture_output=True,
                          text=True, timeout=400)


def test_a_port_in_use_is_refused_before_anything_starts(tmp_path, bad_input):
    env = stack_env(tmp_path)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", int(env["AIRFLOW_TRIGGER_LOG_PORT"])))
        holder.listen()
        done = command(env, "start")
    assert done.returncode == 1
    assert f"port {env['AIRFLOW_TRIGGER_LOG_PORT']} (AIRFLOW_TRIGGER_LOG_PORT" in done.stderr and "in use" in done.stderr
    assert not (tmp_path / "airflow_home" / "local_stack.json").exists()
    bad_input.record("conf", "run_local_stack.sh start with the triggerer's log port taken", done.stderr.strip(),
                     kept="nothing started", home=tmp_path)


@pytest.mark.e2e
def test_start_status_stop_leaves_no_process_behind(tmp_path):
    env = stack_env(tmp_path)
    started = command(env, "start")
    stack = LocalStack(tmp_path / "airflow_home", env)
    try:
        assert started.returncode == 0, started.stderr + stack._log_tail()
        assert f"Airflow is ready: http://localhost:{env['AIRFLOW_PORT']}" in started.stdout
        session = stack.state()["session"]
        members = session_members(session)
        assert len(members) >= 4  # standalone, api-server, scheduler, dag-processor, triggerer, workers
        status = command(env, "status")
        assert status.returncode == 0 and status.stdout.count(": answers") == 3, status.stdout
        again = command(env, "start")
        assert again.returncode == 1 and "already running" in again.stderr
    finally:
        stopped = command(env, "stop")
    assert stopped.returncode == 0 and "process(es) of session" in stopped.stdout, stopped.stderr
    assert session_members(session) == []  # none left, not even a LocalExecutor worker
    assert command(env, "status").returncode == 3
    for variable in ("AIRFLOW_PORT", "AIRFLOW_WORKER_LOG_PORT", "AIRFLOW_TRIGGER_LOG_PORT"):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", int(env[variable]))) != 0, variable


@pytest.mark.e2e
def test_sigterm_to_the_foreground_run_stops_every_process(tmp_path):
    env = stack_env(tmp_path)
    foreground = subprocess.Popen([sys.executable, "-m", "batchops.localstack", "run"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stack = LocalStack(tmp_path / "airflow_home", env)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (stack.state() and
                                                   stack._serves(PORTS[0], int(env["AIRFLOW_PORT"]))):
            assert foreground.poll() is None, foreground.stderr.read()
            time.sleep(2)
        session = stack.state()["session"]
        assert session_members(session)
        foreground.send_signal(signal.SIGTERM)  # what a service manager or `kill` sends to the script
        assert foreground.wait(120) == 0
        assert session_members(session) == []
    finally:  # a failure must not leave a stack running for the rest of the suite
        if stack.running():
            stack.stop(emit=lambda line: None)


def test_the_embedded_metadata_database_lets_a_writer_wait_for_the_lock(tmp_path):
    """A CLI write (`airflow backfill create`) while the scheduler writes must wait for SQLite's one writer, not
    fail after sqlite3's default 5 s, nor at once when it read first (plugins/airflow_local_settings.py, see
    tests/test_metadata_db.py); a metadata database the user chose is kept as it is."""
    probe = ("from airflow import settings; settings.configure_orm(); "
             "from sqlalchemy import event; from sqlalchemy.engine import Engine; from batchops import metadata_db; "
             "print(settings.engine.url.database, settings.engine.dialect.create_connect_args(settings.engine.url)[1]"
             ".get('timeout'), event.contains(Engine, 'savepoint', metadata_db.begin_immediate_before_savepoint))")
    env = shell_environment()
    env["AIRFLOW_HOME"] = str(tmp_path)

    def engine_of(extra: dict[str, str]) -> str:
        done = subprocess.run(["bash", "-c", f"source scripts/airflow_env.sh && python -c \"{probe}\""], cwd=REPO,
                              env={**env, **extra}, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.strip().splitlines()[-1]

    assert engine_of({}) == f"{tmp_path / 'airflow.db'} 30.0 True"
    chosen = tmp_path / "mine.db"
    assert engine_of({"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{chosen}"}) == f"{chosen} None True"
