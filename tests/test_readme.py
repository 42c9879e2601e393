"""The README's Python examples run as written."""
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_readme_example_runs(index, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # examples write their results below the working directory
    code = EXAMPLES[index]
    if "import flwr" in code or "from flwr" in code:
        pytest.skip("the Flower snippet needs a running federation (covered by tests/flower)")
    exec(compile(code, f"README example {index}", "exec"), {"__name__": "readme_example"})
    assert capsys.readouterr().out.strip()  # every example prints what it shows
