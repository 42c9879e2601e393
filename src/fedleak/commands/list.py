"""``fedleak list [attacks|defenses|detectors|models|datasets]``: every registry, one line per component with its
options and their defaults (how a user finds out what exists)."""
from __future__ import annotations

import importlib
import re

from fedleak.registry import NO_DEFAULT, Registry

# kind -> "module:REGISTRY"
REGISTRIES = {
    "attacks": "fedleak.attacks:ATTACKS",
    "defenses": "fedleak.defenses:DEFENSES",
    "detectors": "fedleak.detection:DETECTORS",
    "models": "fedleak.models:MODELS",
    "datasets": "fedleak.data:DATASETS",
}


def registry(kind: str) -> Registry:
    module, name = REGISTRIES[kind].split(":")
    return getattr(importlib.import_module(module), name)


ROLE = re.compile(r":(?:class|func|data|meth|mod|attr|obj):`~?(?:[\w.]+\.)?([^`]+)`")


def plain(text: str) -> str:
    """A docstring line without Sphinx markup: ``:class:`fedleak.X``` -> ``X``, double backquotes -> single."""
    return ROLE.sub(r"\1", text).replace("``", "`")


def _value(value) -> str:
    if isinstance(value, float) and value and abs(value) < 1e-2:
        return f"{value:.0e}".replace("e-0", "e-")  # 1e-4, as users write it in --defense dp:sigma=1e-4
    return f"{value:g}" if isinstance(value, float) else repr(value)


def footer(kind: str) -> str:
    """What a kind's listing adds below its rows: the audit's defaults for the defenses."""
    if kind != "defenses":
        return ""
    from fedleak.audit.config import DEFAULT_DEFENSES

    return (f"  fedleak audit applies by default: {' and '.join(DEFAULT_DEFENSES)} (the option defaults above are "
            "the library's)")


def listing(kind: str) -> str:
    """The lines ``fedleak list KIND`` prints."""
    found = registry(kind)
    lines = [f"{kind} ({len(found.names())}):"]
    for name in found:
        options = ", ".join(k if v is NO_DEFAULT else f"{k}={_value(v)}" for k, v in found.options(name).items())
        lines.append(f"  {name:18s} {plain(found.describe(name))}")
        lines.append(f"  {'':18s} options: {options or 'none'}")
    if footer(kind):
        lines.append(footer(kind))
    return "\n".join(lines)


def run(args) -> int:
    kinds = [args.kind] if args.kind else list(REGISTRIES)
    print("\n\n".join(listing(kind) for kind in kinds))
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("list", help="list the attacks, defenses, detectors, models and datasets")
    parser.add_argument("kind", nargs="?", choices=list(REGISTRIES), help="one kind only (default: all)")
    parser.set_defaults(func=run)
