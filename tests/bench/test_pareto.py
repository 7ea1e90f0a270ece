"""``rcprune bench pareto --quick``: the report card end to end on digits, and its goals and argument checks."""
import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("torch_pruning")
pytest.importorskip("torchvision")

from rcprune.bench.pareto import _rc_runs, evaluate_goals, run_pareto, summarize  # noqa: E402
from rcprune.cli import main  # noqa: E402
from rcprune.validation import InvalidInstanceError  # noqa: E402


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("pareto")
    assert main(["bench", "pareto", "--quick", "--out", str(out), "--protect", "conv1", "--floors", "default,0",
                 "--scores", "l1,hessian", "--recoveries", "plain,distill"]) == 0
    return out, json.loads((out / "pareto.json").read_text())


def test_quick_writes_files_and_every_row(quick):
    out, result = quick
    assert {"pareto.json", "pareto.md", "pareto.png"} <= {p.name for p in out.iterdir()}
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    cfg = result["config"]
    assert cfg["quick"] and cfg["dataset"] == "digits" and cfg["seeds"] == [0] and cfg["latency_threads"] == 1
    assert cfg["tp_sparsities"] == [0.9, 0.93] and cfg["protect"] == ["conv1"]
    keys = {(r["method"], r["sparsity"], r["seed"]) for r in result["rows"] if r["method"] != "dense"}
    rc = ["rc-column-greedy", "rc-channel-greedy", "rc-column-greedy-floor0", "rc-channel-greedy-floor0"]
    methods = ["tp-l1-per-layer", "tp-l1-global", *rc, *(m + "-hessian" for m in rc)]
    methods += [m + "-distill" for m in methods]
    assert keys == {(m, s, 0) for m in methods for s in (0.9, 0.93)}
    assert cfg["recoveries"] == ["plain", "distill"]
    by_key = {(r["method"], r["sparsity"]): r for r in result["rows"]}
    for (m, s), r in by_key.items():
        if m.endswith("-distill"):
            plain = by_key[(m.removesuffix("-distill"), s)]
            assert r["recovery"] == "distill" and plain["recovery"] == "plain"
            # the same start (one prune, one TP model), fine-tuned two ways
            # (a row skipped as unreachable has a note and no accuracies, the same for both)
            assert r.get("acc_zero_shot") == plain.get("acc_zero_shot") and r.get("note") == plain.get("note")
            if m.startswith("rc-") and "note" not in r:
                assert r["predicted_ms"] == plain["predicted_ms"] and r["kept_weights"] == plain["kept_weights"]
    assert cfg["scores"] == ["l1", "hessian"] and cfg["calibration_images"] == 128
    for r in result["rows"]:
        if r["method"].startswith("rc-"):
            assert r["scores"] == ("hessian" if r["method"].removesuffix("-distill").endswith("-hessian") else "l1")
    targets = {float(s): v for s, v in result["targets"]["speedups"].items()}
    dense = next(r for r in result["rows"] if r["method"] == "dense")
    for r in result["rows"]:
        if r["method"].startswith("rc-"):
            assert r["target_speedup"] == targets[r["sparsity"]]   # asked for TP per-layer's measured speedup
            assert "note" in r or "conv1" not in r["dead_layers"]   # protected: its rows all stay
            if "note" not in r:   # whole channels: the compacted model is what was fine-tuned
                assert r["finetuned"] in ("masked", "compacted")
                assert "-channel-" not in r["method"] or r["finetuned"] == "compacted"
            if "note" not in r:   # the floor used: 0 when asked for, else prune's default (0.25, or lower)
                assert r["min_channels"] == 0.0 if r["method"].endswith("floor0") else r["min_channels"] in (
                    0.25, 0.125, 0.0625, 0.03125, 0.0)
        if r.get("latency_ms") is not None:
            assert r["latency_ms"] == min(r["as_is_ms"], r["fused_cl_ms"])
            assert r["speedup"] == pytest.approx(dense["latency_ms"] / r["latency_ms"], rel=1e-12)
        else:
            assert r["note"].startswith(("skipped", "compacted model does not run"))
    part = result["latency_model"]
    assert part["model"] == "resnet18" and {r["method"] for r in part["rows"]} >= {"dense", "tp-l1-per-layer"}


