"""The README's commands and example are the ones that run."""
import re

import pytest
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _bash_blocks():
    return re.findall(r"```bash\n(.*?)```", README, flags=re.S)


def test_ci_runs_the_readme_test_command():
    test_cmd = _bash_blocks()[1].strip()
    assert "pytest" in test_cmd
    ci_lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_cmd in ci_lines


def test_main_job_is_a_real_command():
    from rcprune.cli import build_parser

    main_cmd = _bash_blocks()[0].strip()
    job = main_cmd.split("&&")[-1].split()
    assert job[0] == "rcprune"
    build_parser().parse_args(job[1:])  # exits (SystemExit) on an unknown command or option


def test_solve_example_names_real_methods():
    import rcprune

    methods = re.search(r"rcprune solve --method (\S+)", README).group(1).split(",")
    assert set(methods) <= set(rcprune.method_names())


PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_python_examples_run(tmp_path, monkeypatch, index):
    code = PYTHON_BLOCKS[index]
    if "torch" in code:
        pytest.importorskip("torchvision")
    monkeypatch.chdir(tmp_path)
    exec(compile(code.replace("/tmp/conv.npz", str(tmp_path / "conv.npz")), "README", "exec"), {})
