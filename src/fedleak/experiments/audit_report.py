"""The audit's report: ``report.json`` (every figure, for machines) and ``report.html`` (one self-contained page:
a summary table per question, reconstructions beside the originals, the accuracy-vs-privacy plot, the detectors'
verdicts, the exact command to rerun), built from the cells of :mod:`fedleak.experiments.audit`."""
from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Sequence

import torch

from fedleak.report import ResultsDir
from fedleak.report.html import escape, image, page, table
from fedleak.report.plots import privacy_accuracy_plot

PLOT = "privacy_vs_accuracy.png"
SCORES = ("ssim", "psnr", "asr", "label_accuracy", "recall", "leaked", "true_points", "declared", "A", "P", "R",
          "seconds")
DETECTORS = ("architecture", "filter_ratio", "dsnr", "warmup_zscore", "warmup_zscore+rounds")


def rerun_command(config: dict) -> str:
    """The ``fedleak audit`` command line of ``config``."""
    argv = ["fedleak", "audit", "--model", config["model"], "--data", config["data"]]
    for flag, key in (("--weights", "weights"), ("--root", "root")):
        if config.get(key):
            argv += [flag, config[key]]
    if config.get("size"):
        argv += ["--size", "x".join(str(s) for s in config["size"])]
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
    argv += ["--utility-rounds", str(config["utility_rounds"]), "--utility-clients", str(config["utility_clients"]),
             "--seed", str(config["seed"]), "--device", config["device"]]
    return shlex.join(argv)


def leak_of(cell: dict) -> float | None:
    """One leakage figure per cell: the mean SSIM of the reconstructions (images), else the exact recall."""
    return cell.get("ssim", cell.get("recall"))


def describe(config: dict, about: dict, seconds: float) -> str:
    """The report's opening sentence for an audit run by ``fedleak audit``."""
    model, data = about["model"], about["data"]
    secure = f", secure aggregation of {config['secure_aggregation']} clients" if config["secure_aggregation"] else ""
    return (f"Model {model['spec']} ({model['parameters']:,} parameters, "
            f"{'registry model' if model['registered'] else 'your own model'}), data {data['spec']} ({data['train']} "
            f"training / {data['test']} test samples of shape {tuple(model['input_shape'])}, {model['num_classes']} "
            f"classes). Server: {config['threat']}, protocol {config['protocol']}, batch size {config['batch_size']}, "
            f"{config['victims']} victims{secure}. Seed {config['seed']}; the audit took {seconds:.0f} s.")


def build_report(cells: dict[str, dict], keys: Sequence[str], config: dict, about: dict, seconds: float) -> dict:
    """The report's figures from the audit's cells (``keys`` in plan order)."""
    leakage, utility, detection = [], {}, []
    for key in keys:
        cell = cells.get(key)
        if cell is None:
            continue
        kind, *parts = key.split("/")
        if kind == "leak":
            row = {"attack": parts[0], "defense": parts[1], "status": cell["status"]}
            row.update({k: cell[k] for k in (*SCORES, "reason", "grid") if k in cell})
            leakage.append(row)
        elif kind == "utility":
            utility[parts[0]] = cell
        elif kind == "detect":
            detection.append({k: v for k, v in cell.items() if k not in ("key", "kind")})
    baseline = utility.get("none", {}).get("accuracy")
    defenses = []
    for defense, cell in utility.items():
        attacked = [r for r in leakage if r["defense"] == defense and r["status"] == "attacked"]
        leaks = [leak_of(r) for r in attacked if leak_of(r) is not None]
        row = {"defense": defense, "status": cell["status"], "accuracy": cell.get("accuracy"),
               "accuracy_cost": None if baseline is None or cell.get("accuracy") is None
               else baseline - cell["accuracy"],
               "epsilon": cell.get("epsilon"), "worst_leak": max(leaks) if leaks else None,
               "worst_ssim": max((r["ssim"] for r in attacked if "ssim" in r), default=None),
               "worst_recall": max((r["recall"] for r in attacked if "recall" in r), default=None)}
        if "reason" in cell:
            row["reason"] = cell["reason"]
        defenses.append(row)
    return {"title": f"fedleak audit: {about['model']['spec']} on {about['data']['spec']}",
            "description": describe(config, about, seconds), "config": config, "command": rerun_command(config),
            **about, "leakage": leakage, "defenses": defenses, "detection": detection, "seconds": seconds}


def write_report(results: ResultsDir, setup, keys: Sequence[str], *, seconds: float) -> dict:
    """Write ``report.json``, the accuracy-vs-privacy plot and ``report.html`` into the results folder."""
    config = results_config(results)
    model = setup.resolved.model
    about = {"model": {"spec": setup.config.model, "registered": setup.resolved.registered,
                       "parameters": sum(p.numel() for p in model.parameters()),
                       "input_shape": list(setup.info.input_shape), "num_classes": setup.info.num_classes},
             "data": {"spec": setup.config.data, "train": len(setup.train), "test": len(setup.test),
                      "input_range": list(setup.input_range)}}
    report = build_report(results.finished(), keys, config, about, seconds)
    points = [(r["defense"], r["accuracy"], r["worst_leak"]) for r in report["defenses"]
              if r["accuracy"] is not None and r["worst_leak"] is not None]
    return finish(results, report, points, title=f"{setup.config.model} on {setup.config.data}")


