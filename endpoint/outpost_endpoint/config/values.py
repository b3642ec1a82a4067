"""The kinds of value in ``config.yaml`` that plain types do not describe: text written without
quotes, absolute paths, URLs, walltimes, accelerator lists, core lists, function ids.

Each is an ``Annotated`` type whose validator raises :func:`invalid` with the tail of the
message (the field's path and the bad value are put in front by :mod:`.messages`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

#: Most accelerators one node may list: far beyond any node built, and small enough that a
#: mistyped count cannot make the endpoint build a list that fills its memory.
MAX_ACCELERATORS = 1024
#: Most function ids an allow-list may hold.
MAX_FUNCTION_IDS = 100_000
#: ``cpu_affinity`` values besides ``list:...`` core lists.
CPU_AFFINITIES = ("none", "block", "alternating", "block-reverse")
_CORE_SET = re.compile(r"\d+(-\d+)?(,\d+(-\d+)?)*")
_WALLTIME = re.compile(r"\d+:[0-5]\d:[0-5]\d")
_FUNCTION_ID = re.compile(r"[0-9a-f]{64}")


def invalid(message: str) -> PydanticCustomError:
    """A refused value; ``message`` says what is wrong and what to write instead."""
    return PydanticCustomError("invalid_value", message)


def _text(value: Any) -> Any:
    """Numbers are text too where text is expected (``account: 12345``)."""
    if isinstance(value, (dict, list)):
        raise invalid("is not text; write it as a (quoted) string")
    return value if isinstance(value, str) else str(value)


def _file_path(value: Any) -> str:
    """An absolute path (``~`` expanded): the daemon's working folder is not the user's."""
    path = os.path.expanduser(_text(value))
    if not os.path.isabs(path):
        raise invalid("is not an absolute path; write /path/to/file.pem or ~/file.pem")
    return path


def _url(*schemes: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not value.startswith(schemes):
            raise invalid(f"is not a URL starting with one of: {', '.join(schemes)}")
        return value.rstrip("/") if value.startswith("http") else value

    return check


def _walltime(value: Any) -> str:
    """``"0:10:00"`` (as in Parsl configs) is accepted and kept as ``"00:10:00"``."""
    if not isinstance(value, str) or not _WALLTIME.fullmatch(value):
        raise invalid('is not a walltime; write it as a quoted "HH:MM:SS", e.g. "01:00:00"')
    hours, minutes, seconds = value.split(":")
    return f"{int(hours):02d}:{minutes}:{seconds}"


def _accelerators(value: Any) -> list[str]:
    """A count N (devices ``"0"`` .. ``"N-1"``) or a list of device ids."""
    wrong = "is not an accelerator count or list; use an integer N or a list of ids"
    if isinstance(value, bool):
        raise invalid(wrong)
    if isinstance(value, int):
        if value < 0:
            raise invalid("is negative; use an integer N >= 0 or a list of device ids")
        if value > MAX_ACCELERATORS:
            raise invalid(f"is too large; a node has at most {MAX_ACCELERATORS} accelerators")
        return [str(i) for i in range(value)]
    if not isinstance(value, list):
        raise invalid(wrong)
    if len(value) > MAX_ACCELERATORS:
        raise invalid(f"lists too many devices; a node has at most {MAX_ACCELERATORS}")
    if not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
        raise invalid(wrong)
    return [str(v) for v in value]


def _cpu_affinity(value: Any) -> str:
    if isinstance(value, str) and value in CPU_AFFINITIES:
        return value
    if isinstance(value, str) and value.startswith("list:"):
        cores = value[len("list:") :]
        if cores and all(_CORE_SET.fullmatch(part) for part in cores.split(":")):
            return value
        raise invalid(
            "is not a core list; write list:CORES[:CORES...] with ':' between workers and ',' "
            "between cores or ranges, e.g. list:0-3,8:4-7"
        )
    raise invalid(f"is not one of: {', '.join(CPU_AFFINITIES)}, list:...")


def _function_ids(value: Any) -> list[str]:
    """A non-empty list of function ids (sha256 hex, as ``outpost`` registers them)."""
    if not isinstance(value, list):
        raise invalid("is not a list; write a YAML list of function ids (sha256 hex)")
    if not value:
        raise invalid(
            "is empty, which would refuse every task; list the function ids to run, or remove "
            "the key to run any function"
        )
    if len(value) > MAX_FUNCTION_IDS:
        raise invalid(f"lists more than {MAX_FUNCTION_IDS} function ids")
    bad = [v for v in value if not isinstance(v, str) or not _FUNCTION_ID.fullmatch(v)]
    if bad:
        raise invalid(
            f"has entries that are not function ids: {', '.join(repr(b) for b in bad[:3])}; a "
            "function id is the 64 lowercase hex digits `outpost` prints at registration"
        )
    return list(dict.fromkeys(value))


def _fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise invalid("is not a fraction; use a number from 0 to 1 (1 = a slot per task)")
    return float(value)


Text = Annotated[str, BeforeValidator(_text)]
FilePath = Annotated[str, BeforeValidator(_file_path)]
ServiceUrl = Annotated[str, BeforeValidator(_url("http://", "https://"))]
AmqpUrl = Annotated[str, BeforeValidator(_url("amqp://", "amqps://"))]
Walltime = Annotated[str, BeforeValidator(_walltime)]
Accelerators = Annotated[list[str], BeforeValidator(_accelerators)]
CpuAffinity = Annotated[str, BeforeValidator(_cpu_affinity)]
FunctionIds = Annotated[list[str], BeforeValidator(_function_ids)]
Fraction = Annotated[float, BeforeValidator(_fraction)]
