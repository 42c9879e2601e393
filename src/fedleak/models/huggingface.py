"""Any Hugging Face ``transformers`` architecture as a fedleak model, optionally wrapped in PEFT LoRA (issue 25;
the extra ``fedleak[llm]``). Nothing is downloaded: a model is built from a config with random weights, or read from
a local checkpoint folder.

``--model hf:gpt2:n_layer=2,n_embd=256:lora=r8`` (the short form :func:`hf_options` reads) is the registered model
``hf`` with options ``arch=gpt2``, ``config=n_layer=2,n_embd=256`` (comma-separated fields of the architecture's
config class, e.g. ``GPT2Config``, ``BertConfig``, ``LlamaConfig``) and ``lora=r8`` (rank 8 on PEFT's default
attention targets). ``path=DIR`` reads a local checkpoint instead of building ``arch``.

Heads: ``lm`` (a causal language model: logits ``(B, seq_len, num_classes)`` over a vocabulary of ``num_classes``
tokens, for next-token labels) or ``classify`` (``(B, num_classes)`` from a sequence-classification head);
``auto`` picks ``classify`` for the encoder families (BERT and kin) and ``lm`` otherwise. Attention is the eager
(math) implementation, so double backward works on CPU. Dropout is 0 unless the config sets it (LLaMA's default;
GPT-2 and BERT ship 0.1, which a client may set with e.g. ``resid_pdrop=0.1``). A width given without a head count
gets heads of 64 dimensions (``n_embd=128``: 2 heads) where the default count does not divide it.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from fedleak.models import MODELS
from fedleak.models.checks import sequence_length
from fedleak.registry import parse_value

ENCODERS = frozenset({"bert", "roberta", "distilbert", "electra", "albert", "deberta", "deberta-v2", "xlm-roberta"})
HEADS = ("auto", "lm", "classify")
OWN = ("arch", "config", "lora", "head", "path")  # the options of ``hf`` itself; any other key is a config field
DEFAULT_VOCAB = 2000  # the local tokenizer's (fedleak.data.text_tokenizer) for classification heads


def require_transformers():
    """The ``transformers`` module, or a one-line error naming the extra that installs it."""
    try:
        import transformers
    except ImportError as error:
        raise ValueError("hf models need the llm extra: pip install 'fedleak[llm]' (transformers, peft, "
                           "tokenizers)") from error
    return transformers


class HFModel(nn.Module):
    """A ``transformers`` model (``net``, possibly a PEFT model) returning plain logits, with its ``config``, its
    ``head`` and whether its attention is ``causal``."""

    def __init__(self, net: nn.Module, config, head: str):
        super().__init__()
        self.net, self.config, self.head = net, config, head
        self.causal = head == "lm"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(input_ids=x).logits


def hf_options(text: str) -> dict:
    """The options of ``hf:ARCH[:f=v,f=v][:lora=rR][:head=H][:path=DIR]`` (module docstring): a part without ``=``
    is the architecture, a part with commas or an unknown key holds config fields."""
    name, *parts = [part.strip() for part in text.split(":")]
    if name != "hf":
        raise ValueError(f"not an hf model spec: {text!r}")
    options: dict = {}
    fields: list[str] = []
    for part in parts:
        if not part:
            raise ValueError(f"model {text!r}: empty part")
        if "=" not in part:
            if "arch" in options:
                raise ValueError(f"model {text!r}: two architectures ({options['arch']}, {part})")
            options["arch"] = part
            continue
        key, _, value = (piece.strip() for piece in part.partition("="))
        if key == "config":
            fields.append(value)
        elif key not in OWN:
            fields.append(part)
        elif key in options:
            raise ValueError(f"model {text!r}: option {key!r} is given twice")
        else:
            options[key] = value
    if fields:
        options["config"] = ",".join(fields)
    return options


def config_fields(text: str) -> dict:
    """``"n_layer=2,n_embd=256"`` -> ``{"n_layer": 2, "n_embd": 256}`` (values by :func:`parse_value`)."""
    fields = {}
    for pair in filter(None, (p.strip() for p in (text or "").split(","))):
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"hf: config field {pair!r} is not key=value")
        fields[key.strip()] = parse_value(value.strip())
    return fields


def lora_rank(value) -> int:
    """``r8``, ``8`` -> 8."""
    text = str(value).strip().lower()
    rank = text[1:] if text.startswith("r") else text
    if not rank.isdigit() or int(rank) < 1:
        raise ValueError(f"hf: lora must be a rank such as r8, got {value!r}")
    return int(rank)


def _no_dropout(config, given: dict) -> None:
    for key, value in vars(config).items():
        if isinstance(value, float) and ("dropout" in key or key.endswith("pdrop")) and key not in given:
            setattr(config, key, 0.0)


def _fit_heads(config, given: dict) -> None:
    """Where only the width was given (``n_embd=128``), as many heads of 64 dimensions as it holds (GPT-2's head
    size), at most the config's default, instead of a default head count that does not divide it."""
    hidden, heads = getattr(config, "hidden_size", None), getattr(config, "num_attention_heads", None)
    if not isinstance(hidden, int) or not isinstance(heads, int) or heads < 1 or hidden % heads == 0:
        return
    if {"n_head", "num_attention_heads", "num_heads"} & set(given):
        return  # the user's own choice: transformers names the problem
    fitted = max([h for h in range(1, heads + 1) if hidden % h == 0 and hidden // h >= 64] or [1])
    config.num_attention_heads = fitted
    if hasattr(config, "num_key_value_heads") and "num_key_value_heads" not in given:
        config.num_key_value_heads = fitted


@MODELS.register("hf")
def build_hf(input_shape: tuple[int, ...], num_classes: int, arch: str = "gpt2", config: str = "",
             lora: str | int | None = None, head: str = "auto", path: str | None = None) -> HFModel:
    """A ``transformers`` model built from ``arch``'s config with random weights (or read from the local checkpoint
    ``path``), its ``head`` over ``num_classes``, optionally with LoRA adapters of rank ``lora`` (module
    docstring)."""
    transformers = require_transformers()
    seq_len = sequence_length(input_shape, "hf")
    if head not in HEADS:
        raise ValueError(f"hf: head must be one of {', '.join(HEADS)}, got {head!r}")
    fields = config_fields(config)
    if path is not None:
        if not Path(path).is_dir():
            raise ValueError(f"hf: path {path!r} is not a folder holding a checkpoint")
        hf_config = transformers.AutoConfig.from_pretrained(path, local_files_only=True, **fields)
    else:
        try:
            hf_config = transformers.AutoConfig.for_model(str(arch), **fields)
        except ValueError as error:
            raise ValueError(f"hf: unknown architecture {arch!r} ({str(error).splitlines()[0]})") from None
    kind = hf_config.model_type
    head = ("classify" if kind in ENCODERS else "lm") if head == "auto" else head
    if head == "lm":
        if getattr(hf_config, "vocab_size", num_classes) != num_classes and "vocab_size" in fields:
            raise ValueError(f"hf: an lm head predicts the vocabulary: vocab_size {fields['vocab_size']} != "
                             f"num_classes {num_classes}")
        hf_config.vocab_size = num_classes
    else:
        hf_config.num_labels = num_classes
        if "vocab_size" not in fields and path is None:
            hf_config.vocab_size = DEFAULT_VOCAB
        if getattr(hf_config, "pad_token_id", None) is None:
            hf_config.pad_token_id = 0
    _no_dropout(hf_config, fields)
    _fit_heads(hf_config, fields)
    positions = getattr(hf_config, "max_position_embeddings", None) or getattr(hf_config, "n_positions", None)
    if positions is not None and seq_len > positions:
        raise ValueError(f"hf: sequences of {seq_len} tokens exceed the model's {positions} positions")
    auto = transformers.AutoModelForCausalLM if head == "lm" else transformers.AutoModelForSequenceClassification
    if path is not None:
        net = auto.from_pretrained(path, config=hf_config, local_files_only=True, attn_implementation="eager")
    else:
        net = auto.from_config(hf_config, attn_implementation="eager")
    if lora is not None:
        net = with_lora(net, lora_rank(lora))
    return HFModel(net, hf_config, head)


def with_lora(net: nn.Module, rank: int) -> nn.Module:
    """``net`` with PEFT LoRA adapters of ``rank`` on its attention projections (PEFT's default targets for the
    architecture; B zero-initialised, no dropout); only the adapters train."""
    try:
        import peft
    except ImportError as error:
        raise ValueError("lora needs the llm extra: pip install 'fedleak[llm]'") from error
    kind = net.config.model_type
    config = peft.LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, fan_in_fan_out=kind == "gpt2",
                             target_modules=None if kind != "bert" else ["query", "key", "value"])
    return peft.get_peft_model(net, config)
