"""One declarative validation layer for every config groklab reads: runs, sweeps, GTN.

A config is a tree of pydantic models (:class:`Section`). Each field declares its type and its
bounds where it is defined (``p: Int = Field(113, ge=2, le=1000)``), and every value — a
``--set`` string, a TOML value, a saved ``config.json`` — goes through the same validators. So a
wrong type, an overflow (``1e400``), a truncation (``3.7`` for an integer) or an absurd size is
the same one-line :class:`ConfigError` everywhere at once, naming the key, the value and what is
allowed. Cross-field rules live in a ``model_validator`` of the root model and run in
:func:`validate`.

Text (a ``--set`` value) is parsed into the key's type: ``3``, ``1e4``, ``true``, ``200,200``.
A typed value (TOML, JSON) must already have the key's type (``apply_dict`` and
``set_key(..., strict=True)``): ``p = "23"`` is refused for an integer key, ``1`` for a boolean,
``"200,200"`` for a list; an integer is a number, a single number is a one-item list. Tables and
arrays nest at most ``MAX_DEPTH`` levels.
"""
from __future__ import annotations

import math
import tomllib
import typing
from pathlib import Path
from typing import Annotated, Any

import annotated_types as at
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo

__all__ = ["ConfigError", "Config", "Section", "Int", "Float", "Bool", "Str", "IntList", "FloatList", "Field",
           "MAX_DEPTH", "set_key", "apply_dict", "validate", "all_keys", "load_toml", "parse_overrides",
           "nesting", "shorten"]

MAX_DEPTH = 16  # tables and arrays in a config or spec file; a deeper one is refused, not recursed into


class ConfigError(ValueError):
    """Bad configuration input; its message is one line naming the value and what is allowed."""


# --- scalar types: strings from --set are parsed, TOML/JSON values must have the type -------

def _strict(info: ValidationInfo | None) -> bool:
    return bool(info is not None and info.context and info.context.get("strict"))


def _a(v: Any) -> str:
    """'a string', 'a float', ...: the type of a value as the error message names it."""
    kind = {bool: "boolean", int: "integer", float: "float", str: "string", list: "list",
            tuple: "list", dict: "table"}.get(type(v), type(v).__name__)
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _to_int(v: Any, info: ValidationInfo) -> Any:
    if isinstance(v, bool) or (_strict(info) and not isinstance(v, int)):
        raise ValueError(f"expected an integer, not {_a(v)}")
    if isinstance(v, str):
        s = v.strip().replace("_", "")
        try:
            return int(s)
        except ValueError:
            try:
                v = float(s)  # accept 1e4
            except ValueError:
                raise ValueError("expected an integer") from None
    if isinstance(v, float):
        if not math.isfinite(v) or v != int(v):
            raise ValueError("expected an integer")
        return int(v)
    if not isinstance(v, int):
        raise ValueError("expected an integer")
    return v


def _to_float(v: Any, info: ValidationInfo) -> Any:
    if isinstance(v, bool) or (_strict(info) and not isinstance(v, (int, float))):
        raise ValueError(f"expected a number, not {_a(v)}")
    if isinstance(v, str):
        try:
            v = float(v.strip())
        except ValueError:
            raise ValueError("expected a number") from None
    if isinstance(v, int):
        try:
            v = float(v)
        except OverflowError:
            raise ValueError("expected a finite number") from None
    if not isinstance(v, float):
        raise ValueError("expected a number")
    if not math.isfinite(v):
        raise ValueError("expected a finite number")
    return v


def _to_bool(v: Any, info: ValidationInfo) -> bool:
    if isinstance(v, bool):
        return v
    if _strict(info):
        raise ValueError(f"expected true or false, not {_a(v)}")
    s = str(v).strip().lower()
    if s in ("true", "1", "yes", "on"):
        return True
    if s in ("false", "0", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _to_str(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"expected a string, not {_a(v)}")
    return v


def _to_list(v: Any, info: ValidationInfo) -> list:
    """``200,200`` / ``[200, 200]`` (text) or a TOML/JSON list; a single number is one item."""
    if isinstance(v, str) and not _strict(info):
        s = v.strip()
        inner = s[1:-1] if s[:1] == "[" and s[-1:] == "]" else s
        items = [x.strip() for x in inner.split(",")] if inner.strip() else []
        if "[" in inner or "]" in inner or "" in items:
            raise ValueError("expected a list like 200,200 or [200, 200]")
        return items
    if isinstance(v, (list, tuple)):
        return list(v)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return [v]
    raise ValueError(f"expected a list like [200, 200], not {_a(v)}")


Int = Annotated[int, BeforeValidator(_to_int)]
Float = Annotated[float, BeforeValidator(_to_float)]
Bool = Annotated[bool, BeforeValidator(_to_bool)]
Str = Annotated[str, BeforeValidator(_to_str), Field(max_length=256)]


def IntList(lo: int, hi: int, max_items: int = 64):
    """A list of integers in [lo, hi], one to ``max_items`` long (widths, channels)."""
    return Annotated[list[Annotated[int, BeforeValidator(_to_int), Field(ge=lo, le=hi)]],
                     BeforeValidator(_to_list), Field(min_length=1, max_length=max_items)]


def FloatList(lo_open: float, hi: float, max_items: int = 64):
    """A list of numbers in (lo_open, hi], one to ``max_items`` long."""
    return Annotated[list[Annotated[float, BeforeValidator(_to_float), Field(gt=lo_open, le=hi)]],
                     BeforeValidator(_to_list), Field(min_length=1, max_length=max_items)]


class Section(BaseModel):
    """A group of settings: unknown keys fail, every assignment is validated."""
    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_default=True,
                              protected_namespaces=())


