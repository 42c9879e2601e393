"""A plain FL run with its results folder: config, per-round metrics (JSON and CSV), an accuracy plot."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from fedleak.fl import FederationSpec, FLConfig, History, RoundRecord, build_federation
from fedleak.report import ResultsDir
from fedleak.report.plots import accuracy_plot


def run_fl(spec: FederationSpec, config: FLConfig, out: str | Path, *, progress: bool = True, **federation) -> History:
    """Train with ``build_federation(spec, config, **federation)``, writing each round to ``rounds.jsonl`` as it
    finishes, then ``history.json``, ``rounds.csv`` and ``accuracy.png``."""
    out = Path(out)
    server = build_federation(spec, config, progress=progress, **federation)  # bad inputs fail before any writing
    # an FL run is one cell: a rerun of the same config starts it again (resume=False)
    results = ResultsDir(out, {"federation": spec.to_dict(), "fl": config.to_dict()}, cells="rounds.jsonl",
                         resume=False)

    def record(r: RoundRecord) -> None:
        results.add(f"round-{r.round}", asdict(r))

    history = server.run(on_round=record)
    results.write_json("history.json", history.to_dict())
    results.write_csv("rounds.csv", [
        {"round": r.round, "test_loss": r.test_loss, "test_accuracy": r.test_accuracy, "val_loss": r.val_loss,
         "clients": len(r.clients), "refused": len(r.refused), "seconds": round(r.seconds, 3)}
        for r in history.rounds
    ])
    accs = [(r.round, r.test_accuracy) for r in history.rounds if r.test_accuracy is not None]
    if accs:
        accuracy_plot([a for a, _ in accs], [b for _, b in accs], out / "accuracy.png",
                      title=f"{spec.model} on {spec.dataset} ({config.algorithm})")
    return history
