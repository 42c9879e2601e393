"""Writing results: configs, resumable JSON-lines cells, tables and plots."""
from fedleak.report.results import ResultsDir, ResultsFolderError, check_output_folder

__all__ = ["ResultsDir", "ResultsFolderError", "check_output_folder"]
