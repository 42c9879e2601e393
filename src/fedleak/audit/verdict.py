"""The answer at the top of the audit's report: three questions in plain words, with the warnings where a figure
means nothing.

1. Does an update leak, how many samples and by which attack? A sample counts as leaked when an inversion
   reconstructs it with SSIM above :data:`SSIM_LEAK` (the ASR threshold of paper 001 §5.2) or an analytic attack
   reproduces it exactly (paper 002 §8.1).
2. Which defense to use, at what accuracy cost? The applicable defense whose worst leak is lowest, among those that
   still learn (accuracy above chance), ties broken by accuracy.
3. Which manipulations would get past the client's checks? Those the first-contact chain does not flag.
"""
from __future__ import annotations

SSIM_LEAK = 0.5  # paper 001 §5.2: a reconstruction with SSIM above 0.5 counts as a successful attack
EPSILON_MEANINGLESS = 10.0  # above this DP epsilon the guarantee is vacuous (e^10 ~ 22,000x likelihood ratio)
ABOVE_CHANCE = 0.05  # an accuracy within 5 points of chance, and below twice chance, did not learn
GROUPNORM_OPTION = "batchnorm=group"  # fedleak.defenses.dp: DP-SGD on a BatchNorm model, with GroupNorm in its place
GROUPNORM_NOTE = ("BatchNorm replaced by GroupNorm for DP-SGD (per-sample gradients cannot share batch statistics); "
                  "its accuracy and leakage are those of the GroupNorm model")


def at_chance(accuracy: float, chance: float) -> bool:
    """Whether ``accuracy`` is no better than guessing: within :data:`ABOVE_CHANCE` of ``chance`` and below twice
    it (with thousands of classes, as a language model's next token, 5 points above chance is real learning)."""
    return accuracy <= chance + ABOVE_CHANCE and accuracy < 2 * chance


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def samples_leaked(row: dict) -> tuple[int, int, str] | None:
    """(samples leaked, samples attacked, how they count) of one attacked leak row: exact copies, or for images
    the reconstructions with SSIM above :data:`SSIM_LEAK` when those are more."""
    if "true_points" not in row or not ("leaked" in row or "asr" in row):
        return None
    # a row with "leaked" holds its records' sums (fedleak.audit.cells.leak_cell), otherwise their means
    total = int(round(row["true_points"] * (1 if "leaked" in row else row.get("records", {}).get("attacked", 1))))
    exact = int(row.get("leaked", 0))
    similar = int(round(row["asr"] * total)) if "asr" in row else 0
    if "asr" in row and (similar > exact or exact == 0):
        return similar, total, f"reconstructions with SSIM above {SSIM_LEAK}"
    return exact, total, "exact copies"


def leak_answer(rows: list[dict]) -> dict:
    """Question 1 from the undefended leak rows."""
    attacked = [r for r in rows if r["defense"] == "none" and r["status"] == "attacked"]
    counted = [(r, samples_leaked(r)) for r in attacked]
    counted = [(r, c) for r, c in counted if c is not None]
    if not counted:
        return {"leaks": None, "samples": None, "of": None, "attack": None,
                "text": "Not measured: no attack applied to this model and protocol (see why below)."}
    row, (leaked, total, measure) = max(counted, key=lambda rc: (rc[1][0] / max(1, rc[1][1]),
                                                                 rc[1][2] == "exact copies", rc[0].get("ssim", 0.0)))
    best = f", mean SSIM {row['ssim']:.2f}" if "ssim" in row else ""
    if leaked == 0:
        text = (f"No sample leaked: the strongest attack, {row['attack']}, gave no {measure} of the {total} "
                f"attacked samples{best}.")
    else:
        text = (f"Yes: {row['attack']} recovered {leaked} of {total} attacked samples ({percent(leaked / total)}) "
                f"as {measure}{best}.")
    return {"leaks": leaked > 0, "samples": leaked, "of": total, "attack": row["attack"], "text": text}


def defense_answer(defenses: list[dict], chosen: tuple[str, ...], reasons: dict[str, str]) -> dict:
    """Question 2 from the defense rows (``chosen``: the defenses asked for; ``reasons``: why some do not apply)."""
    applied = [d for d in defenses if d["defense"] != "none" and d["status"] == "trained"]
    baseline = next((d for d in defenses if d["defense"] == "none"), {})
    if not applied:
        missing = "; ".join(f"{name}: {reasons[name]}" for name in chosen if reasons.get(name)) or \
            "none was asked for (--defense none)"
        return {"defense": None, "accuracy": None, "accuracy_cost": None,
                "text": f"No defense was evaluated ({missing}). {suggestion(chosen, reasons)}"}
    chance = baseline.get("chance", 0.0)
    learning = [d for d in applied if d["accuracy"] is not None and not at_chance(d["accuracy"], chance)]
    pool = learning or applied
    best = min(pool, key=lambda d: (d["worst_leak"] if d["worst_leak"] is not None else 1.0, -(d["accuracy"] or 0)))
    cost = best.get("accuracy_cost")
    cost_text = "" if cost is None else \
        f", {abs(100 * cost):.1f} percentage points {'below' if cost > 0 else 'above'} no defense"
    leak = "" if best["worst_leak"] is None else f"; the worst leak behind it: {best['worst_leak']:.2f}"
    if best.get("worst_leak_at_least") and best["worst_leak"] is not None:
        leak = (f"; the worst leak behind it: at least {best['worst_leak']:.2f} (weaker attacks were left out once "
                "one leaked every attacked sample)")
    if best.get("worst_leak_bound") and best["worst_leak"] is not None:
        leak = (f"; the worst leak behind it: at most {best['worst_leak']:.2f} (not attacked: a defense that "
                "bounds it leaked no sample, see 'What this audit did not cover')")
    text = f"Use {best['defense']}: accuracy {percent(best['accuracy'])}{cost_text}{leak}."
    if best["worst_leak"] is not None and best["worst_leak"] >= SSIM_LEAK:
        text += " It does not stop every attack (a leak of 0.5 or more is a successful reconstruction)."
    if not learning:
        text += " No defended run learned beyond chance, so the costs are not informative."
    swapped = [d["defense"] for d in applied if GROUPNORM_OPTION in d["defense"]]
    if swapped:
        text += f" {', '.join(swapped)}: {GROUPNORM_NOTE}."
    skipped = [name for name in chosen if reasons.get(name)]
    if skipped:
        text += " Not evaluated: " + "; ".join(f"{name} ({reasons[name]})" for name in skipped) + "."
    return {"defense": best["defense"], "accuracy": best["accuracy"], "accuracy_cost": cost,
            "worst_leak": best["worst_leak"], "text": text}


