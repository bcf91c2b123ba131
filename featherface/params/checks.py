"""Range checks of the sections' fields.

A failed check raises :class:`FieldError`, a :class:`ValueError` that knows the field it is about;
:func:`~featherface.params.loading.build` turns it into a one-line
:class:`~featherface.errors.ParamsError` naming the file and the full dotted key
(``params.yaml: teacher.epochs must be at least 1, got 0``). Every check is written so that NaN
fails it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: The largest seed: numpy's legacy seeding (``RandomState``, which the prune search's
#: ``gp_minimize`` uses) takes ``0 .. 2**32 - 1``.
MAX_SEED = 2**32 - 1


class FieldError(ValueError):
    """A field's value is out of its range; ``str()`` reads ``"<name> <problem>"``."""

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        self.problem = problem
        super().__init__(f"{name} {problem}")


def require(section: object, name: str, ok: Callable[[Any], bool], wanted: str) -> None:
    """Raise :class:`FieldError` ``"<name> must be <wanted>, got <value>"`` unless
    ``ok(value)`` holds for the field ``name`` of ``section``."""
    value = getattr(section, name)
    if not ok(value):
        raise FieldError(name, f"must be {wanted}, got {value!r}")


def at_least(section: object, minimum: int, *names: str) -> None:
    """Each field of ``names`` is ``>= minimum`` ("must be at least 1" / "must be 0 or more")."""
    wanted = "0 or more" if minimum == 0 else f"at least {minimum}"
    for name in names:
        require(section, name, lambda value: value >= minimum, wanted)


def positive(section: object, *names: str) -> None:
    """Each field of ``names`` is ``> 0``."""
    for name in names:
        require(section, name, lambda value: value > 0, "greater than 0")


def check_seed(section: object, name: str = "seed") -> None:
    """The field ``name`` is a seed in ``[0, MAX_SEED]``."""
    require(section, name, lambda value: 0 <= value <= MAX_SEED, f"in [0, {MAX_SEED}]")
