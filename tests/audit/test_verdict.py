"""The verdict block (issue 20): three answers in plain words from the report's rows, and warnings where a figure
means nothing."""
from fedleak.audit.verdict import verdict


def _report(leakage, defenses, detection=()):
    return {"leakage": list(leakage), "defenses": list(defenses), "detection": list(detection)}


LEAKS = [{"attack": "ig", "defense": "none", "status": "attacked", "ssim": 0.62, "asr": 0.5, "true_points": 1,
          "records": {"attacked": 4}},
         {"attack": "trap_weights", "defense": "none", "status": "attacked", "leaked": 3, "true_points": 4,
          "recall": 0.75},
         {"attack": "trap_weights", "defense": "dp:sigma=1e-1", "status": "attacked", "leaked": 0, "true_points": 4,
          "recall": 0.0}]
DEFENSES = [{"defense": "none", "status": "trained", "accuracy": 0.70, "chance": 0.1, "accuracy_cost": 0.0,
             "worst_leak": 0.75},
            {"defense": "dp:sigma=1e-1", "status": "trained", "accuracy": 0.65, "chance": 0.1, "accuracy_cost": 0.05,
             "epsilon": 3.2, "worst_leak": 0.0},
            {"defense": "dp:sigma=1e-3", "status": "trained", "accuracy": 0.69, "chance": 0.1, "accuracy_cost": 0.01,
             "epsilon": 2e7, "worst_leak": 0.6},
            {"defense": "prune:p=0.99", "status": "trained", "accuracy": 0.11, "chance": 0.1, "accuracy_cost": 0.59,
             "worst_leak": 0.0}]


def test_the_three_answers():
    detection = [{"model": "honest", "status": "checked", "flagged_by": []},
                 {"model": "trap_weights", "status": "checked", "flagged_by": ["degenerate_rows"]},
                 {"model": "class_fishing", "status": "checked", "flagged_by": []}]
    answer = verdict(_report(LEAKS, DEFENSES, detection), ("dp:sigma=1e-1", "dp:sigma=1e-3", "prune:p=0.99"), {})
    leak = answer["leak"]
    assert leak["leaks"] and (leak["samples"], leak["of"], leak["attack"]) == (3, 4, "trap_weights")
    assert "3 of 4 attacked samples (75.0%)" in leak["text"]
    # the lowest leak among defenses that still learn: pruning at chance is not recommended
    assert answer["defense"]["defense"] == "dp:sigma=1e-1"
    assert "65.0%" in answer["defense"]["text"] and "5.0 percentage points below" in answer["defense"]["text"]
    assert answer["manipulations"]["undetected"] == ["class_fishing"]
    warnings = " ".join(answer["warnings"])
    assert "epsilon 2e+07" in warnings and "guarantees nothing" in warnings and "3.2" not in warnings
    assert "prune:p=0.99: accuracy 11.0% is at chance (10.0%)" in warnings


def test_no_defense_applied_says_which_to_add():
    reasons = {"cvb": "CVB cannot follow a BatchNorm layer"}
    answer = verdict(_report(LEAKS[:2], DEFENSES[:1]), ("cvb",), reasons)
    assert answer["defense"]["defense"] is None
    assert "Swap BatchNorm for GroupNorm" in answer["defense"]["text"] and "prune:p=0.9" in answer["defense"]["text"]
    assert any(w.startswith("No defense was applied") for w in answer["warnings"])
    assert "--threat malicious" in answer["manipulations"]["text"]


def test_nothing_leaked_is_said_plainly():
    rows = [{**LEAKS[0], "asr": 0.0, "ssim": 0.2}]
    answer = verdict(_report(rows, DEFENSES[:2]), ("dp:sigma=1e-1",), {})
    assert answer["leak"]["leaks"] is False and answer["leak"]["text"].startswith("No sample leaked")


def test_an_inversion_that_leaks_nothing_is_measured_by_ssim():
    rows = [{"attack": "ig", "defense": "none", "status": "attacked", "ssim": 0.01, "asr": 0.0, "leaked": 0,
             "true_points": 4}]
    text = verdict(_report(rows, DEFENSES[:1]), (), {})["leak"]["text"]
    assert text == "No sample leaked: the strongest attack, ig, gave no reconstructions with SSIM above 0.5 of the 4 " \
                   "attacked samples, mean SSIM 0.01."


def test_a_defense_at_chance_is_warned_with_one_that_learned():
    rows = [DEFENSES[0], {"defense": "cvb", "status": "trained", "accuracy": 0.10, "chance": 0.1,
                          "accuracy_cost": 0.6, "worst_leak": 0.1}, DEFENSES[1]]
    warnings = " ".join(verdict(_report(LEAKS[:1], rows), ("cvb", "dp:sigma=1e-1"), {})["warnings"])
    assert "cvb: accuracy 10.0% is at chance (10.0%)" in warnings and "use dp:sigma=1e-1, which learned" in warnings
    alone = " ".join(verdict(_report(LEAKS[:1], rows[:2]), ("cvb",), {})["warnings"])
    assert "cvb: accuracy 10.0% is at chance" in alone and "try another defense" in alone


def test_groupnorm_swap_is_said():
    rows = [DEFENSES[0], {**DEFENSES[1], "defense": "dp:sigma=1e-3:batchnorm=group"}]
    text = verdict(_report(LEAKS[:1], rows), ("dp:sigma=1e-3:batchnorm=group",), {})["defense"]["text"]
    assert "BatchNorm replaced by GroupNorm for DP-SGD" in text


def test_at_chance_counts_learning_above_chance_for_many_classes():
    from fedleak.audit.verdict import at_chance

    assert at_chance(0.12, 0.1) and not at_chance(0.2, 0.1)
    assert not at_chance(0.028, 1 / 2000)  # a language model's next token: 56x chance is learning
    assert at_chance(0.0006, 1 / 2000)
