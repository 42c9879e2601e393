"""The leakage guard against the true batch: a trap-weights, an imprint and an honest FC net lose their exact
leak, a benign conv net's update is left nearly as it was, and the mods send only the sanitised update."""
import pytest
import torch

from fedleak.attacks import ATTACKS, AttackContext, Observed
from fedleak.cases import Audit, ThreatModel, score
from fedleak.data import load_dataset
from fedleak.detection.guarded import GUARDED, guarded_mods
from fedleak.detection.leakage_guard import LeakageGuard, leakage_guard_mod, leaking_readouts
from fedleak.fl import FederationSpec, FLConfig, build_federation
from fedleak.fl.training import batch_gradients
from fedleak.models import build_model

FC = {"widths": (256, 128)}


@pytest.fixture(scope="module")
def batch():
    train = load_dataset("bundled", split="train", size=(16, 16))
    return train.inputs(slice(0, 64)), train.y[:64], train.info


def recall(attack, options, model, x, y, info, *, guard):
    built = ATTACKS.build(attack, **options)
    sent, secret = built.prepare(model, AttackContext(info.input_shape, info.num_classes, seed=0))
    update = batch_gradients(sent, x, y)
    if guard:
        update, _ = LeakageGuard().sanitise(sent, x, update)
    observed = Observed({k: v.unsqueeze(0) for k, v in update.items()}, "gradient", (0,), (len(y),), (sent,))
    result = score(built.reconstruct(observed, secret), x, y)
    return result["recall"], result["near_recall_psnr30"]


@pytest.mark.parametrize("attack,options,leak", [
    ("trap_weights", {}, 0.05), ("passive", {}, 0.1),
    ("robbing_the_fed", {"variant": "reuse", "feature_mean": 0.3, "feature_std": 0.1}, 0.5)])
def test_guard_stops_the_exact_and_near_exact_readout_of_the_fc_net(batch, attack, options, leak):
    x, y, info = batch
    torch.manual_seed(0)
    model = build_model("fcnn", info.input_shape, info.num_classes, **FC)
    assert recall(attack, options, model, x, y, info, guard=False)[0] >= leak
    assert recall(attack, options, model, x, y, info, guard=True) == (0.0, 0.0)


def test_guard_leaves_a_benign_conv_update_nearly_intact(batch):
    x, y, info = batch
    torch.manual_seed(0)
    model = build_model("cnn", info.input_shape, info.num_classes, padding=2)
    update = batch_gradients(model, x, y)
    sanitised, report = LeakageGuard().sanitise(model, x, update)
    change = sum(float((sanitised[k] - update[k]).pow(2).sum()) for k in update)
    total = sum(float(update[k].pow(2).sum()) for k in update)
    assert (change / total) ** 0.5 < 0.05
    assert set(report.layers) and report.seconds > 0


def test_pair_readout_finds_an_unordered_imprint():
    # rows i, j that two samples' cuts separate: only their difference isolates sample 0
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(8, 50, generator=generator)
    g = torch.ones(8, 2)
    g[0, 0] = 3.0  # row 0 = row 1 + sample 0 alone
    weight, bias = g.T @ a, g.sum(0)
    owners = torch.arange(8)
    assert not leaking_readouts(weight, bias, a, owners, pairs=False)[0].any()
    rows, samples = leaking_readouts(weight, bias, a, owners)
    assert rows.tolist() == [True, True] and samples.tolist() == [0]


def test_client_mod_sends_only_the_sanitised_update_through_the_audit(batch):
    x, y, info = batch
    config = FLConfig(algorithm="fedsgd", num_clients=2, rounds=1, batch_size=64, seed=0)
    spec = FederationSpec(dataset="bundled", model="fcnn", size=(16, 16), model_options=FC)
    recalls = {}
    for guard in (False, True):
        audit = Audit("passive", ThreatModel(), seed=0)
        mods = (leakage_guard_mod(),) if guard else ()
        server = build_federation(spec, config, mods=mods, audit=audit, progress=False)
        record = server.run_round(1)
        recalls[guard] = [r.scores["recall"] for r in audit.records]
        if guard:
            assert all(m["leakage_guard"]["zeroed_rows"] > 0 for m in record.metrics.values())
    assert min(recalls[False]) > 0.05 and max(recalls[True]) == 0.0


def test_guarded_mods_pass_trap_weights_through_the_chain_and_guard_their_update(batch):
    x, y, info = batch
    model = build_model("fcnn", info.input_shape, info.num_classes, **FC)
    trap, _ = ATTACKS.build("trap_weights").prepare(model, AttackContext(info.input_shape, info.num_classes))
    config = FLConfig(algorithm="fedsgd", num_clients=1, rounds=1, batch_size=64, seed=0)
    spec = FederationSpec(dataset="bundled", model="fcnn", size=(16, 16), model_options=FC)
    server = build_federation(spec, config, mods=guarded_mods(model), model=trap, progress=False)
    record = server.run_round(1)  # the default chain holds no row signatures (demoted): the guard is what acts
    assert not record.refused and record.metrics[0]["leakage_guard"]["zeroed_rows"] > 0
    server = build_federation(spec, config, mods=guarded_mods(model), model=model, progress=False)
    record = server.run_round(2)  # the honest model is accepted and its update guarded
    assert not record.refused and record.metrics[0]["leakage_guard"]["zeroed_rows"] > 0
    assert [v["detector"] for v in record.metrics[0]["detection"]] == list(GUARDED[:-1])


def test_bad_options_fail_in_one_line():
    with pytest.raises(ValueError, match="tolerance"):
        LeakageGuard(tolerance=0)
    with pytest.raises(TypeError, match="LeakageGuard"):
        leakage_guard_mod("strict")


def test_guard_is_a_registered_defense_for_the_audit():
    from fedleak.defenses import apply_defenses
    model = build_model("fcnn", (1, 16, 16), 10, widths=(32, 16))
    _, _, mods = apply_defenses(model, "prune:p=0.1,guard:tolerance=0.2", model_name="fcnn", input_shape=(1, 16, 16))
    assert len(mods) == 2
    with pytest.raises(ValueError, match="tolerance"):
        apply_defenses(model, "guard:tolerance=-1", model_name="fcnn", input_shape=(1, 16, 16))
