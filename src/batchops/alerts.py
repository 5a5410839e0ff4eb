"""Alerts: a run's outcome told to the people of its provider, through Airflow's notifier mechanism.

The summarize task of every DAG of a provider with `alerts.on` carries a RunAlertNotifier as its success and
failure callback (summarize runs last, whatever happened, and fails exactly when the run failed). The notifier
reads the run's own summary and drift verdict, and when they match `alerts.on` sends one message: by mail through
the SMTP provider's SmtpNotifier, and/or as a JSON POST to a webhook. A channel that fails is logged in the run's
logs.jsonl (alert_failed) and never fails the run.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow.sdk import BaseNotifier

from batchops.artifacts import run_dir_for
from batchops.config import ProviderConfig
from batchops.runindex import outcome_of_summary
from batchops.runlog import RunLogger


@dataclass(frozen=True)
class RunAlert:
    provider_id: str
    dag_id: str
    run_id: str
    snapshot_date: str
    outcome: str
    reason: str
    events: list[str]  # what matched alerts.on: the outcome and/or drift_warn / drift_block
    url: str

    @property
    def subject(self) -> str:
        return f"[BatchOps] {self.provider_id} {self.dag_id.split('__', 1)[-1]} {self.snapshot_date}: " + \
            ", ".join(self.events)

    @property
    def text(self) -> str:
        return (f"{self.subject}\n{self.reason or 'no reason recorded'}\nRun {self.run_id} of {self.dag_id}: "
                f"{self.url}")

    def payload(self) -> dict[str, Any]:
        return {"text": self.text, "batchops": {"provider": self.provider_id, "dag_id": self.dag_id,
                                                "run_id": self.run_id, "snapshot_date": self.snapshot_date,
                                                "outcome": self.outcome, "events": self.events,
                                                "reason": self.reason, "url": self.url}}

    def html(self) -> str:
        from markupsafe import escape

        return (f"<p><b>{escape(self.subject)}</b></p><p>{escape(self.reason or 'no reason recorded')}</p>"
                f'<p>Run {escape(self.run_id)} of {escape(self.dag_id)}: <a href="{escape(self.url)}">'
                "its BatchOps tab</a></p>")


def matching_events(outcome: str, drift_verdict: str | None, wanted: list[str]) -> list[str]:
    """Which of the run's events `alerts.on` asks for: its outcome, and drift_warn / drift_block."""
    events = [outcome] if outcome in wanted else []
    if drift_verdict in ("warn", "block") and f"drift_{drift_verdict}" in wanted:
        events.append(f"drift_{drift_verdict}")
    return events


def run_tab_url(base_url: str, dag_id: str, run_id: str) -> str:
    from batchops.ui.pages import run_url

    return base_url.rstrip("/") + run_url(dag_id, run_id)


def describe_run(run_dir: Path, provider_id: str, dag_id: str, run_id: str, snapshot_date: str, wanted: list[str],
                 base_url: str, failed: bool) -> RunAlert | None:
    """The alert of a finished run from its folder, or None when nothing it did is in `wanted`. A run whose
    summary is missing (summarize itself failed) counts as FAILED."""
    try:
        summary = (run_dir / "run_summary.md").read_text(errors="replace")
    except OSError:
        summary = None
    outcome, reason = outcome_of_summary(summary)
    if summary is None:
        outcome, reason = "FAILED", "the run ended without a summary (summarize failed); see its task log"
    elif failed and outcome == "COMPLETE":
        outcome = "FAILED"
    try:
        drift = json.loads((run_dir / "drift_report.json").read_text()).get("verdict")
    except (OSError, ValueError, AttributeError):
        drift = None
    events = matching_events(outcome, drift, wanted)
    if not events:
        return None
    return RunAlert(provider_id, dag_id, run_id, snapshot_date, outcome, reason, events,
                    run_tab_url(base_url, dag_id, run_id))


def post_webhook(url: str, payload: dict[str, Any], timeout: float) -> int:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "BatchOps-alerts"})
    with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - http(s) only, checked in config
        return answer.status


class RunAlertNotifier(BaseNotifier):
    """summarize's callback: one alert per run whose outcome or drift verdict is in the provider's alerts.on."""

    template_fields = ()

    def __init__(self, provider: ProviderConfig, dag_id: str, runs_dir: Path, failed: bool):
        super().__init__()
        self.provider = provider
        self.dag_id = dag_id
        self.runs_dir = runs_dir
        self.failed = failed

    def notify(self, context: dict[str, Any]) -> None:
        from airflow.configuration import conf

        settings = self.provider.alerts
        run_id = context["run_id"]
        run_dir = run_dir_for(self.runs_dir, self.dag_id, run_id)
        try:
            snapshot = context["ti"].xcom_pull(task_ids="plan", key="snapshot_date") or "?"
        except Exception:  # noqa: BLE001 - plan may have failed before pushing
            snapshot = "?"
        base_url = conf.get("api", "base_url", fallback="") or "http://localhost:8080"
        alert = describe_run(run_dir, self.provider.provider_id, self.dag_id, run_id, str(snapshot), settings.on,
                             base_url, self.failed)
        if alert is None:
            return
        log = RunLogger(run_dir / "logs.jsonl", "alerts")
        for channel, send in self._channels(alert, context):
            try:
                send()
                log.event("alert_sent", channel=channel, events=alert.events)
            except Exception as exc:  # noqa: BLE001 - an alert that cannot be sent must not fail the run
                log.event("alert_failed", level="ERROR", channel=channel, error=f"{type(exc).__name__}: {exc}")

    def _channels(self, alert: RunAlert, context: dict[str, Any]):
        settings = self.provider.alerts
        if settings.email is not None:
            email = settings.email

            def send_mail() -> None:
                from airflow.providers.smtp.notifications.smtp import SmtpNotifier

                SmtpNotifier(to=email.to, from_email=email.from_email, subject=alert.subject,
                             html_content=alert.html(), smtp_conn_id=email.smtp_conn_id).notify(context)

            yield "email", send_mail
        if settings.webhook is not None:
            hook = settings.webhook
            yield "webhook", lambda: post_webhook(hook.url, alert.payload(), hook.timeout_seconds)
