"""``rcprune bench architectures`` on its quick subset: a model that prunes (every stage, compacted == masked,
fewer parameters and multiply-adds) and one that is refused (the stage and the node named), JSON and
Markdown written. Export and Torch-Pruning are left to the full bench (they add ~15 s)."""
import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("torchvision")

from rcprune.bench.architectures import QUICK, bench_architectures, format_architectures, write_architectures  # noqa: E402


def test_quick_bench_reports_what_prunes_and_what_is_refused(tmp_path):
    rows = bench_architectures(QUICK, (0.5,), size=32, batch=2, repeats=1, export=False, torch_pruning=False)
    by_model = {r["model"]: r for r in rows}
    good, refused = by_model["mobilenet_v3_small"], by_model["shufflenet_v2_x0_5"]
    assert good["ok"] and good["extract"] and good["solve"] and good["compact"] and good["tied_convs"] > 0
    assert good["masked_vs_compact"] <= 1e-5
    assert good["params_compact"] < good["params_dense"] and good["macs_compact"] < good["macs_dense"]
    assert good["speedup"] > 0 and good["seconds"] > 0
    assert not refused["ok"] and refused["failed"] == "extract" and "node 'view'" in refused["error"]
    js, md = write_architectures(rows, tmp_path / "arch")
    assert json.loads(js.read_text())[0]["model"] == QUICK[0]
    text = md.read_text()
    assert text == format_architectures(rows) + "\n" and "| mobilenet_v3_small | 0.5 | True |" in text
    assert "shufflenet_v2_x0_5 (0.5): extract: InvalidInstanceError: node 'view'" in text


def test_the_cli_runs_the_quick_subset(tmp_path, capsys):
    from rcprune.cli import main
    assert main(["bench", "architectures", "--quick", "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "| mobilenet_v3_small | 0.5 | True |" in out and "node 'view'" in out
    assert (tmp_path / "a.json").exists() and (tmp_path / "a.md").exists()
