"""``outpost``: the user's command line (log in, look at endpoints and tasks).

It reads ``OUTPOST_URL``/``OUTPOST_TOKEN`` and ``~/.outpost/credentials.json`` exactly like
``Client()``, and never prompts when stdin is not a terminal, so it is safe in scripts and
batch jobs.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import click

from outpost.client import Client
from outpost.credentials import normalize_url, write_credentials
from outpost.endpoint_keys import fingerprint_of, read_pins, write_pin
from outpost.errors import OutpostError, ResultNotReady, ServiceError, TaskError
from outpost.executor import Executor, unsent
from outpost.executor.wait_message import endpoint_problem
from outpost.runtime.cli import OutpostGroup, secret_callback

EPILOG = """\b
Configuration (the same as the Python SDK):
  OUTPOST_URL, OUTPOST_TOKEN   service URL and API token (--token @FILE reads a file;
                               a token typed on the command line shows in ps)
  OUTPOST_HOME                 folder of credentials.json (default ~/.outpost)

\b
Examples:
  outpost login --url https://outpost.example.org --token @~/outpost-token.txt
  outpost endpoints list
  outpost endpoints share 5e1f... --user bob --function 9c2d...   # bob may run 9c2d... there
  outpost endpoints trust 5e1f...   # accept its rotated sealing key (encrypt=True)
  outpost tasks group 3f0c...   # states of every task of an Executor's task_group_id
  outpost tasks retry --group 3f0c... --state failed   # rerun only the failures
  outpost tasks resubmit ~/.outpost/unsent/3f0c...json   # what an executor could not send
  outpost tasks result 9a1e...  # print a task's value, or its remote traceback
