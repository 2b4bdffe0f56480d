"""Where configuration values come from besides the file: the environment and secret files.

**Environment overrides.** Every scalar field of every table (and of nested tables such as
``[conversations.llm]``) can be set by ``HUBBUB_<TABLE>_<FIELD>``, upper case, dots as
underscores: ``HUBBUB_SERVER_PORT=9000``, ``HUBBUB_BROKER_URL=redis://10.0.0.5:6379/0``,
``HUBBUB_CONVERSATIONS_LLM_MODEL=llama3.1``. A value is read as a TOML value when it is one
that the field takes (``9000``, ``true``, ``["10.0.0.1", "10.0.0.2"]``), otherwise as a plain
string. Overrides apply after the file and before command-line flags, and are validated like
the file; a problem names the variable. Arrays of tables (``[[apps]]`` and what they hold) are
not reachable from the environment: a list has no stable names to override; put per-app
secrets in ``secret_env`` / ``secret_file`` instead. The list of variables is derived from the
config structs, so a field added there is overridable without a line here.

**Secrets out of files.** A struct field ``X`` that has sibling fields ``X_env`` and/or
``X_file`` (a key's ``secret``, a TURN ``shared_secret``, the LLM's ``api_key``, webhook
secrets) may be given as the name of an environment variable or the path of a file (relative
to the configuration file) instead of inline. At most one of the three; the variable must be
set and non-empty, the file readable (one trailing newline is dropped).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from hubbub.config_shape import Fail, list_item_struct, struct_in, suggestion

ENV_PREFIX = "HUBBUB_"
ENV_SOURCE = "<environment>"
ENV_SUFFIX = "_env"
FILE_SUFFIX = "_file"


@dataclass(frozen=True, slots=True)
class EnvSetting:
    variable: str  # HUBBUB_SERVER_PORT
    path: tuple[str, ...]  # ("server", "port")
    annotation: Any

    @property
    def field(self) -> str:
        return ".".join(self.path)


def env_settings(config_type: type[msgspec.Struct]) -> list[EnvSetting]:
    """Every variable that can override a field of ``config_type``'s tables."""
    found: list[EnvSetting] = []

    def walk(cls: type[msgspec.Struct], path: tuple[str, ...]) -> None:
        for field in msgspec.structs.fields(cls):
            if list_item_struct(field.type) is not None:
                continue  # an array of tables: out of reach (see the module docstring)
            nested = struct_in(field.type)
            here = (*path, field.encode_name)
            if nested is not None:
                walk(nested, here)
            elif path:  # top-level scalars would have no table name
                variable = ENV_PREFIX + "_".join(here).upper()
                found.append(EnvSetting(variable, here, field.type))

    walk(config_type, ())
    return found


def table_names(config_type: type[msgspec.Struct]) -> dict[str, bool]:
    """Top-level tables, True for arrays of tables."""
    return {
        field.encode_name: list_item_struct(field.type) is not None
        for field in msgspec.structs.fields(config_type)
        if struct_in(field.type) is not None or list_item_struct(field.type) is not None
    }


def _env_value(text: str, annotation: Any) -> Any:
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    try:
        msgspec.convert(value, annotation)
    except msgspec.ValidationError:
        try:
            msgspec.convert(text, annotation)
        except msgspec.ValidationError:
            return value  # wrong either way: report it as the typed value it looks like
        return text
    return value


def apply_environment(
    raw: MutableMapping[str, Any],
    environ: Mapping[str, str],
    config_type: type[msgspec.Struct],
    fail_env: Fail,
) -> dict[str, str]:
    """Write the overrides into the parsed document; returns field path -> variable."""
    settings = {setting.variable: setting for setting in env_settings(config_type)}
    tables = table_names(config_type)
    applied: dict[str, str] = {}
    for variable in sorted(environ):
        if not variable.startswith(ENV_PREFIX):
            continue
        setting = settings.get(variable)
        if setting is None:
            rest = variable[len(ENV_PREFIX) :].lower()
            table = next((t for t in tables if rest.startswith(t + "_") or rest == t), None)
            if table is None:
                continue  # not ours to judge (HUBBUB_ is a short prefix)
            if tables[table]:
                fail_env(variable, f"[[{table}]] is an array of tables: set it in the file")
            else:
                fail_env(variable, "no such setting" + suggestion(variable, list(settings)))
            continue
        target: MutableMapping[str, Any] = raw
        for part in setting.path[:-1]:
            inner = target.get(part)
            if not isinstance(inner, MutableMapping):
                inner = {}
                target[part] = inner
            target = inner
        target[setting.path[-1]] = _env_value(environ[variable], setting.annotation)
        applied[setting.field] = variable
    return applied


def resolve_secrets(
    config: msgspec.Struct, environ: Mapping[str, str], base_dir: Path | None, fail: Fail
) -> None:
    """Fill every ``X`` from ``X_env`` / ``X_file`` (see the module docstring), in place."""

    def walk(obj: msgspec.Struct, path: str) -> None:
        names = {field.name for field in msgspec.structs.fields(obj)}
        for name in sorted(names):
            if f"{name}{ENV_SUFFIX}" in names or f"{name}{FILE_SUFFIX}" in names:
                _resolve(obj, name, names, path, environ, base_dir, fail)
        for name in sorted(names):
            value = getattr(obj, name)
            where = f"{path}.{name}" if path else name
            if isinstance(value, msgspec.Struct):
                walk(value, where)
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, msgspec.Struct):
                        walk(item, f"{where}[{i}]")

    walk(config, "")


def _resolve(
    obj: msgspec.Struct,
    name: str,
    names: set[str],
    path: str,
    environ: Mapping[str, str],
    base_dir: Path | None,
    fail: Fail,
) -> None:
    prefix = f"{path}." if path else ""
    env_name = getattr(obj, f"{name}{ENV_SUFFIX}", None) if f"{name}{ENV_SUFFIX}" in names else None
    file_name = (
        getattr(obj, f"{name}{FILE_SUFFIX}", None) if f"{name}{FILE_SUFFIX}" in names else None
    )
    given = [
        label
        for label, value in (
            (name, getattr(obj, name)),
            (f"{name}{ENV_SUFFIX}", env_name),
            (f"{name}{FILE_SUFFIX}", file_name),
        )
        if value is not None
    ]
    if len(given) > 1:
        fail(f"{prefix}{given[1]}", f"give only one of {', '.join(given)}")
        return
    if env_name is not None:
        value = environ.get(env_name, "")
        if not value:
            fail(f"{prefix}{name}{ENV_SUFFIX}", f"environment variable {env_name} is not set")
            return
        setattr(obj, name, value)
    elif file_name is not None:
        file_path = Path(file_name)
        if not file_path.is_absolute() and base_dir is not None:
            file_path = base_dir / file_path
        try:
            text = file_path.read_text(encoding="utf-8")
        except OSError as exc:
            fail(f"{prefix}{name}{FILE_SUFFIX}", f"cannot read {file_path}: {exc.strerror or exc}")
            return
        except UnicodeDecodeError:
            fail(f"{prefix}{name}{FILE_SUFFIX}", f"{file_path} is not UTF-8 text")
            return
        text = text.removesuffix("\n").removesuffix("\r")
        if not text:
            fail(f"{prefix}{name}{FILE_SUFFIX}", f"{file_path} is empty")
            return
        setattr(obj, name, text)
