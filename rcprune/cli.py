"""The ``rcprune`` command line: solve, instances, bench."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rcprune import library
from rcprune.text import format_table
from rcprune.matrix.io import load_instance, save_instance, save_solution
from rcprune.matrix.model import Instance
from rcprune.validation import InvalidInstanceError

__all__ = ["main"]

SOLVE_DEFAULT = BOUND_SOLVER_DEFAULT = "greedy-row-column"


def _resolve_instance(ref: str | None):
    """A file path (.npz: a matrix or a network instance) or a library instance or network name."""
    ref = ref or library.DEFAULT_INSTANCE
    if ref in library.CATALOGUE:
        return library.get(ref)
    if ref in library.network_names():
        return library.get_network(ref)
    if Path(ref).suffix == ".npz" or Path(ref).exists():
        from rcprune.network.io import is_network_file, load_network

        return load_network(ref) if is_network_file(ref) else load_instance(ref)
    raise InvalidInstanceError(f"{ref!r} is neither an instance file nor a library instance "
                               "(`rcprune instances list` shows the library)")


def _parse_options(pairs: list[str]) -> dict:
    options = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInstanceError(f"--option takes KEY=VALUE, got {pair!r}")
        try:
            options[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            options[key.replace("-", "_")] = value
    return options


def _with_budget(inst, args):
    chosen = {k: v for k, v in (("budget", args.budget), ("density", args.density), ("sparsity", args.sparsity),
                                ("shape", tuple(args.shape) if args.shape else None)) if v is not None}
    if "shape" in chosen and not isinstance(inst, Instance):
        raise InvalidInstanceError("--shape applies to single-matrix instances, not to networks")
    return inst.replace(**chosen) if chosen else inst


def _network_methods(inst, methods: list[str], default: str) -> list[str]:
    """A network instance takes network methods; the single-matrix default becomes network-greedy."""
    if isinstance(inst, Instance):
        return methods
    return ["network-greedy" if m == default else m for m in methods]


def _print_network(inst, rows: list[dict]) -> None:
    if inst.measure.is_count:
        print(f"network {inst.name}: {inst.n_layers} layers, budget {inst.effective_budget} kept entries of "
              f"{inst.total_entries} (density {inst.effective_budget / inst.total_entries:.4g})")
        columns = ["method", "status", "cost", "kept_count", "dead_channels", "lower_bound", "gap", "runtime"]
    else:
        full = float(inst.full_spend.sum())
        print(f"network {inst.name}: {inst.n_layers} layers, budget {inst.effective_budget:.6g} {inst.measure.unit} "
              f"({inst.measure.name}) of {full:.6g} (share {inst.effective_budget / full:.4g})")
        columns = ["method", "status", "cost", "spend", "kept_count", "dead_channels", "lower_bound", "gap", "runtime"]
    print(format_table(rows, columns))


def cmd_solve(args) -> int:
    from rcprune.solve import solve

    inst = _with_budget(_resolve_instance(args.instance), args)
    methods = _network_methods(inst, [m.strip() for m in args.method.split(",") if m.strip()], SOLVE_DEFAULT)
    options = _parse_options(args.option)
    if args.out and len(methods) != 1:
        raise InvalidInstanceError("--out saves one solution: give a single --method")
    results = [solve(inst, method=m, seed=args.seed, time_limit=args.time_limit, **options) for m in methods]
    if not isinstance(inst, Instance):
        rows = [res.summary() for res in results]
        if args.out:
            from rcprune.network.io import save_network_solution

            save_network_solution(inst, results[0].solution, args.out, {"instance": inst.name, **rows[0]})
        if args.json:
            print(json.dumps({"instance": inst.name, "budget": inst.effective_budget, "results": rows}, indent=1))
        else:
            _print_network(inst, rows)
            if args.out:
                print(f"solution saved to {args.out}")
        return 0
    best_known = inst.metadata.get("best_known_cost")
    lower = inst.metadata.get("best_lower_bound") if inst.metadata.get("proven") else None
    rows = []
    for res in results:
        row = res.summary()
        row["vs_best_known"] = None if not best_known else res.cost / best_known - 1
        rows.append(row)
    if args.out:
        save_solution(results[0].solution, args.out, {"instance": inst.name, **rows[0]})
    if args.json:
        print(json.dumps({"instance": inst.name, "shape": [inst.m, inst.n], "budget": inst.budget,
                          "results": rows}, indent=1))
    else:
        print(f"instance {inst.name}: {inst.m} x {inst.n}, budget {inst.budget} kept entries "
              f"(density {inst.density:.4g}), total score {inst.total:.6g}")
        if best_known is not None:
            print(f"best known cost {best_known:.6g}" + (" (proven optimal)" if lower is not None else ""))
        print(format_table(rows, ["method", "status", "cost", "kept_rows", "kept_cols", "kept_count",
                                  "lower_bound", "gap", "vs_best_known", "runtime"]))
        if args.out:
            print(f"solution saved to {args.out}")
    return 0


def cmd_instances(args) -> int:
    if args.action == "list":
        rows = [{"name": r["name"], "shape": "x".join(map(str, r["shape"])), "budget": r.get("budget"),
                 "best_known": r["best_known_cost"], "lower_bound": r["best_lower_bound"],
                 "proven": r["proven"], "method": r["best_method"], "stored": r["stored"]}
                for r in library.index().values()]
        print(format_table(rows))
    elif args.action == "show":
        if not args.name:
            raise InvalidInstanceError("instances show needs a NAME")
        inst = library.get(args.name)
        print(json.dumps({"name": inst.name, "shape": [inst.m, inst.n], "budget": inst.budget,
                          "fixed_shape": inst.fixed_shape, "density": inst.density, "total": inst.total,
                          "metadata": dict(inst.metadata), "spec": library.spec(args.name)}, indent=1))
    elif args.action == "generate":
        if not args.name or not args.out:
            raise InvalidInstanceError("instances generate needs a NAME and --out FILE")
        path = save_instance(library.generate_named(args.name), args.out)
        print(f"wrote {path}")
    elif args.action == "update":
        methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
        from rcprune.bench.library import update

        update([args.name] if args.name else None, methods=methods, time_limit=args.time_limit,
                       bound_time=args.bound_time)
        print(f"index updated: {library.index_path()}")
    return 0


def cmd_bench(args) -> int:
    if args.what == "kernels":
        from rcprune.bench.matrix import bench_kernels

        rows = bench_kernels(m=args.m, n=args.n, density=args.density, seed=args.seed)
        print(f"kernels on a {args.m} x {args.n} Laplace instance, density {args.density} "
              "(best of repeats; speedup = numpy / numba, measured in this run)")
        print(format_table(rows))
    elif args.what == "solvers":
        from rcprune import library
        from rcprune.bench.matrix import bench_move_rate, bench_solvers, summarize_solvers

        names = args.instances.split(",") if args.instances else None
        if args.quick and not names:
            names = [n for n in library.names() if library.spec(n)["m"] * library.spec(n)["n"] <= 4000]
        limit = args.time_limit or (2.0 if args.quick else 10.0)
        rows = bench_solvers(names, time_limit=limit, seed=args.seed,
                             log=lambda msg: print(msg, file=sys.stderr))
        print("solvers on the instance library (gap = (cost - best proven lower bound) / cost; "
              "vs_optimum where the optimum is proven)")
        print(format_table(rows))
        for line in summarize_solvers(rows):
            print(line)
        rate = bench_move_rate(moves=50_000 if args.quick else 2_000_000, hot_moves=5_000 if args.quick else 20_000)
        print(f"annealing on {rate['instance']}, numba vs numpy on the same chain (same moves, {rate['precision']} "
              "scores, same run): "
              f"{rate['moves']} moves, numba {rate['numba_moves_per_s']:.3g} moves/s, numpy "
              f"{rate['numpy_moves_per_s']:.3g} moves/s, speedup {rate['speedup']:.1f}x (acceptance "
              f"{rate['acceptance']:.3f}); hot {rate['hot_moves']}-move chain: {rate['hot_speedup']:.1f}x "
              f"(acceptance {rate['hot_acceptance']:.3f})")
    elif args.what == "network":
        from rcprune.bench.network import BENCH_COLUMNS, BOUND_COLUMNS, bench_network

        sparsities = args.sparsities or "0.5,0.8,0.9,0.93"
        rows = bench_network(models=(args.models or "resnet18,resnet50").split(","), sparsities=[float(v) for v in sparsities.split(",")],
                             time_limit=args.time_limit or 60.0, seed=args.seed, bound=args.bound,
                             log=lambda msg: print(msg, file=sys.stderr))
        print("whole-network RC pruning on ResNet-shaped instances (weighting by layer mean; vs_greedy measured in "
              "this run; annealing starts from the greedy and excludes its time)")
        print(format_table(rows, BENCH_COLUMNS + (BOUND_COLUMNS if args.bound else [])))
    elif args.what == "retention" and args.trained:
        try:
            from rcprune.bench.trained_retention import TRAINED_COLUMNS, bench_trained_retention, summarize_trained
        except ImportError as exc:
            raise InvalidInstanceError(f"--trained needs the torch extra (pip install 'rcprune[torch]'): {exc}") from None
        sparsity = args.sparsity if args.sparsity is not None else 0.9
        rows = bench_trained_retention(args.cache, sparsity=sparsity, seed=args.seed,
                                       time_limit=args.time_limit or 60.0, log=lambda msg: print(msg, file=sys.stderr))
        print(f"small-weight retention on the conv layers of the trained digits ResNet-20 ({rows[0]['model']}; H from "
              f"the digits training images) at sparsity {sparsity}; improvement = 1 - E / E_magnitude, "
              "measured in this run")
        print(format_table(rows, TRAINED_COLUMNS))
        for line in summarize_trained(rows):
            print(line)
    elif args.what == "layerwise":
        _bench_layerwise(args)
    elif args.what == "bounds":
        _bench_bounds(args)
    elif args.what == "latency":
        _bench_latency(args)
    elif args.what == "pareto":
        _bench_pareto(args)
    elif args.what == "zeroshot":
        _bench_zeroshot(args)
    elif args.what == "large-layer":
        _bench_large_layer(args)
    elif args.what == "feather":
        _bench_feather(args)
    elif args.what == "parallel":
        _bench_parallel(args)
    elif args.what == "export":
        _bench_export(args)
    elif args.what == "architectures":
        try:
            from rcprune.bench.architectures import run_architectures
        except ImportError as exc:
            raise InvalidInstanceError(f"bench architectures needs the torch and bench extras (pip install "
                                       f"'rcprune[torch,bench]'): {exc}") from None
        sparsities = _split_list(args.sparsities, float, "--sparsities") if args.sparsities else None
        print(run_architectures(quick=args.quick, models=args.models, size=args.size, batch=args.batch,
                                repeats=args.repeats, out=args.out, sparsities=sparsities,
                                latency_budget=args.latency_budget, log=lambda msg: print(msg, file=sys.stderr)))
    elif args.what in ("table", "plan"):
        _bench_table(args)
    elif args.what == "retention":
        from rcprune.bench.retention import bench_retention

        rows = bench_retention(sparsity=args.sparsity if args.sparsity is not None else 0.9, seed=args.seed,
                               time_limit=args.time_limit or 60.0)
        print("small-weight retention on digits conv layers (H from real im2col patches of sklearn digits, "
              "Laplace weights); improvement = 1 - E / E_magnitude, measured in this run")
        print(format_table(rows, ["layer", "n", "k", "method", "cost", "magnitude_cost", "improvement",
                                  "refit_cost", "retained_small", "status", "runtime"]))
    return 0


def _bench_zeroshot(args) -> None:
    try:
        from rcprune.bench.zeroshot import run_zeroshot
    except ImportError as exc:
        raise InvalidInstanceError(f"bench zeroshot needs the torch and bench extras (pip install "
                                   f"'rcprune[torch,bench]'): {exc}") from None
    kw = {}
    if args.sparsities:
        kw["sparsities"] = _split_list(args.sparsities, float, "--sparsities")
    if args.finetune_sparsities is not None:
        kw["finetune_sparsities"] = _split_list(args.finetune_sparsities, float, "--finetune-sparsities") \
            if args.finetune_sparsities else ()
    if args.methods:
        kw["methods"] = _split_list(args.methods, str.strip, "--methods")
    result = run_zeroshot(args.out or "rcprune-zeroshot", dataset=args.dataset,
                          seeds=_split_list(args.seeds, int, "--seeds"), epochs=args.epochs, quick=args.quick,
                          dense_seed=args.dense_seed, log=lambda msg: print(msg, file=sys.stderr), **kw)
    from rcprune.bench.zeroshot import format_zeroshot

    print(format_zeroshot(result))


def _bench_large_layer(args) -> None:
    from rcprune.bench.large_layer import LARGE_LAYER_COLUMNS, bench_large_layer

    m, n = (64, 576) if args.quick else (args.m, args.n)
    sparsity = args.sparsity if args.sparsity is not None else 0.9
    kw = {"methods": _split_list(args.methods, str.strip, "--methods")} if args.methods else {}
    rows = bench_large_layer(m, n, sparsity=sparsity, seed=args.seed, time_limit=args.time_limit,
                             log=lambda msg: print(msg, file=sys.stderr), **kw)
    print(f"weight selection on one {m} x {n} layer (synthetic correlated inputs, Laplace weights, damping 0.01, "
          f"per-row budgets) under the compensated objective; vs_anchor and time_vs_anchor against SparseGPT, "
          f"measured in this run; instance built in {rows[0]['build_seconds']:.1f} s (not in the seconds)")
    print(format_table(rows, LARGE_LAYER_COLUMNS))


def _bench_export(args) -> None:
    try:
        from rcprune.bench.export import format_export, run_export_bench
    except ImportError as exc:
        raise InvalidInstanceError(f"bench export needs the torch extra (pip install 'rcprune[torch]'): {exc}") from None
    sparsities = _split_list(args.sparsities, float, "--sparsities") if args.sparsities else (0.5, 0.9)
    models = _split_list(args.models, str.strip, "--models") if args.models else None
    result = run_export_bench(args.out or "rcprune-export", models=models, sparsities=sparsities, quick=args.quick,
                              log=lambda msg: print(msg, file=sys.stderr))
    print(format_export(result))


def _bench_parallel(args) -> None:
    from rcprune.parallel import check_backend, check_n_jobs

    n_jobs, backend = check_n_jobs(args.n_jobs), check_backend(args.backend)
    try:
        from rcprune.bench.parallel import PARALLEL_COLUMNS, bench_parallel
    except ImportError as exc:
        raise InvalidInstanceError(f"bench parallel needs the torch extra (pip install 'rcprune[torch]'): "
                                   f"{exc}") from None
    method = _split_list(args.methods, str.strip, "--methods")[0] if args.methods else "compensated-tabu"
    out = bench_parallel(quick=args.quick, n_jobs=n_jobs, backend=backend, method=method,
                         sparsity=args.sparsity if args.sparsity is not None else 0.9, seed=args.seed,
                         repeats=args.repeats or (1 if args.quick else 2), log=lambda msg: print(msg, file=sys.stderr))
    load = ", ".join(f"{v:.2f}" for v in out["load"])
    print(f"layer-parallel retention ({out['method']}, sparsity {out['sparsity']:g}) of {out['layers']} layers of "
          f"{out['model']}; H from {out['images']} random {out['size']}x{out['size']} images (one pass, "
          f"{out['calibration_seconds']:.1f} s, not in the times); wall seconds of the layer solves, best of "
          f"{out['repeats']} interleaved rounds in this run after a {out['warmup_seconds']:.1f} s warm-up; "
          f"{out['cpus']} cpus, load average {load}")
    print(format_table(out["rows"], PARALLEL_COLUMNS))
    par, one = out["rows"][-1], out["rows"][1]
    print(f"parallel vs serial (default threads): {par['vs_serial']:.2f}x; vs serial (1 thread): "
          f"{one['seconds'] / par['seconds']:.2f}x; masks identical: {par['masks_identical']}")


def _bench_feather(args) -> None:
    try:
        from rcprune.bench.feather import format_feather, run_feather_bench
    except ImportError as exc:
        raise InvalidInstanceError(f"bench feather needs the torch and bench extras (pip install "
                                   f"'rcprune[torch,bench]'): {exc}") from None
    kw = {"sparsities": _split_list(args.sparsities, float, "--sparsities")} if args.sparsities else {}
    if args.methods:
        kw["methods"] = _split_list(args.methods, str.strip, "--methods")
    result = run_feather_bench(args.out or "rcprune-feather", dataset=args.dataset,
                               seeds=_split_list(args.seeds, int, "--seeds"), epochs=args.epochs, quick=args.quick,
                               dense_seed=args.dense_seed, log=lambda msg: print(msg, file=sys.stderr), **kw)
    print(format_feather(result))


def _bench_layerwise(args) -> None:
    try:
        from rcprune.bench.layerwise import LAYERWISE_COLUMNS, bench_layerwise, summarize_layerwise
    except ImportError as exc:
        raise InvalidInstanceError(f"bench layerwise needs the torch extra (pip install 'rcprune[torch]'): {exc}") from None
    sparsities = _split_list(args.sparsities or "0.5,0.7,0.9", float, "--sparsities")
    rows = bench_layerwise(args.cache, sparsities=sparsities, seed=args.seed, time_limit=args.time_limit or 600.0,
                           log=lambda msg: print(msg, file=sys.stderr))
    print(f"weight selection and RC under the compensated objective (the error after the least-squares refit) on "
          f"every layer of the trained digits ResNet-20 ({rows[0]['model']}; H from 512 training images, damping "
          "0.01, per-row budgets for weights); vs_anchor = error / the anchor's (OBC, structured-OBS) on the same "
          "layer, measured in this run")
    print(format_table(rows, LAYERWISE_COLUMNS))
    for line in summarize_layerwise(rows):
        print(line)


def _bench_bounds(args) -> None:
    """``bench bounds``: certified gaps of the best solver on the library's real-layer-shaped instances, or
    (``--trained``) on every layer of the demo's trained digits ResNet-20."""
    sparsities = (args.sparsity,) if args.sparsity is not None else (0.9, 0.93)
    if args.trained:
        try:
            from rcprune.bench.trained_bounds import BOUND_COLUMNS, bench_trained_bounds, summarize_bounds
        except ImportError as exc:
            raise InvalidInstanceError(
                f"--trained needs the torch extra (pip install 'rcprune[torch]'): {exc}") from None
        rows = bench_trained_bounds(args.cache, sparsities=sparsities, seed=args.seed,
                                    annealing_time=0.2 if args.quick else 1.0,
                                    bound_time=args.time_limit or (1.0 if args.quick else 10.0),
                                    log=lambda msg: print(msg, file=sys.stderr))
        print(f"certified gaps on the conv/linear layers of the trained digits ResNet-20 ({rows[0]['model']}; "
              "scores |w|): best of the greedy pair and local annealing vs the best lower bound, same run")
        print(format_table(rows, BOUND_COLUMNS))
        for line in summarize_bounds(rows):
            print(line)
        return
    from rcprune.bench.bounds import REAL_LAYER_INSTANCES, gap_benchmark

    names = args.instances.split(",") if args.instances else (
        REAL_LAYER_INSTANCES[:2] if args.quick else REAL_LAYER_INSTANCES)
    rows = gap_benchmark(names, sparsities=sparsities, time_limit=args.time_limit or (1.0 if args.quick else 5.0))
    print("certified gaps on real-layer-shaped library instances: best solver cost vs the best lower bound "
          "(gap = (cost - bound) / cost, same run)")
    print(format_table(rows))


