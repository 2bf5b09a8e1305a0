"""`python -m benchmarks [--quick] [--json] [--only SECTIONS]`: logoapp's figures as side-by-side ratios."""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
import warnings

from .common import crests, load_avg, log, machine

SECTIONS = ("train", "predict", "load", "memory", "ladder", "serve", "audit", "bigdata", "cifar")
SLOW = ("bigdata", "cifar")  # minutes even when quick (a 2 GB cache; CIFAR-10): only when asked for with --quick


def datasets(quick: bool, only) -> dict:
    """Folders the chosen sections need: generated once into the cache folder, then reused."""
    from logoapp.synth import default_dataset
    need = {"train": ("train", "predict", "ladder", "serve"), "load": ("load",), "memory": ("memory",)}
    make = {"train": (lambda: crests("quick", 16, 140, 1)) if quick else default_dataset,
            "load": lambda: crests("load", 16 if quick else 100, 224, 2),      # larger files: a real resize
            "memory": lambda: crests("memory", 200 if quick else 2000, 140, 3)}  # 2,000 or 20,000 images
    return {k: make[k]() for k, sections in need.items() if any(s in only for s in sections)}


def run(quick: bool, only=SECTIONS) -> dict:
    from logoapp.data import open_dataset

    from . import loading, prediction, serving, training
    t0 = time.perf_counter()
    info = machine()
    log(f"{'quick' if quick else 'full'} run on {info['cpu']}, {info['cores']} cores, torch {info['torch']}, "
        f"load {info['load_avg_start']}")
    folders = datasets(quick, only)
    ds = open_dataset(folders["train"]) if "train" in folders else None
    figs, rows, extra = {}, [], {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if "train" in only:
            figs["train_throughput"] = training.throughput(ds, 16 if quick else 64, 1 if quick else 4)
        if "predict" in only:
            figs.update(prediction.bench(ds, quick))
        if "load" in only:
            figs.update(loading.bench(folders["load"], quick))
        if "memory" in only:
            figs.update(loading.memory(folders["memory"]))
        if "serve" in only:
            figs.update(serving.bench(ds, quick))
        if "ladder" in only:
            rows, ladder_figs, cnn = training.ladder(ds, quick)
            figs.update(ladder_figs)
            figs["time_to_cnn"] = training.time_to(cnn, training.RANGES["cnn"][0])
        if "audit" in only:
            from . import audit
            figs.update(audit.run(quick)["figures"])
        if "bigdata" in only:
            from . import bigdata
            figs.update(bigdata.bench(quick))
        if "cifar" in only:
            from . import cifar
            extra["cifar"] = cifar.run(quick)
    info["load_avg_end"] = load_avg()
    return {"mode": "quick" if quick else "full", "machine": info, "figures": figs, "ladder": rows,
            "dataset": ds.summary()["n_images"] if ds is not None else None,
            "seconds": time.perf_counter() - t0, **extra}


def fmt(x, unit: str = "") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if unit == "accuracy":
        return f"{x:.1%}"
    s = f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}" if abs(x) < 1 else f"{x:.1f}"
    return f"{s} {unit}".strip()


def table(res: dict) -> str:
    """The results as a plain-text (Markdown) table, then the ladder and how each figure was measured."""
    m = res["machine"]
    lines = [f"logoapp benchmarks ({res['mode']}), {m['date']}: {m['cpu']}, {m['cores']} cores, "
             f"{m['memory_gb']} GB, torch {m['torch']} ({m['torch_threads']} threads), fastai {m['fastai']}, "
             f"Python {m['python']}; load average {m['load_avg_start']} -> {m['load_avg_end']}", "",
             "| figure | value | reference | ratio | goal | pass |", "|---|---|---|---|---|---|"]
    for f in res["figures"].values():
        ref_unit = f["reference_unit"].split(" (")[0]
        ref_what = f["reference_unit"][len(ref_unit):].strip(" ()")
        ratio = "—" if f["ratio"] is None else f"{f['ratio']:.2f}x"
        lines.append(f"| {f['name']} | {fmt(f['value'], f['unit'])} | {fmt(f['reference'], ref_unit)}"
                     f"{' (' + ref_what + ')' if ref_what else ''} | {ratio} | {f['goal']['text']} | "
                     f"{'pass' if f['pass'] else 'FAIL'} |")
    if res["ladder"]:
        lines += ["", "| model | valid accuracy | epochs | training s | parameters |", "|---|---|---|---|---|"]
        for r in res["ladder"]:
            lines.append(f"| {r['model']} | {r['accuracy']:.1%} | {r['epochs']} | {r['seconds']:.1f} | "
                         f"{r['n_params']:,} |")
    for name, c in (res.get("cifar") or {}).items():
        lines.append(f"\nCIFAR-10 {name}: " + (f"test accuracy {c['accuracy']:.1%} in {c['train_seconds']:.0f} s of "
                                                  f"training (goal {c['goal_accuracy']:.0%} in {c['budget_seconds']} s)"
                                                  f": `{c['command']}`" if "accuracy" in c else f"failed: {c}"))
    lines += ["", "How each figure was measured:"]
    lines += [f"- {f['name']}: {f['how']}" for f in res["figures"].values()]
    lines.append(f"\n{sum(f['pass'] for f in res['figures'].values())}/{len(res['figures'])} goals met in "
                 f"{res['seconds']:.0f} s")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small data, few repeats: a smoke run in well under a minute")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of the table")
    p.add_argument("--only", default=None, help=f"comma-separated sections ({','.join(SECTIONS)}; default all, "
                   "and all but bigdata with --quick)")
    a = p.parse_args(argv)
    default = [s for s in SECTIONS if not (a.quick and s in SLOW)]
    only = tuple(s.strip() for s in (a.only or ",".join(default)).split(",") if s.strip())
    bad = [s for s in only if s not in SECTIONS]
    if bad:
        p.error(f"unknown section(s) {', '.join(bad)}; choose from {', '.join(SECTIONS)}")
    out = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):  # anything a library prints must not spoil the table or the JSON
        res = run(a.quick, only)
    out.write((json.dumps(res, default=float) if a.json else table(res)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