def suggestion(chosen: tuple[str, ...], reasons: dict[str, str]) -> str:
    """What to add when no defense could be evaluated."""
    text = " ".join(reasons.get(name, "") for name in chosen).lower()
    if "batchnorm" in text or "batch norm" in text or "batch-norm" in text:
        return ("Swap BatchNorm for GroupNorm (DP-SGD needs per-sample gradients, which batch statistics mix), "
                "or add --defense prune:p=0.9 (gradient pruning applies to any model).")
    return "Add --defense dp:sigma=1e-3 (DP-SGD) or --defense prune:p=0.9 (gradient pruning applies to any model)."


def manipulation_answer(detection: list[dict], leakage: list[dict]) -> dict:
    """Question 3 from the detection rows (first-contact chain) and the undefended leak rows."""
    checked = [d for d in detection if d["status"] == "checked" and d["model"] != "honest"]
    if not checked:
        honest = [d for d in detection if d["status"] == "checked" and d["model"] == "honest"]
        if honest:  # a malicious server was assumed, but no manipulation applies to this model
            alarm = ("refused it: a false alarm" if honest[0]["flagged_by"] else "accepted it")
            return {"undetected": None, "detected": None,
                    "text": "No manipulation applies to this model (see why below); on the honest model the "
                            f"client's checks {alarm}."}
        return {"undetected": None, "detected": None,
                "text": "Not asked: run with --threat malicious to try every manipulation against the client's "
                        "checks."}
    leaked = {r["attack"]: samples_leaked(r) for r in leakage if r["defense"] == "none" and r["status"] == "attacked"}
    passing = [d["model"] for d in checked if not d["flagged_by"]]
    caught = [d["model"] for d in checked if d["flagged_by"]]

    def named(name):
        count = leaked.get(name)
        return f"{name} ({count[0]} of {count[1]} samples leaked)" if count else name

    if passing:
        text = (f"{len(passing)} of {len(checked)} manipulations get past the client's first-contact checks: "
                f"{', '.join(named(n) for n in passing)}.")
    else:
        text = f"The client's first-contact checks flag all {len(checked)} manipulations that apply."
    honest = next((d for d in detection if d["model"] == "honest" and d["status"] == "checked"), None)
    if honest is not None and honest["flagged_by"]:
        text += f" They also flag the honest model (false alarm by {', '.join(honest['flagged_by'])})."
    return {"undetected": passing, "detected": caught, "text": text}


def warnings_of(defenses: list[dict], chosen: tuple[str, ...], reasons: dict[str, str]) -> list[str]:
    """Where a figure of the report means nothing."""
    found = []
    chance_of = {d["defense"]: d.get("chance") for d in defenses}
    learning = [d for d in defenses if d["defense"] != "none" and d.get("accuracy") is not None
                and chance_of.get(d["defense"]) is not None and not at_chance(d["accuracy"], chance_of[d["defense"]])]
    for d in defenses:
        epsilon = d.get("epsilon")
        if epsilon is not None and epsilon > EPSILON_MEANINGLESS:
            found.append(f"{d['defense']}: DP epsilon {epsilon:.3g} (delta 1e-5) guarantees nothing (above "
                         f"~{EPSILON_MEANINGLESS:g}); only the measured leakage behind it counts.")
        chance = d.get("chance")
        if d.get("accuracy") is not None and chance is not None and at_chance(d["accuracy"], chance):
            if d["defense"] == "none":
                found.append(f"none: the undefended model's accuracy {percent(d['accuracy'])} is at chance "
                             f"({percent(chance)}): the short FedAvg run did not learn, so no accuracy cost is "
                             "measured against a trained model (raise --utility-rounds).")
                continue
            others = [o["defense"] for o in learning if o["defense"] != d["defense"]]
            instead = (f"use {others[0]}, which learned" if others else
                       "try another defense (--defense prune:p=0.9: gradient pruning applies to any model)")
            found.append(f"{d['defense']}: accuracy {percent(d['accuracy'])} is at chance ({percent(chance)}): "
                         f"the short FedAvg run did not learn, so it says nothing of its cost; {instead}, or raise "
                         "--utility-rounds to see whether it learns later.")
    if not any(d["defense"] != "none" and d["status"] == "trained" for d in defenses):
        found.append("No defense was applied. " + suggestion(chosen, reasons))
    return found


def verdict(report: dict, chosen: tuple[str, ...], reasons: dict[str, str]) -> dict:
    """The report's ``verdict`` object: the three answers and the warnings."""
    return {"leak": leak_answer(report["leakage"]), "defense": defense_answer(report["defenses"], chosen, reasons),
            "manipulations": manipulation_answer(report["detection"], report["leakage"]),
            "warnings": warnings_of(report["defenses"], chosen, reasons)}
