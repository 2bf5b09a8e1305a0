"""Audit: planted label errors and planted copies in built-in crest sets, found by logoapp.audit; its run time.

Each set is generated once (benchmarks.common.crests), then laid out again in a scratch folder with hard links
(no copying) where the errors are planted: files moved into another class folder, resized JPEG copies written
beside their originals; scratch folders are opened without the on-disk cache (they would only fill it). Figures
compare what the audit reports with what was planted, in the same run."""
from __future__ import annotations

import io
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from logoapp import audit as A
from logoapp.data import open_dataset

from .common import figure, log, ratio


def scratch(src: Path, dst: Path) -> list[str]:
    """dst: the crest set src again, every file a hard link (a copy where links are refused); returns the files."""
    files = []
    for cls in sorted(p for p in src.iterdir() if p.is_dir()):
        (dst / cls.name).mkdir(parents=True)
        for f in sorted(cls.iterdir()):
            try:
                os.link(f, dst / cls.name / f.name)
            except OSError:
                shutil.copy2(f, dst / cls.name / f.name)
            files.append(str(dst / cls.name / f.name))
    return files


def plant_labels(files: list[str], n: int, seed: int) -> list[str]:
    """Move n files into a wrong class folder (another class, chosen at random); returns their new paths."""
    rng = np.random.default_rng(seed)
    classes = sorted({Path(f).parent.name for f in files})
    moved = []
    for f in rng.choice(files, n, replace=False):
        p = Path(f)
        to = p.parent.parent / rng.choice([c for c in classes if c != p.parent.name]) / p.name
        os.rename(p, to)
        moved.append(str(to))
    return moved


