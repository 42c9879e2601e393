"""``fedleak reproduce hear-no-evil-s4``: the closing verdicts follow the measured gaps, and bad configs fail clearly.
(The experiment itself runs in ~4 min with ``--quick``; its measured figures are in the module's report.)"""
import pytest

from fedleak.experiments.hear_no_evil_s4 import S4Config, summarize_s4, verdicts


def _cells(bn: float, gn: float, ln: float, prior: float, rounds: dict, fedavg: list, warmup: float) -> list[dict]:
    cells = [{"part": "prior", "batch_size": 16, "ssim": prior}]
    cells += [{"part": "norm", "batch_size": 16, "norm": n, "steps": 10, "ssim": v, "psnr": 10.0,
               "checkpoint": "shipped"} for n, v in (("batch", bn), ("group", gn), ("layer", ln))]
    cells += [{"part": "fedsgd", "round": r, "ssim": v, "psnr": 10.0} for r, v in rounds.items()]
    cells += [{"part": "fedavg", "epochs": e + 1, "ssim": v, "psnr": 10.0} for e, v in enumerate(fedavg)]
    verdict = {"flagged": warmup > 100, "score": warmup}
    cells.append({"part": "detect", "model": "SEER (BN)", "network": "cnn batch", "round": 4,
                  "architecture": {"flagged": False, "score": 0.0}, "warmup_zscore": verdict, "warmup_zscore+rounds": verdict})
    return cells


def test_verdicts_follow_the_measured_gaps():
    config = S4Config.quick()
    holds = verdicts(summarize_s4(_cells(0.6, 0.4, 0.3, 0.3, {0: 0.6, 20: 0.3}, [0.35], 500.0), config))
    assert [line.split(":")[1].split()[0] for line in holds] == ["holds"] * 4
    fails = verdicts(summarize_s4(_cells(0.45, 0.44, 0.43, 0.4, {0: 0.45, 20: 0.44}, [0.45], 92.8), config))
    assert [line.split(":")[1].split()[0] for line in fails] == ["not", "not", "not", "does"]
    assert "score 92.8 paper mode" in fails[-1]


def test_bad_configs_fail_clearly():
    with pytest.raises(ValueError, match="attack_round must be >= 3"):
        S4Config(attack_round=2)
    with pytest.raises(ValueError, match="batch sizes must be >= 2"):
        S4Config(batch_sizes=(1, 16))
