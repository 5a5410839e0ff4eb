"""Scheduled runs wait for the provider's drop; a drop that never comes ends the run NO DROP (skipped,
not failed) with the missing files named; manual runs never wait."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace

import pytest

from batchops.airflow_ops import LandingDropSensor
from batchops.stages.summarize import NO_DROP, run_outcome
from batchops.ui.pages import OUTCOME_CLASSES, outcome_of

from conftest import SNAPSHOT, configs, make_drop


def sensor_for(settings, provider_id: str = "provider_a") -> LandingDropSensor:
    provider = configs(settings).providers[provider_id]
    return LandingDropSensor(task_id="wait_for_drop", provider=provider, settings=settings,
                             snapshot_date=SNAPSHOT.isoformat(), mode="reschedule", poke_interval=5, timeout=60)


def context(run_type: str) -> dict:
    return {"dag_run": SimpleNamespace(run_type=run_type)}


def test_missing_files_are_listed_with_their_paths(project):
    provider = configs(project).providers["provider_a"]
    missing = provider.missing_landing_files(project.data_dir, SNAPSHOT)
    assert sorted(p.rsplit("/", 1)[-1] for p in missing) == sorted(s.file for s in provider.entities.values())
    assert all(p.startswith(str(project.data_dir / "provider_a" / SNAPSHOT.isoformat())) for p in missing)
    make_drop(project, "provider_a", SNAPSHOT, customers=50)
    assert provider.missing_landing_files(project.data_dir, SNAPSHOT) == []


def test_a_ready_marker_is_waited_for_too(project):
    provider = configs(project).providers["provider_a"].model_copy(update={"ready_marker": "_SUCCESS"})
    make_drop(project, "provider_a", SNAPSHOT, customers=50)
    assert [p.rsplit("/", 1)[-1] for p in provider.missing_landing_files(project.data_dir, SNAPSHOT)] == ["_SUCCESS"]


@pytest.mark.parametrize("run_type", ["manual", "backfill", "asset_triggered"])
def test_runs_started_by_a_person_never_wait(project, run_type):
    assert sensor_for(project).poke(context(run_type)) is True  # ingest then fails fast with the expected path


def test_a_scheduled_run_waits_until_the_files_are_there(project):
    sensor = sensor_for(project)
    assert sensor.poke(context("scheduled")) is False
    make_drop(project, "provider_a", SNAPSHOT, customers=50)
    assert sensor.poke(context("scheduled")) is True


def test_a_drop_that_never_came_is_no_drop_not_failed(project):
    states = {"plan": "success", "wait_for_drop": "skipped", "ingest": "skipped", "score": "skipped"}
    missing = ["/data/provider_a/2026-02-01/customers.csv"]
    outcome, why = run_outcome(states, None, {}, missing, 720)
    assert outcome == NO_DROP and "customers.csv" in why and "720 minutes" in why and "nothing failed" in why
    assert OUTCOME_CLASSES[outcome_of(f"# Run summary: {outcome}\n\n**{why}**\n")[0]] == "nodrop"
    states["plan"] = "failed"  # a failure elsewhere is still a failure
    assert run_outcome(states, None, {"plan": "boom"}, missing, 720)[0] == "FAILED"


def test_the_sensor_is_configured_from_the_provider(project):
    provider = configs(project).providers["provider_a"]
    assert provider.landing_timeout_minutes == 720 and provider.landing_poke_seconds == 300
    assert date.fromisoformat(sensor_for(project).snapshot_date) == SNAPSHOT
