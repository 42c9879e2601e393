"""Writing results: configs, resumable JSON-lines cells, tables and plots."""
from fedleak.report.results import ResultsDir

__all__ = ["ResultsDir"]
