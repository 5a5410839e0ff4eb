"""logs.jsonl is capped per run: it rotates to logs.1.jsonl, every line stays whole, readers see both."""

from __future__ import annotations

import json
import multiprocessing

from batchops.runlog import RunLogger, read_events, rotated


def test_a_log_over_its_cap_rotates_and_keeps_the_latest_events(tmp_path):
    log = tmp_path / "logs.jsonl"
    logger = RunLogger(log, "score", max_bytes=8192)
    for number in range(400):
        logger.event("tick", number=number)
    assert log.stat().st_size <= 8192 and rotated(log).stat().st_size <= 8192
    numbers = [event["number"] for event in read_events(log)]
    assert numbers == list(range(numbers[0], 400)) and len(numbers) > 50  # the newest, in order, none torn


def test_one_event_larger_than_the_cap_is_still_written(tmp_path):
    log = tmp_path / "logs.jsonl"
    RunLogger(log, "score", max_bytes=4096).event("huge", error="x" * 10_000)
    assert read_events(log)[0]["event"] == "huge"


def _write_many(path: str, stage: str) -> None:
    logger = RunLogger(__import__("pathlib").Path(path), stage, max_bytes=16384)
    for number in range(300):
        logger.event("tick", number=number)


def test_concurrent_writers_rotate_without_tearing_lines(tmp_path):
    log = tmp_path / "logs.jsonl"
    writers = [multiprocessing.Process(target=_write_many, args=(str(log), f"stage{n}")) for n in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    for part in (rotated(log), log):
        for line in part.read_text().splitlines():
            json.loads(line)  # every line whole
    assert log.stat().st_size <= 16384 + 512
    by_stage: dict[str, list[int]] = {}
    for event in read_events(log):
        by_stage.setdefault(event["stage"], []).append(event["number"])
    assert all(numbers == sorted(numbers) for numbers in by_stage.values())  # rotation kept the order
    assert 299 in [numbers[-1] for numbers in by_stage.values()]  # the newest events are the ones kept
