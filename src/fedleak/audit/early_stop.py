"""When the answer to a leak question is settled, the audit skips the cells that cannot change it, and says why.

The plan runs the defenses' leak cells one defense at a time (no defense first, a weaker setting before a stronger
one) and, behind each, the attacks strongest first (:mod:`fedleak.audit.strongest`). Two rules, both one-sided so
that a skipped cell can never turn "it leaks" into "safe":

- **answered**: behind a defense, once an attack recovered *every* attacked sample (exact copies, or every image
  above the success threshold SSIM 0.5 of paper 001 §5.2), the defense leaks; a further attack cannot leak more of
  those samples, so the rest of that defense's leak cells are skipped. Nothing is skipped on a partial leak.
- **floor**: a defense is not attacked when a defense that bounds it already leaked no sample to any attack run
  behind it (the floor: zero samples recovered): a stronger setting of the same defense (more DP noise, a higher
  pruning or dropout rate; :func:`ladder`), or, for a defense that only post-processes the undefended update
  (gradient pruning; DP-SGD noise at batch size 1 under FedSGD, where per-sample clipping is a scaling of the one
  gradient), the undefended model itself: by the data-processing inequality no attack reads more from a function of
  the update than the best attack reads from the update. Its worst leak is reported as that bound, marked so.

Manipulations (question 3) are never skipped: which of them get past the client's checks is asked of each.
"""
from __future__ import annotations

from fedleak.audit.config import NONE, AuditConfig, protocol_options
from fedleak.audit.verdict import samples_leaked
from fedleak.defenses import DEFENSES, parse_defenses

SKIPPED = "skipped"  # the status of a leak cell settled without running
STRENGTH = {"dp": "sigma", "prune": "p", "dropout": "p"}  # the option that makes each defense stronger
POST_PROCESSING = ("prune", "dp")  # act on the update alone (dp: see post_processes)


def ladder(defense: str) -> tuple[str, tuple, float] | None:
    """(name, the other options, strength) of a one-component ``defense`` with a strength option (:data:`STRENGTH`);
    ``None`` for any other. Two settings on one ladder differ only in their strength."""
    specs = parse_defenses(defense)
    if len(specs) != 1 or specs[0].name not in STRENGTH:
        return None
    spec, key = specs[0], STRENGTH[specs[0].name]
    strength = spec.options.get(key, DEFENSES.options(spec.name)[key])
    others = tuple(sorted((k, str(v)) for k, v in spec.options.items() if k != key))
    return spec.name, others, float(strength)


def post_processes(defense: str, config: AuditConfig) -> bool:
    """Whether ``defense`` is a function of the undefended update and independent noise alone: pruning, and DP-SGD
    under FedSGD at batch size 1 that keeps the model (no ``batchnorm`` swap)."""
    specs = parse_defenses(defense)
    fedsgd = protocol_options(config.protocol)["algorithm"] == "fedsgd"
    return bool(specs) and all(s.name in POST_PROCESSING and (s.name != "dp" or (
        fedsgd and config.batch_size == 1 and "batchnorm" not in s.options)) for s in specs)


def bounds(defenses: tuple[str, ...], config: AuditConfig) -> dict[str, tuple[str, ...]]:
    """Per defense, the defenses whose floor bounds it: the weaker settings of its ladder, and ``"none"`` when it
    post-processes the update."""
    found = {}
    for defense in defenses:
        step = ladder(defense)
        weaker = tuple(d for d in defenses if step and (other := ladder(d)) and other[:2] == step[:2]
                       and other[2] < step[2])
        found[defense] = ((NONE,) if post_processes(defense, config) else ()) + weaker
    return found


def run_order(defenses: tuple[str, ...]) -> tuple[str, ...]:
    """``defenses`` with no defense first and, on each ladder, weaker settings before stronger ones (otherwise in
    the order given)."""
    def key(item):
        index, defense = item
        step = ladder(defense)
        if defense == NONE:
            return (-1, 0.0, index)
        group = min(i for i, d in enumerate(defenses) if step and (o := ladder(d)) and o[:2] == step[:2]) \
            if step else index
        return (group, step[2] if step else 0.0, index)
    return tuple(d for _, d in sorted(enumerate(defenses), key=key))


def leaked_all(result: dict) -> bool:
    counted = samples_leaked(result) if result.get("status") == "attacked" else None
    return counted is not None and counted[1] > 0 and counted[0] == counted[1]


def at_floor(result: dict) -> bool:
    """No sample leaked: an attacked cell that recovered none, or a cell skipped at the floor itself."""
    if result.get("status") == SKIPPED:
        return result.get("settled") == "floor"
    counted = samples_leaked(result) if result.get("status") == "attacked" else None
    return counted is not None and counted[0] == 0


def leak_value(result: dict) -> float | None:
    return result.get("bound") if result.get("status") == SKIPPED else result.get("ssim", result.get("recall"))


def settle(cell, cells, results: dict[str, dict], bounded_by: dict[str, tuple[str, ...]]) -> dict | None:
    """The result of leak ``cell`` settled without running it (status :data:`SKIPPED`, the ``reason`` and, at the
    floor, the ``bound`` on its leak), or ``None`` when it must run. ``cells``: the plan (ranked leak cells carry
    ``rank`` >= 0); ``results``: the results so far by cell key."""
    if cell.kind != "leak" or cell.rank < 0 or cell.reason:
        return None
    earlier = [c for c in cells if c.kind == "leak" and c.rank >= 0 and not c.reason and c.defense == cell.defense
               and c.rank < cell.rank]
    for other in earlier:
        result = results.get(other.key, {})
        if leaked_all(result):
            counted = samples_leaked(result)
            return {"status": SKIPPED, "settled": "leaks",
                    "reason": f"{other.attack} already recovered all {counted[1]} attacked samples behind "
                              f"{cell.defense}: it leaks, and no further attack can leak more of them"}
    for bound in bounded_by.get(cell.defense, ()):
        behind = [c for c in cells if c.kind == "leak" and c.rank >= 0 and not c.reason and c.defense == bound]
        found = [results.get(c.key) for c in behind]
        if not behind or any(r is None or not at_floor(r) for r in found):
            continue
        values = [v for v in (leak_value(r) for r in found) if v is not None]
        why = ("it only post-processes the undefended update (data-processing inequality)" if bound == NONE else
               f"{bound} is a weaker setting of the same defense")
        return {"status": SKIPPED, "settled": "floor", "bound": max(values) if values else None,
                "reason": f"no attack recovered any sample behind {bound} ({', '.join(c.attack for c in behind)}) and "
                          f"{why}: its leak is at most {bound}'s"}
    return None
