"""Reading a configuration: dataclass defaults -> each YAML file in order (a file may list
``defaults: [other.yaml, ...]`` that are merged before it, paths relative to the file) -> dotted overrides
(``optim.lr=3e-4``), then :func:`cjepa.config.validate.validate`.

Unknown or mistyped keys are errors that name the key, where it came from, and the valid choices (the original
project read its configs with ``.get(key, default)``, so a typo silently fell back to a default). :func:`merge` is
the one way to write a nested mapping into a config section, for the loader and for code that lays a saved run's
section over its own (a checkpoint's model section, a reasoner's architecture, a study cell's overrides).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from cjepa.config.errors import ConfigError
from cjepa.config.schema import Config
from cjepa.config.validate import validate
from cjepa.paths import CONFIG_DIR, REPO_ROOT


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


_YAML11_FLOAT_STRING = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against the annotation `tp`; convert only where it loses nothing (int -> float, list -> tuple)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not valid; choose {_type_name(tp)}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{where}: {value!r} is not {_type_name(tp)}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _YAML11_FLOAT_STRING.fullmatch(value.strip()):
            return float(value)  # PyYAML (YAML 1.1) reads 1e-4 (no dot) as a string; it is a number
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported annotation {tp!r}")  # a schema bug, not a user error


def _unknown_key(key: str, section_obj: Any, prefix: str, source: str) -> ConfigError:
    names = [f.name for f in dataclasses.fields(section_obj)]
    close = difflib.get_close_matches(key, names, n=1)
    hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
    where = f" (in {source})" if source else ""
    return ConfigError(
        f"unknown config key '{prefix}{key}'{where}{hint} valid keys under '{prefix or '<top>'}': {', '.join(names)}"
    )


def merge(obj: Any, updates: dict, prefix: str, source: str) -> None:
    """Write `updates` (a nested dict) into the dataclass instance `obj`, checking every key and type."""
    hints = typing.get_type_hints(type(obj))
    for key, value in updates.items():
        if not isinstance(key, str) or key not in hints or key.startswith("_"):
            raise _unknown_key(str(key), obj, prefix, source)
        tp = hints[key]
        where = f"{prefix}{key}" + (f" (in {source})" if source else "")
        if _is_dataclass_type(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: is a section; give a mapping of its keys, not {value!r}")
            merge(getattr(obj, key), value, f"{prefix}{key}.", source)
        else:
            setattr(obj, key, _coerce(value, tp, where))


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[dict, str]]:
    """Return the (mapping, source-name) layers of a YAML file, its `defaults:` first."""
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"config {path} includes itself through 'defaults'")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    with open(path) as fh:
        try:
            data = yaml.safe_load(fh) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    layers: list[tuple[dict, str]] = []
    defaults = data.pop("defaults", [])
    if isinstance(defaults, str):
        defaults = [defaults]
    for inc in defaults:
        layers.extend(_read_yaml(path.parent / inc, seen + (path,)))
    layers.append((data, str(path)))
    return layers


def parse_override(text: str) -> dict:
    """'a.b.c=value' -> {'a': {'b': {'c': value}}}; the value is read as YAML (numbers, lists, null)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    dotted, raw = text.split("=", 1)
    parts = [p for p in dotted.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override {text!r} has no key")
    try:
        value = yaml.safe_load(raw) if raw.strip() != "" else ""
    except yaml.YAMLError:
        value = raw
    nested: dict = {}
    cur = nested
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return nested


def load_config(paths: list[str] | tuple[str, ...] = (), overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults <- YAML files (in order) <- dotted overrides; then validate."""
    cfg = Config()
    for p in paths:
        for data, source in _read_yaml(resolve_config_file(p)):
            merge(cfg, data, "", source)
    for ov in overrides:
        merge(cfg, parse_override(ov), "", f"override '{ov}'")
    validate(cfg)
    return cfg


def config_from_dict(data: dict, source: str = "dict") -> Config:
    cfg = Config()
    merge(cfg, copy.deepcopy(data), "", source)
    validate(cfg)
    return cfg


def to_dict(cfg: Any) -> dict:
    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            out[f.name] = to_dict(v)
        elif isinstance(v, tuple):
            out[f.name] = list(v)
        else:
            out[f.name] = v
    return out


def dump_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def keys_named(name: str) -> list[str]:
    """Every dotted config key whose last part is ``name`` (``lr`` -> ['optim.lr', 'vqa.lr'])."""
    found: list[str] = []

    def walk(obj: Any, prefix: str) -> None:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{prefix}{f.name}.")
            elif f.name == name:
                found.append(prefix + f.name)

    walk(Config(), "")
    return found


def resolve_config_file(path: str | Path) -> Path:
    """A ``-c`` file: as given, else the shipped one (``configs/clevrer/x.yaml`` or ``clevrer/x.yaml``), so that
    commands find the repository's configs from any directory, as ``cjepa demo`` does."""
    p = Path(path)
    if p.is_file() or p.is_absolute():
        return p
    for cand in (REPO_ROOT / p, CONFIG_DIR / p):
        if cand.is_file():
            return cand
    return p
