"""A user's --model / --data file that raises while it is imported is one line naming the file, the line and the
exception (issue 22), not a traceback through importlib."""
import pytest

from fedleak.user_code import UserCodeError, import_user_file


@pytest.mark.parametrize("source, words", [
    ("import torch\nWIDTH = 1 / 0\n", "line 2 raised ZeroDivisionError while it was imported: division by zero"),
    ("def net(:\n    pass\n", "line 1 raised SyntaxError"),
    ("import sys\nsys.exit('no GPU here')\n", "line 2 raised SystemExit while it was imported: no GPU here"),
    ("import fedleak_no_such_module\n", "line 1 raised ModuleNotFoundError"),
])
def test_a_file_raising_at_import_is_one_line_naming_file_line_and_exception(tmp_path, source, words):
    file = tmp_path / "net.py"
    file.write_text(source)
    with pytest.raises(UserCodeError) as refused:
        import_user_file(file, "model")
    message = str(refused.value)
    assert message.startswith(f"model file {file} ") and words in message and "\n" not in message


def test_a_sound_file_imports_and_a_missing_one_is_named(tmp_path):
    file = tmp_path / "net.py"
    file.write_text("WIDTH = 7\n")
    assert import_user_file(file, "model").WIDTH == 7
    with pytest.raises(FileNotFoundError, match="model file .*absent.py not found"):
        import_user_file(tmp_path / "absent.py", "model")
