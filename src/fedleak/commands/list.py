"""``fedleak list [attacks|defenses|detectors|models|datasets]``: every registry, one line per component with its
options and their defaults (how a user finds out what exists)."""
from __future__ import annotations

import importlib

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


def listing(kind: str) -> str:
    """The lines ``fedleak list KIND`` prints."""
    found = registry(kind)
    lines = [f"{kind} ({len(found.names())}):"]
    for name in found:
        options = ", ".join(k if v is NO_DEFAULT else f"{k}={v!r}" for k, v in found.options(name).items())
        lines.append(f"  {name:18s} {found.describe(name)}")
        lines.append(f"  {'':18s} options: {options or 'none'}")
    return "\n".join(lines)


def run(args) -> int:
    kinds = [args.kind] if args.kind else list(REGISTRIES)
    print("\n\n".join(listing(kind) for kind in kinds))
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("list", help="list the attacks, defenses, detectors, models and datasets")
    parser.add_argument("kind", nargs="?", choices=list(REGISTRIES), help="one kind only (default: all)")
    parser.set_defaults(func=run)
