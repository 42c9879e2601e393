"""``fedleak.checks``: a config declares each field's check once (``checked``, ``choice_field`` and the named rules)
and validates itself as a ``CheckedConfig`` (one ``check_fields`` call), failing with the message ``check_number``
or ``check_known`` gives; ``check_known`` names the first unknown name and the valid ones."""
from dataclasses import dataclass

import pytest

from fedleak.checks import (CheckedConfig, check_fields, check_known, checked, choice_field, count_field, index_field,
                            levels_field, number_field, positive_field, seed_field, share_field, weight_field)


@dataclass
class Toy(CheckedConfig, what="toy"):
    size: int = count_field()
    scale: float = positive_field(0.5)
    shift: float = number_field(0.0)
    target: int = index_field(0)
    share: float = checked(0.1, label="share p", low=0, high=1)
    levels: int | None = levels_field()
    seed: int = seed_field()
    name: str = "free"
    mode: str = choice_field(("fast", "slow"), "fast")
    tags: tuple[str, ...] = choice_field(("a", "b"), ("a",), label="tag", many=True)
    weight: float = weight_field(0.0)
    cut: float = share_field(0.5)


def test_valid_values_pass_and_levels_may_be_none():
    assert Toy(size=3, levels=None).levels is None and Toy(size=1).levels == 255


@pytest.mark.parametrize("change, message", [
    ({"size": 0}, "toy size must be an integer >= 1, got 0"),
    ({"size": 2.0}, "toy size must be an integer >= 1, got 2.0"),
    ({"size": True}, "toy size must be an integer >= 1, got True"),
    ({"scale": 0.0}, "toy scale must be a finite number > 0, got 0.0"),
    ({"shift": float("nan")}, "toy shift must be a finite number, got nan"),
    ({"target": -1}, "toy target must be an integer >= 0, got -1"),
    ({"share": 1.5}, "toy share p must be a finite number >= 0 and <= 1, got 1.5"),
    ({"levels": 0}, "toy levels must be an integer >= 1, got 0"),
    ({"seed": -2}, "toy seed must be an integer >= 0, got -2"),
    ({"mode": "medium"}, "unknown toy mode 'medium'; valid: fast, slow"),
    ({"mode": None}, "unknown toy mode None; valid: fast, slow"),
    ({"tags": ("a", "c")}, "unknown toy tag 'c'; valid: a, b"),
    ({"weight": -0.5}, "toy weight must be a finite number >= 0, got -0.5"),
    ({"cut": 1.0}, "toy cut must be a finite number > 0 and < 1, got 1.0"),
])
def test_each_declared_check_names_the_field_and_the_bad_value(change, message):
    with pytest.raises(ValueError) as error:
        Toy(**{"size": 4, **change})
    assert str(error.value) == message


def test_the_first_bad_field_in_declaration_order_is_named():
    with pytest.raises(ValueError, match="toy size"):
        Toy(size=0, seed=-1)


def test_check_known_names_the_first_unknown_and_the_valid_ones():
    check_known(("a", "b"), ("a", "b", "c"), "unknown letter")
    with pytest.raises(ValueError, match=r"^unknown letter None; valid: a, b, c$"):
        check_known((None,), ("a", "b", "c"), "unknown letter")
    with pytest.raises(ValueError, match=r"^unknown letter 'x'; valid: a, b, c$"):
        check_known(("a", "x", "y"), ("a", "b", "c"), "unknown letter")


@dataclass(kw_only=True)
class Run(CheckedConfig):
    rounds: int = count_field(3)


@dataclass(kw_only=True)
class CrossRun(Run):
    """A subclass adding a check across fields after the declared ones."""

    warmup: int = index_field(0)

    def __post_init__(self):
        super().__post_init__()
        if self.warmup >= self.rounds:
            raise ValueError(f"warmup {self.warmup} must be below rounds {self.rounds}")


def test_without_what_a_field_is_named_alone_and_subclasses_check_inherited_fields_first():
    with pytest.raises(ValueError, match="^rounds must be an integer >= 1, got 0$"):
        CrossRun(rounds=0)
    with pytest.raises(ValueError, match="^warmup must be an integer >= 0, got -1$"):
        CrossRun(warmup=-1)
    with pytest.raises(ValueError, match="^warmup 3 must be below rounds 3$"):
        CrossRun(warmup=3)
    assert CrossRun(rounds=4, warmup=3).warmup == 3


def test_check_fields_runs_the_declared_checks_of_any_dataclass():
    toy = Toy(size=2)
    toy.size = 0
    with pytest.raises(ValueError, match="^again size must be an integer >= 1, got 0$"):
        check_fields(toy, "again")
