"""fedleak on Flower (``pip install 'fedleak[flower]'``): the detectors, the client defenses and the malicious
server on a real FL engine, under Flower's simulation and deployment engines alike.

- :func:`detector_mod`: a Flower client mod running fedleak's detectors on the received model before training;
  it refuses with an error reply naming detector, layer and score, and keeps its state in ``context.state``.
- :func:`pruning_mod`, :func:`noise_mod`: update-level defenses that keep the record layout, so they compose
  with Flower's ``LocalDpMod``; :func:`defended_client` + :func:`train_handler` train with DP-SGD, dropout,
  PRECODE or CVB and report the epsilon spent.
- :class:`AuditStrategy`: wraps any Flower strategy, sends a manipulated model to chosen clients in chosen rounds
  and writes what their updates leak.
- :mod:`fedleak.flower.app`: the complete ``ClientApp``/``ServerApp`` of ``examples/flower_app`` and of
  ``fedleak flower-demo``.
"""
try:
    import flwr  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError("fedleak.flower needs Flower: pip install 'fedleak[flower]'") from error

from fedleak.flower.client import (LocalClient, client_app, defended_client, evaluate_handler, privacy_spent,
                                   train_handler)
from fedleak.flower.defense_mods import noise_mod, pruning_mod, update_mod
from fedleak.flower.detector_mod import detection_history, detector_mod, named_detectors
from fedleak.flower.records import (apply_delta, load_state, record_to_state, refusal, single_array_record,
                                    state_delta, state_to_record)

_SERVER_SIDE = ("AuditStrategy",)


def __getattr__(name: str):
    """The audit (server side) is imported on first use, so that ClientApp processes, which Flower's deployment
    engine starts for every message, do not load the attacks and the plotting."""
    if name in _SERVER_SIDE:
        from fedleak.flower import audit
        return getattr(audit, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AuditStrategy", "LocalClient", "client_app",
    "defended_client", "evaluate_handler", "privacy_spent", "train_handler", "noise_mod", "pruning_mod",
    "update_mod", "detection_history", "detector_mod", "named_detectors", "apply_delta", "load_state",
    "record_to_state", "refusal", "single_array_record", "state_delta", "state_to_record",
]
