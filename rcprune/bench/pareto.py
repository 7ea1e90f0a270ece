"""``rcprune bench pareto``: the latency-vs-accuracy report card of RC pruning against Torch-Pruning.

A dense CIFAR ResNet-20 (width 16) is trained once (cached) on MNIST-5k or digits. Torch-Pruning's L1
channel pruning (per-layer and global ratios, :func:`rcprune.bench.demo._tp_prune`) at each share of
removed weights sets the latency targets: the speedup the per-layer model measures over the dense one.
rcprune is then asked for exactly that speedup (``prune(budget="latency", speedup=s)``, measured latency
table, the given channel floors, ``calibrate`` rounds of measuring and correcting the budget) at each
granularity with each network method. Every model is fine-tuned with the same recipe and
epochs (``finetune(lr=0.01)``, seeded), the RC models masked, then compacted (or, where the compacted
model trains only kept weights, as in the group space, compacted and then fine-tuned: the same training,
in less time; the rows' ``finetuned`` says which); with ``recoveries``
including ``"distill"`` every model is fine-tuned a second time from the same start with distillation from
the dense model (rows ``...-distill``, the goals computed within each recovery, and one more goal line: RC's
best recovery against Torch-Pruning's plain fine-tune); all models are timed in one
interleaved run (batch 64, CPU, one thread), each in the faster of its as-is form and BatchNorm-fused +
channels-last form, against the dense model's faster form. Each seed repeats the fine-tunes and the
solver seeds; the report gives mean and sd over seeds, and the goals as PASS / FAIL lines computed from
the data. A second, latency-only part repeats the targets on a torchvision ResNet-18 at 64x64 (random
weights): measured speedups and the table's predicted-vs-measured ratio.

Files written to ``out``: ``pareto.json``, ``pareto.md``, ``pareto.png``, the cached dense weights and
latency tables (``latency-tables/``).
"""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from rcprune.bench.demo import _dense_model, _prunable_weights, _save_png, _tp_prune, run_seed
from rcprune.files import atomic_write_bytes
from rcprune.network.granularity import GROUP_METHODS
from rcprune.validation import InvalidInstanceError

from rcprune.torch.compact import compact
from rcprune.torch.compact_finetune import compacted_for_training, fold_batchnorms
from rcprune.torch.data import CALIBRATION_IMAGES, calibration_batches, digits_loaders, mnist_loaders
from rcprune.torch.finetune import evaluate_accuracy, finetune
from rcprune.torch.latency import time_forms, torch_threads
from rcprune.torch.latency_table import latency_table
from rcprune.torch.pipeline import masks_on_original, prune

__all__ = ["run_pareto", "summarize", "evaluate_goals", "format_report", "write_report", "DATASETS"]

DATASETS = ("mnist", "digits")
GRANULARITIES = ("column", "channel", "group")
DEFAULT_GRANULARITIES = ("column", "channel")
METHODS = ("network-greedy", "network-annealing")
LATENCY_MODELS = ("resnet18",)
RECOVERIES = ("plain", "distill")         # fine-tune: plain, or with distillation from the dense model
SCORES = ("l1", "hessian")               # the RC objective: data-free, or on CALIBRATION_IMAGES training images
TP_VARIANTS = {"tp-l1-per-layer": False, "tp-l1-global": True}
TARGET_METHOD = "tp-l1-per-layer"       # its measured speedups are the targets rcprune is asked for
ACC_TOL = 0.001                          # one MNIST-5k test image
FASTER = 1.2                             # goal (b): speedup at TP's accuracy
LATENCY_TOL = 0.05                       # goal (c)
MATCH_SPARSITIES = (0.9, 0.93)           # goal (c)


