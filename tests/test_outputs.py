"""Output folders: a command writes only where it created the folder or left its own output."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from shift_rl import outputs
from shift_rl.outputs import (
    MARKER,
    OutputError,
    atomic_write_text,
    check_file,
    claim_dir,
    json_with_keys,
    write_file,
)


def test_a_new_folder_is_created_with_a_marker_and_accepted_again(tmp_path) -> None:
    out = claim_dir(tmp_path / "a" / "b", "figures")
    marker = json.loads((tmp_path / "a" / "b" / MARKER).read_text())
    assert marker["kind"] == "figures" and marker["tool"] == "shift_rl"
    out.write_text("x.txt", "1")
    again = claim_dir(tmp_path / "a" / "b", "figures")
    assert again.files == ["x.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    claim_dir(empty, "figures")  # an empty folder holds nothing to lose


def test_a_folder_with_other_files_is_refused_and_left_alone(tmp_path) -> None:
    (tmp_path / "thesis.txt").write_text("three years")
    (tmp_path / "notes.md").write_text("ideas")
    with pytest.raises(OutputError, match=r"holds files shift_rl did not write.*notes\.md"):
        claim_dir(tmp_path, "policy export")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.md", "thesis.txt"]
    claim_dir(tmp_path / "run", "training run")
    with pytest.raises(OutputError, match="holds a shift_rl training run"):
        claim_dir(tmp_path / "run", "policy export")
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        claim_dir(tmp_path / "file", "figures")


def test_replacing_an_output_replaces_only_its_own_files(tmp_path) -> None:
    out = claim_dir(tmp_path / "p", "policy export")
    out.replace_files({"a.bin": b"1", "b.bin": b"2"})
    (tmp_path / "p" / "notes.md").write_text("mine")
    again = claim_dir(tmp_path / "p", "policy export")
    again.replace_files({"a.bin": b"3"})
    assert (tmp_path / "p" / "a.bin").read_bytes() == b"3"
    assert not (tmp_path / "p" / "b.bin").exists()  # its own stale file goes
    assert (tmp_path / "p" / "notes.md").read_text() == "mine"  # the user's file stays
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == [MARKER, "a.bin", "notes.md"]


def test_a_legacy_output_is_recognized_by_its_files(tmp_path) -> None:
    (tmp_path / "params.json").write_text("{}")
    (tmp_path / "keep.txt").write_text("k")

    def legacy(folder: Path) -> list[str] | None:
        return ["params.json"] if (folder / "params.json").is_file() else None

    out = claim_dir(tmp_path, "tuned parameters", legacy=legacy)
    out.replace_files({"params.json": b'{"a": 1}'})
    assert (tmp_path / "keep.txt").read_text() == "k"


def test_atomic_write_keeps_the_old_file_when_it_fails(tmp_path, monkeypatch) -> None:
    target = tmp_path / "out.json"
    atomic_write_text(target, "old")

    def broken(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]  # no temp file left


def test_single_files_are_replaced_only_when_recognized(tmp_path) -> None:
    ours = json_with_keys(("scenario", "policies"))
    with pytest.raises(OutputError, match="is a folder"):
        check_file(tmp_path, ours, "summary")
    assert not Path(str(tmp_path) + ".tmp").exists()
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": true}')
    with pytest.raises(OutputError, match="not a summary written by shift_rl"):
        write_file(notes, "{}", ours, "summary")
    assert notes.read_text() == '{"mine": true}'
    out = tmp_path / "new" / "out.json"
    write_file(out, '{"scenario": 1, "policies": 2}', ours, "summary")
    write_file(out, '{"scenario": 3, "policies": 4}', ours, "summary")  # its own: replaced
    assert json.loads(out.read_text())["scenario"] == 3
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.json"]


def test_inside_resolves_paths(tmp_path) -> None:
    assert outputs.inside(tmp_path / "a" / ".." / "a" / "b", tmp_path / "a")
    assert not outputs.inside(tmp_path / "ab", tmp_path / "a")


def test_tuning_refuses_a_foreign_folder_before_searching(tmp_path, monkeypatch) -> None:
    pytest.importorskip("optuna")
    from shift_rl import tuning

    mine = tmp_path / "potential"
    mine.mkdir()
    (mine / "notes.md").write_text("x")
    monkeypatch.setattr(tuning, "score", lambda *a, **k: pytest.fail("the search ran"))
    with pytest.raises(OutputError, match=r"notes\.md"):
        tuning.tune("potential", ["default"], trials=1, episodes=1, out_dir=tmp_path)
    assert sorted(p.name for p in mine.iterdir()) == ["notes.md"]


def test_tuning_writes_its_files_and_keeps_others(tmp_path, monkeypatch) -> None:
    pytest.importorskip("optuna")
    from shift_rl import tuning

    old = tmp_path / "potential"
    old.mkdir()
    (old / "params.json").write_text("{}")  # an earlier tuning, from before markers
    (old / "README.md").write_text("why these parameters")
    monkeypatch.setattr(tuning, "score", lambda *a, **k: 1.0)
    tuning.tune("potential", ["default"], trials=2, episodes=1, out_dir=tmp_path)
    assert json.loads((old / "params.json").read_text())["policy"] == "potential"
    assert (old / "trials.csv").is_file()
    assert (old / "README.md").read_text() == "why these parameters"
