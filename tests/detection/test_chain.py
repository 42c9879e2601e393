import ast
import copy
from pathlib import Path

import pytest
import torch

from fedleak.attacks import prepare
from fedleak.detection import CalibratedDetector, DetectorChain, WarmupZScore, build_detector
from fedleak.fl import FederationSpec, FLConfig, build_federation
from fedleak.models import build_model

from detection_data import SHAPE

SRC = Path(__file__).resolve().parents[2] / "src" / "fedleak"


def _detectors():
    return [WarmupZScore(samples=64, remember_rounds=5),
            CalibratedDetector(WarmupZScore(samples=64), false_alarm_rate=0.2, min_samples=3)]


def _plain(node) -> bool:
    if isinstance(node, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in node.items())
    if isinstance(node, list):
        return all(_plain(v) for v in node)
    return node is None or isinstance(node, (bool, int, float, str, torch.Tensor))


def _same(a, b) -> bool:
    return [(v.detector, v.flagged, v.score, v.threshold) for v in a] == [
        (v.detector, v.flagged, v.score, v.threshold) for v in b]


@pytest.fixture(scope="module")
def three_rounds():
    """A chain that checked the global model of three benign FedSGD rounds, and the server after them."""
    config = FLConfig(algorithm="fedsgd", num_clients=2, rounds=3, batch_size=64, seed=0)
    server = build_federation(FederationSpec(dataset="bundled", model="fcnn", size=(16, 16),
                                             model_options={"widths": (64, 32)}), config, progress=False)
    chain = DetectorChain(_detectors(), copy.deepcopy(server.model), samples=64)
    client = server.clients[0]
    for r in range(1, 4):
        verdicts = chain.check(copy.deepcopy(server.model), chain.batch(client, r), round=r)
        assert chain.refusal(verdicts) is None, [v.reason() for v in verdicts]
        server.run_round(r)
    return chain, server


def test_a_chain_restored_from_its_state_dict_gives_the_same_verdicts_on_the_next_round(three_rounds):
    chain, server = three_rounds
    state = chain.state_dict()
    assert _plain(state) and [h["round"] for h in state["history"]] == [1, 2, 3]
    assert state["detectors"]["0"]["rounds"].shape[0] == 3 and len(state["detectors"]["1"]["history"]) == 3
    restored = DetectorChain(_detectors(), chain.local_model, samples=64)
    restored.load_state_dict(copy.deepcopy(state))

    client = server.clients[0]
    batch = chain.batch(client, 4)
    trapped, _ = prepare("trap_weights", server.model)
    original, again = (c.check(trapped, batch, round=4, remember=False) for c in (chain, restored))
    assert _same(original, again)
    assert again[0].flagged and again[0].layer.startswith("linear[0]") and len(again) == 1  # refused at once
    fresh = DetectorChain(_detectors(), chain.local_model, samples=64).check(trapped, batch)
    assert not fresh[0].flagged  # what caught it is the restored memory of the three benign rounds

    benign = copy.deepcopy(server.model)
    original, again = (c.check(benign, batch, round=4) for c in (chain, restored))
    assert _same(original, again) and not again[0].flagged
    assert again[1].threshold == max(h["verdicts"][1]["score"] for h in state["history"])  # calibrated on 3
    assert torch.equal(chain.state_dict()["detectors"]["0"]["rounds"],
                       restored.state_dict()["detectors"]["0"]["rounds"])


def test_check_without_remembering_leaves_the_memory_as_it_was(three_rounds):
    chain, server = three_rounds
    before = chain.state_dict()
    trapped, _ = prepare("trap_weights", server.model)
    batch = chain.batch(server.clients[1], 9)
    for model in (copy.deepcopy(server.model), trapped):
        chain.check(model, batch, round=9, remember=False)
    after = chain.state_dict()
    assert after["history"] == before["history"]
    assert torch.equal(after["detectors"]["0"]["rounds"], before["detectors"]["0"]["rounds"])
    assert after["detectors"]["1"]["history"] == before["detectors"]["1"]["history"]


