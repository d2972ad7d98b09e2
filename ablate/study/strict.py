"""Strict pydantic building blocks of the study schema (ablate.study.spec): no lax scalars, checks across keys that
name where they were written, registry-checked names.

Input: values from a study file. Output: ValueErrors that ablate.study.load turns into `file:line: key: message`.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo, field_validator

from ablate.errors import UserError


def _kinds(annotation) -> set[type]:
    """The plain types an annotation admits, through Optional, tuples, lists and dict values."""
    if annotation in (int, float, bool, str):
        return {annotation}
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType, tuple, list):
        return set().union(*(_kinds(a) for a in args if a is not Ellipsis))
    if origin is dict and len(args) == 2:
        return _kinds(args[1])
    return set()


class AtKeys(ValueError):
    """A check of several settings together, raised where it runs (a section, or the whole config) but written at
    one of `keys` (dotted, below the section): the error names the one written last (ablate.study.load)."""

    def __init__(self, keys: tuple, message: str):
        super().__init__(message)
        self.keys = tuple(tuple(k.split(".")) if isinstance(k, str) else tuple(k) for k in keys)


def registered(registry):
    """A str checked against a registry: a ValueError (with did-you-mean) at the name's own key path and line."""

    def check(name: str) -> str:
        try:
            registry.get(name)
        except UserError as e:
            raise ValueError(str(e)) from None
        return name

    return AfterValidator(check)


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_lax_scalars(cls, v: Any, info: ValidationInfo) -> Any:
        """Numbers are numbers and switches are booleans: `true` is not seed 1, "10" is not 10 steps, 1 is not
        on (pydantic's lax mode would take each)."""
        kinds = _kinds(cls.model_fields[info.field_name].annotation)
        items = list(v.values()) if isinstance(v, dict) else list(v) if isinstance(v, (list, tuple)) else [v]
        got = "" if items == [v] else " (got {v!r})"  # a scalar's value is shown by the error's formatter
        for item in items:
            if kinds & {int, float} and (isinstance(item, bool) or isinstance(item, str) and str not in kinds):
                what = "an integer" if float not in kinds else "a number"
                raise ValueError(f"must be {what}, not {'a boolean' if isinstance(item, bool) else 'text'}"
                                 f"{got.format(v=item)}")
            if kinds == {bool} and not isinstance(item, bool):
                raise ValueError(f"must be true or false{got.format(v=item)}")
        return v
