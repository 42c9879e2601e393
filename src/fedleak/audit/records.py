"""The audit's report for a federation that an engine ran round by round (:class:`fedleak.flower.AuditStrategy` in
a Flower federation), from the :class:`fedleak.cases.Audit` records: one leakage row per attacked update, the
clients' refusals, and the run's final accuracy, in the same ``report.json`` / ``report.html`` as ``fedleak
audit``."""
from __future__ import annotations

import torch

from fedleak.audit.grids import save_grid
from fedleak.audit.report import SCORES, finish, leak_of, results_config
from fedleak.audit.verdict import leak_answer


def write_records_report(audit, model, *, accuracy: float | None = None, description: str = "",
                         seconds: float = 0.0) -> dict:
    """The report of ``audit``'s records (scored against the audit's reference data where the engine handed the
    server no client data), written into the audit's own results folder."""
    results = audit.results
    baseline, leakage, detection = "as deployed", [], []
    for record in audit.records:
        what = f"{audit.name}, round {record.round}, client {record.source}"
        if record.status != "attacked":
            detection.append({"status": record.status, "model": audit.name if record.status == "refused" else
                              "honest", "round": record.round, "client": record.source,
                              "refusal": record.reason or record.status})
            continue
        row = {"attack": what, "defense": baseline, "status": "attacked",
               **{k: v for k, v in record.scores.items() if k in SCORES}, "seconds": record.seconds}
        if record.truth is None and "leaked" in row:
            row.update(own_samples(record, row["leaked"]))
        truth = record.truth[0] if record.truth is not None else None
        points = record.reconstruction.declared_points()
        if truth is None and audit.reference is not None:
            truth = _nearest_reference(points, audit.reference)
        if truth is not None and len(record.reconstruction):
            name = f"round-{record.round}-client-{record.source}.png"
            if save_grid([(truth, points)], results.path / "grids" / name, paired=record.truth is None,
                         labels=("client data" if record.truth is not None else "closest reference",
                                 "reconstruction")):
                row["grid"] = name
        leakage.append(row)
    leaks = [leak_of(r) for r in leakage if leak_of(r) is not None]
    defenses = [{"defense": baseline, "status": "trained", "accuracy": accuracy, "accuracy_cost": None,
                 "epsilon": None, "worst_leak": max(leaks) if leaks else None,
                 "worst_ssim": max((r["ssim"] for r in leakage if "ssim" in r), default=None),
                 "worst_recall": max((r["recall"] for r in leakage if "recall" in r), default=None)}]
    scored = ("Each attacked update of the federation, scored against the attacked clients' own samples"
              if any(r.truth is not None for r in audit.records) else
              "Each attacked update of the federation: its reconstructions matched against the reference data (the "
              "engine hands the server no client data), recall counted against the attacked client's own samples "
              "(the num-examples of its reply)")
    report = {"title": f"fedleak audit of a Flower federation: {audit.name} on {type(model).__name__}",
              "description": description, "config": results_config(results), "baseline": baseline,
              "engine": "flower", "scored": scored,
              "command": "the Flower ServerApp that ran this AuditStrategy, with the config below",
              "model": {"spec": type(model).__name__, "registered": False,
                        "parameters": sum(p.numel() for p in model.parameters())},
              "leakage": leakage, "defenses": defenses, "detection": detection, "seconds": seconds}
    report = {"verdict": _verdict(leakage, detection), **report}
    return finish(results, report, title=f"{audit.name} in a Flower federation")


def own_samples(record, leaked: int) -> dict:
    """Scores of an update scored against reference data, as shares of the attacked client's own samples: the
    number its reply declared (``num-examples``) is the true count, not the size of the reference set."""
    observed = record.observed
    if observed is None or record.source not in observed.sources:
        return {}
    own = int(observed.num_examples[observed.sources.index(record.source)])
    return {"true_points": own, "leaked": min(leaked, own), "recall": min(leaked, own) / max(1, own),
            "reference_points": record.scores.get("true_points")}


def _verdict(leakage: list[dict], detection: list[dict]) -> dict:
    rows = [{**r, "defense": "none"} for r in leakage]
    refused = [d for d in detection if d["status"] == "refused"]
    return {"leak": leak_answer(rows),
            "defense": {"defense": "as deployed", "text": "The federation ran as deployed; run fedleak audit on its "
                                                         "model to compare defenses."},
            "manipulations": {"undetected": None, "detected": None,
                              "text": f"{len(refused)} client(s) refused the manipulated model." if refused else
                              "No client refused the manipulated model."},
            "warnings": []}


def _nearest_reference(points, reference):
    """The reference image closest to each reconstructed point, or ``None`` when they cannot be compared."""
    if not len(points) or not points.is_floating_point() or points.shape[1:] != reference.shape[1:]:
        return None
    reference = reference.to(points.device)
    return reference[torch.cdist(points.flatten(1).float(), reference.flatten(1).float()).argmin(dim=1)]
