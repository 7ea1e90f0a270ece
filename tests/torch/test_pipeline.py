"""The PyTorch adapter's one call (``rcprune.torch.prune``) and the extraction registry."""
import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import rcprune  # noqa: E402
from rcprune import InvalidInstanceError  # noqa: E402
from rcprune.torch import apply, compact, extract, is_masked, ls_refit, prune  # noqa: E402
from rcprune.bounds.network import network_lower_bound  # noqa: E402
from tests.checks import expected_gap  # noqa: E402
from tests.torch.cases import calibrated_resnet  # noqa: E402


def _model_and_data():
    return calibrated_resnet()


def _prunable(model):
    return sum(int(torch.count_nonzero(m.weight)) for m in model.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))


def test_prune_leaves_the_user_model_alone_and_matches_the_masked_copy():
    model, x, y = _model_and_data()
    before = copy.deepcopy(model.state_dict())
    small, report = prune(model, x[:1], sparsity=0.85, method="network-greedy", bound=True)
    assert not is_masked(model)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    masked, report2 = prune(model, x[:1], sparsity=0.85, method="network-greedy", compact=False)
    assert is_masked(masked)
    with torch.no_grad():
        assert (small(x) - masked(x)).abs().max() < 1e-4
    assert report.kept_weights == report2.kept_weights <= report.budget
    assert report.weights_after == report.kept_weights == _prunable(masked)
    assert report.macs_after < report.macs_before
    res, net = report.result, report.extraction.instance
    assert res.lower_bound == min(network_lower_bound(net).bound, res.cost)  # greedy has no bound of its own
    assert res.gap == pytest.approx(expected_gap(res.cost, res.lower_bound), abs=1e-12)
    summary = report.summary()
    assert summary["solve"] == res.summary() and summary["budget"] == report.budget == net.effective_budget
    assert (summary["kept_weights"], summary["macs_before"], summary["macs_after"], summary["weights_after"]) == (
        report.kept_weights, report.macs_before, report.macs_after, report.weights_after)
    assert summary["refit_layers"] == 0 and summary["finetune"] is None
    assert set(summary["seconds"]) == {"extract", "budget", "solve", "mask", "compact"}


def test_prune_refits_and_finetunes_with_fixed_masks():
    model, x, y = _model_and_data()
    loader = [(x[:24], y[:24]), (x[24:], y[24:])]
    masked, report = prune(model, x[:1], sparsity=0.9, refit=[x[:24]], compact=False,
                           finetune={"train_loader": loader, "epochs": 1, "progress": False})
    assert report.refit is not None and len(report.history) == 1
    eff = report.solution.effective(report.extraction.instance)
    for name, lm in report.extraction.layers.items():
        w = masked.get_submodule(lm.module).weight.detach()
        keep = np.outer(eff[name].rows, eff[name].cols).reshape(w.shape)
        assert torch.count_nonzero(w[torch.from_numpy(~keep)]) == 0


def test_prune_is_reproducible_with_a_seeded_method():
    model, x, _ = _model_and_data()
    opts = {"moves": 2000}
    _, a = prune(model, x[:1], sparsity=0.9, method="network-annealing", seed=3, solver_options=opts)
    _, b = prune(model, x[:1], sparsity=0.9, method="network-annealing", seed=3, solver_options=opts)
    assert a.result.cost == b.result.cost


@pytest.mark.parametrize("kwargs, match", [
    ({"sparsity": 1.0}, "sparsity"), ({"sparsity": -0.1}, "sparsity"), ({"sparsity": True}, "sparsity"),
    ({"finetune": {"epochs": 1}}, "train_loader"), ({"method": "annealing"}, "method"),
    ({"solver_options": [1]}, "solver_options"),
])
def test_prune_rejects_bad_arguments(kwargs, match):
    model, x, _ = _model_and_data()
    args = {"sparsity": 0.9, **kwargs}
    with pytest.raises(InvalidInstanceError, match=match):
        prune(model, x[:1], **args)


def test_prune_rejects_a_wrong_example_input():
    model, _, _ = _model_and_data()
    with pytest.raises((InvalidInstanceError, RuntimeError)):
        prune(model, torch.randn(1, 3, 12, 12), sparsity=0.9)


def test_steps_find_the_extraction_of_their_model():
    model, x, _ = _model_and_data()
    ext = extract(model, x[:1], sparsity=0.9)
    sol = rcprune.solve(ext.instance, method="network-greedy").solution
    apply(model, sol)
    report = ls_refit(model, sol, [x[:24]])
    eff = sol.effective(ext.instance)
    kept = [n for n in ext.instance.layer_names if eff[n].rows.any() and eff[n].cols.any()]
    assert [r["layer"] for r in report.layers] == kept and len(kept) >= len(ext.instance.layer_names) - 2
    for r in report.layers:
        assert (r["kept_rows"], r["kept_cols"]) == (eff[r["layer"]].rows.sum(), eff[r["layer"]].cols.sum())
        assert r["error_after"] < r["error_before"] if r["refit"] else r["error_after"] == r["error_before"]
    small, _ = compact(model, sol)
    with torch.no_grad():
        assert (small(x) - model(x)).abs().max() < 1e-4


def test_a_model_without_extraction_gets_a_clear_error():
    model, x, _ = _model_and_data()
    ext = extract(model, x[:1], sparsity=0.9)
    sol = rcprune.solve(ext.instance, method="network-greedy").solution
    other = copy.deepcopy(model)
    with pytest.raises(InvalidInstanceError, match="extract"):
        apply(other, sol)
    with pytest.raises(InvalidInstanceError, match="extract"):
        compact(other, sol)
    apply(other, sol, ext)   # a copy works with the extraction passed
    with pytest.raises(InvalidInstanceError, match="calibration"):
        ls_refit(other, sol, ext)


@pytest.mark.parametrize("progress", [False, True])
def test_prune_progress_shows_the_solvers_bar_or_nothing(progress, capfd):
    model, x, _ = _model_and_data()
    prune(model, x[:1], sparsity=0.8, method="network-annealing", progress=progress,
          solver_options={"moves": 2000})
    err = capfd.readouterr().err
    assert ("network-annealing" in err) == progress
    if not progress:
        assert err == ""
