"""Early stop (issue 26): a leak question is settled only one way round. Behind a defense, an attack that recovered
every attacked sample ends that defense's attacks; a defense bounded by one that leaked no sample is not attacked;
a partial leak, or a leak behind the bounding defense, stops nothing."""
import textwrap

from fedleak.audit import AuditConfig, run_audit
from fedleak.audit.early_stop import SKIPPED, bounds, post_processes, run_order, settle
from fedleak.audit.plan import Cell

FC = textwrap.dedent("""
    import torch.nn as nn


    def make(input_shape, num_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, num_classes))
""")


def _cells(defense, *attacks):
    return [Cell("leak", a, defense, digest="d", rank=i, why="test") for i, a in enumerate(attacks)]


def _exact(leaked, of):
    return {"status": "attacked", "true_points": of, "leaked": leaked, "recall": leaked / of}


def _inverted(asr, victims=4, ssim=0.3):
    return {"status": "attacked", "true_points": 1, "asr": asr, "ssim": ssim, "records": {"attacked": victims}}


def test_an_attack_that_recovered_every_sample_ends_its_defense():
    cells = _cells("none", "spear", "passive", "ig")
    settled = settle(cells[2], cells, {cells[0].key: _exact(4, 4)}, {})
    assert settled["status"] == SKIPPED and settled["settled"] == "leaks" and "spear" in settled["reason"]
    # an inversion above SSIM 0.5 on every victim settles it too
    assert settle(cells[2], cells, {cells[0].key: _exact(0, 4), cells[1].key: _inverted(1.0)}, {}) is not None


def test_a_partial_leak_stops_nothing():
    cells = _cells("none", "spear", "passive", "ig")
    assert settle(cells[2], cells, {cells[0].key: _exact(3, 4), cells[1].key: _inverted(0.75)}, {}) is None


def test_a_post_processing_defense_is_bounded_by_an_undefended_update_that_leaked_nothing():
    config = AuditConfig(model="cnn", data="bundled", defenses=("dp:sigma=1e-3", "cvb"))
    bounded_by = bounds(config.defenses, config)
    assert bounded_by == {"dp:sigma=1e-3": ("none",), "cvb": ()}  # CVB changes the model: never bounded
    cells = _cells("none", "ig") + _cells("dp:sigma=1e-3", "dpia") + _cells("cvb", "vbia")
    floor = {cells[0].key: _inverted(0.0, ssim=0.12)}
    settled = settle(cells[1], cells, floor, bounded_by)
    assert settled["settled"] == "floor" and settled["bound"] == 0.12
    assert settle(cells[2], cells, floor, bounded_by) is None
    # one leaked sample behind no defense: DP must be attacked
    assert settle(cells[1], cells, {cells[0].key: _inverted(0.25)}, bounded_by) is None
    # nothing run behind the bound yet: no bound
    assert settle(cells[1], cells, {}, bounded_by) is None


def test_dp_with_per_sample_clipping_of_a_batch_is_not_post_processing():
    batch = AuditConfig(model="cnn", data="bundled", batch_size=4)
    assert not post_processes("dp:sigma=1e-3", batch) and post_processes("prune:p=0.9", batch)
    assert not post_processes("dp:sigma=1e-3", AuditConfig(model="cnn", data="bundled", protocol="fedavg"))


def test_a_stronger_setting_is_skipped_only_when_the_weaker_one_is_at_the_floor():
    config = AuditConfig(model="cnn", data="bundled", batch_size=4, defenses=("dp:sigma=1e-2", "cvb", "dp:sigma=1e-3"))
    assert run_order(("none", *config.defenses)) == ("none", "dp:sigma=1e-3", "dp:sigma=1e-2", "cvb")
    bounded_by = bounds(config.defenses, config)
    assert bounded_by["dp:sigma=1e-2"] == ("dp:sigma=1e-3",) and bounded_by["dp:sigma=1e-3"] == ()
    cells = _cells("dp:sigma=1e-3", "dpia", "ig") + _cells("dp:sigma=1e-2", "dpia")
    weak = {cells[0].key: _inverted(0.0), cells[1].key: _inverted(0.0)}
    assert settle(cells[2], cells, weak, bounded_by)["settled"] == "floor"
    assert settle(cells[2], cells, {**weak, cells[1].key: _inverted(0.5)}, bounded_by) is None


def test_audit_stops_after_spear_recovers_every_sample(tmp_path):
    (tmp_path / "fc.py").write_text(FC)
    config = AuditConfig.quick_profile(model=f"{tmp_path / 'fc.py'}:make", data="bundled", size=(28, 28), victims=2,
                                       iterations=5, defenses=("prune:p=0.5",), utility_rounds=1, utility_clients=2,
                                       utility_samples=200)
    report = run_audit(config, tmp_path / "out", progress=False)
    rows = {(r["attack"], r["defense"]): r for r in report["leakage"]}
    assert rows["spear", "none"]["status"] == "attacked" and rows["spear", "none"]["recall"] == 1.0
    for attack in ("passive", "ig"):
        assert rows[attack, "none"]["status"] == SKIPPED, rows[attack, "none"]
    assert report["verdict"]["leak"]["leaks"] is True and report["verdict"]["leak"]["samples"] == 2
    # the pruned update leaked too, so nothing bounded it: its strongest attack ran and was measured
    assert rows["spear", "prune:p=0.5"]["status"] == "attacked"
    assert report["coverage"]["strongest"][0] == {"defense": "none", "attack": "spear",
                                                  "why": rows["spear", "none"]["why"]}
    assert any(c["cell"] == "leak/ig/none" for c in report["coverage"]["left_out"])


def test_a_settled_defense_reports_its_leak_as_a_bound_never_as_measured():
    from fedleak.audit.report import defense_rows
    from fedleak.audit.verdict import defense_answer

    utility = {d: {"status": "trained", "accuracy": 0.8, "chance": 0.1} for d in ("none", "dp:sigma=1e-3", "cvb")}
    leakage = [{"attack": "ig", "defense": "none", "status": "attacked", "ssim": 0.12},
               {"attack": "dpia", "defense": "dp:sigma=1e-3", "status": SKIPPED, "settled": "floor", "bound": 0.12},
               {"attack": "vbia", "defense": "cvb", "status": "attacked", "ssim": 0.7},
               {"attack": "cdia", "defense": "cvb", "status": SKIPPED, "settled": "leaks"}]
    rows = {r["defense"]: r for r in defense_rows(utility, leakage)}
    assert rows["dp:sigma=1e-3"]["worst_leak"] == 0.12 and rows["dp:sigma=1e-3"]["worst_leak_bound"]
    assert rows["cvb"]["worst_leak"] == 0.7 and rows["cvb"]["worst_leak_at_least"]
    answer = defense_answer(list(rows.values()), ("dp:sigma=1e-3", "cvb"), {})
    assert answer["defense"] == "dp:sigma=1e-3" and "at most 0.12" in answer["text"]
    worse = defense_answer([rows["none"], rows["cvb"]], ("cvb",), {})
    assert "at least 0.70" in worse["text"] and "does not stop every attack" in worse["text"]
