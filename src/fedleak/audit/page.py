"""``report.html`` of an audit: the verdict first (three answers and the warnings), then one section per question
with its tables, the reconstructions beside the originals and the accuracy-vs-privacy figure, what does not
apply and why, and the command to rerun. One self-contained page (:mod:`fedleak.report.html`)."""
from __future__ import annotations

import json
from pathlib import Path

from fedleak.audit.early_stop import SKIPPED
from fedleak.audit.plan import QUICK_SKIP
from fedleak.audit.verdict import SSIM_LEAK, percent, samples_leaked
from fedleak.report.html import escape, image, page, table

PLOT = "privacy_vs_accuracy.png"
LEAK_HEADERS = ("attack", "defense", "SSIM", "PSNR [dB]", "ASR", "labels recovered", "exact recall",
                "samples leaked", "seconds")


def render(report: dict, folder: Path) -> str:
    """The HTML page of ``report`` (images read from ``folder``)."""
    sections = [("Verdict", _verdict(report)),
                ("1. How much does an update leak?", _leak_section(report, folder)),
                ("2. What stops it, and at what cost?", _defense_section(report, folder)),
                ("3. Would the client's checks catch a malicious server?", _detection_section(report)),
                ("Attacks and defenses that do not apply", _not_applicable(report)),
                *([("What this audit did not cover", _coverage(report))] if report.get("coverage") else []),
                ("Rerun", f"<p>The exact command (results resume from the cells beside the report while the "
                          f"model, weights and data are unchanged):</p><pre>{escape(report['command'])}</pre>"
                          f"<p>Config:</p><pre>{escape(json.dumps(report['config'], indent=2))}</pre>")]
    return page(report["title"], sections, intro=f"<p>{escape(report['description'])}</p>")


def _verdict(report: dict) -> str:
    verdict = report["verdict"]
    leak = verdict["leak"]
    css = "bad" if leak.get("leaks") else "good" if leak.get("leaks") is False else ""
    rows = [["Does an update leak?", leak["text"]],
            ["Which defense, at what cost?", verdict["defense"]["text"]],
            ["Which manipulations get past the client's checks?", verdict["manipulations"]["text"]]]
    if verdict.get("coverage"):
        rows.append(["Which attacks ran?", verdict["coverage"]])
    text = table(("question", "answer"), rows, css=[["", css], *[["", ""]] * (len(rows) - 1)])
    if verdict["warnings"]:
        text += "<p><strong>Warnings</strong></p><ul>" + "".join(
            f"<li>{escape(w)}</li>" for w in verdict["warnings"]) + "</ul>"
    return text


def _samples(row: dict) -> str | None:
    if "declared" in row and "ssim" not in row and "leaked" not in row:
        return "features, not inputs"
    counted = samples_leaked(row)
    if counted is None:
        return None
    leaked, total, measure = counted
    return f"{leaked} of {total} ({'exact' if measure == 'exact copies' else f'SSIM > {SSIM_LEAK}'})"


def _leak_rows(rows: list[dict]) -> tuple[list[list], list[list[str]]]:
    table_rows, css = [], []
    for r in rows:
        leak = r.get("ssim", r.get("recall"))
        table_rows.append([r["attack"], r["defense"], r.get("ssim"), r.get("psnr"),
                           percent(r["asr"]) if "asr" in r else None,
                           percent(r["label_accuracy"]) if "label_accuracy" in r else None,
                           percent(r["recall"]) if "recall" in r else None, _samples(r), r.get("seconds")])
        css.append(["", "", *["bad" if leak is not None and leak >= SSIM_LEAK else ""] * 7])
    return table_rows, css


def _grids(rows: list[dict], folder: Path) -> str:
    return "".join(image(folder / "grids" / r["grid"], f"grids/{r['grid']}", f"{r['attack']}, defense {r['defense']}")
                   for r in rows if "grid" in r and (folder / "grids" / r["grid"]).exists())


def _leak_section(report: dict, folder: Path) -> str:
    baseline = report.get("baseline", "none")
    rows = [r for r in report["leakage"] if r["defense"] == baseline and r["status"] == "attacked"]
    if not rows:
        return "<p>No attack applied to this model and protocol (see below for why).</p>"
    body, css = _leak_rows(rows)
    scored = report.get("scored", "Each attack in one round against undefended clients, scored against their true "
                                  "data")
    return (f"<p>{escape(scored)}: SSIM (0 to 1) and PSNR of each true image's closest reconstruction; ASR, the share "
            f"of images reconstructed with SSIM above {SSIM_LEAK} (paper 001 §5.2); exact recall, the share of true "
            "samples reproduced within 1e-4 of the data scale (paper 002 §8.1). Red: SSIM or recall of 0.5 or "
            "more.</p>" + table(LEAK_HEADERS, body, css=css)
            + _pictures(rows, folder))


def _pictures(rows: list[dict], folder: Path) -> str:
    """The image grids and the text grids of ``rows``."""
    text = ("<p>Originals (top) and reconstructions (bottom):</p>" + _grids(rows, folder)
            if any("grid" in r for r in rows) else "")
    return text + _texts(rows)


