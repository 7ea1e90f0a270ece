"""The README's commands and example are the ones that run."""
import re
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


def test_main_job_names_real_methods():
    import rcprune

    main_cmd = _bash_blocks()[0]
    methods = re.search(r"--method (\S+)", main_cmd).group(1).split(",")
    assert set(methods) <= set(rcprune.method_names())


def test_python_example_runs(tmp_path, monkeypatch):
    code = re.findall(r"```python\n(.*?)```", README, flags=re.S)[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(code.replace("/tmp/conv.npz", str(tmp_path / "conv.npz")), "README", "exec"), {})