def test_quick_goals_are_computed_from_the_rows(quick):
    out, result = quick
    md = (out / "pareto.md").read_text()
    summary = summarize(result["rows"])
    goals = evaluate_goals(summary, result["config"]["tp_sparsities"])
    assert goals == result["goals"]
    for goal in "abcr":
        assert any(g["goal"] == goal and g["status"] in ("PASS", "FAIL") for g in goals), goal
    for g in goals:
        assert f"- {g['status']} {g['text']}" in md


def _point(method, sparsity, acc, ms, target=1.5):
    return {"method": method, "sparsity": sparsity, "target_speedup": target, "n": 1, "acc": acc, "acc_sd": 0.0,
            "latency_ms": ms, "latency_sd": 0.0, "speedup": 10.0 / ms, "speedup_sd": 0.0}


def test_goals_follow_the_numbers():
    tp = [_point("tp-l1-per-layer", 0.9, 0.95, 5.0), _point("tp-l1-global", 0.9, 0.96, 5.5)]
    # rcprune at TP's latency but 0.2 point worse, and a faster point 1 point worse: every goal fails
    worse = tp + [_point("rc-column-greedy", 0.9, 0.948, 5.0), _point("rc-channel-greedy", 0.9, 0.94, 3.0)]
    status = {(g["goal"], g["status"]) for g in evaluate_goals(worse, [0.9])}
    assert status == {("a", "FAIL"), ("b", "FAIL"), ("c", "FAIL"), ("c", "SKIP")}
    # within one test image at 5.0 ms, and 0.1 point better at 4.0 ms (1.25x / 1.375x faster): every goal passes
    better = tp + [_point("rc-column-greedy", 0.9, 0.949, 5.2), _point("rc-channel-greedy", 0.9, 0.961, 4.0)]
    goals = evaluate_goals(better, [0.9])
    assert {(g["goal"], g["status"]) for g in goals} == {("a", "PASS"), ("b", "PASS"), ("c", "PASS"), ("c", "SKIP")}
    # 1.2x is the line: 4.2 ms against 5.0 ms is 1.19x
    near = tp + [_point("rc-channel-greedy", 0.9, 0.961, 4.2)]
    assert [g["status"] for g in evaluate_goals(near, [0.9]) if g["goal"] == "b"] == ["FAIL", "PASS"]


def test_goals_compare_within_a_recovery_and_the_best_recovery_with_plain_torch_pruning():
    tp = [_point("tp-l1-per-layer", 0.9, 0.95, 5.0), _point("tp-l1-global", 0.9, 0.94, 5.5)]
    tp_d = [_point("tp-l1-per-layer-distill", 0.9, 0.97, 5.0), _point("tp-l1-global-distill", 0.9, 0.965, 5.5)]
    # distillation lifts both: RC-distill beats plain TP (r) but not TP-distill (a, within distill)
    rc = [_point("rc-group-group", 0.9, 0.945, 5.0), _point("rc-group-group-distill", 0.9, 0.96, 5.0)]
    goals = evaluate_goals(tp + tp_d + rc, [0.9])
    a = {g["text"].split("]")[0]: [] for g in goals if g["goal"] == "a"}
    for g in goals:
        if g["goal"] == "a":
            a[g["text"].split("]")[0]].append(g["status"])
    assert a == {"(a) [plain fine-tune: rows without a suffix": ["FAIL", "PASS"],
                 "(a) [distill fine-tune: rows ...-distill": ["FAIL", "FAIL"]}
    r = [g for g in goals if g["goal"] == "r"]
    assert [g["status"] for g in r] == ["PASS", "PASS"] and all("rc-group-group-distill 0.9600" in g["text"] for g in r)
    # a run with the plain recovery alone has no tags and no (r) lines; the dense row is no recovery
    dense = [_point("dense", 0.0, 0.98, 10.0)]
    assert all("[" not in g["text"] and g["goal"] != "r" for g in evaluate_goals(dense + tp + rc[:1], [0.9]))
    # distillation alone: tagged as such, compared with Torch-Pruning distilled
    alone = evaluate_goals(dense + tp_d + rc[1:], [0.9])
    assert {g["goal"] for g in alone} == {"a", "b", "c"}
    assert all(g["text"].startswith(f"({g['goal']}) [distill fine-tune") for g in alone)
    # (r) fails where no rcprune model reached the target
    missed = evaluate_goals(tp + tp_d + [_point("rc-group-group-distill", 0.93, 0.99, 4.0)], [0.9])
    assert [g["status"] for g in missed if g["goal"] == "r"] == ["FAIL", "FAIL"]


