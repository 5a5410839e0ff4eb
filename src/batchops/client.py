"""The seed tool's verbs against a running deployment, over Airflow's REST API:

    python agent.py run --provider provider_a --pipeline propensity_model --snapshot-date 2026-02-01
    python agent.py resume --run-id <run id> [--dag-id <dag id>]

`run` triggers a run and follows it, printing each task's state as it changes and the artifacts
folder at the end; `resume` clears the failed tasks of a run and follows it. Credentials come from
BATCHOPS_AIRFLOW_URL (default http://localhost:8080), BATCHOPS_AIRFLOW_USER and
BATCHOPS_AIRFLOW_PASSWORD.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from batchops.artifacts import safe_run_id
from batchops.errors import BatchOpsError, RunParameterError
from batchops.runcontext import parse_snapshot_date

FINISHED = {"success", "failed"}


class ClientError(BatchOpsError):
    """The deployment could not be reached or refused the request; the message says what to fix."""


class AirflowClient:
    def __init__(self, url: str, user: str, password: str, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.user, self.password, self.timeout = user, password, timeout
        self._token: str | None = None

    def _call(self, method: str, path: str, body: dict | None = None, token: bool = True) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {self.token()}"
        request = urllib.request.Request(f"{self.url}{path}", method=method, headers=headers,
                                         data=json.dumps(body).encode() if body is not None else None)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:1000]
            raise _http_error(exc.code, method, path, detail) from exc
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ClientError(f"cannot reach Airflow at {self.url} ({reason}); check BATCHOPS_AIRFLOW_URL and that "
                              "the api-server is running") from exc

    def token(self) -> str:
        if self._token is None:
            try:
                answer = self._call("POST", "/auth/token", {"username": self.user, "password": self.password},
                                    token=False)
            except ClientError as exc:
                if "HTTP 401" in str(exc) or "HTTP 403" in str(exc):
                    raise ClientError(f"Airflow at {self.url} refused the credentials of user {self.user!r}; check "
                                      "BATCHOPS_AIRFLOW_USER and BATCHOPS_AIRFLOW_PASSWORD") from exc
                raise
            self._token = answer["access_token"]
        return self._token

    def dag(self, dag_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v2/dags/{_quote(dag_id)}")

    def batchops_dag_ids(self) -> list[str]:
        return sorted(d["dag_id"] for d in self._call("GET", "/api/v2/dags?tags=batchops&limit=1000")["dags"])

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        return self._call("POST", f"/api/v2/dags/{_quote(dag_id)}/dagRuns", {"logical_date": None, "conf": conf})[
            "dag_run_id"]

    def unpause(self, dag_id: str) -> None:
        self._call("PATCH", f"/api/v2/dags/{_quote(dag_id)}", {"is_paused": False})

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v2/dags/{_quote(dag_id)}/dagRuns/{_quote(run_id)}")

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        answer = self._call("GET", f"/api/v2/dags/{_quote(dag_id)}/dagRuns/{_quote(run_id)}/taskInstances")
        return {ti["task_id"]: ti["state"] for ti in answer["task_instances"]}

    def task_log_tail(self, dag_id: str, run_id: str, task_id: str, lines: int = 40) -> list[str]:
        """The last lines of a task's latest try, as the UI shows them."""
        instance = self._call("GET", f"/api/v2/dags/{_quote(dag_id)}/dagRuns/{_quote(run_id)}/taskInstances/"
                                     f"{_quote(task_id)}")
        answer = self._call("GET", f"/api/v2/dags/{_quote(dag_id)}/dagRuns/{_quote(run_id)}/taskInstances/"
                                   f"{_quote(task_id)}/logs/{max(1, int(instance.get('try_number') or 1))}"
                                   "?full_content=true")
        content = answer.get("content", [])
        texts = [entry.get("event", "") if isinstance(entry, dict) else str(entry) for entry in content]
        return [line for text in texts for line in str(text).splitlines()][-lines:]

    def dags_with_run(self, run_id: str) -> list[str]:
        """Every DAG that has a run of exactly this id (one query over all DAGs: '~')."""
        found, offset = [], 0
        while True:
            page = self._call("GET", f"/api/v2/dags/~/dagRuns?run_id_pattern={urllib.parse.quote(run_id, safe='')}"
                                     f"&limit=100&offset={offset}")
            runs = page.get("dag_runs", [])
            found += [r["dag_id"] for r in runs if r.get("dag_run_id") == run_id]
            offset += len(runs)
            if not runs or offset >= page.get("total_entries", 0):
                return found

    def clear_failed(self, dag_id: str, run_id: str) -> list[str]:
        answer = self._call("POST", f"/api/v2/dags/{_quote(dag_id)}/clearTaskInstances",
                            {"dag_run_id": run_id, "only_failed": True, "dry_run": False, "reset_dag_runs": True})
        return sorted(ti["task_id"] for ti in answer["task_instances"])


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _http_error(code: int, method: str, path: str, detail: str) -> ClientError:
    return ClientError(f"{method} {path}: HTTP {code}: {detail}")


def follow(client: AirflowClient, dag_id: str, run_id: str, emit: Callable[[str], None], poll_seconds: float = 2.0,
           timeout_seconds: float = 3600.0) -> str:
    """Print each task's state whenever it changes until the run finishes; returns the run's state."""
    seen: dict[str, str | None] = {}
    deadline = time.monotonic() + timeout_seconds
    while True:
        states = client.task_states(dag_id, run_id)
        for task, state in states.items():
            if seen.get(task, "(new)") != state:
                emit(f"{time.strftime('%H:%M:%S')}  {task:<15} {state or 'none'}")
        seen = states
        run_state = client.run(dag_id, run_id)["state"]
        if run_state in FINISHED:
            return run_state
        if time.monotonic() > deadline:
            raise ClientError(f"run {run_id} of {dag_id} did not finish within {timeout_seconds:.0f}s; still {run_state}")
        time.sleep(poll_seconds)


