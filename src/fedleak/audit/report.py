"""The audit's report: ``report.json`` (every figure, for machines, led by the ``verdict`` object of
:mod:`fedleak.audit.verdict`) and ``report.html`` (:mod:`fedleak.audit.page`), built from the plan's cells of this
audit's input digest."""
from __future__ import annotations

import json
import shlex
from typing import Sequence

from fedleak.audit.coverage import coverage
from fedleak.audit.coverage import summary as coverage_summary
from fedleak.audit.early_stop import SKIPPED
from fedleak.audit.page import render
from fedleak.audit.plan import Cell
from fedleak.audit.plots import privacy_accuracy_plots
from fedleak.audit.verdict import verdict
from fedleak.report import ResultsDir

PLOT = "privacy_vs_accuracy.png"
SCORES = ("ssim", "psnr", "asr", "label_accuracy", "recall", "leaked", "true_points", "declared", "A", "P", "R",
          "records", "exact_sequences", "rouge1", "rouge2", "token_recall", "seconds")


def rerun_command(config: dict) -> str:
    """The ``fedleak audit`` command line of ``config``."""
    argv = ["fedleak", "audit", "--model", config["model"], "--data", config["data"]]
    for flag, key in (("--weights", "weights"), ("--root", "root")):
        if config.get(key):
            argv += [flag, config[key]]
    argv += ["--size", "x".join(str(s) for s in config["size"]) if config.get("size") else "none"]
    argv += ["--threat", config["threat"], "--protocol", config["protocol"], "--batch-size", str(config["batch_size"])]
    if config.get("secure_aggregation"):
        argv += ["--secure-aggregation", str(config["secure_aggregation"])]
    for defense in config["defenses"] or ["none"]:
        argv += ["--defense", defense]
    if config.get("attacks") is not None:
        argv += ["--attacks", ",".join(config["attacks"])]
    if config.get("quick"):
        argv.append("--quick")
    argv += ["--victims", str(config["victims"])]
    if config.get("iterations") is not None:
        argv += ["--iterations", str(config["iterations"])]
    argv += ["--utility-rounds", str(config["utility_rounds"]), "--utility-clients", str(config["utility_clients"])]
    if config.get("utility_samples") is not None:
        argv += ["--utility-samples", str(config["utility_samples"])]
    argv += ["--seed", str(config["seed"]), "--device", config["device"]]
    return shlex.join(argv)


def leak_of(row: dict) -> float | None:
    """One leakage figure per row: the mean SSIM of the reconstructions (images), else the exact recall."""
    return row.get("ssim", row.get("recall"))


def describe(config: dict, about: dict, seconds: float) -> str:
    """The report's opening sentence."""
    model, data = about["model"], about["data"]
    secure = f", secure aggregation of {config['secure_aggregation']} clients" if config["secure_aggregation"] else ""
    notes = "".join(f" {n}" for n in about.get("notes", ()))
    return (f"Model {model['spec']} ({model['parameters']:,} parameters, "
            f"{'registry model' if model['registered'] else 'your own model'}), data {data['spec']} ({data['train']} "
            f"training / {data['test']} test samples of shape {tuple(model['input_shape'])}, {model['num_classes']} "
            f"classes). Server: {config['threat']}, protocol {config['protocol']}, batch size {config['batch_size']}, "
            f"{config['victims']} victims{secure}. Seed {config['seed']}; inputs digest {about['digest']}; its cells "
            f"computed for {about['cell_seconds']:.0f} s in all, this run took {seconds:.0f} s (finished cells "
            f"resume).{notes}")


def defense_rows(utility: dict[str, dict], leakage: list[dict]) -> list[dict]:
    """One row per defense: accuracy, its cost against no defense, epsilon, the worst leak behind it."""
    baseline = utility.get("none", {}).get("accuracy")
    rows = []
    for defense, cell in utility.items():
        attacked = [r for r in leakage if r["defense"] == defense and r["status"] == "attacked"]
        leaks = [leak_of(r) for r in attacked if leak_of(r) is not None]
        bounded = [r["bound"] for r in leakage if r["defense"] == defense and r["status"] == SKIPPED
                   and r.get("bound") is not None]
        if not leaks and bounded:  # every attack settled at the floor of a defense that bounds this one
            leaks = bounded
        accuracy = cell.get("accuracy")
        row = {"defense": defense, "status": cell["status"], "accuracy": accuracy, "chance": cell.get("chance"),
               "accuracy_cost": None if baseline is None or accuracy is None else baseline - accuracy,
               "epsilon": cell.get("epsilon"), "worst_leak": max(leaks) if leaks else None,
               "worst_ssim": max((r["ssim"] for r in attacked if "ssim" in r), default=None),
               "worst_recall": max((r["recall"] for r in attacked if "recall" in r), default=None)}
        if cell.get("reason"):
            row["reason"] = cell["reason"]
        if leaks is bounded:
            row["worst_leak_bound"] = True  # not measured behind it: at most the bounding defense's leak
        elif any(r["defense"] == defense and r.get("settled") == "leaks" for r in leakage):
            row["worst_leak_at_least"] = True  # attacks left out once one leaked every sample: a lower bound
        rows.append(row)
    return rows


