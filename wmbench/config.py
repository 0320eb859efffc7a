"""Typed configs, profiles and command-line overrides.

A config is a dataclass whose fields are declared with `param(default, "one-line doc")`, so that
`wmbench models --config` can explain every knob. A profile (`smoke`, `quick`, `paper`, shipped in
the package's `profiles/`, or any TOML file given by path) has one table per config section (a model
name, `policy`, `data`, `evaluate`) whose keys override the dataclass defaults, and a model's table
may hold per-env tables (`[polygrad.hopper]`) that override it for one env; a profile may start
from another with `extends = "quick"`. Overrides from the command line (`--set polygrad.width=256`)
are applied last, checked against the section's fields, and are part of a result's identity.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from wmbench.errors import UsageError
from wmbench.paths import user_profiles_dir

T = TypeVar("T")
SECTIONS: dict[str, type] = {}  # the shared config sections (`data`, `policy`, `evaluate`, ...)
MODEL_SECTIONS: dict[str, type] = {}  # a registered model's name -> its `Config` (`models.base.register_model`)


MAX_NUMBER = 2 ** 63 - 1  # what torch and numpy hold as an integer: anything larger is a typo


def param(default: Any, doc: str, runtime: bool = False, *, low: float | None = None, above: float | None = None,
          high: float | None = None, choices: tuple[str, ...] | None = None, added: bool = False) -> Any:
    """A dataclass field with a default, a one-line doc and its valid values (`value >= low`,
    `value > above`, `value <= high`, or one of `choices`), which every profile and `--set` value is
    checked against. A `runtime` field changes how a result is computed, never the result (how
    often training state is saved): it is left out of config hashes. An `added` field came after
    results were stored: at its default it is left out of config hashes, so those results keep theirs."""
    metadata = {"doc": doc, "runtime": runtime, "low": low, "above": above, "high": high, "choices": choices,
                "added": added}
    if isinstance(default, (list, dict, tuple)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def identity(config: Any) -> dict[str, Any]:
    """A config dataclass as a dict of the fields that shape results (runtime fields, and added
    fields at their default, left out)."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
            if not f.metadata.get("runtime") and not (f.metadata.get("added") and getattr(config, f.name) == f.default)}


def config_section(name: str):
    """Class decorator: make a config dataclass the `[name]` section of profiles and `--set`. Each
    section is declared beside the code it configures; `wmbench.sections` imports them all."""

    def decorate(cls: type) -> type:
        SECTIONS[name] = cls
        return cls

    return decorate