def _texts(rows: list[dict]) -> str:
    """Per attack with recovered text, each victim's true sentence beside the one recovered (green: exact)."""
    parts = []
    for r in rows:
        if not r.get("texts"):
            continue
        scores = ", ".join(f"{name} {r[key]:.2f}" for key, name in (("exact_sequences", "exact"),
                           ("rouge1", "ROUGE-1"), ("rouge2", "ROUGE-2"), ("token_recall", "token recall"))
                           if r.get(key) is not None)
        body = [[t["victim"], t["original"], "(nothing recovered)" if t["recovered"] is None else t["recovered"]]
                for t in r["texts"]]
        css = [["", "", "good" if t["exact"] else "bad"] for t in r["texts"]]
        parts.append(f"<p>{escape(r['attack'])}, defense {escape(r['defense'])} ({escape(scores)}): each victim's "
                     "sentence (token ids decoded by the local tokenizer) beside the sentence recovered from its "
                     "update. Green: recovered exactly.</p>"
                     + table(("victim", "original", "recovered"), body, css=css))
    return "".join(parts)


def _defense_section(report: dict, folder: Path) -> str:
    rows = [d for d in report["defenses"] if d.get("accuracy") is not None]
    if not rows:
        return "<p>No accuracy was measured.</p>"
    body = [[d["defense"], percent(d["accuracy"]),
             None if d.get("accuracy_cost") is None else f"{100 * d['accuracy_cost']:.1f} points",
             None if d.get("epsilon") is None else f"{d['epsilon']:.3g}", d.get("worst_ssim"),
             percent(d["worst_recall"]) if d.get("worst_recall") is not None else None] for d in rows]
    chance = next((d["chance"] for d in rows if d.get("chance")), None)
    text = ("<p>Test accuracy after the short FedAvg run of clients that use each defense (chance: "
            f"{percent(chance)}), its cost in percentage points against no defense, the DP epsilon spent "
            "(delta 1e-5; above ~10 it guarantees nothing), and the worst leak any attack reached behind it.</p>"
            + table(("defense", "accuracy", "accuracy lost", "epsilon", "worst SSIM", "worst exact recall"), body))
    if "privacy_vs_accuracy" in report.get("figures", {}):
        text += image(folder / PLOT, PLOT, "accuracy vs worst leak, one panel per measure, one marker per defense")
    defended = [r for r in report["leakage"] if r["defense"] != report.get("baseline", "none")
                and r["status"] == "attacked"]
    if defended:
        body, css = _leak_rows(defended)
        text += "<p>Every attack behind every defense:</p>" + table(LEAK_HEADERS, body, css=css) + _grids(defended,
                                                                                                         folder)
        text += _texts(defended)
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
                "try every model manipulation against the client's checks.</p>")
    rows, css = [], []
    for d in checked:
        flagged = d["flagged_by"]
        first = d["detectors"][flagged[0]]["reason"] if flagged else ""
        rows.append([d["model"], "refused" if flagged else "accepted", ", ".join(flagged) or "none", first])
        wrong = bool(flagged) != (d["model"] != "honest")
        css.append(["", "bad" if wrong else "good", "", ""])
    return ("<p>What a client running fedleak's first-contact detector chain (architecture check, weight "
            "forensics, batch dominance) does with each manipulated model the server could send, and with the "
            "honest model (refusing it is a false alarm). Green: right, red: wrong.</p>"
            + table(("model received", "client", "flagged by", "first reason"), rows, css=css))


def _not_applicable(report: dict) -> str:
    seen, rows = set(), []
    for r in report["leakage"]:
        if r["status"] not in ("attacked", SKIPPED, QUICK_SKIP):  # those two: "What this audit did not cover"
            what = r["attack"] if r["status"] == "not applicable" else f"defense {r['defense']}"
            if what not in seen:
                seen.add(what)
                rows.append([what, r["status"], r.get("reason", "")])
    for d in report["defenses"]:
        if d["status"] != "trained" and f"defense {d['defense']}" not in seen:
            rows.append([f"defense {d['defense']}", d["status"], d.get("reason", "")])
    return table(("attack or defense", "status", "why"), rows) if rows else "<p>Everything applied.</p>"


def _coverage(report: dict) -> str:
    """The strongest attack behind each defense, the cells left out (by --quick or settled early) and what the
    quick profile shortens (:mod:`fedleak.audit.coverage`)."""
    found, text = report["coverage"], ""
    if found["strongest"]:
        text += ("<p>The strongest attack that applies behind each defense, chosen by a rule from the model's "
                 "anatomy and the threat model (it ran first):</p>"
                 + table(("defense", "strongest attack", "why"),
                         [[s["defense"], s["attack"], s["why"]] for s in found["strongest"]]))
    if found["left_out"]:
        text += ("<p>Leak cells not run: left out by the quick profile, or skipped because their answer was "
                 "settled (a defense that already leaked every sample, or one bounded by a defense that leaked "
                 "none; never the other way round):</p>"
                 + table(("cell", "status", "why"), [[c["cell"], c["status"], c["reason"]] for c in found["left_out"]]))
    if found["quick"]:
        text += "<p>The --quick profile:</p><ul>" + "".join(f"<li>{escape(g)}</li>" for g in found["quick"]) + "</ul>"
    return text or "<p>Everything the audit plans ran.</p>"
