"""The audit's report: ``report.json`` (every figure, for machines) and ``report.html`` (one self-contained page:
a summary table per question, reconstructions beside the originals, the accuracy-vs-privacy plot, the detectors'
verdicts, the exact command to rerun), built from the cells of :mod:`fedleak.experiments.audit`."""
from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Sequence

from fedleak.report import ResultsDir
from fedleak.report.html import escape, image, page, table
from fedleak.report.plots import privacy_accuracy_plot

PLOT = "privacy_vs_accuracy.png"
SCORES = ("ssim", "psnr", "asr", "label_accuracy", "recall", "leaked", "true_points", "A", "P", "R", "seconds")
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
    return {"config": config, "command": rerun_command(config), **about, "leakage": leakage, "defenses": defenses,
            "detection": detection, "seconds": seconds}


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
    report["figures"] = {"grids": sorted(f"grids/{r['grid']}" for r in report["leakage"] if "grid" in r)}
    if points:
        privacy_accuracy_plot(points, results.path / PLOT, leak_label="worst leakage (SSIM, or exact recall)",
                              title=f"{setup.config.model} on {setup.config.data}")
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
    config = report["config"]
    model, data = report["model"], report["data"]
    intro = (f"<p>Model <code>{escape(model['spec'])}</code> ({model['parameters']:,} parameters, "
             f"{'registry model' if model['registered'] else 'your own model'}), data <code>{escape(data['spec'])}"
             f"</code> ({data['train']} training / {data['test']} test samples of shape {tuple(model['input_shape'])},"
             f" {model['num_classes']} classes). Server: <b>{escape(config['threat'])}</b>, protocol "
             f"<b>{escape(config['protocol'])}</b>, batch size {config['batch_size']}, {config['victims']} victims"
             f"{', secure aggregation of ' + str(config['secure_aggregation']) + ' clients' if config['secure_aggregation'] else ''}"
             f". Seed {config['seed']}; the audit took {report['seconds']:.0f} s.</p>")
    sections = [("1. How much does an update leak?", _leak_section(report, folder)),
                ("2. What stops it, and at what cost?", _defense_section(report, folder)),
                ("3. Is the model a trap?", _detection_section(report)),
                ("Attacks and defenses that do not apply", _not_applicable(report)),
                ("Rerun", f"<p>The exact command (results resume from <code>cells.jsonl</code>):</p>"
                          f"<pre>{escape(report['command'])}</pre><p>Config:</p>"
                          f"<pre>{escape(json.dumps(config, indent=2))}</pre>")]
    return page(f"fedleak audit: {model['spec']} on {data['spec']}", sections, intro=intro)


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
    rows = [r for r in report["leakage"] if r["defense"] == "none" and r["status"] == "attacked"]
    if not rows:
        return "<p>No attack applied to this model and protocol (see below for why).</p>"
    body, css = _leak_rows(rows)
    return ("<p>Each attack in one round against undefended clients, scored against their true data: SSIM/PSNR of "
            "each true image's closest reconstruction and the attack success rate ASR (share with SSIM above the "
            "paper 001 threshold); exact recall: the share of true points reproduced within 1e-4 of the data scale; "
            "P and R: extraction precision and recall of paper 002. Red: SSIM or recall of 0.5 or more.</p>"
            + table(LEAK_HEADERS, body, css=css) + "<p>Originals (top) and reconstructions (bottom):</p>"
            + _grids(rows, folder))


def _defense_section(report: dict, folder: Path) -> str:
    if len(report["defenses"]) <= 1:
        return "<p>No defense was chosen (<code>--defense</code>).</p>"
    rows = [[d["defense"], d["status"], d.get("accuracy"), d.get("accuracy_cost"), d.get("epsilon"),
             d.get("worst_ssim"), d.get("worst_recall")] for d in report["defenses"]]
    text = ("<p>Accuracy after the short FedAvg run of clients that use each defense, its cost against no defense, "
            "the DP epsilon spent (delta 1e-5), and the worst leakage any attack reached behind it.</p>"
            + table(("defense", "status", "accuracy", "accuracy cost", "epsilon", "worst SSIM", "worst recall"), rows))
    if "privacy_vs_accuracy" in report["figures"]:
        text += image(folder / PLOT, PLOT, "accuracy vs worst leakage, one point per defense")
    defended = [r for r in report["leakage"] if r["defense"] != "none" and r["status"] == "attacked"]
    if defended:
        body, css = _leak_rows(defended)
        text += "<p>Every attack behind every defense:</p>" + table(LEAK_HEADERS, body, css=css) + _grids(defended,
                                                                                                         folder)
    return text


def _detection_section(report: dict) -> str:
    checked = [d for d in report["detection"] if d["status"] == "checked"]
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
