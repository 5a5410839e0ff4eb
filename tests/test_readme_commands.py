"""Command blocks of README.md and docs/ marked `<!-- tested: NAME -->` run as written, in a fresh copy of the repository
(tracked files only, the same .venv), so a newcomer's first commands cannot silently rot."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from airflow_stack import shell_environment

from conftest import REPO

pytestmark = pytest.mark.e2e


def readme_block(name: str) -> str:
    """The block marked `<!-- tested: NAME -->` in README.md or a page of docs/."""
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        match = re.search(rf"<!-- tested: {name} -->\n```bash\n(.*?)\n```", page.read_text(), re.S)
        if match:
            return match.group(1)
    raise AssertionError(f"no page has a block marked tested: {name}")


@pytest.fixture
def fresh_copy(tmp_path):
    copy = tmp_path / "repo"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        target = copy / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    (copy / ".venv").symlink_to(REPO / ".venv")
    return copy


def run_block(copy, name: str) -> str:
    env = shell_environment()
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", readme_block(name)], cwd=copy, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_the_by_hand_block_runs_as_written(fresh_copy):
    output = run_block(fresh_copy, "by-hand")
    assert "# Run summary: COMPLETE" in output


def test_the_onboarding_walk_runs_as_written(fresh_copy):
    output = run_block(fresh_copy, "onboarding")
    assert "all configs are valid" in output and "# Run summary: COMPLETE" in output
    assert "optional features left out (3): age" in output and "customer_id,score,snapshot_date,model_id" in output


def test_the_daily_deliveries_walk_runs_as_written(fresh_copy):
    output = run_block(fresh_copy, "daily-deliveries")
    assert "all configs are valid" in output
    counts = [int(line.split()[0]) for line in output.splitlines() if line.strip().endswith("transactions.csv")]
    assert counts[0] > 10 * counts[1] and counts[1] < 200  # the history, then days
    assert output.count("# Run summary: COMPLETE") == 2
    assert "remove run folder: shop_d__propensity_scoring/" in output
