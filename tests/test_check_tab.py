"""The Check-data view without a server: audit a folder with planted errors, relabel, exclude, keep, undo; the folder
ends exactly as it began, the data reloads after each change, and read-only sources refuse changes."""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from dataclasses import replace
from types import SimpleNamespace

import gradio as gr
import pytest

from conftest import make_folder
from logoapp import checkview as cv
from logoapp import fixes
from logoapp.data import open_dataset
from logoapp.fixes import reopen
from logoapp.ui import Session
from logoapp.ui.app import compose, start
from logoapp.ui.tabs import check
from logoapp.ui.wiring import Ui


def quiet(*args, **kwargs):
    pass


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


pytestmark = pytest.mark.usefixtures("files_count_as_uploads")  # conftest.py


@pytest.fixture
def planted(tmp_path):
    """3 classes x 12, one image of class 0 copied into class 1 (a sure conflict and a label suspect)."""
    root = make_folder(tmp_path / "crests", n_classes=3, per_class=12)
    classes = sorted(d.name for d in root.iterdir())
    src = sorted((root / classes[0]).iterdir())[0]
    shutil.copy(src, root / classes[1] / "planted.png")
    return root, classes


def session_on(root: Path, allow_folders: bool = True):
    shared = start(root, models_dir=root.parent / "models", size=16, allow_folders=allow_folders, progress=quiet)
    ui = Ui()
    compose(shared, ui)
    return Session(shared), ui


def test_reopen_decodes_only_moved_files_and_matches_a_fresh_open(planted):
    root, classes = planted
    ds = open_dataset(root, size=16, cache=False)
    rec = fixes.relabel(root, root / classes[1] / "planted.png", classes[0])
    again = reopen(ds, fixes.renames(root, [rec]), cache=False)
    fresh = open_dataset(root, size=16, cache=False)
    assert again.items == fresh.items and (again.labels == fresh.labels).all()
    assert (again.images == fresh.images).all() and (again.split == fresh.split).all()
    fixes.undo(root)


def test_check_relabel_exclude_keep_undo_round_trip(planted):
    root, classes = planted
    before = snapshot(root)
    s, ui = session_on(root)
    out = check.on_check(s, 3, "linear", cv.SHOW[1], progress=quiet)
    assert "CONFLICT" in str(out["check_gallery"]) or s.check.report.duplicates
    assert any(g.conflict for g in s.check.report.duplicates)
    planted_path = str(root / classes[1] / "planted.png")
    ids = s.check_ids
    k = next(n for n, i in enumerate(ids) if s.data.ds.items[i] == planted_path)
    check.on_pick(s, cv.SHOW[1], SimpleNamespace(index=k))
    n0 = len(s.data.ds.items)
    out = check.on_relabel(s, cv.SHOW[1], classes[0])
    assert set(out) <= set(ui.named)
    assert "stale" in out["result"]
    assert not (root / classes[1] / "planted.png").exists() and (root / classes[0] / "planted.png").exists()
    assert len(s.data.ds.items) == n0 and str(root / classes[0] / "planted.png") in s.data.ds.items
    # exclude another image, keep a third
    s.check_sel = 0
    excluded = s.data.ds.items[0]
    check.on_exclude(s, cv.SHOW[0], None)
    assert len(s.data.ds.items) == n0 - 1 and excluded not in s.data.ds.items
    assert (root / fixes.EXCLUDED).is_dir()
    s.check_sel = 1
    check.on_keep(s, cv.SHOW[0], None)
    assert len(fixes.changes(root)) == 2
    check.on_undo(s, cv.SHOW[0])
    assert excluded in s.data.ds.items and len(fixes.changes(root)) == 1
    check.on_undo_all(s, cv.SHOW[0])
    assert snapshot(root) == before  # byte for byte, file for file: no log, no _excluded left behind
    with pytest.raises(gr.Error, match="Nothing to undo"):
        check.on_undo(s, cv.SHOW[0])


def test_changes_are_refused_where_folders_are_off_and_before_a_check(planted):
    root, classes = planted
    before = snapshot(root)
    s, _ = session_on(root, allow_folders=False)
    with pytest.raises(gr.Error, match="Check data"):
        check.on_exclude(s, cv.SHOW[0], None)
    check.on_check(s, 2, "linear", cv.SHOW[0], progress=quiet)
    s.check_sel = 0
    with pytest.raises(gr.Error, match="switched off"):
        check.on_exclude(s, cv.SHOW[0], None)
    assert snapshot(root) == before


def test_read_only_folder_gives_a_clear_error(planted):
    root, classes = planted
    if os.geteuid() == 0:
        pytest.skip("root ignores file permissions")
    s, _ = session_on(root)
    check.on_check(s, 2, "linear", cv.SHOW[0], progress=quiet)
    s.check_sel = 0
    for d in [root, *root.iterdir()]:
        d.chmod(0o555)
    try:
        with pytest.raises(gr.Error, match="(?i)read-only|permission"):
            check.on_exclude(s, cv.SHOW[0], None)
    finally:
        for d in [root, *root.iterdir()]:
            d.chmod(0o755)


def test_a_failed_move_leaves_the_image_in_the_list(planted, monkeypatch):
    root, classes = planted
    before = snapshot(root)
    s, _ = session_on(root)
    check.on_check(s, 2, "linear", cv.SHOW[0], progress=quiet)
    s.check_sel = 0
    path = s.data.ds.items[0]

    def refuse(root, p, *args):
        raise PermissionError(13, "Permission denied", p)
    monkeypatch.setattr(fixes, "exclude", refuse)
    with pytest.raises(gr.Error, match="Could not exclude the image: .*Permission denied"):
        check.on_exclude(s, cv.SHOW[0], None)
    assert path not in s.check.done and snapshot(root) == before
    monkeypatch.undo()
    check.on_exclude(s, cv.SHOW[0], None)      # the same image, once the folder lets it move
    assert path in s.check.done and path not in s.data.ds.items
    fixes.undo(root)


def test_group_split_keeps_copies_together(planted):
    from logoapp.audit import duplicates, group_split
    root, classes = planted
    for k in range(4):  # copies of train images, some of which the random split puts in valid
        src = sorted((root / classes[2]).glob("*.png"))[k]
        shutil.copy(src, root / classes[2] / f"copy{k}.png")
    ds = open_dataset(root, size=16, cache=False)
    groups = duplicates(ds)
    assert len(groups) >= 5  # the 4 copies and the planted one
    split = ds.split.copy()
    for g in groups:  # force every group across the split
        split[g.indices[0]], split[g.indices[1]] = 0, 1
    leaky = replace(ds, split=split)
    assert sum(g.cross_split for g in duplicates(leaky)) == len(groups)
    grouped, moved = group_split(leaky)
    assert moved >= len(groups)  # at least one image of every group changed side
    assert not any(g.cross_split for g in duplicates(grouped))
    assert (grouped.split != leaky.split).sum() == moved