def _split_list(text: str, cast, what: str) -> tuple:
    try:
        return tuple(cast(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InvalidInstanceError(f"{what} must be a comma-separated list, got {text!r}") from None


def _bench_pareto(args) -> None:
    try:
        from rcprune.bench.pareto import DEFAULT_GRANULARITIES, METHODS, run_pareto
    except ImportError as exc:
        raise InvalidInstanceError(f"bench pareto needs the torch and bench extras (pip install "
                                   f"'rcprune[torch,bench]'): {exc}") from None
    kwargs = {"dataset": args.dataset, "seeds": _split_list(args.seeds, int, "--seeds"), "epochs": args.epochs,
              "train_epochs": args.train_epochs, "quick": args.quick, "dense_seed": args.dense_seed,
              "granularities": _split_list(args.granularities or ",".join(DEFAULT_GRANULARITIES), str,
                                            "--granularities"),
              "methods": _split_list(args.methods or ",".join(METHODS), str, "--methods"),
              "latency_model": None if args.no_latency_model else "resnet18",
              "protect": _split_list(args.protect or "", str, "--protect"),
              "calibrate": args.calibrate, "scores": _split_list(args.scores or "l1", str, "--scores"),
              "recoveries": _split_list(args.recoveries or "plain", str, "--recoveries"),
              "floors": _split_list(args.floors or "default", lambda f: None if f == "default" else float(f), "--floors"),
              "log": lambda msg: print(msg, file=sys.stderr)}
    if args.tp_sparsities is not None:
        kwargs["tp_sparsities"] = _split_list(args.tp_sparsities, float, "--tp-sparsities")
    out = args.out or "rcprune-pareto"
    result = run_pareto(out, **kwargs)
    print((Path(out) / "pareto.md").read_text())
    print(f"wrote pareto.json, pareto.md and {result['plot'] or 'no plot'} to {out}")


def _bench_table(args) -> None:
    """``bench table``: the latency table's predicted vs measured ms of compacted models; ``bench plan``:
    seconds to plan a latency-budgeted ResNet-50 once its table is built."""
    try:
        import torch  # noqa: F401

        from rcprune.bench.latency_table import run_table_check
        from rcprune.bench.planning import PLANNING_COLUMNS, bench_planning
    except ImportError as exc:
        raise InvalidInstanceError(f"bench {args.what} needs the torch extra (pip install 'rcprune[torch]'): "
                                   f"{exc}") from None
    if args.what == "table":
        densities = (0.5, 0.85) if args.quick else (0.3, 0.5, 0.7, 0.85)
        models = ("resnet20-28x28-b64",) if args.quick else None
        result = run_table_check(args.out, seed=args.seed, densities=densities, models=models,
                                 repeats=args.repeats or (3 if args.quick else 15))
        print("latency table: predicted vs measured ms of compacted models (network-greedy at each share of "
              "the full latency spend; one thread; interleaved in this run)")
        print(format_table(result["rows"]))
        return
    quick = {"size": 32, "batch": 2, "speedups": (2.0,), "table_options": {"rows": 3, "cols": 3, "repeats": 1}}
    rows, facts = bench_planning("resnet18" if args.quick else "resnet50", seed=args.seed,
                                 **(quick if args.quick else {}))
    print(f"planning a latency budget: {facts['model']} {facts['input']}, table built in {facts['table_s']:.1f} s "
          f"(dense {facts['dense_ms']:.2f} ms on {facts['device']}); seconds of budgeted instance + solve")
    print(format_table(rows, PLANNING_COLUMNS))


def _bench_latency(args) -> None:
    try:
        import torch

        from rcprune.bench.latency import BENCH_VARIANTS, bench_resnet18
        from rcprune.torch.latency import BREAKDOWN_CATEGORIES
    except ImportError as exc:
        raise InvalidInstanceError(f"bench latency needs the torch extra (pip install 'rcprune[torch]'): {exc}") \
            from None
    sparsity = args.sparsity if args.sparsity is not None else 0.9
    batch, size = (args.batch or 4, args.size or 32) if args.quick else (args.batch or 64, args.size or 112)
    repeats = args.repeats or (2 if args.quick else 7)
    variants = ("auto", "im2col", "conv") if args.quick else BENCH_VARIANTS
    rows = bench_resnet18(sparsity, batch=batch, size=size, repeats=repeats, seed=args.seed, variants=variants,
                          weighting=args.weighting, breakdown=args.breakdown, device=args.device)
    print(f"{args.device} latency of torchvision ResNet-18 (random weights) RC pruned at sparsity {sparsity} by network-greedy "
          f"(layer weighting {args.weighting or 'none'}) and compacted, batch {batch}, input {size}x{size}, {torch.get_num_threads()} threads: median of {repeats} "
          "interleaved runs; speedup vs dense (NCHW), speedup_vs_cl vs dense channels-last")
    print(format_table(rows, ["model", "latency_ms", "speedup", "speedup_vs_cl", "mac_ratio", "speedup_over_mac_ratio",
                              "macs", "kept_weights"]))
    if args.breakdown:
        print("where the time goes: ms per forward under torch.profiler (which adds overhead), by kind of op")
        print(format_table(rows, ["model", *BREAKDOWN_CATEGORIES, "total"]))


def cmd_verify_bounds(args) -> int:
    from rcprune.theory.verify import format_bounds, verify_bounds

    reports = verify_bounds(n=args.n, seed=args.seed, max_side=args.max_side)
    print(f"greedy cost / optimum on {args.n} random instances up to {args.max_side} x {args.max_side} "
          "(optimum by brute force; proofs/approximation.md proves every ratio <= 2)")
    print(format_bounds(reports))
    bad = sum(r.violations + r.bound_violations + r.infeasible for r in reports.values())
    return 1 if bad else 0


def cmd_bound(args) -> int:
    from rcprune.certify import lower_bound
    from rcprune.solve import solve

    inst = _with_budget(_resolve_instance(args.instance), args)
    if not isinstance(inst, Instance):
        return _bound_network(inst, args)
    result = solve(inst, method=args.solver, time_limit=args.time_limit)
    b = lower_bound(inst, args.method, time_limit=args.time_limit, incumbent=result)
    best = max(b.bound, result.lower_bound or 0.0)
    gap = 0.0 if result.cost <= 0 else max(0.0, (result.cost - best) / result.cost)
    row = {"instance": inst.name, "m": inst.m, "n": inst.n, "budget": inst.budget, "solver": args.solver,
           "cost": result.cost, "lower_bound": best, "gap": gap, "bound_method": b.method,
           "bound_runtime": b.runtime, "proof": b.proof}
    return _print_bound(row, f"{inst.m} x {inst.n}, budget {inst.budget}", None, args.json)


def _print_bound(row: dict, what: str, table: list | None, as_json: bool) -> int:
    if as_json:
        print(json.dumps(row, indent=2))
        return 0
    print(f"{row['instance']} ({what}): {row['solver']} cost {row['cost']:.6g}, lower bound {row['lower_bound']:.6g} "
          f"-> at most {100 * row['gap']:.2f}% above optimal (bound in {row['bound_runtime']:.2f} s)")
    if table:
        print(format_table(table))
    print(row["proof"])
    return 0


def _bound_network(inst, args) -> int:
    from rcprune.solve import solve

    if args.method != "best":
        raise InvalidInstanceError(f"network instances have one bound (the network bound); got --method {args.method!r}")
    solver = _network_methods(inst, [args.solver], BOUND_SOLVER_DEFAULT)[0]
    res = solve(inst, method=solver, time_limit=args.time_limit, bound=True)
    b = res.info["bound"]
    row = {"instance": inst.name, "budget": inst.effective_budget, "solver": solver, "cost": res.cost,
           "lower_bound": res.lower_bound, "gap": res.gap, "bound_method": "network",
           "bound_runtime": b["runtime"], "proof": b["proof"], "per_layer": b["per_layer"]}
    return _print_bound(row, f"{inst.n_layers} layers, budget {inst.effective_budget}", b["per_layer"], args.json)


def cmd_demo(args) -> int:
    try:
        from rcprune.bench.demo import run_demo
    except ImportError as exc:
        raise InvalidInstanceError(f"the demo needs the torch extra (pip install 'rcprune[torch]'): {exc}") from None
    sparsities = tuple(float(v) for v in args.sparsity.split(",") if v.strip())
    result = run_demo(args.out, seed=args.seed, epochs=args.epochs, train_epochs=args.train_epochs,
                      sparsities=sparsities, quick=args.quick, progress=not args.no_progress,
                      retention=not args.no_retention)
    print(f"wrote results.json, results.md and {', '.join(result['plots']) or 'no plots'} to {args.out}")
    if not args.no_pareto:   # the latency-vs-accuracy card on digits: the demo's sparsities set TP's targets
        from rcprune.bench.pareto import run_pareto

        out = Path(args.out) / "pareto"
        run_pareto(out, dataset="digits", seeds=(args.seed,), tp_sparsities=sparsities, epochs=args.epochs,
                   train_epochs=args.train_epochs, latency_model=None, quick=args.quick, log=print)
        print(f"wrote pareto.json, pareto.md and pareto.png to {out}")
    return 0


def _add_instance_args(parser: argparse.ArgumentParser) -> None:
    """The instance (file or library name) and one optional budget override, read by :func:`_with_budget`."""
    parser.add_argument("instance", nargs="?",
                        help=f"a .npz file or a library name (default {library.DEFAULT_INSTANCE})")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--budget", type=int, help="maximum kept entries K")
    group.add_argument("--density", type=float, help="kept fraction d in (0, 1]")
    group.add_argument("--sparsity", type=float, help="pruned fraction s in [0, 1)")
    group.add_argument("--shape", type=int, nargs=2, metavar=("ROWS", "COLS"), help="fixed kept shape")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rcprune", description="Row-and-column pruning as combinatorial optimization.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("solve", help="solve an instance file or a library instance")
    _add_instance_args(s)
    s.add_argument("--method", default=SOLVE_DEFAULT,
                   help="a method or a comma-separated list (networks: default network-greedy)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--time-limit", type=float, default=None, help="seconds per method")
    s.add_argument("--option", action="append", metavar="KEY=VALUE", help="method option (repeatable)")
    s.add_argument("--out", help="save the solution (.npz)")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(func=cmd_solve)

    i = sub.add_parser("instances", help="the benchmark instance library")
    i.add_argument("action", choices=["list", "show", "generate", "update"])
    i.add_argument("name", nargs="?")
    i.add_argument("--out", help="file to write (generate)")
    i.add_argument("--methods", default="greedy-row-column", help="update: methods to run (comma-separated)")
    i.add_argument("--time-limit", type=float, default=30.0, help="update: seconds per method and instance")
    i.add_argument("--bound-time", type=float, default=None, help="update: seconds for the certified lower bound")
    i.set_defaults(func=cmd_instances)

    b = sub.add_parser("bench", help="benchmarks (ratios against a baseline measured in the same run)")
    b.add_argument("what", choices=["kernels", "solvers", "retention", "layerwise", "network", "bounds", "latency", "pareto",
                                    "table", "plan", "zeroshot", "large-layer", "feather",
                                    "parallel", "export", "architectures"])
    b.add_argument("--models", default=None, help="network: comma-separated models (default resnet18,resnet50); "
                   "export: some of cifar-resnet20,resnet18,resnet50 (default all); architectures: torchvision models "
                   "(default the 16)")
    b.add_argument("--device", default="cpu", help="latency: the device to time on (cpu, or cuda when there is one)")
    b.add_argument("--sparsities", default=None,
                   help="comma-separated sparsities: network (default 0.5,0.8,0.9,0.93), layerwise (0.5,0.7,0.9), "
                        "zeroshot (0.5,0.7,0.9,0.93), feather (0.9,0.98), architectures (0.5,0.7)")
    b.add_argument("--bound", action="store_true",
                   help="network: certified lower bound per instance and a gap column for every method")
    b.add_argument("--instances", help="solvers, bounds: comma-separated library names (default: all)")
    b.add_argument("--quick", action="store_true", help="solvers, bounds: small instances, fewer moves, short bounds; "
                   "latency: batch 4, 32x32, fewer variants; large-layer: 64 x 576; parallel: a tiny ResNet-8")
    b.add_argument("--batch", type=int, default=None, help="latency: batch size (default 64; 4 with --quick)")
    b.add_argument("--size", type=int, default=None,
                   help="latency: input height and width (default 112; 32 with --quick)")
    b.add_argument("--repeats", type=int, default=None,
                   help="latency: timed runs per model (default 7; 2 with --quick); parallel: rounds, best kept "
                   "(default 2; 1 with --quick)")
    b.add_argument("--m", type=int, default=512, help="kernels, large-layer: rows (large-layer --quick: 64)")
    b.add_argument("--n", type=int, default=4608, help="kernels, large-layer: columns (large-layer --quick: 576)")
    b.add_argument("--density", type=float, default=0.1)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--sparsity", type=float, default=None,
                   help="retention, latency: pruned fraction (default 0.9); bounds: (default 0.9 and 0.93)")
    b.add_argument("--breakdown", action="store_true",
                   help="latency: also split each model's time by kind of op (conv/GEMM, BatchNorm, add/ReLU, "
                   "gathers and scatters)")
    b.add_argument("--weighting", choices=["none", "total", "mean"], default=None,
                   help="latency: the layer weighting of the RC objective (default: extract's, none)")
    b.add_argument("--trained", action="store_true",
                   help="retention, bounds: real layers of the demo's trained digits ResNet-20 (torch extra)")
    b.add_argument("--cache", default="rcprune-demo",
                   help="--trained, layerwise: folder of the demo's cached dense model (trained there if missing)")
    b.add_argument("--time-limit", type=float, default=None,
                   help="seconds per method and instance (solvers: 10, 2 with --quick; retention, network: 60; "
                        "bounds: per bound, 5, --trained 10, 1 with --quick)")
    b.add_argument("--out", default=None, help="pareto: output folder (default rcprune-pareto; feather: rcprune-feather; "
                   "export: rcprune-export; architectures: the path of its .json and .md, default rcprune-architectures); table: folder "
                   "for latency_table_check.json and .md")
    b.add_argument("--dataset", default="mnist", help="pareto: mnist (MNIST-5k 28x28) or digits (8x8)")
    b.add_argument("--seeds", default="0,1,2", help="pareto: comma-separated seeds (fine-tunes and solves)")
    b.add_argument("--dense-seed", type=int, default=None,
                   help="pareto, feather, zeroshot: seed of the cached dense model and the run's shared data order "
                        "(default: the first of --seeds); give the same one to runs split by seeds")
    b.add_argument("--epochs", type=int, default=15, help="pareto, zeroshot, feather: fine-tuning (feather: training) epochs, the same for every model")
    b.add_argument("--train-epochs", type=int, default=15, help="pareto: dense training epochs (cached)")
    b.add_argument("--finetune-sparsities", default=None,
                   help="zeroshot: removed shares that are also fine-tuned (default 0.9,0.93; '' for none)")
    b.add_argument("--tp-sparsities", default=None,
                   help="pareto: Torch-Pruning's removed shares, the latency targets (default 0.5,0.75,0.9,0.93)")
    b.add_argument("--methods", default=None,
                   help="pareto: network methods (default network-greedy,network-annealing); zeroshot: rows (default all, "
                        "rcprune.bench.zeroshot.ZERO_SHOT_ROWS); large-layer: retention "
                        "methods (default sparsegpt,compensated-tabu); parallel: the retention method (default "
                        "compensated-tabu); feather: rows (default magnitude,feather; also "
                        "feather-learned, magnitude-rc, feather-rc)")
    b.add_argument("--n-jobs", type=int, default=2,
                   help="parallel: joblib workers of the layer-parallel run (-1: every core; default 2)")
    b.add_argument("--backend", default="loky",
                   help="parallel: joblib backend: loky (default), threading, dask (rcprune[dask]), ray (rcprune[ray])")
    b.add_argument("--granularities", default=None, help="pareto: column,channel,group (default column,channel; group "
                   "rows run network-group and network-uniform)")
    b.add_argument("--calibrate", type=int, default=6,
                   help="pareto: at most this many rounds of measuring each RC model and correcting the table's "
                        "budget, stopped within 2%% of the target (0: trust the table)")
    b.add_argument("--floors", default=None,
                   help="pareto: comma-separated channel floors (prune(min_channels=)), each RC row with each; "
                        "'default' is prune's default (the default)")
    b.add_argument("--scores", default=None,
                   help="pareto: comma-separated RC objectives, each RC row with each: l1 (data-free, the default), "
                        "hessian (prune(calibration=) on 512 training images)")
    b.add_argument("--recoveries", default=None,
                   help="pareto: comma-separated fine-tunes, every model with each: plain (the default), distill "
                        "(distillation from the dense model)")
    b.add_argument("--protect", default=None,
                   help="pareto: comma-separated layers whose output channels rcprune keeps (e.g. conv1)")
    b.add_argument("--latency-budget", action="store_true",
                   help="architectures: also prune under a latency budget at Torch-Pruning's measured speedup "
                        "(column and group space) and compare kept L1 importance and speedup with Torch-Pruning's")
    b.add_argument("--no-latency-model", action="store_true",
                   help="pareto: skip the latency-only ResNet-18 64x64 part")
    b.set_defaults(func=cmd_bench)
    v = sub.add_parser("verify-bounds", help="check the 2-approximation guarantees on random instances")
    v.add_argument("--n", type=int, default=10000, help="number of random instances")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--max-side", type=int, default=7)
    v.set_defaults(func=cmd_verify_bounds)
    bd = sub.add_parser("bound", help="certified lower bound and optimality gap of a solver's masks")
    _add_instance_args(bd)
    bd.add_argument("--method", default="best", help="bound method (rcprune.bounds.BOUND_METHODS)")
    bd.add_argument("--solver", default=BOUND_SOLVER_DEFAULT,
                    help="solver giving the masks whose gap is certified (networks: default network-greedy)")
    bd.add_argument("--time-limit", type=float, default=None, help="seconds for the solver and for the bound")
    bd.add_argument("--json", action="store_true", help="print JSON instead of text")
    bd.set_defaults(func=cmd_bound)
    dm = sub.add_parser("demo", help="prune a ResNet trained on digits with RC methods and baselines (torch extra)")
    dm.add_argument("--out", default="rcprune-demo", help="output folder (table, plots, cached dense weights)")
    dm.add_argument("--seed", type=int, default=0)
    dm.add_argument("--epochs", type=int, default=5, help="fine-tuning epochs, the same for every method")
    dm.add_argument("--train-epochs", type=int, default=15, help="epochs to train the dense model (cached)")
    dm.add_argument("--sparsity", default="0.9,0.93", help="comma-separated sparsities")
    dm.add_argument("--quick", action="store_true", help="smoke run: tiny model, one epoch, one sparsity")
    dm.add_argument("--no-progress", action="store_true", help="no progress bars")
    dm.add_argument("--no-retention", action="store_true", help="skip the small-weight retention rows")
    dm.add_argument("--no-pareto", action="store_true",
                    help="skip the latency-vs-accuracy report card on digits (out/pareto)")
    dm.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InvalidInstanceError as exc:
        print(f"rcprune: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
