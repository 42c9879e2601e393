from fedleak.cases import Audit, ThreatModel
from fedleak.detection import DetectorChain, build_detector, detector_mod
from fedleak.detection.chain import STATE_KEY
from fedleak.fl import FederationSpec, FLConfig, build_federation
from fedleak.models import build_model

from detection_data import SHAPE


def _detectors():
    return [build_detector("architecture"), build_detector("filter_ratio"),
            build_detector("dsnr", batch_size=16), build_detector("warmup_zscore", samples=32)]


def test_benign_fedavg_run_is_never_refused_and_malicious_model_is():
    local = build_model("cnn", SHAPE, 10, padding=2)
    mod = detector_mod(DetectorChain(_detectors(), local, samples=32))
    audit = Audit("robbing_the_fed", ThreatModel(server="malicious", protocol="fedavg", victims=(0,), rounds=(3,)),
                  num_bins=16)
    config = FLConfig(num_clients=3, rounds=3, batch_size=32, lr=2e-3, seed=0)
    server = build_federation(FederationSpec(dataset="bundled", model="cnn", size=(16, 16),
                                             model_options={"padding": 2}), config, mods=[mod], audit=audit,
                              progress=False)
    history = server.run()
    seen = [(r.round, cid, metrics) for r in history.rounds for cid, metrics in r.metrics.items()]
    assert [r.refused for r in history.rounds[:2]] == [{}, {}]  # no false alarm on the benign rounds
    assert list(history.rounds[2].refused) == [0]
    reason = history.rounds[2].refused[0]
    assert reason.startswith("architecture") and "imprint.linear" in reason
    assert (3, 0) not in [(r, cid) for r, cid, _ in seen]  # the server got nothing from the victim
    assert [(a.source, a.status) for a in audit.records] == [(0, "refused")]
    detection = [metrics["detection"] for r, cid, metrics in seen if r == 3]
    assert len(detection) == 2 and all(len(d) == 4 and not any(v["flagged"] for v in d) for d in detection)
    states = [c.context[STATE_KEY] for c in server.clients]
    assert states[0] is not states[1]  # every client has its own memory: its own history of verdicts
    assert [h["round"] for h in states[0]["history"]] == [1, 2, 3] and states[0]["history"][-1]["refused"]
    assert [h["verdicts"][-1]["score"] for h in states[0]["history"][:2]] != [
        h["verdicts"][-1]["score"] for h in states[1]["history"][:2]]
