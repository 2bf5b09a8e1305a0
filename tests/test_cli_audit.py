"""`logoapp audit` and `logoapp fix` in-process: the JSON the issue names, readable errors, and a round trip of
relabel / exclude / undo that leaves the folder exactly as it was."""
from __future__ import annotations

import hashlib
import json
import shutil

from conftest import make_folder
from test_cli import assert_error, run


def snapshot(root):
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_audit_json_has_the_named_keys_and_finds_a_planted_copy(tmp_path, capsys):
    root = make_folder(tmp_path / "d", n_classes=3, per_class=12)
    shutil.copy(root / "class0" / "class0_000.png", root / "class1" / "copy.png")
    rc, out, err = run(capsys, "audit", root, "--folds", "2", "--json")
    assert rc == 0, err
    r = json.loads(out)
    for key in ("duplicates", "cross_split", "label_issues", "imbalance", "odd", "seconds"):
        assert key in r, key
    copy, orig = str(root / "class1" / "copy.png"), str(root / "class0" / "class0_000.png")
    assert any({copy, orig} <= set(g["paths"]) and {"class0", "class1"} <= set(g["classes"]) for g in r["duplicates"])
    assert set(r["duplicates"][0]) >= {"paths", "classes", "splits", "exact"}
    assert r["label_issues"] and set(r["label_issues"][0]) >= {"path", "given", "suggested", "score"}
    scores = [s["score"] for s in r["label_issues"]]
    assert scores == sorted(scores, reverse=True)  # most suspicious first
    rc, out, err = run(capsys, "audit", root, "--folds", "0")
    assert rc == 0 and "duplicates:" in out and "label issues" not in out


def test_fix_round_trip_and_errors(tmp_path, capsys, monkeypatch):
    root = make_folder(tmp_path / "d", n_classes=2, per_class=6)
    before = snapshot(root)
    monkeypatch.chdir(tmp_path)
    rc, out, err = run(capsys, "fix", "d", "--relabel", "d/class0/class0_001.png=class1", "--exclude",
                       "class1/class1_002.png")  # from here, or from the dataset folder
    assert rc == 0, err
    assert (root / "class1" / "class0_001.png").exists() and (root / "_excluded" / "class1" / "class1_002.png").exists()
    rc, out, err = run(capsys, "fix", "d")
    assert "2 change(s) logged" in out
    assert_error(*run(capsys, "fix", "d", "--undo", "--exclude", "class0/class0_000.png"), "--undo")
    assert_error(*run(capsys, "fix", "d", "--relabel", "class0/nothere.png=class1"), "no such file")
    assert_error(*run(capsys, "fix", "embedded", "--undo"), "read-only")
    rc, out, err = run(capsys, "fix", "d", "--undo", "--all")
    assert rc == 0 and out.count("undone") == 2
    assert snapshot(root) == before


def test_group_split_flag(tmp_path, capsys):
    root = make_folder(tmp_path / "d", n_classes=2, per_class=10)
    rc, out, err = run(capsys, "info", root, "--split", "group", "--json")
    assert rc == 0 and "group split:" in err
    pre = tmp_path / "pre"
    make_folder(pre / "train", n_classes=2, per_class=4)
    make_folder(pre / "valid", n_classes=2, per_class=2)
    assert_error(*run(capsys, "info", pre, "--split", "group"), "random splits only")