def field_docs(config_cls: type) -> list[tuple[str, Any, str]]:
    """`(name, default, doc)` for every field of a config dataclass (the doc ends with its valid values)."""
    rows = []
    for f in dataclasses.fields(config_cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        valid = valid_values(f)
        rows.append((f.name, default, f.metadata.get("doc", "") + (f" [{valid}]" if valid else "")))
    return rows


def valid_values(field: dataclasses.Field) -> str:
    """`>= 1 and <= 1000`, `> 0`, `one of: mlp, transformer`, or empty for a field without bounds."""
    bounds = {">=": field.metadata.get("low"), ">": field.metadata.get("above"), "<=": field.metadata.get("high")}
    if field.metadata.get("choices"):
        return "one of: " + ", ".join(field.metadata["choices"])
    return " and ".join(f"{op} {_number(bound)}" for op, bound in bounds.items() if bound is not None)


def _number(value: float) -> str:
    """A bound as a reader writes it: 1,000,000 rather than 1e+06; 0.0003 as it is."""
    return f"{int(value):,}" if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def check_field(section: str, field: dataclasses.Field, value: Any, source: str) -> None:
    """One line naming `value` where it is outside the field's declared valid values (`valid_values`), and
    where it came from (`source`: `from --set`, ...)."""
    meta = field.metadata
    if meta.get("choices"):
        bad = value not in meta["choices"]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        bad = (not math.isfinite(value) or abs(value) > MAX_NUMBER
               or (meta.get("low") is not None and value < meta["low"])
               or (meta.get("above") is not None and value <= meta["above"])
               or (meta.get("high") is not None and value > meta["high"]))
    else:
        bad = False
    if bad:
        raise UsageError(f"{section}.{field.name} must be {valid_values(field) or 'a finite number'}, got {value!r} "
                         f"({source})")


def check_config(config: Any, section: str, flags: frozenset[str] = frozenset()) -> None:
    """Every field of a built config within its declared valid values, and the fields that constrain one
    another consistent (a config's `problem()`, if it has one); one line naming the first that is not, and
    where the value came from (`flags`: the fields a command-line option of their own set)."""
    for f in dataclasses.fields(config):
        source = (f"from --{f.name.replace('_', '-')}" if f.name in flags
                  else f"from the profile or --set {section}.{f.name}=...")
        check_field(section, f, getattr(config, f.name), source)
    problem = config.problem() if hasattr(config, "problem") else None  # settings that hold only together
    if problem:
        raise UsageError(f"{section}: {problem} (from the profile or --set {section}.KEY=...)")


def _profile_files() -> dict[str, Path]:
    """Named profiles: the built-in ones, then those of `WMBENCH_PROFILES` (which win)."""
    builtin = resources.files("wmbench") / "profiles"
    files = {Path(p.name).stem: Path(str(p)) for p in builtin.iterdir() if p.name.endswith(".toml")}
    extra = user_profiles_dir()
    if extra is not None and extra.is_dir():
        files.update({p.stem: p for p in extra.glob("*.toml")})
    return dict(sorted(files.items()))


def available_profiles() -> list[str]:
    return list(_profile_files())


def profile_path(profile: str) -> Path:
    """The file of a profile given by name or by path (`.toml`)."""
    if profile.endswith(".toml"):
        path = Path(profile).expanduser()
        if not path.is_file():
            raise UsageError(f"profile file {profile} does not exist")
        return path
    files = _profile_files()
    if profile not in files:
        raise UsageError(f"unknown profile {profile!r}; choose one of: {', '.join(files)}, or a path to a .toml file")
    return files[profile]


def profile_label(profile: str) -> str:
    """The name a profile goes by in results and checkpoint names: a built-in's name, or a file's stem
    and the hash of its content (`mine-1a2b3c4d`: two files of one name, or an edited file, are apart)."""
    if not profile.endswith(".toml"):
        return profile
    return f"{Path(profile).stem}-{hashlib.sha1(profile_path(profile).read_bytes()).hexdigest()[:8]}"


def read_profile_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise UsageError(f"profile {path} is not a text file (not UTF-8 at byte {err.start}); "
                         "profiles are TOML") from err
    except OSError as err:
        raise UsageError(f"cannot read profile {path} ({err.strerror})") from err


@functools.cache
def load_profile(profile: str) -> dict[str, dict[str, Any]]:
    """The profile's sections, with what it `extends` merged underneath (key by key)."""
    chain, sections = [], {}
    while profile is not None:
        path = profile_path(profile)
        if path in chain:
            raise UsageError(f"profile {path} extends itself (through {' -> '.join(map(str, chain))})")
        chain.append(path)
        try:
            raw = tomllib.loads(read_profile_text(path))
        except tomllib.TOMLDecodeError as err:
            raise UsageError(f"profile {path} is not valid TOML: {err}") from err
        parent = raw.pop("extends", None)
        if parent is not None and not isinstance(parent, str):
            raise UsageError(f"profile {path}: extends takes a profile name or path, got {parent!r}")
        if parent is not None and parent.endswith(".toml") and not Path(parent).is_absolute():
            parent = str(path.parent / parent)  # relative to the file that names it
        for name, values in raw.items():
            if not isinstance(values, dict):
                raise UsageError(f"profile {path}: {name!r} must be a [table] of settings")
            merged = {**values, **sections.get(name, {})}  # the child's keys win
            for key, value in values.items():  # and an env's table merges key by key too
                if isinstance(value, dict) and isinstance(merged[key], dict):
                    merged[key] = {**value, **merged[key]}
            sections[name] = merged
        profile = parent
    return sections


def profile_description(profile: str) -> str:
    """The first comment line of a profile file."""
    for line in read_profile_text(profile_path(profile)).splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


# ----------------------------------------------------------------------------- overrides

def section_class(section: str, flag: str = "--set") -> type:
    """The config class of a declared section: a registered model's `Config`, or a `SECTIONS` entry."""
    if section in MODEL_SECTIONS:
        return MODEL_SECTIONS[section]
    if section in SECTIONS:
        return SECTIONS[section]
    raise UsageError(f"unknown config section {section!r} in {flag}; choose one of: "
                     f"{', '.join(sorted(SECTIONS) + sorted(MODEL_SECTIONS))}")


def _parse_value(text: str) -> Any:
    """A TOML literal (`7`, `1e-4`, `true`, `[1, 2]`, `"mlp"`); anything else is a bare string."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def _check_value(section: str, key: str, value: Any, default: Any, flag: str = "--set") -> Any:
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(value, bool) and isinstance(default, bool)
    elif isinstance(default, float) and isinstance(value, int):
        return float(value)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        kind = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
                "list": "a list"}.get(type(default).__name__, type(default).__name__)
        raise UsageError(f"{flag} {section}.{key}: expected {kind} (like {json.dumps(default)}), got {value!r}")
    return value


@functools.cache
def parse_overrides(overrides: tuple[str, ...], flag: str = "--set") -> dict[str, dict[str, Any]]:
    """`("polygrad.train_steps=7", ...)` -> `{"polygrad": {"train_steps": 7}}`, every key, type and bound checked;
    an error names `flag`, the option that gave the overrides."""
    parsed: dict[str, dict[str, Any]] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise UsageError(f"{flag} takes SECTION.KEY=VALUE (e.g. polygrad.train_steps=20000), got {item!r}")
        config_cls = section_class(section, flag)
        fields = {f.name: f for f in dataclasses.fields(config_cls)}
        defaults = {field: default for field, default, _ in field_docs(config_cls)}
        if name not in defaults:
            raise UsageError(f"unknown key {name!r} in {flag} {section}.{name}; valid keys of [{section}]: "
                             f"{', '.join(sorted(defaults))}")
        value = _check_value(section, name, _parse_value(text.strip()), defaults[name], flag)
        check_field(section, fields[name], value, f"from {flag}")
        parsed.setdefault(section, {})[name] = value
    return parsed


def canonical_overrides(overrides: tuple[str, ...], sections: set[str] | None = None) -> str:
    """The overrides (of `sections` only, if given) as one sorted, normalised string."""
    parsed = parse_overrides(tuple(overrides))
    items = [f"{s}.{k}={json.dumps(v)}" for s, values in parsed.items() if sections is None or s in sections
             for k, v in values.items()]
    return " ".join(sorted(items))


def build_config(config_cls: type[T], profile: str, section: str, overrides: tuple[str, ...] = (),
                 env: str | None = None, horizon: int | None = None, **explicit: Any) -> T:
    """`config_cls` with its defaults overridden by `[section]` of the profile, then by its
    `[section.hN]` table for the given `horizon` (e.g. the paper's PolyGRAD width 2048 at h = 50),
    then by its `[section.ENV]` table for the given `env` (the authors' per-env settings, e.g.
    Hopper's tau), then by `explicit` (values of None are ignored), then by the `--set` overrides."""
    from wmbench.envs import ENVS

    table = load_profile(profile).get(section, {})
    subtables = {key: value for key, value in table.items() if isinstance(value, dict)}
    unknown = sorted(key for key in subtables if key not in ENVS and not re.fullmatch(r"h\d+", key))
    if unknown:
        raise UsageError(f"profile {profile!r}, [{section}.{unknown[0]}]: not an env or a horizon; tables are "
                         f"named after one of {', '.join(ENVS)} or a horizon (h10, h50, ...)")
    values = {key: value for key, value in table.items() if key not in subtables}
    values.update(subtables.get(f"h{horizon}", {}))
    values.update(subtables.get(env, {}))
    given = {k: v for k, v in explicit.items() if v is not None}
    values.update(given)
    overridden = parse_overrides(tuple(overrides)).get(section, {})
    values.update(overridden)
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UsageError(f"profile {profile!r}, [{section}]: unknown keys {', '.join(unknown)}; "
                         f"valid keys: {', '.join(sorted(known))}")
    config = config_cls(**values)
    check_config(config, section, frozenset(given) - set(overridden))
    return config


def config_hash(config: Any) -> str:
    """A short hash of a config (a dataclass: its `identity`, or a JSON-able dict), stable across processes."""
    if dataclasses.is_dataclass(config):
        config = identity(config)
    return hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:8]
