"""LOKI through Flower's real SecAgg+ (``secaggplus_mod`` + ``SecAggPlusWorkflow``) in Flower's simulation engine,
four SuperNodes: the server reads the clients' images out of the unmasked aggregate, and a client that refuses
its model is a SecAgg+ dropout while the round completes."""
import pytest
import torch

pytest.importorskip("flwr")
from fedleak.detection.first_contact import SIGNATURES  # noqa: E402
from fedleak.experiments.loki import LokiReproductionConfig, reproduce_loki_secagg  # noqa: E402
from fedleak.flower.secagg import SecAggSettings, arrays_state  # noqa: E402

pytestmark = [pytest.mark.flower, pytest.mark.slow]

CONFIG = dict(num_clients=4, images_per_client=16, local_steps=2, attack_options={"num_bins": 64})


def test_loki_reads_every_clients_images_from_the_unmasked_secagg_aggregate(tmp_path):
    plan = [("secagg", SecAggSettings(), False), ("secagg+adapted", SecAggSettings(), True)]
    summary = reproduce_loki_secagg(LokiReproductionConfig(**CONFIG), tmp_path, plan=plan, cpus=2)
    plain, adapted = summary["rounds"]
    assert plain["answered"] == adapted["answered"] == 4 and plain["dropped"] == adapted["dropped"] == 0
    assert adapted["images"] == 64  # scored against the four clients' own 16 images each
    # The paper's kernel scale drowns the imprint in SecAgg+'s quantisation; scaled to the clipping range, the
    # attacker reads most of the federation's images (SSIM > 0.9 against the true image) out of the aggregate.
    assert plain["leak_rate"] < 0.25
    assert adapted["leak_rate"] >= 0.75 and adapted["conv_scale_factor"] > 10


def test_a_refusing_client_is_a_secagg_dropout_and_the_round_completes(tmp_path):
    plan = [("secagg+adapted", SecAggSettings(), True)]
    # Client 0 runs the signature chain (SIGNATURES: the default chain plus the weight signatures demoted for their
    # false alarms on benign models, which recognise LOKI's constant imprint rows); the default chain accepts a
    # LOKI block that is part of the agreed architecture.
    summary = reproduce_loki_secagg(LokiReproductionConfig(**CONFIG), tmp_path, plan=plan, cpus=2,
                                    detect_partitions=(0,), detectors=SIGNATURES)
    (cell,) = summary["rounds"]
    assert cell["answered"] == 3 and cell["dropped"] == 1  # client 0 refused LOKI before SecAgg+ masked anything
    assert any("degenerate_rows" in reason for reason in cell["dropout_reasons"])
    assert cell["images"] == 48  # the three answering clients' images; client 0 sent nothing
    assert cell["leak_rate"] >= 0.75


def test_received_arrays_are_checked_against_the_architecture():
    model = torch.nn.Linear(3, 2)
    arrays = [v.numpy() for v in model.state_dict().values()]
    assert set(arrays_state(arrays, model)) == {"weight", "bias"}
    with pytest.raises(ValueError, match="received 1 arrays"):
        arrays_state(arrays[:1], model)
    with pytest.raises(ValueError, match="not numeric"):
        arrays_state([arrays[0].astype(str), arrays[1]], model)


def test_secagg_settings_are_checked():
    with pytest.raises(ValueError, match="clipping_range"):
        SecAggSettings(clipping_range=0.0)
    with pytest.raises(ValueError, match="quantization_range"):
        SecAggSettings(quantization_range=2**33)


def test_amplified_trap_model_computes_the_same_function_and_its_trap_update_grows():
    from fedleak.experiments.inconsistency_secagg import amplified
    from fedleak.fl.training import batch_gradients
    from fedleak.models import build_model

    torch.manual_seed(0)
    model = build_model("fcnn", (1, 28, 28), 10, widths=(64, 32))
    loud = amplified(model, 8.0)
    x, y = torch.rand(5, 1, 28, 28), torch.arange(5)
    torch.testing.assert_close(loud(x), model(x), rtol=1e-4, atol=1e-5)
    quiet_grad, loud_grad = batch_gradients(model, x, y), batch_gradients(loud, x, y)
    name = next(k for k in quiet_grad if k.endswith("weight"))
    torch.testing.assert_close(loud_grad[name], 8.0 * quiet_grad[name], rtol=1e-4, atol=1e-7)
