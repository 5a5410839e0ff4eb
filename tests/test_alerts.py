"""Alerts through Airflow's notifiers: the outcomes a provider's `alerts.on` lists reach its mail (the SMTP
provider's SmtpNotifier, against an SMTP server the test starts) and its webhook (a local HTTP receiver), one
message per run with the reason and a link to the run tab; other outcomes send nothing."""

from __future__ import annotations

import email
import json
import socketserver
import threading
from datetime import date
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import yaml
from pydantic import ValidationError

from batchops.alerts import describe_run, matching_events
from batchops.config.provider import AlertSettings

from conftest import make_drop
from dags_test_stack import Stack


class Mailbox(socketserver.ThreadingTCPServer):
    """The few SMTP commands smtplib sends, each message kept (enough to receive mail, not a mail server)."""

    allow_reuse_address = True
    daemon_threads = True

    def __init__(self):
        self.messages: list[email.message.Message] = []
        super().__init__(("127.0.0.1", 0), self.Handler)

    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            self.wfile.write(b"220 test mailbox\r\n")
            while line := self.rfile.readline():
                command = line.decode(errors="replace").strip().upper()
                if command.startswith(("EHLO", "HELO")):
                    self.wfile.write(b"250 test mailbox\r\n")
                elif command == "DATA":
                    self.wfile.write(b"354 go ahead\r\n")
                    body = b""
                    while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                        body += chunk
                    self.server.messages.append(email.message_from_bytes(body))
                    self.wfile.write(b"250 queued\r\n")
                elif command == "QUIT":
                    self.wfile.write(b"221 bye\r\n")
                    return
                else:  # MAIL FROM, RCPT TO, RSET, NOOP
                    self.wfile.write(b"250 ok\r\n")


class Receiver(HTTPServer):
    def __init__(self):
        self.posts: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                receiver.posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)


def serve(server):
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_the_run_s_events_that_alerts_on_lists(tmp_path):
    assert matching_events("BLOCKED", None, ["BLOCKED", "FAILED"]) == ["BLOCKED"]
    assert matching_events("COMPLETE", "warn", ["FAILED", "drift_warn"]) == ["drift_warn"]
    assert matching_events("COMPLETE", "ok", ["FAILED", "drift_warn"]) == []
    run = tmp_path / "run"
    run.mkdir()
    assert describe_run(run, "p", "p__m", "r1", "2026-02-01", ["FAILED"], "http://x", failed=True).reason.startswith(
        "the run ended without a summary")
    (run / "run_summary.md").write_text("# Run summary: NO DROP\n\n**the drop did not arrive**\n")
    alert = describe_run(run, "p", "p__m", "r1", "2026-02-01", ["NO DROP"], "http://ui:8080/", failed=False)
    assert alert.events == ["NO DROP"] and alert.url == "http://ui:8080/batchops/runs/p__m/r1"
    assert "the drop did not arrive" in alert.text and alert.payload()["batchops"]["outcome"] == "NO DROP"
    assert describe_run(run, "p", "p__m", "r1", "2026-02-01", ["FAILED"], "http://x", failed=False) is None


@pytest.mark.parametrize(("alerts", "message"), [
    ({"on": ["FAILED"]}, "on lists ['FAILED'] but no channel is set"),
    ({"on": ["LATE"]}, "on.0"),
    ({"on": ["FAILED"], "webhook": {"url": "ftp://host/x"}}, "webhook.url"),
    ({"on": ["FAILED"], "email": {"to": ["not-an-address"]}}, "email.to.0"),
])
def test_a_bad_alerts_setting_names_the_field(alerts, message, bad_input):
    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("]", r"\]")) as error:
        AlertSettings(**alerts)
    bad_input.record("config", f"alerts: {alerts}", str(error.value).splitlines()[:3], kept="nothing loaded")


@pytest.mark.e2e
def test_a_blocked_run_alerts_by_mail_and_webhook_and_a_complete_one_does_not(tmp_path):
    mailbox, receiver = serve(Mailbox()), serve(Receiver())
    try:
        stack = Stack(tmp_path)
        config_file = stack.settings.config_dir / "provider_a.yaml"
        config = yaml.safe_load(config_file.read_text())
        config["alerts"] = {"on": ["BLOCKED", "FAILED"],
                            "email": {"to": ["ops@example.com"], "from_email": "batchops@example.com"},
                            "webhook": {"url": f"http://127.0.0.1:{receiver.server_address[1]}/hook"}}
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        stack.env["AIRFLOW_CONN_SMTP_DEFAULT"] = (f"smtp://127.0.0.1:{mailbox.server_address[1]}"
                                                   "?disable_tls=true&disable_ssl=true")
        stack.env["AIRFLOW__API__BASE_URL"] = "http://airflow.example:8080"
        dag_id = "provider_a__propensity_model"
        make_drop(stack.settings, "provider_a", date(2026, 2, 1), customers=300)
        code, output, _ = stack.dags_test(dag_id, "2026-02-01")
        assert code == 0, output[-3000:]
        assert mailbox.messages == [] and receiver.posts == []  # COMPLETE is not in alerts.on
        make_drop(stack.settings, "provider_a", date(2026, 2, 2), customers=300, defect="duplicate_keys")
        code, output, run_dir = stack.dags_test(dag_id, "2026-02-02")
        assert len(mailbox.messages) == 1 and len(receiver.posts) == 1, output[-3000:]
        mail, post = mailbox.messages[0], receiver.posts[0]
        assert mail["Subject"] == "[BatchOps] provider_a propensity_model 2026-02-02: BLOCKED"
        assert mail["To"] == "ops@example.com"
        body = mail.get_payload(0).get_payload(decode=True).decode() if mail.is_multipart() else mail.get_payload()
        run_id = json.loads((run_dir / "plan.json").read_text())["run_id"]
        assert "data quality failed" in body and "http://airflow.example:8080/batchops/runs/" in body
        assert post["batchops"]["events"] == ["BLOCKED"] and post["batchops"]["run_id"] == run_id
        assert post["batchops"]["url"].startswith(f"http://airflow.example:8080/batchops/runs/{dag_id}/")
        assert "data quality failed" in post["text"]
        events = [json.loads(line) for line in (run_dir / "logs.jsonl").read_text().splitlines()]
        assert {(e["event"], e.get("channel")) for e in events if e["stage"] == "alerts"} == {
            ("alert_sent", "email"), ("alert_sent", "webhook")}
    finally:
        mailbox.shutdown()
        receiver.shutdown()
