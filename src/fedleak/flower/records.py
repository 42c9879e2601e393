"""Between Flower messages and fedleak's torch objects.

A model travels in a Flower message as one ``ArrayRecord`` holding its state dict (what ``ArrayRecord(model.
state_dict())`` builds, and what Flower's ``FedAvg`` and ``LocalDpMod`` expect). A client's update is the
difference of the state it sends back and the state it received, entry by entry; a mod that changes the update
rewrites the reply's record under the same record key and array keys, in the same order, so that every other
mod and the strategy see the layout they expect.
"""
from __future__ import annotations

import copy
from typing import Mapping

import torch
import torch.nn as nn
from flwr.app import ArrayRecord, Error, Message, RecordDict
from flwr.common.constant import ErrorCode

from fedleak.detection.architecture import require_matching_architecture

State = dict[str, torch.Tensor]
NUMERIC_KINDS = "biufc"  # numpy dtype kinds of bool, integer, unsigned, float and complex arrays


def single_array_record(content: RecordDict, *, what: str = "message") -> tuple[str, ArrayRecord]:
    """The one ``ArrayRecord`` of ``content`` as ``(record key, record)``; a ``ValueError`` names the keys found
    when there is none or more than one."""
    records = list(content.array_records.items())
    if len(records) != 1:
        found = ", ".join(repr(key) for key, _ in records) or "none"
        raise ValueError(f"expected exactly one ArrayRecord (the model) in the {what}, found {found}")
    return records[0]


def record_to_state(record: ArrayRecord, *, device: str | torch.device = "cpu") -> State:
    """The state dict held by an ``ArrayRecord``, on ``device`` (arrays are read without unpickling). A
    ``ValueError`` names the first array that is not a numeric tensor (strings, objects, bytes that do not match
    the declared dtype and shape)."""
    state = {}
    for key in record:
        array = record[key]
        try:
            values = array.numpy()
            if values.dtype.kind not in NUMERIC_KINDS:
                raise TypeError(f"dtype {values.dtype} is not numeric")
            state[key] = torch.from_numpy(values).to(device)
        except (TypeError, ValueError, RuntimeError) as error:
            raise ValueError(f"array {key!r} of the record is not a numeric tensor (dtype {array.dtype!r}, shape "
                             f"{tuple(array.shape)}): {error}") from None
    return state


def state_to_record(state: Mapping[str, torch.Tensor]) -> ArrayRecord:
    """An ``ArrayRecord`` of a state dict, in its key order."""
    return ArrayRecord.from_torch_state_dict({key: tensor.detach() for key, tensor in state.items()})


def load_state(state: Mapping[str, torch.Tensor], local_model: nn.Module, *,
               device: str | torch.device = "cpu") -> nn.Module:
    """A copy of ``local_model`` on ``device`` holding ``state``, after the strict architecture check of Wang & Li
    §3.1 (:class:`fedleak.detection.ArchitectureMismatch` names every extra, missing, reshaped or retyped key)."""
    require_matching_architecture(state, local_model)
    model = copy.deepcopy(local_model).to(device)
    model.load_state_dict(state, strict=True)
    return model


def state_delta(before: Mapping[str, torch.Tensor], after: Mapping[str, torch.Tensor]) -> State:
    """``after - before`` for every floating-point entry (the update a client sends, as in
    :class:`fedleak.fl.ClientUpdate` of kind "delta"); both states must have the same keys and shapes."""
    if list(before) != list(after):
        missing = [k for k in before if k not in after]
        extra = [k for k in after if k not in before]
        raise ValueError(f"the states differ in their keys (missing {missing}, extra {extra}, or another order)")
    delta = {}
    for key, new in after.items():
        old = before[key]
        if old.shape != new.shape:
            raise ValueError(f"{key!r} has shape {tuple(new.shape)} but was sent with shape {tuple(old.shape)}")
        if new.is_floating_point():
            delta[key] = new - old.to(new.device, new.dtype)
    return delta


def apply_delta(base: Mapping[str, torch.Tensor], delta: Mapping[str, torch.Tensor],
                rest: Mapping[str, torch.Tensor] | None = None) -> State:
    """``base + delta`` entry by entry in ``base``'s key order; entries without a delta come from ``rest``
    (e.g. integer buffers of the reply) or stay as in ``base``."""
    rest = rest if rest is not None else base
    return {key: (value + delta[key].to(value.device, value.dtype)) if key in delta else rest[key]
            for key, value in base.items()}


def refusal(message: Message, reason: str) -> Message:
    """The error reply a client mod sends instead of training (``ErrorCode.MOD_FAILED_PRECONDITION``)."""
    return Message(Error(code=ErrorCode.MOD_FAILED_PRECONDITION, reason=reason), reply_to=message)


def is_train(message: Message) -> bool:
    """Whether ``message`` asks the client to train (message type ``train`` or ``train.<action>``)."""
    return message.metadata.message_type.split(".")[0] == "train"
