"""The documentation's commands: every bash block in README.md and docs/*.md is run as written by a test
(`<!-- tested: NAME -->`, run below or in tests/test_readme_commands.py), names the test that runs the
same commands (`<!-- runs-in: tests/file.py::test_name -->`), or says why it cannot run here
(`<!-- not-run: reason -->`). Relative links between the pages resolve."""

from __future__ import annotations

import re
import subprocess

import pytest

from airflow_stack import shell_environment

from conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK = re.compile(r"^[ \t]*```bash\n", re.M)
MARKER = re.compile(r"<!-- (tested|runs-in|not-run): (.+?) -->\s*$")


def command_blocks():
    for page in PAGES:
        text = page.read_text()
        for match in BLOCK.finditer(text):
            before = text[:match.start()].rstrip("\n").splitlines()
            marker = MARKER.search(before[-1]) if before else None
            line = text[:match.start()].count("\n") + 1
            yield page, line, marker


def test_every_command_block_is_run_by_a_test_or_says_why_not():
    unmarked = [f"{page.relative_to(REPO)}:{line}" for page, line, marker in command_blocks() if marker is None]
    assert not unmarked, f"command blocks without a tested/runs-in/not-run marker: {unmarked}"
    for page, line, marker in command_blocks():
        kind, value = marker.groups()
        if kind != "runs-in":
            continue
        for reference in (part.strip() for part in value.split(",")):
            path, _, test = reference.partition("::")
            assert (REPO / path).exists(), f"{page.name}:{line}: {path} does not exist"
            if test:
                assert re.search(rf"def {re.escape(test)}\(", (REPO / path).read_text()), \
                    f"{page.name}:{line}: no {test} in {path}"


def test_relative_links_between_the_pages_resolve():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert not broken, broken


@pytest.mark.e2e
def test_the_demo_runs_as_written():
    """README's first command, in this checkout, as a newcomer's shell runs it (nothing preset)."""
    env = shell_environment()
    done = subprocess.run(["bash", "scripts/run_demo.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "# Run summary: COMPLETE" in done.stdout and "Artifacts: " in done.stdout
    assert "Next:" in done.stdout and "run_local_stack.sh" in done.stdout  # what to do next
