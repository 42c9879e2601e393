"""One registry per kind of component (datasets, models, attacks, defenses, detectors).

A component is a plain function or class registered under a short name, so adding one is adding one file
with a ``@REGISTRY.register("name")`` decorator. Unknown names fail with the list of valid ones; unknown options
fail in :meth:`Registry.build` with the list of the component's options. ``fedleak list`` prints every registry
with :meth:`Registry.describe` and :meth:`Registry.options`.
"""
from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")

NO_DEFAULT = inspect.Parameter.empty


class UnknownNameError(KeyError):
    """A name that is not in a registry; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


class UnknownOptionError(ValueError):
    """An option a component does not take; the message lists the options it takes."""


class Registry(Generic[T]):
    """A name -> component mapping for one kind of component.

    ``fixed`` names the leading arguments every component of the kind takes before its options (a model's
    ``input_shape, num_classes``; a dataset's ``root, split``); they are passed positionally to :meth:`build` and
    are not options. ``device`` is never an option either: it is the run's, not the component's.
    """

    def __init__(self, kind: str, *, fixed: tuple[str, ...] = ()):
        self.kind, self.fixed = kind, tuple(fixed)
        self._items: dict[str, T] = {}
        self._descriptions: dict[str, str] = {}

    def register(self, name: str, *, description: str | None = None) -> Callable[[T], T]:
        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            self._descriptions[name] = description or first_line(getattr(item, "__doc__", None))
            return item

        return add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            valid = ", ".join(sorted(self._items))
            raise UnknownNameError(f"unknown {self.kind} {name!r}; valid {self.kind}s: {valid}") from None

    def describe(self, name: str) -> str:
        """The one-line description of ``name`` (its docstring's first sentence unless given at registration)."""
        self.get(name)
        return self._descriptions[name]

    def options(self, name: str) -> dict[str, Any]:
        """The keyword options of ``name`` with their defaults (``NO_DEFAULT`` where one must be given)."""
        return component_options(self.get(name), skip=len(self.fixed))

    def check_options(self, name: str, options: dict) -> None:
        """Raise :class:`UnknownOptionError` naming the component and its options when one is unknown."""
        valid = self.options(name)
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise UnknownOptionError(f"{self.kind} {name!r} has no option {', '.join(unknown)}; "
                                     f"its options: {', '.join(valid) or 'none'}")

    def build(self, name: str, *args, **options) -> Any:
        """Call component ``name`` with the ``fixed`` arguments ``args`` and keyword ``options``, after checking
        that every option is one the component takes (the only place options are checked)."""
        self.check_options(name, options)
        return self.get(name)(*args, **options)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


# a full stop then a capital, not after an abbreviation ("et al. 2019", "Eq. 5", "e.g. ")
SENTENCE_END = re.compile(r"(?<!\bal)(?<!\bEq)(?<!\bApp)(?<!\bFig)(?<!\bAlg)(?<!e\.g)(?<!i\.e)\. (?=[A-Z])")


def parse_value(text: str) -> Any:
    """An option's value written on a command line: an int, a float, true/false/none, else the text itself."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


@dataclass(frozen=True)
class Choice:
    """One registered component by name with its options, as ``NAME:key=value:...`` writes it (``--model``, a
    defense of ``--defense``); ``str()`` writes it back, a tuple value as ``a+b``."""

    name: str
    options: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return ":".join([self.name, *(f"{k}={'+'.join(map(str, v)) if isinstance(v, tuple) else v}"
                                      for k, v in self.options.items())])


def parse_options(pairs: list[str], what: str) -> dict[str, Any]:
    """``["norm=group", "width=64"]`` -> ``{"norm": "group", "width": 64}`` (values by :func:`parse_value`);
    ``what`` names the component in the error for a pair that is not key=value."""
    options = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"{what}: option {pair!r} is not key=value")
        options[key.strip()] = parse_value(value.strip())
    return options


def first_line(doc: str | None) -> str:
    """The first sentence of a docstring, on one line."""
    if not doc:
        return ""
    text = " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())
    match = SENTENCE_END.search(text)
    return text if match is None else text[: match.start() + 1]


def component_options(component: Any, *, skip: int = 0) -> dict[str, Any]:
    """Keyword options of a function or class (its ``__init__``), after the first ``skip`` positional ones, without
    ``device`` and without ``*args``/``**kwargs``. A component may declare its options itself as ``options()``."""
    declared = getattr(component, "options", None)
    if callable(declared) and not inspect.isclass(component):
        return dict(declared())
    parameters = list(inspect.signature(component).parameters.values())
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    skipped = {p.name for p in positional[:skip]}
    return {p.name: p.default for p in parameters
            if p.name not in skipped and p.name != "device" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