def build_report(finished: dict[str, dict], cells: Sequence[Cell], config: dict, about: dict,
                 seconds: float, settled: dict[str, dict] | None = None) -> dict:
    """The report's figures from the audit's ``cells`` (plan order), the ``finished`` results and the leak cells
    ``settled`` without running (:func:`fedleak.audit.early_stop.settle`)."""
    leakage, utility, detection = [], {}, []
    finished = {**finished, **(settled or {})}
    for cell in cells:
        result = finished.get(cell.key)
        if cell.reason:
            result = {"status": cell.status, "reason": cell.reason}
        if result is None:
            continue
        if cell.kind == "leak":
            row = {"attack": cell.attack, "defense": cell.defense, "status": result["status"]}
            row.update({k: result[k] for k in (*SCORES, "reason", "grid", "texts", "bound", "settled") if k in result})
            if cell.why:
                row["rank"], row["why"] = cell.rank, cell.why
            leakage.append(row)
        elif cell.kind == "utility":
            utility[cell.defense] = result
        else:
            detection.append({"model": cell.attack or "honest",
                              **{k: v for k, v in result.items() if k not in ("key", "kind", "digest")}})
    defenses = defense_rows(utility, leakage)
    report = {"title": f"fedleak audit: {about['model']['spec']} on {about['data']['spec']}",
              "description": describe(config, about, seconds), "config": config, "command": rerun_command(config),
              **{k: v for k, v in about.items() if k != "defense_reasons"},
              "leakage": leakage, "defenses": defenses, "detection": detection, "seconds": seconds,
              "coverage": coverage(cells, finished, config)}
    reasons = about["defense_reasons"]
    answers = verdict(report, tuple(config["defenses"]), reasons)
    answers["coverage"] = coverage_summary(report["coverage"])
    return {"verdict": answers, **report}


def write_report(results: ResultsDir, setup, cells: Sequence[Cell], *, seconds: float,
                 settled: dict[str, dict] | None = None) -> dict:
    """Write ``report.json``, the accuracy-vs-privacy plot and ``report.html`` into the results folder."""
    config = results_config(results)
    model = setup.resolved.model
    reasons = {c.defense: c.reason for c in cells if c.kind == "utility"}
    about = {"model": {"spec": setup.config.model, "registered": setup.resolved.registered,
                       "parameters": sum(p.numel() for p in model.parameters()),
                       "input_shape": list(setup.info.input_shape), "num_classes": setup.info.num_classes},
             "data": {"spec": setup.config.data, "read": setup.data or setup.config.data, "kind": setup.info.kind,
                      "train": len(setup.train),
                      "test": len(setup.test), "input_range": list(setup.input_range)},
             "digest": setup.digest, "defense_reasons": reasons, "notes": [*setup.notes, *language_model_notes(setup)]}
    finished = results.finished()
    about["cell_seconds"] = sum(finished[c.key].get("seconds", 0.0) for c in cells if c.key in finished)
    report = build_report(finished, cells, config, about, seconds, settled)
    return finish(results, report, title=f"{setup.config.model} on {setup.config.data}")


def language_model_notes(setup) -> list[str]:
    """What the figures of a text audit mean: for a model that predicts every position's next token (labels
    (N, n)) the utility's accuracy; for a transformer, DAGER's bound on the tokens of one update (Petrov et al.
    2024 §4: batch x length below the width)."""
    if setup.info.kind != "text":
        return []
    config, positions, notes = setup.config, setup.info.input_shape[-1], []
    samples = f"at most {config.utility_samples}" if config.utility_samples else "all"
    if setup.train.y.dim() > 1:
        notes = [f"Utility: the accuracy is next-token accuracy (the share of the {positions} positions of each "
                 f"test window whose next token the model predicts; chance 1/{setup.info.num_classes}) after "
                 f"{config.utility_rounds} FedAvg round(s) of {config.utility_clients} clients on {samples} "
                 "training windows: it shows whether a defense stops the model from starting to learn, not a "
                 "fine-tuned model's quality."]
    hf_config = getattr(setup.resolved.model, "config", None)
    width = getattr(hf_config, "hidden_size", None) or getattr(hf_config, "n_embd", None)
    if isinstance(width, int):
        tokens = config.batch_size * positions
        if tokens < width:
            notes.append(f"Each victim's update holds batch size {config.batch_size} x {positions} tokens = "
                         f"{tokens}, below the model width {width}: DAGER's bound (Petrov et al. 2024 §4) holds.")
        else:
            notes.append(f"Each victim's update holds batch size {config.batch_size} x {positions} tokens = "
                         f"{tokens}, not below the model width {width} (DAGER's bound, Petrov et al. 2024 §4): "
                         "only repeated tokens keep the gradient's span from filling the space, so expect DAGER to "
                         "recover part of the batch or nothing.")
    return notes


def finish(results: ResultsDir, report: dict, *, title: str) -> dict:
    """Draw the accuracy-vs-privacy plots and write ``report.json`` and ``report.html``."""
    report["figures"] = {"grids": sorted(f"grids/{r['grid']}" for r in report["leakage"] if "grid" in r)}
    if privacy_accuracy_plots(report["defenses"], results.path / PLOT, title=title):
        report["figures"]["privacy_vs_accuracy"] = PLOT
    results.write_json("report.json", report)
    results.write_text("report.html", render(report, results.path))
    return report


def results_config(results: ResultsDir) -> dict:
    config = dict(json.loads((results.path / "config.json").read_text())["config"])
    config.pop("kind", None)
    return config
