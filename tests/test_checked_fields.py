"""``fedleak.checks``: a config declares each field's check once (``checked`` and the named rules) and validates
itself in one ``check_fields`` call, failing with the message ``check_number`` gives; ``check_known`` names the first
unknown name and the valid ones."""
from dataclasses import dataclass

import pytest

from fedleak.checks import (check_fields, check_known, checked, count_field, index_field, levels_field, number_field,
                            positive_field, seed_field)


@dataclass
class Toy:
    size: int = count_field()
    scale: float = positive_field(0.5)
    shift: float = number_field(0.0)
    target: int = index_field(0)
    share: float = checked(0.1, label="share p", low=0, high=1)
    levels: int | None = levels_field()
    seed: int = seed_field()
    name: str = "free"

    def __post_init__(self):
        check_fields(self, "toy")


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
    with pytest.raises(ValueError, match=r"^unknown letter 'x'; valid: a, b, c$"):
        check_known(("a", "x", "y"), ("a", "b", "c"), "unknown letter")
