"""``rcprune bench export --quick``: every format on a small compacted ResNet, the report, the arguments."""
import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from rcprune.bench.export import format_export, run_export_bench  # noqa: E402
from rcprune.validation import InvalidInstanceError  # noqa: E402


def test_quick_exports_and_checks_every_format(tmp_path):
    result = run_export_bench(tmp_path / "out", quick=True, sparsities=(0.9,), log=lambda *_: None)
    rows = result["rows"]
    assert [(r["model"], r["sparsity"], r["format"]) for r in rows] == [("cifar-resnet8", 0.9, "onnx"),
                                                                       ("cifar-resnet8", 0.9, "torch")]
    assert all(r["ok"] and r["input_dependent"] for r in rows) and result["passed"]
    assert rows[0]["max_abs_diff"] <= 1e-4 and rows[1]["max_abs_diff"] == 0.0
    assert rows[1]["torch_export_diff"] <= 1e-5
    assert 0 < rows[0]["kept_weights"] and all(r["bytes"] > 0 for r in rows)
    saved = json.loads((tmp_path / "out" / "export.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(rows))
    assert "| cifar-resnet8 | 0.9 | onnx | yes |" in (tmp_path / "out" / "export.md").read_text()


def test_a_failed_export_is_a_row_and_fails_the_goal():
    result = {"config": {"torch": "x"}, "passed": False,
              "rows": [{"model": "m", "sparsity": 0.5, "format": "onnx", "ok": False, "error": "Boom: no", "seconds": 1.0}]}
    text = format_export(result)
    assert "| m | 0.5 | onnx | no: Boom: no |" in text and "FAIL" in text
    result["rows"][0]["input_dependent"] = False
    assert "does not depend on the input (a vacuous check) for: m @ 0.5" in format_export(result)


@pytest.mark.parametrize("kwargs, match", [(dict(models=("vgg",)), "models"), (dict(sparsities=(1.0,)), "sparsities"),
                                           (dict(formats=("tflite",)), "formats")])
def test_bad_arguments_write_nothing(tmp_path, kwargs, match):
    with pytest.raises(InvalidInstanceError, match=match):
        run_export_bench(tmp_path / "out", quick=True, **kwargs)
    assert not (tmp_path / "out").exists()


def test_the_cli_runs_it(tmp_path, capsys):
    from rcprune.cli import main
    assert main(["bench", "export", "--quick", "--sparsities", "0.5", "--out", str(tmp_path / "o")]) == 0
    assert "| cifar-resnet8 | 0.5 | torch | yes |" in capsys.readouterr().out
    assert main(["bench", "export", "--models", "vgg", "--out", str(tmp_path / "x")]) == 2
    assert "models must be some of" in capsys.readouterr().err


@pytest.mark.parametrize("device, match", [("tpu", "unknown device"), ("meta", "only 'cpu' and 'cuda'")]
                         + ([] if torch.cuda.is_available() else [("cuda", "CUDA is not available")]))
def test_bench_latency_names_a_device_it_cannot_time(device, match, capsys):
    from rcprune.cli import main
    assert main(["bench", "latency", "--quick", "--device", device]) == 2
    assert match in capsys.readouterr().err
