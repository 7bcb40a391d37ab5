"""What every importer does with files that are not what it reads: the same words for the same fault."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

FORMATS = ["otlp-json", "who-and-when", "mast"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_json_nested_too_deeply_is_one_line_naming_the_file(fmt: str, run_import: Callable[..., int], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000)  # Python's JSON reader recurses per level
    assert run_import(fmt, path) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err.startswith(f"handoffs: error: {path}: not ") and "(JSON nested too deeply to read)" in err


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_empty_file_is_the_same_error_in_every_format(fmt: str, run_import: Callable[..., int], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "empty.json"
    path.write_text("\n")
    assert run_import(fmt, path) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"handoffs: error: {path}: the file is empty; fix or remove it"]


def test_a_who_and_when_directory_gives_it_only_json_files(run_import: Callable[..., int], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    # Who&When files hold one record each; a JSON-lines file beside them is another format's.
    (tmp_path / "1.json").write_text(json.dumps({"history": [{"role": "user", "content": "hi"}]}))
    record = {"mas_name": "AG2", "trace_id": 1, "trace": {"trajectory": "text"}}
    (tmp_path / "mad.jsonl").write_text(json.dumps(record) + "\n" + json.dumps(dict(record, trace_id=2)) + "\n")
    assert run_import("who-and-when", tmp_path) == 0
    assert "imported 1 traces (2 spans) from 1 file(s)" in capsys.readouterr().out