def _artifacts_line(dag_id: str, run_id: str) -> str:
    runs_dir = Path(os.environ.get("BATCHOPS_RUNS_DIR", "runs"))
    return f"artifacts: {runs_dir / dag_id / safe_run_id(run_id)}"


def command_run(client: AirflowClient, args, emit) -> int:
    snapshot = parse_snapshot_date(args.snapshot_date, "--snapshot-date").isoformat()
    dag_id = f"{args.provider}__{args.pipeline}"
    try:
        client.dag(dag_id)
    except ClientError as exc:
        if "HTTP 404" not in str(exc):
            raise
        known = client.batchops_dag_ids()
        raise ClientError(f"no DAG {dag_id} (provider {args.provider!r}, pipeline {args.pipeline!r}); "
                          f"known BatchOps DAGs: {', '.join(known) or 'none'}") from exc
    if args.unpause:
        client.unpause(dag_id)
    run_id = client.trigger(dag_id, {"snapshot_date": snapshot})
    emit(f"triggered {dag_id} run {run_id} for snapshot {snapshot}")
    return _finish(client, dag_id, run_id, emit, args.poll_seconds)


def command_resume(client: AirflowClient, args, emit) -> int:
    dag_id = args.dag_id or _find_dag_of_run(client, args.run_id)
    cleared = client.clear_failed(dag_id, args.run_id)
    if not cleared:
        emit(f"run {args.run_id} of {dag_id} has no failed tasks to clear (state: "
             f"{client.run(dag_id, args.run_id)['state']})")
        return 0
    emit(f"cleared {', '.join(cleared)} of {dag_id} run {args.run_id}")
    return _finish(client, dag_id, args.run_id, emit, args.poll_seconds)


def _find_dag_of_run(client: AirflowClient, run_id: str) -> str:
    """The one BatchOps DAG with a run of this id. Scheduled run ids (scheduled__<date>) are the same in every
    DAG scheduled that day, so a shared id is refused with the DAGs listed: resuming a guess would clear
    another provider's run."""
    owners = sorted(set(client.dags_with_run(run_id)) & set(client.batchops_dag_ids()))
    if len(owners) == 1:
        return owners[0]
    if owners:
        shown = ", ".join(owners[:20]) + (f" and {len(owners) - 20} more" if len(owners) > 20 else "")
        raise ClientError(f"run id {run_id!r} exists in {len(owners)} BatchOps DAGs ({shown}); say which one with "
                          f"--dag-id, e.g. python agent.py resume --run-id '{run_id}' --dag-id {owners[0]}")
    raise ClientError(f"no BatchOps DAG has a run {run_id!r}; check the id (airflow dags list-runs DAG_ID) "
                      "or pass --dag-id")


def failure_reason(client: AirflowClient, dag_id: str, run_id: str) -> str | None:
    """Why the run failed, where a person would look: run_summary.md's reason when the run folder is on this
    machine, else the error lines of the failed tasks' logs from the REST API."""
    summary = Path(os.environ.get("BATCHOPS_RUNS_DIR", "runs")) / dag_id / safe_run_id(run_id) / "run_summary.md"
    if summary.is_file():
        reason = next((line.strip("* ") for line in summary.read_text(errors="replace").splitlines()
                       if line.startswith("**")), None)
        if reason:
            return reason
    failed = [task for task, state in client.task_states(dag_id, run_id).items() if state == "failed"]
    reasons = []
    for task in failed:
        try:
            tail = client.task_log_tail(dag_id, run_id, task)
        except ClientError:
            continue
        errors = [line.strip() for line in tail if "Error" in line or "Exception" in line]
        if errors:
            reasons.append(f"{task}: {errors[-1][:500]}")
    return "; ".join(reasons) or (f"failed task(s): {', '.join(failed)}" if failed else None)


def _finish(client: AirflowClient, dag_id: str, run_id: str, emit, poll_seconds: float) -> int:
    state = follow(client, dag_id, run_id, emit, poll_seconds)
    emit(f"run {run_id}: {state}")
    if state != "success":
        reason = failure_reason(client, dag_id, run_id)
        if reason:
            emit(f"why: {reason}")
    emit(_artifacts_line(dag_id, run_id))
    if state != "success":
        emit(f"resume after fixing the cause: python agent.py resume --run-id '{run_id}' --dag-id {dag_id}")
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agent.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--poll-seconds", type=float, default=2.0)
    verbs = parser.add_subparsers(dest="verb", required=True)
    run = verbs.add_parser("run", help="trigger a provider's pipeline for a snapshot and follow it")
    run.add_argument("--provider", required=True)
    run.add_argument("--pipeline", required=True)
    run.add_argument("--snapshot-date", required=True)
    run.add_argument("--unpause", action="store_true", help="unpause the DAG first (new DAGs start paused)")
    resume = verbs.add_parser("resume", help="clear the failed tasks of a run and follow it")
    resume.add_argument("--run-id", required=True)
    resume.add_argument("--dag-id")
    return parser


def main(argv: list[str] | None = None, emit: Callable[[str], None] = print) -> int:
    args = build_parser().parse_args(argv)
    client = AirflowClient(os.environ.get("BATCHOPS_AIRFLOW_URL", "http://localhost:8080"),
                           os.environ.get("BATCHOPS_AIRFLOW_USER", "admin"),
                           os.environ.get("BATCHOPS_AIRFLOW_PASSWORD", ""))
    try:
        return command_run(client, args, emit) if args.verb == "run" else command_resume(client, args, emit)
    except (ClientError, RunParameterError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