def test_summary_mean_and_sd_over_seeds():
    rows = [{"method": "rc-column-greedy", "sparsity": 0.9, "seed": s, "acc": a, "latency_ms": ms, "speedup": 10 / ms,
             "target_speedup": 2.0} for s, a, ms in ((0, 0.9, 4.0), (1, 0.8, 6.0))]
    rows.append({"method": "rc-column-greedy", "sparsity": 0.9, "seed": 2, "acc": None, "note": "skipped: x"})
    (g,) = summarize(rows)
    assert g["n"] == 2 and g["acc"] == pytest.approx(0.85) and g["acc_sd"] == pytest.approx(0.0707107, rel=1e-5)
    assert g["latency_ms"] == 5.0 and g["latency_sd"] == pytest.approx(2 ** 0.5)


@pytest.mark.parametrize("kwargs, message", [
    ({"dataset": "cifar"}, "dataset must be one of mnist, digits"),
    ({"seeds": ()}, "seeds must be a non-empty sequence"),
    ({"tp_sparsities": (0.5, 1.0)}, "tp_sparsities must be in (0, 1), got 1.0"),
    ({"tp_sparsities": (0.0,)}, "tp_sparsities must be in (0, 1), got 0.0"),
    ({"methods": ("network-magic",)}, "methods must be a non-empty subset"),
    ({"granularities": ("kernel",)}, "granularities must be a non-empty subset of column, channel, group"),
    ({"epochs": -1}, "epochs must be a non-negative integer"),
    ({"threads": 0}, "threads must be a positive integer"),
    ({"floors": (1.5,)}, "floors must be a non-empty sequence of shares"),
    ({"scores": ("l2",)}, "scores must be a non-empty subset of l1, hessian"),
    ({"recoveries": ("regenerate",)}, "recoveries must be a non-empty subset of plain, distill"),
    ({"recoveries": ("plain", "plain")}, "recoveries must be a non-empty subset of plain, distill (each once)"),
])
def test_bad_arguments_are_refused_before_any_work(tmp_path, kwargs, message):
    with pytest.raises(InvalidInstanceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_pareto(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_group_rows_run_the_group_methods_with_every_floor():
    cfg = {"granularities": ["channel", "group"], "methods": ["network-greedy", "network-annealing"],
           "floors": [None, 0.0]}
    assert _rc_runs(cfg) == [("channel", "network-greedy", None, "l1"), ("channel", "network-greedy", 0.0, "l1"),
                             ("channel", "network-annealing", None, "l1"), ("channel", "network-annealing", 0.0, "l1"),
                             ("group", "network-group", None, "l1"), ("group", "network-group", 0.0, "l1"),
                             ("group", "network-uniform", None, "l1"), ("group", "network-uniform", 0.0, "l1")]
    cfg = {"granularities": ["group"], "methods": ["network-greedy"], "scores": ["l1", "hessian"]}
    assert _rc_runs(cfg) == [("group", "network-group", None, "l1"), ("group", "network-group", None, "hessian"),
                             ("group", "network-uniform", None, "l1"), ("group", "network-uniform", None, "hessian")]


def test_cli_reports_bad_arguments(tmp_path, capsys):
    assert main(["bench", "pareto", "--out", str(tmp_path), "--seeds", ""]) == 2
    assert "seeds must be a non-empty sequence" in capsys.readouterr().err
    assert main(["bench", "pareto", "--out", str(tmp_path), "--dataset", "imagenet"]) == 2
    assert "dataset must be one of mnist, digits" in capsys.readouterr().err
    assert main(["bench", "pareto", "--out", str(tmp_path), "--floors", "abc"]) == 2
    assert "--floors must be a comma-separated list" in capsys.readouterr().err
    # --granularities group passes its check: the error is the next argument's
    assert main(["bench", "pareto", "--out", str(tmp_path), "--granularities", "group", "--methods", "magic"]) == 2
    assert "methods must be a non-empty subset" in capsys.readouterr().err
