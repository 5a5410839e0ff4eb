"""Every BatchOps page rendered with hostile strings in every field: no tag, attribute or script of
the input survives as markup. Pure rendering, no Airflow."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markupsafe import escape

from batchops.ui.pages import (
    model_card,
    render_calendar,
    render_not_batchops,
    render_overview,
    render_run_page,
)

PAYLOADS = [
    'x"><script>alert(document.domain)</script>',
    "x' onmouseover='alert(1)",
    "<img src=x onerror=alert(2)>",
    "</pre><svg onload=alert(3)>",
    "javascript:alert(4)//",
    "{{ 7*7 }}{% raw %}",
]
# What our templates emit; anything else came from the input.
OUR_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "code", "div", "b", "table", "tr",
            "th", "td", "span", "img", "a", "pre", "ul", "li", "details", "summary", "strong", "em", "thead", "br",
            "tbody", "form", "label", "input", "select", "option", "button", "i", "svg", "line", "text", "polyline",
            "circle", "rect"}
OUR_ATTRIBUTES = {"class", "href", "src", "alt", "charset", "lang", "title", "method", "name", "value", "size",
                  "placeholder", "type", "min", "max", "style", "selected", "colspan", "width", "height", "viewbox",
                  "role", "x", "y", "x1", "x2", "y1", "y2", "cx", "cy", "r", "fill", "stroke", "stroke-width", "points",
                  "font-size", "text-anchor"}


class Markup(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def assert_inert(page: str, payload: str) -> None:
    parser = Markup()
    parser.feed(page)
    for tag, attributes in parser.tags:
        assert tag in OUR_TAGS, f"input became a <{tag}> tag"
        assert not any(name.startswith("on") for name in attributes), f"input added an event handler to <{tag}>"
        assert set(attributes) <= OUR_ATTRIBUTES, (tag, attributes)
        for name in ("href", "src"):
            if attributes.get(name) is not None:
                assert attributes[name].startswith(("/batchops/", "?")), attributes[name]
        if "style" in attributes:
            assert attributes["style"] == "width:4em", attributes["style"]
        if "class" in attributes:
            assert set(attributes["class"].split()) <= {
                "banner", "complete", "blocked", "failed", "unknown", "nodrop", "pass", "fail", "refused", "warn",
                "passing", "log", "summary", "providers", "id", "predictions", "filters", "count", "legend", "mark",
                "none", "running", "scroller", "calendar", "provider", "queue", "day", "weekend", "cell", "paging",
                "timing", "chart"}, attributes["class"]
    assert "<script" not in page.lower() and "49" not in page.replace("2026", "")  # no template evaluation


def hostile_run_folder(folder: Path, payload: str) -> None:
    folder.mkdir(parents=True)
    (folder / "run_summary.md").write_text(f"# Run summary: {payload}\n\n**{payload}**\n\n{payload}\n")
    check = {"passed": False, "entity": payload, "column": payload, "check": payload, "observed": payload,
             "threshold": payload, "detail": payload}
    (folder / "dq_report.json").write_text(json.dumps({"passed": payload, "checks": [check]}))
    (folder / "metrics.json").write_text(json.dumps({
        "model_id": payload, "roc_auc": payload, "accuracy": 0.5, "pr_auc": payload, "brier": payload,
        "feature_dates": [payload], "training_snapshot": payload, "model_settings": {"calibration": payload},
        "out_of_time": {"available": True, "roc_auc": payload, "pr_auc": 0.3, "brier": payload, "n": payload,
                        "label_period": payload, "lift": [{"decile": payload, "customers": payload,
                                                          "positives": payload, "rate": payload, "lift": payload,
                                                          "cumulative_capture": payload}]},
        "coefficients": [{"input": payload, "coefficient": payload}],
        "promotion": {"status": payload, "reason": payload, "window": payload, "champion": {"model_id": payload}}}))
    (folder / "drift_report.json").write_text(json.dumps({
        "verdict": payload, "summary": payload, "model_id": payload,
        "features": [{"feature": payload, "psi": payload, "null_share_training": payload, "null_share_now": payload,
                      "drifted": payload, "why": payload}]}))
    (folder / "plan.json").write_text(json.dumps({
        "run_id": payload, "snapshot_date": payload, "snapshot_date_source": payload,
        "stages": [{"stage": payload}], "files": {payload: {"sha256": payload}}}))
    (folder / "predictions").mkdir()
    quoted = '"' + payload.replace('"', '""') + '"'
    (folder / "predictions" / "predictions.csv").write_text(f"{quoted},score\n{quoted},{quoted}\n")
    (folder / "logs.jsonl").write_text(json.dumps({"stage": payload, "event": payload, "error": payload}) + "\n")
    (folder / "roc_curve.png").write_bytes(b"\x89PNG")


@pytest.mark.parametrize("payload", PAYLOADS)
def test_run_page_with_hostile_strings_in_every_field(tmp_path, payload):
    folder = tmp_path / "run"
    hostile_run_folder(folder, payload)
    history = [{"model_id": payload, "training_snapshot": payload, "status": payload, "roc_auc": payload,
                "reason": payload}]
    page = render_run_page("provider_a__propensity_model", payload, folder, lambda model_id: history)
    assert_inert(page, payload)
    assert "Champion history" in page and "Drift guardrail" in page and "Model card" in page
    assert page.count('class="banner unknown"') == 1  # the outcome text never becomes a class
    assert str(escape(payload)) in page  # the text is shown, escaped, not dropped


@pytest.mark.parametrize("payload", PAYLOADS)
def test_overview_with_hostile_strings_in_every_field(payload):
    row = {key: payload for key in ("outcome", "snapshot_date", "dq", "approved_model", "rows_scored", "next_run")}
    card = {"dag_id": payload, "refused": payload, "drift": {"verdict": payload, "summary": payload},
            "drift_run": payload, "model": model_card({
                "model_id": payload, "roc_auc": payload, "feature_dates": [payload], "training_snapshot": payload,
                "out_of_time": {"available": False, "reason": payload}, "holdout_lift": [{"decile": payload, "lift": 2}],
                "promotion": {"status": payload, "reason": payload, "champion": {"model_id": payload}}}),
            "champions": [{"model_id": payload, "training_snapshot": payload, "status": payload, "roc_auc": payload,
                           "reason": payload}]}
    page = render_overview([{"dag_id": "provider_a__propensity_model", "run_id": payload, "earlier_runs": [payload],
                             **row}], [payload], [card])
    assert_inert(page, payload)
    assert "Champion history" in page
    assert 'href="/batchops/runs/provider_a__propensity_model/' in page


@pytest.mark.parametrize("payload", PAYLOADS)
def test_not_a_batchops_dag_page_with_a_hostile_dag_id(payload):
    assert_inert(render_not_batchops(payload), payload)


def test_the_check_catches_an_unescaped_page():
    """The assertion above must be able to fail: raw interpolation is caught."""
    with pytest.raises(AssertionError):
        assert_inert(f'<div class="banner {PAYLOADS[0]}"></div>', PAYLOADS[0])


def test_scores_are_rounded_on_the_page_and_kept_whole_in_the_file(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "predictions").mkdir()
    (folder / "predictions" / "predictions.csv").write_text(
        "customer_id,score,snapshot_date,model_id\nC0000001,0.05243085915409567,2026-02-01,m\n")
    page = render_run_page("provider_a__propensity_model", "manual__x", folder)
    assert "<td>0.0524</td>" in page and "0.05243085915409567" not in page


@pytest.mark.parametrize("payload", PAYLOADS)
def test_calendar_with_hostile_strings_in_every_field(payload):
    from datetime import date

    from batchops.ui import calendar
    from batchops.ui.pages import run_url

    query, notes = calendar.parse_query({"provider": payload, "outcome": payload, "queue": payload, "end": payload,
                                         "days": payload, "page": payload}, today=date(2026, 2, 5))
    row = calendar.ProviderRow(payload, payload, [payload])
    row.days[date(2026, 2, 5)] = [(payload, {"run_id": payload, "outcome": payload, "reason": payload})]
    page = {"query": query, "notes": notes, "total": 1, "pages": 1, "page": 1, "dates": query.dates,
            "queues": [payload], "outcomes": calendar.OUTCOME_FILTERS,
            "rows": [{"provider_id": payload, "queue": payload, "pipelines": [payload],
                      "cells": calendar.cells(row, query, {}, run_url)}],
            "page_urls": {"first": "?page=1", "previous": "?page=1", "next": "?page=1", "last": "?page=1"},
            "config_errors": [payload]}
    assert_inert(render_calendar(page, 0.01), payload)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_model_history_with_hostile_strings_in_every_field(payload):
    training = [{"date": payload, "pipeline": payload, "run_id": payload, "url": "/batchops/runs/x/y",
                 "outcome": payload, "model_id": payload, "roc_auc": 0.8, "out_of_time_roc_auc": payload,
                 "positive_rate": payload, "n": payload, "decision": payload, "reason": payload,
                 "champion_before": payload}]
    scoring = [{"date": payload, "pipeline": payload, "run_id": payload, "url": "/batchops/runs/x/y",
                "outcome": payload, "model_id": payload, "drift": payload, "max_psi": payload, "rows": payload,
                "mean_score": 0.3, "p10": payload, "p50": payload, "p90": payload}]
    page = render_overview([], [payload], [], {"training": training * 2, "scoring": scoring * 2}, payload)
    assert_inert(page, payload)
    assert page.count("<svg") == 2


def test_a_resumed_run_says_it_runs_again_over_its_old_summary(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "run_summary.md").write_text("# Run summary: FAILED\n\n**score: boom**\n")
    (folder / "plan.json").write_text(json.dumps({"snapshot_date": "2026-02-01", "run_id": "r"}))
    page = render_run_page("p__m", "r", folder, airflow_state="running")
    assert "RUNNING</b> again in Airflow" in page and "score: boom" in page and "snapshot 2026-02-01" in page
    assert "again in Airflow" not in render_run_page("p__m", "r", folder, airflow_state="failed")
