"""What the Check-data view shows, as plain data (no Gradio): an audit, what was done about it, the rows left to
look at, and the fixes applied to the folder with their undo. The tab (ui/tabs/check.py) only draws and wires."""
from __future__ import annotations

import html
import os
from dataclasses import dataclass, field

from . import fixes
from .audit import AuditReport, audit
from .data import Dataset
from .fixes import reopen

SHOW = ("Label suspects", "Duplicate groups", "Odd images")
LIMIT = 60  # thumbnails per list: the most suspicious first


@dataclass
class Check:
    """One session's audit of its dataset and the paths dealt with since (relabelled, excluded or kept)."""
    report: AuditReport
    done: set[str] = field(default_factory=set)


def run(ds: Dataset, folds: int, model: str, progress=None) -> Check:
    return Check(audit(ds, folds=folds, model=model, progress=progress))


def rows(check: Check, ds: Dataset, show: str) -> list[tuple[int, str]]:
    """(dataset index, caption) of the images still to look at in one list, most suspicious first."""
    at, r, out = {p: i for i, p in enumerate(ds.items)}, check.report, []
    if show == SHOW[0]:
        out = [(s.path, f"{s.given}\n→ {s.suggested}? ({s.score:.0%})") for s in r.label_issues]
    elif show == SHOW[1]:
        for k, g in enumerate(r.duplicates, 1):
            tag = "exact" if g.exact else "near"
            out += [(p, f"group {k} ({tag}{', CONFLICT' if g.conflict else ''})\n{c} · {s}")
                    for p, c, s in zip(g.paths, g.classes, g.splits)]
    else:
        out = [(o.path, f"{o.label}\n{', '.join(o.reasons)}") for o in r.odd]
    return [(at[p], cap) for p, cap in out if p in at and p not in check.done][:LIMIT]


def gallery(check: Check, ds: Dataset, show: str) -> tuple[list, list[int]]:
    """Thumbnails with captions for gr.Gallery, and the dataset index of each."""
    rs = rows(check, ds, show)
    return [(ds.images[i], cap) for i, cap in rs], [i for i, _ in rs]


def summary_md(check: Check | None) -> str:
    if check is None:
        return ("Press **Check data** to look for copies of one picture (and copies that leak from train into "
                "validation), images that seem filed under the wrong class, and odd images.")
    r = check.report
    lab, leak, imb = r.labels, r.leakage, r.imbalance
    lines = [f"**{r.n_images:,} images checked in {r.seconds:.1f} s.**",
             f"- **Copies:** {len(r.duplicates)} groups ({sum(g.exact for g in r.duplicates)} exact), "
             f"**{r.cross_split} spanning train and validation**, {sum(g.conflict for g in r.duplicates)} filed "
             "under different classes."]
    if leak["reported"] is not None:
        without = "n/a" if leak["without_leaked"] is None else f"{leak['without_leaked']:.1%}"
        lines.append(f"- **Leakage:** validation accuracy {leak['reported']:.1%}; {without} without the "
                     f"{leak['n_leaked']} validation images that have a copy in train ({lab.get('reference', '')}).")
    if lab.get("folds"):
        lines.append(f"- **Label suspects:** {len(r.label_issues)} (about {lab['n_estimated']} label errors estimated "
                     f"by confident learning over {lab['folds']} folds of {lab['model']}, {lab['seconds']:.1f} s).")
    lines.append(f"- **Balance:** largest / smallest class = {imb['ratio']:.1f}; **odd images:** {len(r.odd)}.")
    return "\n".join(lines)


def changes_md(root: str) -> str:
    recs = fixes.changes(root)
    if not recs:
        return "No changes logged in this folder."
    last = recs[-1]
    return (f"{len(recs)} change(s) logged in `{fixes.LOG}` (nothing is deleted; *Undo* reverts). Last: "
            f"{last['op']} `{html.escape(last['from'])}` → `{html.escape(last['to'])}`.")


def item_md(ds: Dataset, i: int | None) -> str:
    if i is None:
        return "Click an image above, then relabel, exclude or keep it."
    rel = os.path.relpath(ds.items[i], ds.root)
    split = ("train", "valid", "test")[ds.split[i]]
    return f"**{html.escape(rel)}** · class *{html.escape(ds.vocab[ds.labels[i]])}* · {split}"


def apply(ds: Dataset, check: Check, action: str, i: int, new_class: str | None = None,
          cache: bool = True) -> Dataset:
    """Relabel, exclude or keep image i; the dataset as it now is (reopened: only moved files are looked at again)."""
    path = ds.items[i]
    if action == "keep":
        check.done.add(path)
        return ds
    rec = fixes.relabel(ds.root, path, new_class) if action == "relabel" else fixes.exclude(ds.root, path)
    check.done.add(path)  # only once the file has moved: a failed move leaves the image in the list
    return reopen(ds, fixes.renames(ds.root, [rec]), cache=cache)


def undo(ds: Dataset, check: Check | None, all: bool = False, cache: bool = True) -> tuple[Dataset, int]:
    """Revert the last change (or all); the dataset reopened, and how many changes were reverted."""
    recs = fixes.undo(ds.root, all=all)
    if check is not None:
        check.done -= {os.path.join(os.path.abspath(ds.root), r["from"]) for r in recs}
    return (reopen(ds, fixes.renames(ds.root, recs, undone=True), cache=cache) if recs else ds), len(recs)
