"""The first-contact what-if (cases/probe.py): the server prepares an attack, the clients' chain checks it, the
server reads what it would observe; on a real malicious and a real honest model, scored against the true batch."""
import pytest
import torch

from fedleak.attacks.base import AttackContext
from fedleak.attacks.settings import AttackSetting
from fedleak.cases.probe import check_clients, fedsgd_observed, malicious_rounds, prepare_attack, sent_to
from fedleak.cases.scoring import score
from fedleak.detection.chain import SIGNATURES, STATE_KEY, ChainSettings, any_flagged, build_chain, verdict_rows
from fedleak.fl import FederationSpec, FLConfig, build_federation

SHAPE = (1, 16, 16)


@pytest.fixture(scope="module")
def server():
    config = FLConfig(algorithm="fedsgd", num_clients=2, rounds=2, batch_size=32, seed=0)
    spec = FederationSpec(dataset="bundled", model="fcnn", size=(16, 16), model_options={"widths": (256, 64)})
    return build_federation(spec, config, progress=False)


def test_the_chain_refuses_the_prepared_trap_weights_and_passes_the_honest_model_without_remembering(server):
    model = server.model
    prepared = prepare_attack("trap_weights", model, AttackContext(SHAPE, 10))
    assert prepared.sent is not None and prepared.reason == ""
    chain = build_chain(SIGNATURES, model, ChainSettings(samples=32), refuse=False)
    malicious = check_clients(chain, server.clients, prepared.sent, round=1)
    honest = check_clients(chain, server.clients, model, round=1)
    assert set(malicious) == {0, 1}
    assert all(any_flagged(verdict_rows(v), SIGNATURES) for v in malicious.values())  # mirrored rows
    assert not any(any_flagged(verdict_rows(v), SIGNATURES) for v in honest.values())
    assert all(STATE_KEY not in client.context for client in server.clients)  # the what-if left no memory


def test_an_attack_that_does_not_apply_is_none_with_its_reason_and_each_client_gets_its_own_model(server):
    seer = prepare_attack("seer", server.model, AttackContext(SHAPE, 10), checkpoint="bn")
    assert seer.sent is None and "SEER" in seer.reason  # its checkpoint was trained for another model
    context = AttackContext(SHAPE, 10, clients=(0, 1))
    inconsistent = prepare_attack("model_inconsistency", server.model, context, target=0, inner="trap_weights")
    assert sent_to(inconsistent.sent, 1) is inconsistent.sent[1] and sent_to(server.model, 5) is server.model
    with pytest.raises(KeyError, match="client 7"):
        sent_to(inconsistent.sent, 7)


def test_what_the_server_observes_reconstructs_true_samples(server):
    prepared = prepare_attack("trap_weights", server.model, AttackContext(SHAPE, 10))
    train = server.clients[0].data.train
    x, y = train.inputs(slice(0, 32)), train.y[:32]
    observed = fedsgd_observed(prepared.sent, x, y, source=3)
    assert observed.sources == (3,) and observed.num_examples == (32,) and observed.kind == "gradient"
    assert score(prepared.attack.reconstruct(observed, prepared.secret), x, y)["recall"] > 0.1  # exact copies


def test_the_malicious_rounds_hook_probes_only_its_rounds_and_skips_what_is_done(server):
    chain = build_chain(SIGNATURES, server.model, ChainSettings(samples=32), refuse=False)
    seen = []
    settings = [AttackSetting("trap_weights", "s=0.95", {"scale_factor": 0.95}),
                AttackSetting("seer", "bn", {"checkpoint": "bn"}), AttackSetting("trap_weights", "done")]
    hook = malicious_rounds(chain, rounds=(2,), clients=1, info=server.clients[0].data.train.info,
                            public=torch.zeros(4, *SHAPE), settings=lambda model: settings,
                            skip=lambda r, s: s.setting == "done",
                            on_probe=lambda r, s, prepared, verdicts: seen.append((r, s.attack, sorted(verdicts))))
    hook(1, server)
    assert seen == []
    hook(2, server)
    assert seen == [(2, "trap_weights", [0]), (2, "seer", [])]  # seer does not apply: no client checks it