def _check_args(dataset, seeds, tp_sparsities, epochs, train_epochs, granularities, methods, latency_model,
                scores=("l1",), recoveries=("plain",)) -> None:
    if dataset not in DATASETS:
        raise InvalidInstanceError(f"dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise InvalidInstanceError(f"seeds must be a non-empty sequence of integers, got {seeds!r}")
    if not tp_sparsities:
        raise InvalidInstanceError("tp_sparsities must name at least one sparsity")
    for s in tp_sparsities:
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 < s < 1:
            raise InvalidInstanceError(f"tp_sparsities must be in (0, 1), got {s!r}")
    for name, v in (("epochs", epochs), ("train_epochs", train_epochs)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise InvalidInstanceError(f"{name} must be a non-negative integer, got {v!r}")
    for name, given, known in (("granularities", granularities, GRANULARITIES), ("methods", methods, METHODS),
                               ("scores", scores, SCORES), ("recoveries", recoveries, RECOVERIES)):
        if not given or any(g not in known for g in given) or len(set(given)) != len(given):
            raise InvalidInstanceError(f"{name} must be a non-empty subset of {', '.join(known)} (each once), "
                                       f"got {given!r}")
    if latency_model is not None and latency_model not in LATENCY_MODELS:
        raise InvalidInstanceError(f"latency_model must be None or one of {', '.join(LATENCY_MODELS)}, "
                                   f"got {latency_model!r}")


def _tp_models(dense: nn.Module, example: torch.Tensor, sparsities, variants=TP_VARIANTS,
               steps: int = 12) -> dict[str, nn.Module]:
    total = sum(_prunable_weights(dense).values())
    return {f"{label}@{s}": _tp_prune(dense, example, int((1 - s) * total), glob, steps)
            for s in sparsities for label, glob in variants.items()}


@torch.inference_mode()
def _run_error(model: nn.Module, x: torch.Tensor) -> str | None:
    """Why ``model`` cannot run on ``x`` (a compacted model whose solution kept no row of a layer feeding a
    pooling op), or None."""
    try:
        model.eval()(x)
    except RuntimeError as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return None


def _targets(timed: dict[str, dict], sparsities) -> dict[float, float]:
    """The speedup TP per-layer measures at each sparsity over the dense model's faster form."""
    base = timed["dense"]["ms"]
    return {s: base / timed[f"{TARGET_METHOD}@{s}"]["ms"] for s in sparsities}


def _label(granularity: str, method: str, floor: float | None = None, scores: str = "l1",
           recovery: str = "plain") -> str:
    return (f"rc-{granularity}-{method.removeprefix('network-')}" + (f"-floor{floor:g}" if floor is not None else "")
            + (f"-{scores}" if scores != "l1" else "") + _suffix(recovery))


def _suffix(recovery: str) -> str:
    return "" if recovery == "plain" else f"-{recovery}"


def _recovery_of(method: str) -> str:
    return next((r for r in RECOVERIES if r != "plain" and method.endswith(_suffix(r))), "plain")


def _teacher(dense: nn.Module, recovery: str) -> dict:
    """``finetune`` options of a recovery: distillation from a frozen copy of the dense model (T = 4,
    alpha = 0.5, finetune's defaults), or none."""
    return {"teacher": copy.deepcopy(dense).eval()} if recovery == "distill" else {}


def _rc_runs(cfg: dict) -> list[tuple[str, str, float | None, str]]:
    """``(granularity, method, floor, scores)`` of every RC row: each granularity with each method, floor and
    objective, except that the group space is searched by its own methods (``GROUP_METHODS``: the optimized
    allocation and the uniform one) whatever ``methods`` says."""
    return [(g, m, f, sc) for g in cfg["granularities"] for m in (GROUP_METHODS if g == "group" else cfg["methods"])
            for f in cfg.get("floors", [None]) for sc in cfg.get("scores", ["l1"])]


def _solver_options(method: str, moves: int) -> dict:
    return {"moves": moves} if method == "network-annealing" else {}


def _rc_model(dense, x, table, speedup, granularity, method, seed, opts, protect=(), floor=None, calibrate=0,
              calibration=None):
    """The masked RC model asked for ``speedup`` and its report, or ``(None, reason)`` when unreachable."""
    try:
        return prune(dense, x, budget="latency", speedup=speedup, latency_table=table, granularity=granularity,
                     method=method, seed=seed, solver_options=opts, compact=False, protect=tuple(protect),
                     min_channels=floor, calibrate=calibrate, calibration=calibration)
    except InvalidInstanceError as exc:
        return None, f"skipped: {exc}"


def _rc_row(dense, data, table, speedup, granularity, method, seed, epochs, opts, progress, protect=(), floor=None,
            calibrate=0, scores="l1", recoveries=("plain",)) -> list[tuple]:
    """Prune once, then per recovery fine-tune (masks fixed; the compacted model where it trains only kept
    weights, :mod:`rcprune.torch.compact_finetune`) from the same start and compact with the table:
    ``[(small model or None, row)]``. With ``scores="hessian"`` the masks are chosen on the calibration set
    (``data[3]``) and the zero-shot accuracy is the refit model's; the fine-tune starts from the original
    weights under those masks, as ``prune(finetune=)`` does."""
    train, test, x, calib = data
    calib = calib if scores == "hessian" else None
    with torch_threads(1):   # calibration times like the table: one thread
        masked, rep = _rc_model(dense, x, table, speedup, granularity, method, seed, opts, protect, floor, calibrate,
                                calib)
    rows = [{"method": _label(granularity, method, floor, scores, r), "granularity": granularity, "solver": method,
             "seed": seed, "scores": scores, "recovery": r, "target_speedup": speedup, "solver_options": opts}
            for r in recoveries]
    if masked is None:
        return [(None, row | {"note": rep, "acc": None}) for row in rows]
    # a layer with no kept row: on a plain path (the stem, a block and its shortcut) it cuts the network
    dead = [le.name for le in rep.result.evaluation.layers if le.density == 0]
    acc0 = evaluate_accuracy(masked, test)
    if calib is not None:
        masks_on_original(masked, calib)
    start = copy.deepcopy(masked.state_dict())   # every recovery fine-tunes from the same weights and masks
    out = []
    for row in rows:
        masked.load_state_dict(start)
        t = time.perf_counter()
        # where the compacted model trains only kept weights it is fine-tuned instead, as prune(finetune=) does
        compacted = compacted_for_training(masked.eval(), rep.solution, rep.extraction, latency_table=table)
        trained = masked if compacted is None else compacted[0]
        hist = finetune(trained, train, epochs, lr=0.01, seed=seed, desc=row["method"], progress=progress,
                        **_teacher(dense, row["recovery"]))
        ft_s = time.perf_counter() - t
        acc_masked = evaluate_accuracy(trained, test)
        if compacted is None:
            small, crep = compact(masked.eval(), rep.solution, rep.extraction, latency_table=table)
        else:
            small, crep = fold_batchnorms(trained.eval()), compacted[1]
        row["finetuned"] = "masked" if compacted is None else "compacted"
        if (err := _run_error(small, x)) is not None:
            out.append((None, row | {"note": f"compacted model does not run: {err}", "acc": None}))
            continue
        out.append((small, row | {"dead_layers": dead, "acc_zero_shot": acc0, "acc_masked": acc_masked,
                                  "acc": evaluate_accuracy(small, test), "predicted_ms": rep.predicted_ms,
                                  "table_dense_ms": rep.dense_ms, "min_channels": rep.result.info.get("min_channels"),
                                  "calibration": rep.result.info.get("calibration"),
                                  "kept_weights": crep.weights_after, "macs": crep.macs_after,
                                  "solve_seconds": rep.seconds["solve"], "finetune_seconds": ft_s, "history": hist}))
    return out


def _tp_row(model, label, sparsity, data, seed, epochs, progress, dense=None, recovery="plain"):
    train, test = data[:2]
    model = copy.deepcopy(model)
    acc0 = evaluate_accuracy(model, test)
    t = time.perf_counter()
    label += _suffix(recovery)
    hist = finetune(model, train, epochs, lr=0.01, seed=seed, desc=f"{label}@{sparsity}", progress=progress,
                    **_teacher(dense, recovery))
    row = {"method": label, "recovery": recovery, "seed": seed, "sparsity": sparsity, "acc_zero_shot": acc0,
           "acc": evaluate_accuracy(model, test), "kept_weights": sum(_prunable_weights(model).values()),
           "finetune_seconds": time.perf_counter() - t, "history": hist}
    return model.eval(), row


def _config(dataset, seeds, tp_sparsities, epochs, train_epochs, granularities, methods, latency_model, moves,
            repeats, quick, protect=(), floors=(None,), calibrate=0, scores=("l1",), recoveries=("plain",),
            dense_seed=None) -> dict:
    cfg = {"dataset": dataset, "depth": 20, "width": 16, "size": 28 if dataset == "mnist" else 8,
           "train_epochs": train_epochs, "finetune_epochs": epochs, "seeds": list(seeds),
           "tp_sparsities": list(tp_sparsities), "granularities": list(granularities), "methods": list(methods),
           "latency_model": latency_model, "annealing_moves": moves, "repeats": repeats, "quick": quick,
           "latency_batch": 64, "latency_threads": 1, "train_threads": torch.get_num_threads(),
           "torch": torch.__version__, "seed": run_seed(seeds, dense_seed), "protect": list(protect),
           "floors": [None if f is None else float(f) for f in floors], "calibrate": calibrate,
           "scores": list(scores), "calibration_images": CALIBRATION_IMAGES, "recoveries": list(recoveries)}
    if quick:
        cfg.update(dataset="digits", size=8, depth=8, width=8, train_epochs=1, finetune_epochs=min(epochs, 1),
                   seeds=list(seeds)[:1], tp_sparsities=list(tp_sparsities)[-2:], methods=["network-greedy"],
                   annealing_moves=min(moves, 20000), repeats=min(repeats, 5), calibration_images=128,
                   calibrate=min(calibrate, 3))
        cfg["seed"] = run_seed(cfg["seeds"], dense_seed)
    return cfg


def _loaders(cfg: dict, seed: int):
    if cfg["dataset"] == "mnist":
        return mnist_loaders(cfg["size"], seed=seed)
    return digits_loaders(cfg["size"], seed=seed)


def _attach_latency(rows: list[dict], keys: dict[int, str], timed: dict[str, dict]) -> None:
    """Measured latency and speedup (over the dense model's faster form, same run) of each timed row."""
    base = timed["dense"]["ms"]
    for i, key in keys.items():
        t = timed[key]
        rows[i].update(latency_ms=t["ms"], as_is_ms=t["as_is_ms"], fused_cl_ms=t["fused_cl_ms"], form=t["form"],
                       speedup=base / t["ms"])
        if rows[i].get("predicted_ms") is not None:
            rows[i]["predicted_over_measured"] = rows[i]["predicted_ms"] / t["as_is_ms"]


def _seed_rows(cfg, dense, tp, table, targets, x, seed, log, progress):
    """Every fine-tuned model of one seed: ``(rows, {row index: model})``."""
    train, test = _loaders(cfg, seed)
    calib = calibration_batches(train.dataset.tensors[0], cfg.get("calibration_images", CALIBRATION_IMAGES), seed)
    data = (train, test, x, calib)
    rows, models = [], {}
    recoveries = cfg.get("recoveries", ["plain"])
    for key, model in tp.items():
        label, s = key.split("@")
        for rec in recoveries:
            models[len(rows)], row = _tp_row(model, label, float(s), data, seed, cfg["finetune_epochs"], progress,
                                             dense, rec)
            rows.append(row | {"target_speedup": targets[float(s)] if label == TARGET_METHOD else None})
            log(f"seed {seed} {row['method']}@{s}: acc {row['acc']:.4f} (fine-tune {row['finetune_seconds']:.0f} s)")
    for s, speedup in targets.items():
        for g, m, floor, sc in _rc_runs(cfg):
            opts = _solver_options(m, cfg["annealing_moves"])
            for small, row in _rc_row(dense, data, table, speedup, g, m, seed, cfg["finetune_epochs"], opts, progress,
                                      cfg["protect"], floor, cfg.get("calibrate", 0), sc, recoveries):
                if small is not None:
                    models[len(rows)] = small
                    log(f"seed {seed} {row['method']} @{speedup:.3f}x: acc {row['acc']:.4f}, predicted "
                        f"{row['predicted_ms']:.2f} ms (solve {row['solve_seconds']:.1f} s, fine-tune "
                        f"{row['finetune_seconds']:.0f} s)")
                else:
                    log(f"seed {seed} {row['method']} @{speedup:.3f}x: {row['note']}")
                rows.append(row | {"sparsity": s})
    return rows, models


def _table_consistency(table) -> float:
    """The table's dense layers summed over its measured dense model: well above 1 (its ``fixed`` part is then
    clipped to 0) means the grid was timed under other load than the dense model, and its targets are off."""
    return table.metadata["dense_layers_ms"] / table.dense_ms


def _latency_model_part(name: str, cfg: dict, cache_dir: Path, log) -> dict:
    """Latency only, random weights: TP per-layer vs rcprune asked for TP's measured speedups."""
    import torchvision

    # quick: one sparsity, a coarse table and a short bisection (TP's pruner traces ResNet-18 at every step)
    batch, size, grid, steps = (2, 32, 4, 5) if cfg["quick"] else (16, 64, None, 12)
    sparsities = cfg["tp_sparsities"][-1:] if cfg["quick"] else cfg["tp_sparsities"]
    torch.manual_seed(cfg["seed"])
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(batch, 3, size, size)
    tp = _tp_models(model, x[:1], sparsities, {TARGET_METHOD: False}, steps)
    with torch_threads(1):
        table = latency_table(model, x, rows=grid, cols=grid, cache_dir=cache_dir)
    targets = _targets(time_forms({"dense": model, **tp}, x, cfg["repeats"]), sparsities)
    rows = [{"method": "dense", "sparsity": 0.0}] + [{"method": TARGET_METHOD, "sparsity": s,
                                                      "target_speedup": targets[s]} for s in sparsities]
    models = {0: model} | {i + 1: m for i, m in enumerate(tp.values())}
    for s, speedup in targets.items():
        for g, m, floor in dict.fromkeys((g, m, f) for g, m, f, _ in _rc_runs(cfg)):   # random weights: no data
            row = {"method": _label(g, m, floor), "sparsity": s, "target_speedup": speedup}
            try:
                small, rep = prune(model, x, budget="latency", speedup=speedup, latency_table=table, granularity=g,
                                   method=m, seed=cfg["seed"], solver_options=_solver_options(m, cfg["annealing_moves"]),
                                   protect=tuple(cfg["protect"]), min_channels=floor)
            except InvalidInstanceError as exc:
                rows.append(row | {"note": f"skipped: {exc}"})
                continue
            if (err := _run_error(small, x)) is not None:
                rows.append(row | {"note": f"compacted model does not run: {err}"})
                continue
            models[len(rows)] = small
            rows.append(row | {"predicted_ms": rep.predicted_ms, "table_dense_ms": rep.dense_ms})
    timed = time_forms({str(i): m for i, m in models.items()}, x, cfg["repeats"])
    _attach_latency(rows, {i: str(i) for i in models}, timed | {"dense": timed["0"]})
    log(f"{name} {size}x{size} batch {batch}: targets " + ", ".join(f"{t:.3f}x" for t in targets.values()))
    return {"model": name, "batch": batch, "size": size, "table_dense_ms": table.dense_ms,
            "table_layers_over_dense": _table_consistency(table), "rows": rows}


def run_pareto(out="rcprune-pareto", *, dataset: str = "mnist", seeds: Sequence[int] = (0, 1, 2),
               tp_sparsities: Sequence[float] = (0.5, 0.75, 0.9, 0.93), epochs: int = 15, train_epochs: int = 15,
               granularities: Sequence[str] = DEFAULT_GRANULARITIES, methods: Sequence[str] = METHODS,
               latency_model: str | None = "resnet18", annealing_moves: int = 200000, repeats: int = 20,
               protect: Sequence[str] = (), floors: Sequence[float | None] = (None,), calibrate: int = 6,
               scores: Sequence[str] = ("l1",), recoveries: Sequence[str] = ("plain",), threads: int = 1,
               quick: bool = False, dense_seed: int | None = None,
               progress: bool = False,
               log: Callable[[str], None] = print) -> dict:
    """Run the report card and write ``pareto.json``, ``pareto.md`` and ``pareto.png`` to ``out``.

    Parameters
    ----------
    out : path
        Output folder; also holds the cached dense weights and latency tables.
    dataset : "mnist" or "digits"
        MNIST-5k at 28x28 (one test image is 0.1 point) or digits at 8x8.
    seeds : sequence of int
        Each repeats every fine-tune and RC solve; the dense model is trained once, with the first (or
        ``dense_seed``).
    dense_seed : int, optional
        Seed of the dense model and of the run's shared data order (:func:`rcprune.bench.demo.run_seed`):
        give the same one to runs split by seeds so that they share one dense model.
    tp_sparsities : sequence of float in (0, 1)
        Shares of conv/linear weights Torch-Pruning removes; its per-layer models' measured speedups are
        the latency targets.
    epochs, train_epochs : int
        Fine-tuning epochs (the same for every model) and dense training epochs.
    granularities, methods : sequences of str
        The RC rows: each granularity (``"column"``, ``"channel"``, ``"group"``; default the first two) with
        each network method; ``"group"`` rows run ``network-group``, the group space's own method.
    latency_model : "resnet18" or None
        The latency-only part (torchvision ResNet-18, 64x64, batch 16, random weights); None skips it.
    annealing_moves : int
        The bounded effort of ``network-annealing`` (proposals).
    repeats : int
        Interleaved timing rounds.
    protect : sequence of str
        Layers whose output channels rcprune must keep (``prune(protect=)``), e.g. the stem and the shortcut
        convs, so that no solution cuts the network's only path; the same names in the latency-only part.
    floors : sequence of float in [0, 1] or None
        Channel floors (``prune(min_channels=)``): each RC row is repeated with each; a row with a given
        floor is labelled ``...-floor<share>``, None is prune's default (0.25, lowered until reachable).
    calibrate : int
        ``prune(calibrate=)`` for the RC rows of the trained model: at most this many rounds of measuring
        the compacted model and correcting the table's budget, stopped within 2% of the target (0 trusts
        the table). 6, not 3: with 3 a row whose third round lands just over the target keeps its first,
        biased round (measured on MNIST: 5.69x for a 3.86x target; 3.83x with 6 rounds; docs/pareto-mnist.md).
    scores : sequence of "l1", "hessian"
        The RC rows' objectives, each row repeated with each: ``"l1"`` (data-free) or ``"hessian"``
        (``prune(calibration=...)`` on 512 training images drawn with the row's seed: masks chosen on
        w_ij^2 H_jj scores and refit, labelled ``...-hessian``; its zero-shot accuracy is the refit
        model's, its fine-tune starts from the original weights under its masks). The latency-only part
        (random weights) runs the ``"l1"`` rows.
    recoveries : sequence of "plain", "distill"
        How every model (RC and Torch-Pruning) is fine-tuned, each from the same start: the plain recipe,
        and/or with distillation from the dense model (``finetune(teacher=dense)``, T = 4, alpha = 0.5;
        rows ``...-distill``). The goals compare rcprune with Torch-Pruning within one recovery; with both,
        one more line compares rcprune's best (either recovery) with Torch-Pruning's plain fine-tune.
    threads : int
        Torch intra-op threads for training and fine-tuning (latency is always timed on one): on a shared
        machine a second thread that loses its core stalls every parallel region (10x slower epochs).
    quick : bool
        Smoke run: digits 8x8, ResNet-8 of width 8, one training and one fine-tuning epoch, the first seed,
        the last two sparsities, network-greedy only; the latency part at 32x32, batch 2, a coarse table.

    Returns
    -------
    dict
        What ``pareto.json`` holds: ``config``, ``dense``, ``targets``, ``rows``, ``summary``, ``goals``,
        ``latency_model``, ``runtime_seconds``.
    """
    _check_args(dataset, seeds, tp_sparsities, epochs, train_epochs, granularities, methods, latency_model, scores,
                recoveries)
    if isinstance(calibrate, bool) or not isinstance(calibrate, int) or calibrate < 0:
        raise InvalidInstanceError(f"calibrate must be a non-negative integer, got {calibrate!r}")
    if not floors or any(f is not None and (isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 <= f <= 1)
                         for f in floors):
        raise InvalidInstanceError(f"floors must be a non-empty sequence of shares in [0, 1] or None, got {floors!r}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InvalidInstanceError(f"threads must be a positive integer, got {threads!r}")
    with torch_threads(threads):
        return _run(out, dataset, seeds, tp_sparsities, epochs, train_epochs, granularities, methods, latency_model,
                    annealing_moves, repeats, quick, progress, log, protect, floors, calibrate, scores, recoveries,
                    dense_seed)


def _run(out, dataset, seeds, tp_sparsities, epochs, train_epochs, granularities, methods, latency_model,
         annealing_moves, repeats, quick, progress, log, protect, floors=(None,), calibrate=0, scores=("l1",),
         recoveries=("plain",), dense_seed=None) -> dict:
    t_start = time.perf_counter()
    cfg = _config(dataset, seeds, tp_sparsities, epochs, train_epochs, granularities, methods, latency_model,
                  annealing_moves, repeats, quick, protect, floors, calibrate, scores, recoveries, dense_seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache_dir = out / "latency-tables"
    torch.manual_seed(cfg["seed"])
    train, test = _loaders(cfg, cfg["seed"])
    dense, dense_info = _dense_model(out, cfg | {"progress": progress}, train, test, log)
    dense_acc = evaluate_accuracy(dense, test)
    x = torch.cat([b for b, _ in test])[:cfg["latency_batch"]]
    log(f"dense ResNet-{cfg['depth']} (width {cfg['width']}) on {cfg['dataset']}: test accuracy {dense_acc:.4f}")
    tp = _tp_models(dense, x[:1], cfg["tp_sparsities"], steps=6 if quick else 12)
    with torch_threads(1):
        t = time.perf_counter()
        table = latency_table(dense, x, cache_dir=cache_dir)
        table_s = time.perf_counter() - t
    log(f"latency table: dense {table.dense_ms:.2f} ms, its layers sum to {_table_consistency(table):.2f}x that "
        f"({table_s:.0f} s)")
    first = time_forms({"dense": dense, **tp}, x, cfg["repeats"])
    targets = _targets(first, cfg["tp_sparsities"])
    log("latency targets (TP per-layer speedups): " + ", ".join(f"{s}: {v:.3f}x" for s, v in targets.items()))
    rows = [{"method": "dense", "sparsity": 0.0, "seed": cfg["seed"], "acc": dense_acc}]
    models = {0: dense}
    for seed in cfg["seeds"]:
        seed_rows, seed_models = _seed_rows(cfg, dense, tp, table, targets, x, seed, log, progress)
        models |= {len(rows) + i: m for i, m in seed_models.items()}
        rows += seed_rows
    timed = time_forms({str(i): m for i, m in models.items()}, x, cfg["repeats"])
    _attach_latency(rows, {i: str(i) for i in models}, timed | {"dense": timed["0"]})
    result = {"config": cfg, "dense": dense_info | {"accuracy": dense_acc, "table_dense_ms": table.dense_ms,
                                                     "table_seconds": table_s,
                                                     "table_layers_over_dense": _table_consistency(table)},
              "targets": {"timing": first, "speedups": {str(s): v for s, v in targets.items()}}, "rows": rows}
    if latency_model is not None:
        result["latency_model"] = _latency_model_part(latency_model, cfg, cache_dir, log)
    result["runtime_seconds"] = time.perf_counter() - t_start
    write_report(out, result)
    log((out / "pareto.md").read_text())
    return result


def _stats(values: list[float]) -> tuple[float, float]:
    """Mean and sample sd (0 for a single value)."""
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and sd over seeds of accuracy, latency and speedup per (method, sparsity); RC rows that were
    skipped (unreachable target) are left out."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r.get("acc") is not None and r.get("latency_ms") is not None:
            groups.setdefault((r["method"], r["sparsity"]), []).append(r)
    out = []
    for (method, s), rs in groups.items():
        acc, acc_sd = _stats([r["acc"] for r in rs])
        ms, ms_sd = _stats([r["latency_ms"] for r in rs])
        sp, sp_sd = _stats([r["speedup"] for r in rs])
        out.append({"method": method, "sparsity": s, "target_speedup": rs[0].get("target_speedup"), "n": len(rs),
                    "acc": acc, "acc_sd": acc_sd, "latency_ms": ms, "latency_sd": ms_sd, "speedup": sp,
                    "speedup_sd": sp_sd})
    return out


def _is_rc(method: str) -> bool:
    return method.startswith("rc-")


def _find(summary, method, sparsity):
    return next((g for g in summary if g["method"] == method and g["sparsity"] == sparsity), None)


def _goal_a(summary, sparsities) -> list[tuple[bool, str]]:
    lines = []
    for s in sparsities:
        rc = [g for g in summary if _is_rc(g["method"]) and g["sparsity"] == s]
        best = max(rc, key=lambda g: g["acc"], default=None)
        for label in TP_VARIANTS:
            tp = _find(summary, label, s)
            if tp is None:
                continue
            if best is None:
                lines.append((False, f"(a) target of TP {s}: no rcprune model reached it; {label} {tp['acc']:.4f}"))
                continue
            lines.append((best["acc"] >= tp["acc"],
                          f"(a) target of TP {s} ({best['target_speedup']:.3f}x): best rcprune {best['method']} "
                          f"{best['acc']:.4f} vs {label} {tp['acc']:.4f} (same removed share, measured "
                          f"{tp['speedup']:.3f}x)"))
    return lines


def _goal_b(summary) -> list[tuple[bool, str]]:
    rc = [g for g in summary if _is_rc(g["method"])]
    lines = []
    for tp in (g for g in summary if g["method"] in TP_VARIANTS):
        good = [g for g in rc if g["acc"] >= tp["acc"] - ACC_TOL]
        name = f"{tp['method']}@{tp['sparsity']} ({tp['acc']:.4f}, {tp['latency_ms']:.2f} ms)"
        if not good:
            lines.append((False, f"(b) {name}: no rcprune point within {ACC_TOL * 100:g} point of its accuracy"))
            continue
        fast = min(good, key=lambda g: g["latency_ms"])
        ratio = tp["latency_ms"] / fast["latency_ms"]
        lines.append((ratio >= FASTER, f"(b) {name}: fastest rcprune at >= its accuracy - {ACC_TOL * 100:g} point is "
                      f"{fast['method']}@{fast['sparsity']} ({fast['acc']:.4f}, {fast['latency_ms']:.2f} ms): "
                      f"{ratio:.3f}x faster (goal {FASTER}x)"))
    return lines


def _goal_c(summary, sparsities) -> list[tuple[bool | None, str]]:
    lines = []
    for s in MATCH_SPARSITIES:
        tp = _find(summary, TARGET_METHOD, s) if s in sparsities else None
        if tp is None:
            lines.append((None, f"(c) TP per-layer at {s}: not in this run"))
            continue
        rc = [g for g in summary if _is_rc(g["method"]) and g["sparsity"] == s]
        ok = [g for g in rc if g["acc"] >= tp["acc"] - ACC_TOL and g["latency_ms"] <= (1 + LATENCY_TOL) * tp["latency_ms"]]
        detail = "; ".join(f"{g['method']} {g['acc']:.4f} ({g['acc'] - tp['acc']:+.4f}), {g['latency_ms']:.2f} ms "
                           f"({g['latency_ms'] / tp['latency_ms'] - 1:+.1%})" for g in rc) or "no rcprune model"
        lines.append((bool(ok), f"(c) at TP per-layer {s}'s {tp['speedup']:.3f}x (acc {tp['acc']:.4f}, "
                      f"{tp['latency_ms']:.2f} ms), accuracy >= TP's - {ACC_TOL * 100:g} point and latency <= "
                      f"{1 + LATENCY_TOL:g}x TP's: {detail}"))
    return lines


def _goal_r(summary, sparsities) -> list[tuple[bool, str]]:
    """(r): goal (a) over the whole summary: rcprune's best model with any recovery vs Torch-Pruning's
    plain fine-tune (its rows keep the unsuffixed labels)."""
    return [(ok, "(r) any recovery vs plain-fine-tuned TP:" + text[3:]) for ok, text in _goal_a(summary, sparsities)]


def evaluate_goals(summary: list[dict], sparsities) -> list[dict]:
    """Goals (a), (b), (c) from the summary, within each recovery (rcprune and Torch-Pruning fine-tuned alike;
    the text says which when a run has several), and (r) across them: ``[{"goal", "status" (PASS / FAIL /
    SKIP), "text"}]``."""
    recoveries = list(dict.fromkeys(_recovery_of(g["method"]) for g in summary if g["method"].startswith(("rc-", "tp-"))))
    lines = []
    for rec in recoveries:
        sub = [g | {"method": g["method"].removesuffix(_suffix(rec))} for g in summary
               if _recovery_of(g["method"]) == rec]
        got = _goal_a(sub, sparsities) + _goal_b(sub) + _goal_c(sub, sparsities)
        tag = f" [{rec} fine-tune: rows {'...' + _suffix(rec) if _suffix(rec) else 'without a suffix'}]"
        tagged = len(recoveries) > 1 or rec != "plain"
        lines += [(ok, text[:3] + tag + text[3:]) if tagged else (ok, text) for ok, text in got]
    if len(recoveries) > 1:
        lines += _goal_r(summary, sparsities)
    status = {True: "PASS", False: "FAIL", None: "SKIP"}
    return [{"goal": text[1], "status": status[ok], "text": text} for ok, text in lines]


def _pm(mean, sd, fmt=".4f") -> str:
    return f"{mean:{fmt}} ± {sd:{fmt}}"


def _table_rows(summary: list[dict]) -> list[str]:
    lines = ["| method | TP sparsity | target speedup | measured speedup | latency ms | accuracy | n | "
             "TP per-layer acc | Δacc vs per-layer | Δlatency vs per-layer | TP global acc | Δacc vs global |",
             "|" + "---|" * 12]
    for g in sorted(summary, key=lambda g: (g["sparsity"], g["method"])):
        suffix = _suffix(_recovery_of(g["method"]))   # against Torch-Pruning fine-tuned the same way
        pl = _find(summary, TARGET_METHOD + suffix, g["sparsity"])
        gl = _find(summary, "tp-l1-global" + suffix, g["sparsity"])
        target = f"{g['target_speedup']:.3f}" if g.get("target_speedup") else "-"
        cells = [g["method"], f"{g['sparsity']:g}", target, _pm(g["speedup"], g["speedup_sd"], ".3f"),
                 _pm(g["latency_ms"], g["latency_sd"], ".2f"), _pm(g["acc"], g["acc_sd"]), str(g["n"])]
        cells += [f"{pl['acc']:.4f}", f"{g['acc'] - pl['acc']:+.4f}", f"{g['latency_ms'] / pl['latency_ms'] - 1:+.1%}"]\
            if pl else ["-"] * 3
        cells += [f"{gl['acc']:.4f}", f"{g['acc'] - gl['acc']:+.4f}"] if gl else ["-"] * 2
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _latency_model_lines(part: dict) -> list[str]:
    lines = [f"## Latency only: torchvision {part['model']} at {part['size']}x{part['size']}, batch {part['batch']}, "
             f"random weights; table: dense {part['table_dense_ms']:.2f} ms, layers sum to "
             f"{part['table_layers_over_dense']:.2f}x that", "", "| method | TP sparsity | target speedup | measured speedup | latency ms | form | "
             "predicted ms | predicted / measured as-is |", "|" + "---|" * 8]
    for r in part["rows"]:
        if r.get("latency_ms") is None:
            lines.append(f"| {r['method']} | {r['sparsity']:g} | {r['target_speedup']:.3f} | {r['note']} |")
            continue
        target = f"{r['target_speedup']:.3f}" if r.get("target_speedup") else "-"
        pred = (f"{r['predicted_ms']:.2f} | {r['predicted_over_measured']:.3f}" if r.get("predicted_ms") is not None
                else "- | -")
        lines.append(f"| {r['method']} | {r['sparsity']:g} | {target} | {r['speedup']:.3f} | {r['latency_ms']:.2f} | "
                     f"{r['form']} | {pred} |")
    return lines


def format_report(result: dict) -> str:
    """``pareto.md`` from a result (``pareto.json``)."""
    cfg = result["config"]
    skipped = [r for r in result["rows"] if r.get("note")]
    lines = [f"# Latency vs accuracy: rcprune vs Torch-Pruning L1 on ResNet-{cfg['depth']} (width {cfg['width']}), "
             f"{cfg['dataset']} {cfg['size']}x{cfg['size']}", "",
             f"Seeds {cfg['seeds']}, {cfg['finetune_epochs']} fine-tune epochs for every model (lr 0.01, cosine), dense "
             f"trained {cfg['train_epochs']} epochs with seed {cfg['seed']} (accuracy {result['dense']['accuracy']:.4f}); TP sparsities "
             f"{cfg['tp_sparsities']}; rcprune {cfg['granularities']} x {cfg['methods']}"
             + (f" (annealing: {cfg['annealing_moves']} moves)" if "network-annealing" in cfg["methods"] else "")
             + (f", protecting {', '.join(cfg['protect'])}" if cfg.get("protect") else "")
             + (f", channel floors {cfg['floors']} (None: prune's default)" if cfg.get("floors", [None]) != [None] else "")
             + (f", objectives {cfg['scores']} (hessian: {cfg['calibration_images']} calibration images)"
                if cfg.get("scores", ["l1"]) != ["l1"] else "")
             + (f", latency calibrated by up to {cfg['calibrate']} measured rounds" if cfg.get("calibrate") else "")
             + (f", fine-tuned {' and '.join(cfg['recoveries'])} (distill: from the dense model, T 4, alpha 0.5; "
                "Δ columns against Torch-Pruning fine-tuned the same way)"
                if cfg.get("recoveries", ["plain"]) != ["plain"] else "")
             + f", asked for TP per-layer's measured speedups (phase 1 timing). Latency: CPU, batch "
             f"{cfg['latency_batch']}, {cfg['latency_threads']} thread, median of {cfg['repeats']} interleaved rounds, "
             "all models in one run, each in the faster of as-is and BatchNorm-fused + channels-last; speedups over "
             f"the dense model's faster form. Latency table: dense {result['dense']['table_dense_ms']:.2f} ms, its "
             f"layers sum to {result['dense']['table_layers_over_dense']:.2f}x that (about 1 when consistent). Torch "
             f"{cfg['torch']}, runtime {result['runtime_seconds']:.0f} s.", "",
             *_table_rows(result["summary"]), "", "## Goals", ""]
    lines += [f"- {g['status']} {g['text']}" for g in result["goals"]]
    dead = [r for r in result["rows"] if r.get("dead_layers")]
    if dead:
        lines += ["", "Layers the RC solutions removed entirely (no kept row):", ""]
        lines += [f"- seed {r['seed']} {r['method']} @{r['target_speedup']:.3f}x: {', '.join(r['dead_layers'])}"
                  for r in dead]
    if skipped:
        lines += ["", "Not run (unreachable targets):", ""] + [f"- seed {r['seed']} {r['method']}: {r['note']}"
                                                               for r in skipped]
    if result.get("latency_model"):
        lines += ["", *_latency_model_lines(result["latency_model"])]
    return "\n".join(lines) + "\n"


def _plot(out: Path, summary: list[dict]) -> str | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in dict.fromkeys(g["method"] for g in summary):
        pts = sorted((g for g in summary if g["method"] == method), key=lambda g: g["latency_ms"])
        ax.errorbar([g["latency_ms"] for g in pts], [g["acc"] for g in pts], xerr=[g["latency_sd"] for g in pts],
                    yerr=[g["acc_sd"] for g in pts], marker="*" if method == "dense" else "o", capsize=3,
                    label=method)
    ax.set_xlabel("measured latency (ms, batch 64, 1 thread)")
    ax.set_ylabel("test accuracy after fine-tuning")
    ax.legend(fontsize=7)
    return _save_png(plt, fig, out / "pareto.png")


def write_report(out, result: dict) -> dict:
    """Add ``summary`` and ``goals`` to ``result`` and write ``pareto.json``, ``pareto.md`` and ``pareto.png``."""
    out = Path(out)
    result["summary"] = summarize(result["rows"])
    result["goals"] = evaluate_goals(result["summary"], result["config"]["tp_sparsities"])
    atomic_write_bytes(out / "pareto.json", json.dumps(result, indent=1, default=float).encode())
    atomic_write_bytes(out / "pareto.md", format_report(result).encode())
    result["plot"] = _plot(out, result["summary"])
    return result