def test_a_received_state_is_checked_for_its_architecture_before_it_is_loaded(batch16):
    local = build_model("fcnn", SHAPE, 10, widths=(32,))
    chain = DetectorChain([build_detector("warmup_zscore", samples=32)], local, samples=32)
    batch = (batch16[0][:32], batch16[1][:32])
    imprinted = {"imprint.weight": torch.zeros(4, 256), **local.state_dict()}
    verdicts = chain.check(imprinted, batch)
    assert [v.detector for v in verdicts] == ["architecture"] and "imprint.weight" in chain.refusal(verdicts).reason()
    verdicts = chain.check(local.state_dict(), batch)
    assert [v.detector for v in verdicts] == ["architecture", "warmup_zscore"] and chain.refusal(verdicts) is None
    with pytest.raises(ValueError, match=r"memory of detectors \['0'\] but this chain's detectors with memory"):
        DetectorChain([build_detector("dsnr")], local).load_state_dict(chain.state_dict())


def test_nan_in_the_local_batch_is_an_error_not_a_silent_pass(batch16):
    local = build_model("fcnn", SHAPE, 10, widths=(32,))
    x, y = batch16[0][:32].clone(), batch16[1][:32]
    x[5, 0, 3, 3] = float("nan")
    chain = DetectorChain([build_detector("warmup_zscore", samples=32)], local, samples=32)
    with pytest.raises(ValueError, match=r"NaN or Inf in its inputs \(samples \[5\]\)"):
        chain.check(local, (x, y))
    for detector in (build_detector("warmup_zscore", samples=32), build_detector("dsnr", batch_size=32)):
        with pytest.raises(ValueError, match="NaN or Inf"):
            detector(local, local, [(x, y)])


def test_no_pickle_in_detection_or_flower():
    """Detector memory travels as state dicts; nothing in these packages pickles, unpickles or torch.loads."""
    for path in [*(SRC / "detection").glob("*.py"), *(SRC / "flower").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                assert not {"pickle", "dill", "cloudpickle", "shelve", "marshal"} & set(names), path
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                assert (node.value.id, node.attr) != ("torch", "load"), path


def test_named_chains_get_their_options_in_one_place_and_verdict_rows_read_the_paper_column(three_rounds):
    from fedleak.detection.chain import (CHAINS, DEMOTED, FIRST_CONTACT, PAPER, SIGNATURES, ChainSettings,
                                         build_chain, chain_detectors, verdict_rows)

    assert FIRST_CONTACT == tuple(n for n in SIGNATURES if n not in DEMOTED) and CHAINS["paper"] == PAPER
    dsnr, warmup = chain_detectors(("dsnr", "warmup_zscore"), ChainSettings(samples=64, seed=3, remember_rounds=2,
                                                                             dsnr_batch=16))
    assert dsnr.keywords == {"batch_size": 16, "seed": 3}
    assert (warmup.samples, warmup.seed, warmup.remember_rounds) == (64, 3, 2)
    chain, server = three_rounds
    restored = build_chain(PAPER, chain.local_model, ChainSettings(samples=64, remember_rounds=5), refuse=False)
    client = server.clients[0]
    for r in range(1, 4):  # three accepted rounds: the warm-up detector scores step 0 against them
        restored.check(copy.deepcopy(server.model), restored.batch(client, r), round=r)
    verdicts = restored.check(copy.deepcopy(server.model), restored.batch(client, 4), round=4, remember=False)
    rows = verdict_rows(verdicts)
    assert set(rows) == {"architecture", "filter_ratio", "dsnr", "warmup_zscore", "warmup_zscore+rounds"}
    warm = next(v for v in verdicts if v.detector == "warmup_zscore")
    assert warm.details["first_step"] == 0 and rows["warmup_zscore+rounds"]["score"] == warm.score
    within = torch.tensor(warm.details["zscores"])[1:]  # the paper's detector: warm-up steps only
    assert rows["warmup_zscore"]["score"] == pytest.approx(float(within.max())) and rows["warmup_zscore"]["step"] >= 1
    assert rows["warmup_zscore"]["flagged"] == (rows["warmup_zscore"]["score"] > warm.threshold)