class Config(Section):
    """The root of a config tree: ``to_dict`` for config.json, ``from_dict`` to read one back."""

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        cfg = cls()
        apply_dict(cfg, d)
        return validate(cfg)


# --- one-line messages ----------------------------------------------------------------------

def _num(x: Any) -> str:
    if abs(x) >= 10**4 and float(x).is_integer() and abs(x) <= 10**15:
        return f"{int(x):,}"
    return f"{x:g}"


def _allowed(meta: list) -> str:
    lo = hi = None
    lo_open = hi_open = False
    for m in meta:
        if isinstance(m, at.Ge):
            lo = m.ge
        elif isinstance(m, at.Gt):
            lo, lo_open = m.gt, True
        elif isinstance(m, at.Le):
            hi = m.le
        elif isinstance(m, at.Lt):
            hi, hi_open = m.lt, True
    if lo is not None and hi is not None:
        return f"{'(' if lo_open else '['}{_num(lo)}, {_num(hi)}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {_num(lo)}"
    return f"{'<' if hi_open else '<='} {_num(hi)}"


def _field_info(model: type[BaseModel], loc: tuple) -> tuple[Any, list]:
    """(annotation, metadata) of the field at ``loc`` (list indices step into the item type)."""
    ann, meta = None, []
    node: Any = model
    for part in loc:
        if isinstance(part, int):
            args = typing.get_args(ann)
            inner = args[0] if args else None
            ann, meta = (typing.get_args(inner)[0], list(typing.get_args(inner)[1:])) \
                if typing.get_origin(inner) is Annotated else (inner, [])
            meta = [x for m in meta for x in (getattr(m, "metadata", None) or [m])]
            continue
        if not (isinstance(node, type) and issubclass(node, BaseModel)) or part not in node.model_fields:
            return None, []
        f = node.model_fields[part]
        ann, meta = f.annotation, list(f.metadata)
        node = ann
    return ann, meta


def _one_line(err: dict, model: type[BaseModel], key: str | None, given: Any) -> str:
    loc = tuple(err["loc"])
    name = key or ".".join(str(p) for p in loc if not isinstance(p, int))
    items = [p for p in loc if isinstance(p, int)]
    where = f" (item {items[-1]})" if items else ""
    value = err.get("input", given) if err["type"] != "value_error" or items else given
    kind = err["type"]
    msg = err["msg"].removeprefix("Value error, ")
    if not loc:  # a cross-field rule: its message names the keys already
        return msg
    ann, meta = _field_info(model, loc)
    name = shorten(name)
    if kind == "literal_error" and ann is not None:
        return f"{name}={shorten(repr(value))} is not one of: {', '.join(map(str, typing.get_args(ann)))}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        shown = f"{value:.3g}" if isinstance(value, int) and abs(value) >= 10**15 else repr(value)
        return f"{name}={shown}{where} is out of range; allowed: {_allowed(meta)}"
    if kind in ("too_long", "string_too_long") and isinstance(value, str):
        return f"{name}: a string of {len(value)} characters; at most {err['ctx']['max_length']} allowed"
    if kind in ("too_short", "too_long"):
        ctx = err.get("ctx", {})
        return f"{name}={shorten(repr(given))}: expected {'at least' if kind == 'too_short' else 'at most'} " \
               f"{ctx.get('min_length', ctx.get('max_length'))} item(s)"
    return f"{name}={shorten(repr(given))}{where}: {msg[0].lower() + msg[1:] if msg else kind}"


def _raise(e: ValidationError, model: type[BaseModel], key: str | None = None, given: Any = None):
    raise ConfigError(_one_line(e.errors()[0], model, key, given)) from None


# --- dotted keys ------------------------------------------------------------------------------

def _sections(model: BaseModel) -> list[str]:
    return [n for n, v in model if isinstance(v, BaseModel)]