def finish(results: ResultsDir, report: dict, points: list[tuple[str, float, float]], *, title: str) -> dict:
    """Draw the accuracy-vs-privacy plot of ``points`` and write ``report.json`` and ``report.html``."""
    report["figures"] = {"grids": sorted(f"grids/{r['grid']}" for r in report["leakage"] if "grid" in r)}
    if points:
        privacy_accuracy_plot(points, results.path / PLOT, leak_label="worst leakage (SSIM, or exact recall)",
                              title=title)
        report["figures"]["privacy_vs_accuracy"] = PLOT
    results.write_json("report.json", report)
    results.write_text("report.html", render(report, results.path))
    return report


def results_config(results: ResultsDir) -> dict:
    config = dict(json.loads((results.path / "config.json").read_text())["config"])
    config.pop("kind", None)
    return config


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value)


def render(report: dict, folder: Path) -> str:
    """The HTML page of ``report`` (images read from ``folder``)."""
    sections = [("1. How much does an update leak?", _leak_section(report, folder)),
                ("2. What stops it, and at what cost?", _defense_section(report, folder)),
                ("3. Is the model a trap?", _detection_section(report)),
                ("Attacks and defenses that do not apply", _not_applicable(report)),
                ("Rerun", f"<p>The exact command (results resume from the cells beside the report):</p>"
                          f"<pre>{escape(report['command'])}</pre><p>Config:</p>"
                          f"<pre>{escape(json.dumps(report['config'], indent=2))}</pre>")]
    return page(report["title"], sections, intro=f"<p>{escape(report['description'])}</p>")


def _leak_rows(rows: list[dict]) -> tuple[list[list], list[list[str]]]:
    table_rows, css = [], []
    for r in rows:
        leak = leak_of(r)
        table_rows.append([r["attack"], r["defense"], r.get("ssim"), r.get("psnr"), r.get("asr"),
                           r.get("label_accuracy"), r.get("recall"),
                           f"{r['leaked']}/{r['true_points']}" if "leaked" in r else None,
                           r.get("P"), r.get("R"), r.get("seconds")])
        css.append(["", "", *["bad" if leak is not None and leak >= 0.5 else ""] * 9])
    return table_rows, css


LEAK_HEADERS = ("attack", "defense", "SSIM", "PSNR [dB]", "ASR", "labels recovered", "exact recall", "leaked / true",
                "P", "R", "seconds")


def _grids(rows: list[dict], folder: Path) -> str:
    return "".join(image(folder / "grids" / r["grid"], f"grids/{r['grid']}", f"{r['attack']}, defense {r['defense']}")
                   for r in rows if "grid" in r and (folder / "grids" / r["grid"]).exists())


def _leak_section(report: dict, folder: Path) -> str:
    baseline = report.get("baseline", "none")
    rows = [r for r in report["leakage"] if r["defense"] == baseline and r["status"] == "attacked"]
    if not rows:
        return "<p>No attack applied to this model and protocol (see below for why).</p>"
    body, css = _leak_rows(rows)
    scored = ("Each attacked update of the federation, scored against the reference data (Flower hands the server "
              "no client data; every reference sample counts as a true point)" if report.get("engine") == "flower"
              else "Each attack in one round against undefended clients, scored against their true data")
    return (f"<p>{scored}: SSIM/PSNR of each true image's closest reconstruction and the attack success rate "
            "ASR (the share with SSIM above 0.5, paper 001 §5.2); exact recall: the share of true points reproduced "
            "within 1e-4 of the data scale; P and R: extraction precision and recall of paper 002 §8.1. Red: SSIM or "
            "recall of 0.5 or more.</p>"
            + table(LEAK_HEADERS, body, css=css) + "<p>Originals (top) and reconstructions (bottom):</p>"
            + _grids(rows, folder))


def _defense_section(report: dict, folder: Path) -> str:
    if not any(d.get("accuracy") is not None for d in report["defenses"]):
        return "<p>No defense was chosen (<code>--defense</code>) and no accuracy measured.</p>"
    rows = [[d["defense"], d["status"], d.get("accuracy"), d.get("accuracy_cost"), d.get("epsilon"),
             d.get("worst_ssim"), d.get("worst_recall")] for d in report["defenses"]]
    text = ("<p>Accuracy after the short FedAvg run of clients that use each defense, its cost against no defense, "
            "the DP epsilon spent (delta 1e-5), and the worst leakage any attack reached behind it.</p>"
            + table(("defense", "status", "accuracy", "accuracy cost", "epsilon", "worst SSIM", "worst recall"), rows))
    if "privacy_vs_accuracy" in report["figures"]:
        text += image(folder / PLOT, PLOT, "accuracy vs worst leakage, one point per defense")
    defended = [r for r in report["leakage"] if r["defense"] != report.get("baseline", "none")
                and r["status"] == "attacked"]
    if defended:
        body, css = _leak_rows(defended)
        text += "<p>Every attack behind every defense:</p>" + table(LEAK_HEADERS, body, css=css) + _grids(defended,
                                                                                                         folder)
    return text


