"""Typed configs and profiles.

A config is a dataclass whose fields are declared with `param(default, "one-line doc")`, so that
`wmbench models --config` can explain every knob. A profile (`smoke`, `quick`, `paper`) is a TOML
file under `models/` with one table per config section (a model name, `policy`, `data`,
`evaluate`) whose keys override the dataclass defaults.
"""

from __future__ import annotations

import dataclasses
import functools
import tomllib
from typing import Any, TypeVar

from wmbench.errors import UsageError
from wmbench.paths import profiles_dir

T = TypeVar("T")


def param(default: Any, doc: str) -> Any:
    """A dataclass field with a default and a one-line doc."""
    if isinstance(default, (list, dict, tuple)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"doc": doc})
    return dataclasses.field(default=default, metadata={"doc": doc})


def field_docs(config_cls: type) -> list[tuple[str, Any, str]]:
    """`(name, default, doc)` for every field of a config dataclass."""
    rows = []
    for f in dataclasses.fields(config_cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        rows.append((f.name, default, f.metadata.get("doc", "")))
    return rows


def available_profiles() -> list[str]:
    return sorted(p.stem for p in profiles_dir().glob("*.toml"))


@functools.cache
def load_profile(name: str) -> dict[str, dict[str, Any]]:
    path = profiles_dir() / f"{name}.toml"
    if not path.is_file():
        raise UsageError(f"unknown profile {name!r}; choose one of: {', '.join(available_profiles())}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"profile {path} is not valid TOML: {err}") from err


def build_config(config_cls: type[T], profile: str, section: str, **overrides: Any) -> T:
    """`config_cls` with the defaults overridden by `[section]` of the profile, then `overrides`."""
    values = dict(load_profile(profile).get(section, {}))
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UsageError(f"profile {profile!r}, [{section}]: unknown keys {', '.join(unknown)}; "
                         f"valid keys: {', '.join(sorted(known))}")
    return config_cls(**values)