def shorten(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters (with …): a pasted megabyte stays a one-line message."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _unknown(root: BaseModel, key: str, node: BaseModel, depth: int) -> ConfigError:
    parts = key.split(".")
    if depth == 0:
        ex = f"{_sections(root)[0]}.{next(iter(type(getattr(root, _sections(root)[0])).model_fields))}"
        return ConfigError(f"unknown key {shorten(key)!r}; sections are: {', '.join(_sections(root))} "
                           f"(e.g. {ex})")
    where = shorten(".".join(parts[:depth]))
    return ConfigError(f"unknown key {shorten(key)!r}; valid {where}.* keys: "
                       f"{', '.join(type(node).model_fields)}")


def set_key(cfg: BaseModel, key: str, value: Any, strict: bool = False) -> None:
    """Set one dotted key (``optim.lr``) on ``cfg`` in place, validated; ConfigError if not.

    ``strict``: ``value`` comes from a typed source (TOML, JSON) and must have the key's type;
    otherwise a string is text to parse (``--set``)."""
    parts = key.split(".")
    node = cfg
    for depth, part in enumerate(parts):
        fields = type(node).model_fields
        if part not in fields:
            raise _unknown(cfg, key, node, depth)
        child = getattr(node, part)
        last = depth == len(parts) - 1
        if isinstance(child, BaseModel) != (not last):
            if last:
                raise ConfigError(f"{key!r} is a section; set one of its keys, e.g. "
                                  f"{key}.{next(iter(type(child).model_fields))}=...")
            raise _unknown(cfg, key, node, depth + 1)
        if last:
            try:  # what setattr does under validate_assignment, with the context the validators read
                node.__pydantic_validator__.validate_assignment(node, part, value, context={"strict": strict})
            except ValidationError as e:
                _raise(e, type(node), key, value)
        node = child


def apply_dict(cfg: BaseModel, d: Any, prefix: str = "") -> None:
    """Apply a nested or flat dict of typed overrides (a TOML file, a saved config.json).

    A table is followed only where ``cfg`` has a section, so no nesting recurses further."""
    if not isinstance(d, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'the config'}: expected a table of settings, "
                          f"got {type(d).__name__}")
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            if not isinstance(_node(cfg, key), BaseModel):
                raise ConfigError(f"{shorten(key)}: expected a value, not a table")
            apply_dict(cfg, v, prefix=f"{key}.")
        else:
            set_key(cfg, key, v, strict=True)


def _node(cfg: BaseModel, key: str) -> Any:
    """The section or value at dotted ``key``; the unknown-key ConfigError if there is none."""
    node: Any = cfg
    parts = key.split(".")
    for depth, part in enumerate(parts):
        if not isinstance(node, BaseModel):
            raise ConfigError(f"unknown key {shorten(key)!r}: {'.'.join(parts[:depth])} is a value, "
                              f"not a section")
        if part not in type(node).model_fields:
            raise _unknown(cfg, key, node, depth)
        node = getattr(node, part)
    return node


def validate(cfg: BaseModel) -> BaseModel:
    """Re-check every field and the cross-field rules; ConfigError on the first problem."""
    try:
        type(cfg).model_validate(cfg.model_dump())
    except ValidationError as e:
        err = e.errors()[0]
        _raise(e, type(cfg), None, err.get("input"))
    return cfg


def all_keys(cfg: BaseModel, prefix: str = "") -> list[str]:
    """Every dotted leaf key of ``cfg``, sections in order."""
    keys = []
    for name, v in cfg:
        keys += all_keys(v, f"{prefix}{name}.") if isinstance(v, BaseModel) else [f"{prefix}{name}"]
    return keys


def parse_overrides(items: list[str]) -> list[tuple[str, str]]:
    out = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. optim.lr=1e-3")
        k, v = item.split("=", 1)
        out.append((k.strip(), v.strip()))
    return out


def nesting(value: Any) -> int:
    """How many tables and arrays deep ``value`` goes (a scalar: 0), counted without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, (dict, list, tuple)):
            deepest = max(deepest, depth)
            if depth > MAX_DEPTH:
                break
            stack += [(x, depth + 1) for x in (v.values() if isinstance(v, dict) else v)]
    return deepest


def load_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file as a dict; a missing, unreadable, non-UTF-8, invalid or too deeply nested file
    is a ConfigError."""
    p = Path(path)
    name = shorten(str(p))
    if not p.is_file():
        raise ConfigError(f"config file {name!r} does not exist (or is not a file)")
    deep = f"config file {name!r} nests tables or arrays more than {MAX_DEPTH} levels deep"
    try:
        d = tomllib.loads(p.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {name!r} is not UTF-8 text (byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {name!r} is not valid TOML: {e}") from None
    except RecursionError:  # the parser recurses into arrays and inline tables
        raise ConfigError(deep) from None
    except OSError as e:
        raise ConfigError(f"config file {name!r} cannot be read: {e.strerror}") from None
    if nesting(d) > MAX_DEPTH:
        raise ConfigError(deep)
    return d
