"""How the CLI turns arguments into ``str``, ``int`` and ``bool`` parameters without pydantic.

Typer 0.29 converts every parameter value through a pydantic ``TypeAdapter`` built on first
use (``typer._coercion.build_runtime_param``): the first command parameter imports pydantic and
pydantic-core into the process.  Measured on the S3 full backup of ``bench/s3.py``'s VM (the
CLI process, GNU time): peak RSS 116.4 → 108.8 MiB without them — pydantic's modules and its
core library are resident for the whole backup to parse a VM name and ``--vault``.

:func:`install` makes typer build, for a parameter whose type is plain ``str``, ``int`` or
``bool`` (or a list or optional of them) with no parser, range or path option, a converter that
accepts what that adapter would accept unchanged — a ``str`` for ``str``, a ``bool`` for
``bool``, an ``int`` or a string of decimal digits for ``int`` — and hands **every other value** to typer's own
adapter, built then (so errors, messages and every other type behave exactly as typer's).
Typer's adapter of any parameter (an enum's choice, a path …) is built only when a value
reaches it: an option not given is None, which never does (``RuntimeParam.coerce``), so
``vm list`` without ``--state`` does not import pydantic either (~0.05 CPU-s).
A typer without that function (another major version) is left as it is.
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable
from typing import Any, Union, get_args, get_origin

_DIGITS = re.compile(r"-?[0-9]+")
_PLAIN = (str, int, bool)


def install() -> None:
    """Route typer's parameter coercion through :func:`_build` (idempotent)."""
    try:
        from typer import _coercion, core
    except ImportError:
        return
    coercion_mod: Any = _coercion
    core_mod: Any = core
    original: Any = getattr(coercion_mod, "build_runtime_param", None)
    base: Any = getattr(coercion_mod, "RuntimeParam", None)
    if original is None or base is None or getattr(original, "_vmvault", False):
        return
    if getattr(core_mod, "build_runtime_param", None) is not original:
        return  # not the layout this was written for: leave typer alone
    typers: Callable[[Any], Any] = coercion_mod.build_runtime_param

    from dataclasses import dataclass, field

    @dataclass(frozen=True)
    class LazyParam(base):  # type: ignore[misc]
        """Plain values of a plain type converted here; any other value by typer's own runtime
        parameter, built for its first such value (a value not given never reaches it)."""

        descriptor: Any = None
        plain: bool = False
        built: list[Any] = field(default_factory=list)

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            if self.plain:
                converted = _plain(self.annotation, value)
                if converted is not _NO:
                    return converted
            if not self.built:
                self.built.append(typers(self.descriptor))
            return self.built[0]._coerce_value(value, param=param, ctx=ctx)

    def build(descriptor: Any) -> Any:
        if getattr(descriptor, "file_annotation", None) is not None:
            return typers(descriptor)
        return LazyParam(
            annotation=descriptor.annotation,
            parameter_info=descriptor.parameter_info,
            descriptor=descriptor,
            plain=_handled(descriptor),
        )

    build._vmvault = True  # type: ignore[attr-defined]
    coercion_mod.build_runtime_param = build
    core_mod.build_runtime_param = build


_NO = object()


def _handled(descriptor: Any) -> bool:
    info = descriptor.parameter_info
    if getattr(descriptor, "file_annotation", None) is not None:
        return False
    if getattr(info, "parser", None) is not None or getattr(info, "click_type", None) is not None:
        return False
    if getattr(info, "min", None) is not None or getattr(info, "max", None) is not None:
        return False
    return _leaf(descriptor.annotation) is not None


def _leaf(annotation: Any) -> Any:
    """The plain type of ``annotation`` (``str``, ``str | None``, ``list[int]`` …) or None."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return _leaf(args[0]) if len(args) == 1 else None
    if origin is list:
        items = get_args(annotation)
        return _leaf(items[0]) if len(items) == 1 and get_origin(items[0]) is None else None
    return annotation if annotation in _PLAIN else None


def _plain(annotation: Any, value: Any) -> Any:
    """``value`` as ``annotation`` when it plainly is one; else :data:`_NO`."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        (inner,) = [a for a in get_args(annotation) if a is not type(None)]
        return _plain(inner, value)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            return _NO
        (inner,) = get_args(annotation)
        items = [_plain(inner, item) for item in value]
        return _NO if any(item is _NO for item in items) else items
    if annotation is str:
        return value if type(value) is str else _NO
    if annotation is bool:
        return value if type(value) is bool else _NO
    if annotation is int:
        if type(value) is int:
            return value
        if type(value) is str and _DIGITS.fullmatch(value):
            return int(value)
    return _NO
