"""An all-zero update carries nothing to reconstruct and is reported as such (issue 22): before, inversion turned
an all-zero gradient into an invented image with label 0 without a word."""
import torch

from fedleak.attacks import ATTACKS
from fedleak.attacks.base import Knowledge, NOTHING_TO_RECONSTRUCT, AttackContext, Observed
from fedleak.cases import Audit, ThreatModel
from fedleak.data import load_dataset
from fedleak.fl import ClientUpdate, batch_gradients
from fedleak.models import build_model

SHAPE = (1, 28, 28)


def _model():
    torch.manual_seed(0)
    return build_model("fcnn", SHAPE, 10, widths=[64])


def test_inversion_of_an_all_zero_gradient_returns_no_invented_image():
    model = _model()
    grads = {n: torch.zeros(1, *p.shape) for n, p in model.named_parameters()}
    result = ATTACKS.build("idlg", iterations=5).reconstruct(Observed(grads, "gradient", (0,), (1,), (model,)),
                                                             None, Knowledge(SHAPE))
    assert len(result) == 0 and result.labels is None
    assert result.info["note"] == NOTHING_TO_RECONSTRUCT


def test_analytic_extraction_of_an_all_zero_update_says_why_it_found_nothing():
    attack = ATTACKS.build("trap_weights")
    sent, secret = attack.prepare(_model(), AttackContext(SHAPE, 10))
    zero = {k: torch.zeros(1, *v.shape) for k, v in sent.state_dict().items()}
    result = attack.reconstruct(Observed(zero, "delta", (0,), (4,), (sent,)), secret, Knowledge(SHAPE))
    assert len(result) == 0 and result.info["note"] == NOTHING_TO_RECONSTRUCT


def test_the_audit_reports_the_zero_update_and_still_attacks_the_real_one():
    data = load_dataset("bundled")
    x, y = data.inputs(slice(0, 1)), data.y[:1]
    model = _model()
    audit = Audit("idlg", ThreatModel(protocol="fedsgd", rounds=(1,)), iterations=20)
    audit.dispatch(1, [0, 1], model)
    real = batch_gradients(model, x, y)
    zero = {k: torch.zeros_like(v) for k, v in real.items()}
    records = audit.observe(1, [ClientUpdate(0, 1, "gradient", zero, 1), ClientUpdate(1, 1, "gradient", real, 1)],
                            truth={0: (x, y), 1: (x, y)})
    by_client = {r.source: r for r in records}
    assert by_client[0].reason == NOTHING_TO_RECONSTRUCT and len(by_client[0].reconstruction) == 0
    assert by_client[0].scores["points"] == 0
    assert by_client[1].reason == "" and len(by_client[1].reconstruction) == 1
    assert by_client[1].reconstruction.labels.tolist() == y.tolist()  # iDLG reads the true label of the real one