def _detection_section(report: dict) -> str:
    refusals = [d for d in report["detection"] if "refusal" in d]
    if refusals:
        return ("<p>Clients that ran fedleak's detector mod and refused the model they were sent, with the "
                "detector's reason (a refused honest model is a false alarm):</p>"
                + table(("round", "client", "model sent", "refusal"),
                        [[d["round"], d["client"], d["model"], d["refusal"]] for d in refusals]))
    checked = [d for d in report["detection"] if d["status"] == "checked"]
    if report.get("engine") == "flower":
        return "<p>No client refused the model it was sent.</p>"
    if not checked:
        return ("<p>Not asked: the audit assumed an honest server. Run it with <code>--threat malicious</code> to "
                "try every model manipulation and ask the client-side detectors about each.</p>")
    rows, css = [], []
    for d in checked:
        row, classes = [d["model"]], [""]
        for name in DETECTORS:
            verdict = d["detectors"].get(name)
            row.append("–" if verdict is None else
                       f"{'FLAGGED' if verdict['flagged'] else 'passed'} ({_fmt(verdict['score'])} vs "
                       f"{_fmt(verdict['threshold'])})")
            wrong = verdict is not None and verdict["flagged"] != (d["model"] != "honest")
            classes.append("" if verdict is None else "bad" if wrong else "good")
        rows.append(row)
        css.append(classes)
    return ("<p>What the client's detectors say at first contact about each manipulated model the server could "
            "send, and about the honest model (a flag there is a false alarm). Green: right, red: wrong.</p>"
            + table(("model received", *DETECTORS), rows, css=css))


def _not_applicable(report: dict) -> str:
    seen, rows = set(), []
    for r in report["leakage"]:
        if r["status"] != "attacked":
            what = r["attack"] if r["status"] == "not applicable" else f"defense {r['defense']}"
            if what not in seen:
                seen.add(what)
                rows.append([what, r["status"], r.get("reason", "")])
    for d in report["defenses"]:
        if d["status"] != "trained" and f"defense {d['defense']}" not in seen:
            rows.append([f"defense {d['defense']}", d["status"], d.get("reason", "")])
    return table(("attack or defense", "status", "why"), rows) if rows else "<p>Everything applied.</p>"


def write_records_report(audit, model, *, accuracy: float | None = None, description: str = "",
                         seconds: float = 0.0) -> dict:
    """The same report for an audit that an engine ran round by round (:class:`fedleak.flower.AuditStrategy` in a
    Flower federation), from its records: one leakage row per attacked update (scored against the audit's
    reference data, Flower handing the server no client data), the clients' refusals, and the run's final
    ``accuracy``. Written into the audit's own results folder."""
    from fedleak.experiments.audit import save_grid  # the one grid of originals above reconstructions

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
        if audit.reference is not None and len(record.reconstruction):
            nearest = _nearest_reference(record.reconstruction.declared_points(), audit.reference)
            if nearest is not None:
                name = f"round-{record.round}-client-{record.source}.png"
                pair = (nearest, record.reconstruction.declared_points())
                if save_grid([pair], results.path / "grids" / name, paired=True,
                             labels=("closest reference", "reconstruction")):
                    row["grid"] = name
        leakage.append(row)
    leaks = [leak_of(r) for r in leakage if leak_of(r) is not None]
    defenses = [{"defense": baseline, "status": "trained", "accuracy": accuracy, "accuracy_cost": None,
                 "epsilon": None, "worst_leak": max(leaks) if leaks else None,
                 "worst_ssim": max((r["ssim"] for r in leakage if "ssim" in r), default=None),
                 "worst_recall": max((r["recall"] for r in leakage if "recall" in r), default=None)}]
    config = results_config(results)
    report = {"title": f"fedleak audit of a Flower federation: {audit.name} on {type(model).__name__}",
              "description": description, "config": config, "baseline": baseline, "engine": "flower",
              "command": "the Flower ServerApp that ran this AuditStrategy, with the config below",
              "model": {"spec": type(model).__name__, "registered": False,
                        "parameters": sum(p.numel() for p in model.parameters())},
              "leakage": leakage, "defenses": defenses, "detection": detection, "seconds": seconds}
    points = [(baseline, accuracy, defenses[0]["worst_leak"])] if accuracy is not None and leaks else []
    return finish(results, report, points, title=f"{audit.name} in a Flower federation")


def _nearest_reference(points, reference):
    """The reference image closest to each reconstructed point, or ``None`` when they cannot be compared."""
    if not len(points) or not points.is_floating_point() or points.shape[1:] != reference.shape[1:]:
        return None
    reference = reference.to(points.device)
    return reference[torch.cdist(points.flatten(1).float(), reference.flatten(1).float()).argmin(dim=1)]
