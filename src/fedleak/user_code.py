"""Importing a user's own Python file (``--model net.py:Net``, ``--data data.py:load``): whatever the file raises
while it is imported becomes one line naming the file, the line and the exception, not a traceback through
importlib."""
from __future__ import annotations

import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType


class UserCodeError(ValueError):
    """A user's file that cannot be imported: the message names the file, the line and the exception."""


def import_user_file(file: str | Path, what: str) -> ModuleType:
    """The module of the Python file ``file`` (``what`` names the option it came from, e.g. "model"), imported
    as ``fedleak_user_<stem>``; :class:`UserCodeError` when importing it raises anything (a syntax error, an
    exception at import, ``sys.exit``), naming the file and the line of the file where it happened."""
    file = Path(file)
    if not file.is_file():
        raise FileNotFoundError(f"{what} file {file} not found")
    spec = importlib.util.spec_from_file_location(f"fedleak_user_{file.stem}", file)
    if spec is None or spec.loader is None:
        raise UserCodeError(f"{what} file {file} is not a Python file that can be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as error:  # the user's code: anything it raises is reported, not re-raised
        sys.modules.pop(spec.name, None)
        raise UserCodeError(f"{what} file {file}{_line(error, file)} raised {type(error).__name__} while it was "
                            f"imported: {_first_line(error)}") from None
    return module


def _line(error: BaseException, file: Path) -> str:
    """`` line N`` of ``file`` where ``error`` was raised (the innermost frame in that file), or ``""``."""
    if isinstance(error, SyntaxError) and error.lineno:
        return f" line {error.lineno}"
    target = str(file.resolve())
    lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__)
             if Path(frame.filename).resolve().as_posix() == Path(target).as_posix()]
    return f" line {lines[-1]}" if lines else ""


def _first_line(error: BaseException) -> str:
    text = str(error.msg if isinstance(error, SyntaxError) else error).strip()
    return text.splitlines()[0] if text else "(no message)"
