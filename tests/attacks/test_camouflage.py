"""An imprint with no parallel, constant or mirrored rows: the weight signatures pass it, it still reads samples
out exactly, and the leakage guard stops that."""
import torch

from fedleak.attacks import ATTACKS, AttackContext, Observed
from fedleak.attacks.camouflage import CAMOUFLAGES
from fedleak.cases import score
from fedleak.data import load_dataset
from fedleak.detection import build_detector
from fedleak.detection.leakage_guard import LeakageGuard
from fedleak.fl.training import batch_gradients
from fedleak.models import build_model


def test_paired_bins_imprint_passes_the_signatures_leaks_and_is_guarded():
    train = load_dataset("bundled", split="train", size=(16, 16))
    public = load_dataset("bundled", split="test", size=(16, 16)).inputs(slice(0, 256))
    x, y = train.inputs(slice(0, 64)), train.y[:64]
    torch.manual_seed(0)
    honest = build_model("fcnn", (1, 16, 16), 10, widths=(256, 128))
    built = ATTACKS.build("robbing_the_fed", variant="reuse")
    sent, secret = built.prepare(honest, AttackContext((1, 16, 16), 10))
    sent = CAMOUFLAGES["paired_bins"](sent, honest, torch.Generator().manual_seed(0), public)
    for name in ("degenerate_rows", "parallel_rows", "mirrored_rows", "sign_imbalance"):
        assert not build_detector(name)(sent, honest, [(x, y)]).flagged, name
    update = batch_gradients(sent, x, y)
    recalls = []
    for sent_update in (update, LeakageGuard().sanitise(sent, x, update)[0]):
        observed = Observed({k: v.unsqueeze(0) for k, v in sent_update.items()}, "gradient", (0,), (64,), (sent,))
        recalls.append(score(built.reconstruct(observed, secret), x, y)["recall"])
    assert recalls[0] >= 0.05 and recalls[1] == 0.0
