"""Write docs/CONFIGURATION.md from the configuration models, so the reference never drifts from
the code: every key of an endpoint's ``config.yaml`` and every service setting, with its type,
default, environment variable and description.

    python scripts/config_docs.py           # rewrite the file
    python scripts/config_docs.py --check   # exit 1 if the file is not what the models say
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from outpost.runtime.settings import members
from outpost_endpoint.config import EndpointConfig
from outpost_service.config import ServiceConfig, env_variable

TARGET = Path(__file__).resolve().parents[1] / "docs" / "CONFIGURATION.md"

HEADER = """\
# Configuration reference

Generated from the models by `python scripts/config_docs.py` (the test run checks it is
current); do not edit by hand.  Where a default is computed, the description says how.

## Endpoint: `config.yaml`

`$OUTPOST_HOME/endpoints/NAME/config.yaml`, written by `outpost-endpoint configure` from a
commented template (`endpoint/outpost_endpoint/config_templates/`).  Every key is optional;
an empty key means its default.  A bad file is refused with one line per problem, naming the
key by its path, the bad value and what is allowed (`endpoint/outpost_endpoint/config/`).
"""

SERVICE = """
## Service: `outpost-service` settings

Each setting comes from its command-line option where `outpost-service` has one, else from its
environment variable, else the default (`cloud_service/outpost_service/config.py`); the same
names, in any case, are the keys of the mapping given to `create_app`.
"""


def render() -> str:
    parts = [HEADER]
    for title, model, fields in _sections(EndpointConfig, ""):
        parts.append(f"\n### {title}\n\n{_doc(model)}")
        if fields:
            parts.append("\n| key | type | default | description |\n|---|---|---|---|")
        parts.extend(
            f"| `{name}` | {_type(field)} | {_default(field)} | {_text(field.description)} |"
            for name, field in fields
        )
    parts.append(SERVICE)
    parts.append("| setting | environment variable | type | default | description |")
    parts.append("|---|---|---|---|---|")
    parts.extend(
        f"| `{name}` | `{env_variable(name)}` | {_type(field)} | {_default(field)} | "
        f"{_text(field.description)} |"
        for name, field in ServiceConfig.model_fields.items()
    )
    return "\n".join(parts) + "\n"


def _sections(
    model: type[BaseModel], path: str
) -> Iterator[tuple[str, type[BaseModel], list[tuple[str, FieldInfo]]]]:
    """Each section of the tree: its title, class and own fields.  A section whose ``type``
    picks the class (``engine.provider``) shows the keys every class has, then, per type, the
    keys only that type has."""
    yield (f"`{path}`" if path else "top level"), model, list(model.model_fields.items())
    for name, field in model.model_fields.items():
        inner = [arg for arg in members(field.annotation) if _is_section(arg)]
        where = f"{path}.{name}" if path else name
        if len(inner) == 1:
            yield from _sections(inner[0], where)
        elif inner:
            base = inner[0].__mro__[1]
            yield f"`{where}`", base, list(base.model_fields.items())
            for kind in inner:
                own = [(n, f) for n, f in kind.model_fields.items() if n not in base.model_fields]
                tag = kind.model_fields["type"].default
                yield f"`{where}` with `type: {tag}`", kind, own
            yield from _sections(base.model_fields["launcher"].annotation, f"{where}.launcher")


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _type(field: FieldInfo) -> str:
    names = []
    for member in members(field.annotation):
        if get_origin(member) is Literal:
            names.append(" \\| ".join(f"`{value}`" for value in get_args(member)))
        elif _is_section(member):
            names.append("section")
        else:
            origin = get_origin(member) or member
            names.append(_TYPE_NAMES.get(origin, getattr(origin, "__name__", str(origin))))
    limits = [
        f"{sign} {getattr(item, attribute)}"
        for item in field.metadata
        for kind, attribute, sign in _LIMITS
        if isinstance(item, kind)
    ]
    return ", ".join([" or ".join(dict.fromkeys(names)), *limits])


_LIMITS = (
    (annotated_types.Ge, "ge", "≥"),
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Le, "le", "≤"),
    (annotated_types.Lt, "lt", "<"),
)
_TYPE_NAMES = {int: "integer", float: "number", str: "text", bool: "true/false", list: "list"}


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        made = field.default_factory
        if made is list:
            return "`[]`"
        return "section" if _is_section(made) else "computed"
    if field.default is None:
        return "none"
    return f"`{field.default!r}`" if isinstance(field.default, str) else f"`{field.default}`"


def _doc(model: type[BaseModel]) -> str:
    return _text(model.__doc__)


def _text(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET} is stale: run python scripts/config_docs.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