def copy_variant(path: str, kind: str, rng: np.random.Generator) -> Image.Image:
    """A copy of an image as people make them: 'jpeg' resized by 0.6-1.5x and saved as JPEG (quality 70-90) after
    flattening onto white; 'noalpha' the same with the transparency simply dropped (what Image.convert('RGB')
    leaves: a dark background, a bold rim); 'recolour' brighter and less saturated; 'crop' 1% off each side."""
    im = Image.open(path).convert("RGBA")
    w, h = im.size
    if kind == "crop":
        return im.crop((w // 100 + 1, h // 100 + 1, w - w // 100 - 1, h - h // 100 - 1))
    if kind == "recolour":
        a = np.asarray(im).astype(np.float32)
        grey = a[..., :3].mean(-1, keepdims=True)
        a[..., :3] = np.clip((grey + 0.7 * (a[..., :3] - grey)) * 1.12, 0, 255)
        return Image.fromarray(a.astype(np.uint8), "RGBA")
    s = rng.uniform(0.6, 1.5)
    im = im.resize((max(8, round(w * s)), max(8, round(h * s))), Image.BICUBIC)
    if kind == "jpeg":
        flat = Image.new("RGBA", im.size, (255, 255, 255, 255))
        flat.alpha_composite(im)
        im = flat
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=int(rng.integers(70, 91)))
    return Image.open(buf)


def plant_copies(files: list[str], n: int, seed: int, kinds=("jpeg",)) -> list[tuple[str, str]]:
    """Write n copies beside their originals (same class folder), kinds taking turns; returns (original, copy)."""
    rng = np.random.default_rng(seed)
    pairs = []
    for k, f in enumerate(rng.choice(files, n, replace=False)):
        p, kind = Path(f), kinds[k % len(kinds)]
        out = p.with_name(f"{p.stem}-{kind}.{'png' if kind in ('crop', 'recolour') else 'jpg'}")
        copy_variant(f, kind, rng).save(out)
        pairs.append((str(p), str(out)))
    return pairs


def pairs_found(report_groups, pairs) -> tuple[int, dict, list[bool]]:
    """(how many pairs have both files in one group, path -> its group, per pair: found or not)."""
    where = {p: g for g in report_groups for p in g.paths}
    together = [a in where and where[a] is where.get(b) for a, b in pairs]
    return sum(together), where, together


def labels_figure(src: Path, work: Path, n_bad: int, top: int, folds: int) -> tuple[dict, dict]:
    files = scratch(src, work)
    moved = set(plant_labels(files, n_bad, seed=1))
    ds = open_dataset(work, cache=False)
    log(f"audit: label check on {len(ds.items)} crests with {n_bad} moved into a wrong class folder")
    rep = A.audit(ds, folds=folds)
    found = sum(s.path in moved for s in rep.label_issues[:top])
    fig = figure(f"audit: planted label errors in the top {top}", found, "images", n_bad, "images (planted)",
                 ratio(found, n_bad), ">=", 0.8,
                 f"{n_bad} of {len(ds.items)} crests moved into another class folder; how many of them are among "
                 f"the first {top} label_issues ({folds}-fold {rep.labels['model']} at {rep.labels['size']} px, "
                 f"{rep.labels['epochs']} epochs); goal 24 of 30",
                 found_anywhere=sum(s.path in moved for s in rep.label_issues), listed=len(rep.label_issues),
                 n_estimated=rep.labels["n_estimated"], seconds=rep.seconds, fold_seconds=rep.labels["fold_seconds"])
    return fig, rep.to_json()


def rungs_figure(src: Path, work: Path, n_bad: int, top: int, folds: int) -> dict:
    """The per-fold model chosen by measuring: linear (the default) and cnn, each at 32 px and the default epochs,
    on the same folder with the same planted errors; recall in the top `top` and seconds side by side."""
    files = scratch(src, work)
    moved = set(plant_labels(files, n_bad, seed=1))
    ds = open_dataset(work, cache=False)
    small, runs = A.shrink(ds.images, 32), {}
    for model in ("linear", "cnn"):
        log(f"audit: label check with {model} folds")
        probs, info = A.out_of_fold(ds, folds, model, small=small)
        top_paths = [s.path for s in A.label_issues(ds, probs)[:top]]
        runs[model] = {"found": sum(p in moved for p in top_paths), "seconds": info["seconds"],
                       "epochs": info["epochs"], "fold_accuracy": info["accuracy"]}
    lin, cnn = runs["linear"], runs["cnn"]
    return figure("audit: label check, linear vs cnn folds", lin["found"], "images (linear)", cnn["found"],
                  "images (cnn)", ratio(lin["found"], cnn["found"]), ">=", 0.95,
                  f"planted errors among the first {top} label_issues with each per-fold model ({n_bad} planted, "
                  f"{folds} folds at 32 px): linear {lin['seconds']:.1f} s, cnn {cnn['seconds']:.1f} s "
                  f"({ratio(cnn['seconds'], lin['seconds']) or 0:.1f}x the time)", runs=runs)


def duplicates_figures(src: Path, work: Path, n_copies: int, folds: int) -> dict:
    files = scratch(src, work)
    pairs = plant_copies(files, n_copies, seed=2, kinds=("jpeg", "noalpha"))
    t = time.perf_counter()
    ds = open_dataset(work, cache=False)
    load = time.perf_counter() - t
    log(f"audit: {len(ds.items)} crests with {n_copies} resized JPEG copies (loaded in {load:.1f} s), full audit")
    rep = A.audit(ds, folds=folds)
    together, where, ok = pairs_found(rep.duplicates, pairs)
    split = {p: s for g in rep.duplicates for p, s in zip(g.paths, g.splits)}
    spanning = [i for i, (a, b) in enumerate(pairs) if ok[i] and split[a] != split[b]]
    counted = sum(where[pairs[i][0]].cross_split for i in spanning)
    truth = sum(len(set(g.splits)) > 1 for g in rep.duplicates)  # recount from the groups' own files
    planted = {p for pr in pairs for p in pr}
    false = sum(not planted & set(g.paths) for g in rep.duplicates)
    figs = {
        "audit_copies": figure(
            "audit: planted copies found", together, "pairs", n_copies, "pairs (planted)", ratio(together, n_copies),
            ">=", 0.9, f"{n_copies} crests copied back into their class folders resized (0.6-1.5x) and re-encoded as "
            f"JPEG (quality 70-90), half flattened onto white, half with the transparency dropped; a pair counts "
            f"when both files are in one duplicate group; goal 18 of 20; groups of unplanted files: {false}",
            groups=len(rep.duplicates), false_groups=false),
        "audit_cross_split": figure(
            "audit: cross-split copies counted", counted, "groups", len(spanning), "groups (found, spanning splits)",
            ratio(counted, len(spanning)) if spanning else 1.0, ">=", 1.0,
            f"planted pairs found with one file in train and the other in valid: how many are counted in "
            f"cross_split; cross_split {rep.cross_split} = {truth} groups spanning splits recounted from their files",
            cross_split=rep.cross_split, recounted=truth),
        "audit_seconds": figure(
            "audit: seconds for 3,000 images" if len(ds.items) >= 3000 else "audit: seconds", rep.seconds, "s",
            120.0, "s (budget)", ratio(rep.seconds, 120.0), "<=", 1.0,
            f"audit(ds, folds={folds}) on {len(ds.items)} images at {ds.size} px, loading ({load:.1f} s) not "
            f"included; timings {rep.to_json()['timings']}; folds {rep.labels['fold_seconds']} s",
            timings=rep.timings, load_seconds=load, n_images=len(ds.items)),
    }
    return figs


def variants(src: Path, work: Path, n: int) -> dict:
    """Other kinds of copy, each found or not by the duplicate search alone (no training)."""
    files = scratch(src, work)
    planted = {k: plant_copies(files, n, seed=3 + i, kinds=(k,)) for i, k in enumerate(("recolour", "crop", "noalpha"))}
    ds = open_dataset(work, cache=False)
    groups = A.duplicates(ds)
    return {k: pairs_found(groups, p)[0] for k, p in planted.items()} | {"n": n, "groups": len(groups)}


def run(quick: bool) -> dict:
    """The audit's figures: planted label errors (2,000 crests, 30 moved; quick: 400, 6), planted copies and run
    time (3,000 crests, 20 copies; quick: 300, 5) and, in full mode, linear vs cnn folds and other kinds of copy."""
    from .common import crests
    t0 = time.perf_counter()
    small, big = crests("audit-labels", 40 if quick else 200, 140, 5), crests("audit", 30 if quick else 300, 140, 0)
    out = {"mode": "quick" if quick else "full", "figures": {}}
    with tempfile.TemporaryDirectory(prefix="logoapp-audit-") as tmp:
        tmp = Path(tmp)
        fig, rep = labels_figure(small, tmp / "labels", 6 if quick else 30, 12 if quick else 60, 5)
        out["figures"]["audit_labels"] = fig
        out["label_issues_head"] = rep["label_issues"][:10]
        out["figures"].update(duplicates_figures(big, tmp / "copies", 5 if quick else 20, 5))
        if not quick:
            out["figures"]["audit_rungs"] = rungs_figure(small, tmp / "rungs", 30, 60, 5)
            out["variants"] = variants(big, tmp / "variants", 10)
    out["seconds"] = time.perf_counter() - t0
    return out


if __name__ == "__main__":
    import json
    import sys
    print(json.dumps(run("--quick" in sys.argv), indent=1, default=float))