"""


_token_callback = secret_callback("OUTPOST_TOKEN", url=False)


class _Context:
    def __init__(self, url: str | None, token: str | None) -> None:
        self.url = url
        self.token = token

    def client(self) -> Client:
        return Client(self.url, self.token)


def _table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [[str(c) for c in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def _show(data: Any, as_json: bool, as_text: Callable[[Any], None]) -> None:
    """Print ``data`` as JSON (``--json``), else as text through ``as_text``."""
    if as_json:
        _echo_json(data)
    else:
        as_text(data)


@click.group(cls=OutpostGroup, epilog=EPILOG)
@click.option("--url", envvar="OUTPOST_URL", help="Service URL (default: $OUTPOST_URL, login).")
@click.option(
    "--token",
    envvar="OUTPOST_TOKEN",
    metavar="TOKEN|@FILE",
    callback=_token_callback,
    help="API token (default: $OUTPOST_TOKEN, login). Prefer $OUTPOST_TOKEN or @FILE (a file "
    "holding the token): a command line shows in ps.",
)
@click.version_option(package_name="outpost")
@click.pass_context
def cli(ctx: click.Context, url: str | None, token: str | None) -> None:
    """Outpost: run Python functions and shell/MPI commands on HPC machines from anywhere.

    Submit work from Python with outpost.Executor; use this command to log in and to look at
    endpoints and tasks.
    """
    ctx.obj = _Context(url, token)


@cli.command()
@click.option("--url", "login_url", help="Service URL, e.g. https://outpost.example.org.")
@click.option(
    "--token",
    "login_token",
    metavar="TOKEN|@FILE",
    callback=_token_callback,
    help="API token (from `outpost-service create-user`). Prefer $OUTPOST_TOKEN or @FILE (a "
    "file holding the token): a command line shows in ps.",
)
@click.pass_obj
def login(obj: _Context, login_url: str | None, login_token: str | None) -> None:
    """Check a service URL and token, then save them to $OUTPOST_HOME/credentials.json (0600).

    Prompts for what is missing only when stdin is a terminal; in scripts pass --url and
    --token (or set OUTPOST_URL and OUTPOST_TOKEN).
    """
    url = login_url or obj.url
    token = login_token or obj.token
    if not url or not token:
        if not sys.stdin.isatty():
            missing = " and ".join(n for n, v in (("--url", url), ("--token", token)) if not v)
            raise click.UsageError(
                f"{missing} missing and stdin is not a terminal, so outpost will not prompt: "
                "pass them, or set OUTPOST_URL and OUTPOST_TOKEN"
            )
        url = url or click.prompt("Outpost service URL")
        token = token or click.prompt("API token", hide_input=True)
    url = normalize_url(str(url))
    health = Client.anonymous(url).health()
    client = Client(url, str(token))
    client.list_endpoints()  # raises AuthenticationError for a bad token
    path = write_credentials(url, str(token))
    click.echo(f"logged in to {url} (service {health.get('version', '?')}); saved {path}")


@cli.group()
def endpoints() -> None:
    """Endpoints: the HPC login nodes that run your tasks."""


@endpoints.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def endpoints_list(obj: _Context, as_json: bool) -> None:
    """List the endpoints you may send tasks to, with their state."""
    _show(obj.client().list_endpoints(), as_json, _echo_endpoints)


def _echo_endpoints(items: list[dict[str, Any]]) -> None:
    rows = [
        (
            e.get("endpoint_id"),
            e.get("name"),
            e.get("state"),
            e.get("outstanding_tasks"),
            f"{e.get('owner')} (shared)" if e.get("shared") else "you",
        )
        for e in items
    ]
    click.echo(_table(rows, ("ENDPOINT_ID", "NAME", "STATE", "OUTSTANDING", "OWNER")))
    for e in items:  # what keeps an online endpoint from running tasks, said in full
        problem = endpoint_problem(e)
        if problem and problem.startswith("blocks failing"):
            click.echo(f"{e.get('name')} ({e.get('endpoint_id')}): {problem}")


@endpoints.command("share")
@click.argument("endpoint_id")
@click.option(
    "--user", "users", multiple=True, help="A user who may use it (repeat; none: unshare)."
)
@click.option(
    "--function", "functions", multiple=True, help="Allow only these function ids (repeat)."
)
@click.option("--any-function", is_flag=True, help="Drop the function allow-list.")
@click.pass_obj
def endpoints_share(
    obj: _Context,
    endpoint_id: str,
    users: tuple[str, ...],
    functions: tuple[str, ...],
    any_function: bool,
) -> None:
    """Share your endpoint with exactly the --user names given (they may submit to it, never
    see your tasks), and with --function allow only those function ids -- for everyone, you
    included.  Without --function or --any-function the function allow-list is kept."""
    if functions and any_function:
        raise click.UsageError("give --function ID... or --any-function, not both")
    client = obj.client()
    if functions:
        allowed: list[str] | None = list(functions)
    elif any_function:
        allowed = None
    else:
        allowed = client.get_endpoint_policy(endpoint_id).get("allowed_functions")
    _echo_policy(client.set_endpoint_policy(endpoint_id, users, allowed))


@endpoints.command("policy")
@click.argument("endpoint_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_obj
def endpoints_policy(obj: _Context, endpoint_id: str, as_json: bool) -> None:
    """Show who besides you may use your endpoint, and which functions may run on it."""
    _show(obj.client().get_endpoint_policy(endpoint_id), as_json, _echo_policy)


@endpoints.command("trust")
@click.argument("endpoint_id")
@click.option(
    "--fingerprint",
    metavar="sha256:HEX",
    help="Accept the key only if it has this fingerprint (as the endpoint logs it at start).",
)
@click.pass_obj
def endpoints_trust(obj: _Context, endpoint_id: str, fingerprint: str | None) -> None:
    """Pin the endpoint's current sealing key for Executor(encrypt=True), replacing the pin
    of an earlier key (after the endpoint's key was legitimately rotated).  Compare the printed
    fingerprint with the one the endpoint's owner sees in its endpoint.log."""
    metadata = obj.client().get_endpoint(endpoint_id).get("metadata") or {}
    text = metadata.get("sealing_public_key") if isinstance(metadata, dict) else None
    if not isinstance(text, str):
        raise click.ClickException(
            f"endpoint {endpoint_id} publishes no sealing key (an older endpoint version?)"
        )
    offered = fingerprint_of(text)
    if fingerprint is not None and fingerprint_of(fingerprint) != offered:
        raise click.ClickException(
            f"the service offers key {offered} for endpoint {endpoint_id}, not {fingerprint}; "
            "nothing was pinned"
        )
    before = read_pins().get(endpoint_id)
    path = write_pin(endpoint_id, offered)
    replaced = f" (replacing {before})" if before and before != offered else ""
    click.echo(f"pinned {offered} for endpoint {endpoint_id} in {path}{replaced}")


def _echo_policy(policy: dict[str, Any]) -> None:
    users = policy.get("allowed_users") or []
    functions = policy.get("allowed_functions")
    click.echo(f"endpoint:          {policy.get('endpoint_id')}")
    click.echo(f"shared with:       {', '.join(map(str, users)) if users else 'nobody'}")
    click.echo(
        "allowed functions: "
        + ("any" if functions is None else ", ".join(map(str, functions)) or "none")
    )
    if users and functions is None:
        click.echo(
            f"WARNING: {', '.join(map(str, users))} may run ANY code on this endpoint, as your "
            "Unix account (your files, keys and allocation): without a function allow-list a "
            "shared user sends his own functions. Their arguments must be JSON data, but the "
            "functions are theirs. To allow only some functions: outpost endpoints share "
            f"{policy.get('endpoint_id')} --user NAME --function FUNCTION_ID",
            err=True,
        )


@cli.group()
def tasks() -> None:
    """Tasks: look at states and results (task ids come from future.task_id)."""


@tasks.command("status")
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_obj
def tasks_status(obj: _Context, task_id: str, as_json: bool) -> None:
    """Show a task's state and the history of its state changes."""
    _show(obj.client().get_task(task_id), as_json, _echo_task)


def _echo_task(task: dict[str, Any]) -> None:
    for key in ("task_id", "state", "endpoint_id", "function_id", "task_group_id"):
        click.echo(f"{key + ':':15} {task.get(key)}")
    for event in task.get("events") or []:
        click.echo(f"  {event.get('at')}  {event.get('state')}")


@tasks.command("group")
@click.argument("group_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--tasks/--no-tasks", "list_tasks", default=True, help="List every task too.")
@click.pass_obj
def tasks_group(obj: _Context, group_id: str, as_json: bool, list_tasks: bool) -> None:
    """Judge a task group (an Executor's task_group_id): counts per state, the failures grouped
    by error type and message (most frequent first, with example task ids), and every task."""
    client = obj.client()
    items = client.get_task_group(group_id)
    summary = _summary(client, group_id)
    if as_json:
        _echo_json({"tasks": items, "summary": summary} if summary is not None else items)
        return
    if list_tasks:
        rows = [(t.get("task_id"), t.get("state"), t.get("retried_by")) for t in items]
        click.echo(_table(rows, ("TASK_ID", "STATE", "RETRIED_BY")) + "\n")
    counts = Counter(str(t.get("state")) for t in items)
    click.echo(f"{len(items)} tasks ({_counts(counts)})")
    if summary is None:
        return
    submitted, stored = summary.get("submitted"), summary.get("stored")
    if isinstance(submitted, int) and isinstance(stored, int) and submitted != stored:
        click.echo(f"submitted {submitted}, stored {stored}", nl=False)
        if submitted > stored:
            click.echo(
                f": {submitted - stored} task(s) accepted by Executor.submit never reached the "
                "service; the submitting script printed an unsent-tasks file to resubmit with "
                "`outpost tasks resubmit FILE`"
            )
        else:
            click.echo(" (tasks from clients that do not declare their count)")
    if summary.get("retried"):
        latest = _counts(summary.get("latest_states") or {})
        click.echo(f"latest attempts: {latest} ({summary['retried']} tasks were retried)")
    errors = summary.get("errors") or []
    if errors:
        click.echo(f"failures by error ({summary.get('error_groups', len(errors))} kinds):")
        for error in errors:
            examples = ", ".join(error.get("task_ids") or [])
            click.echo(f"  {error['count']:>6}  {error['type']}: {error['message']}")
            click.echo(f"          e.g. {examples}")
        click.echo(f"retry them with: outpost tasks retry --group {group_id} --state failed")


def _counts(counts: Any) -> str:
    return ", ".join(f"{state}: {n}" for state, n in sorted(counts.items())) or "none"


def _summary(client: Client, group_id: str) -> dict[str, Any] | None:
    """The service's outcome summary, or None from a service without that route."""
    try:
        return client.task_group_summary(group_id)
    except ServiceError as exc:
        if exc.status in (404, 405):
            return None
        raise


@tasks.command("retry")
@click.option("--group", "group_id", required=True, help="The task group (task_group_id).")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(["failed", "lost", "cancelled"]),
    help="Retry tasks whose latest attempt ended so (repeatable). [default: failed, lost]",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation on a terminal.")
@click.option("--json", "as_json", is_flag=True, help="Print the old -> new task ids as JSON.")
@click.pass_obj
def tasks_retry(
    obj: _Context, group_id: str, states: tuple[str, ...], yes: bool, as_json: bool
) -> None:
    """Resubmit a group's failed (or lost, cancelled) tasks as new tasks; the tasks that
    succeeded are not rerun.  Running it twice does not copy a task twice.  Asks for
    confirmation only on a terminal (never when stdin is not a TTY, e.g. in scripts)."""
    client = obj.client()
    chosen = list(states) or ["failed", "lost"]
    if not yes and not as_json and sys.stdin.isatty():
        summary = _summary(client, group_id) or {}
        matching = sum((summary.get("latest_states") or {}).get(s, 0) for s in chosen)
        click.confirm(f"retry {matching} task(s) of group {group_id}?", abort=True)
    pairs = client.retry_task_group(group_id, chosen)
    if as_json:
        _echo_json(pairs)
        return
    for pair in pairs:
        click.echo(f"{pair['old']} -> {pair['new']}")
    click.echo(f"retried {len(pairs)} task(s) ({', '.join(chosen)}) of group {group_id}")


@tasks.command("resubmit")
@click.argument("path", type=click.Path(dir_okay=False))
@click.pass_obj
def tasks_resubmit(obj: _Context, path: str) -> None:
    """Submit the tasks an executor saved when it gave up (the unsent-tasks FILE its error
    named, under $OUTPOST_HOME/unsent/).  Tasks the service already stored are not stored
    again, so running it twice is safe.  Prints the task group to follow them with."""
    record = unsent.read(path)
    client = obj.client()
    executor = Executor(client=client, task_group_id=record.task_group_id, encrypt=record.encrypt)
    try:
        futures = executor.resubmit_unsent(path)
    finally:
        executor.shutdown(wait=False)
    group = record.task_group_id
    click.echo(
        f"resubmitted {len(futures)} task(s) of group {group}; follow them with "
        f"`outpost tasks group {group}` or Executor(task_group_id='{group}').reload_tasks()"
    )


@tasks.command("result")
@click.argument("task_id")
@click.option(
    "--trust-endpoint",
    is_flag=True,
    help="Load the result even if it is a pickle from an endpoint that is not yours (shared "
    "with you): loading a pickle can run code, so only for endpoints whose owner you trust.",
)
@click.pass_obj
def tasks_result(obj: _Context, task_id: str, trust_endpoint: bool) -> None:
    """Print a task's value; a failed task prints its remote traceback and exits 1.

    Exits 2 when the task has no result yet.  A result from an endpoint that is not yours
    prints only if it is plain JSON data, unless --trust-endpoint is given.
    """
    try:
        value = obj.client().get_result(task_id, trust_endpoint=trust_endpoint)
    except ResultNotReady as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    except OutpostError as exc:
        if not isinstance(exc, TaskError):  # the service's or this side's error: one line
            raise
        click.echo("".join(traceback.format_exception(exc)).rstrip(), err=True)
        sys.exit(1)
    except BaseException as exc:  # the task's own exception, rebuilt here
        click.echo("".join(traceback.format_exception(exc)).rstrip(), err=True)
        sys.exit(1)
    click.echo(value if isinstance(value, str) else repr(value))


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (``outpost``)."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="outpost")


__all__ = ["cli", "main"]
