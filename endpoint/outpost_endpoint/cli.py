"""``outpost-endpoint``: configure, start, stop and inspect endpoints on this host.

Every command takes the endpoint NAME; its files live in ``$OUTPOST_HOME/endpoints/NAME/``
(default ``~/.outpost``).  Errors are printed as one clear line and exit with status 1.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import click

from outpost.credentials import normalize_url, read_credentials_file
from outpost.errors import ConfigurationError
from outpost.protocol.private_files import PRIVATE_UMASK, make_private_dir
from outpost.runtime.cli import OutpostGroup, secret_callback
from outpost.runtime.files import write_json_private
from outpost_endpoint import pidfile
from outpost_endpoint.config import EndpointConfig, load_config
from outpost_endpoint.daemon import start_daemon
from outpost_endpoint.engine.high_throughput import status_view
from outpost_endpoint.engine.high_throughput.block_records import end_leftovers_of
from outpost_endpoint.errors import (
    AlreadyRunning,
    ConfigError,
    EndpointError,
    NotRunning,
)
from outpost_endpoint.paths import EndpointPaths, list_endpoints
from outpost_endpoint.runner import run_endpoint, setup_logging
from outpost_endpoint.service_link import ServiceLink, resolve_access

TEMPLATES = sorted(
    Path(entry.name).stem
    for entry in resources.files("outpost_endpoint").joinpath("config_templates").iterdir()
    if entry.name.endswith(".yaml")
)
#: How much longer than shutdown_grace ``stop`` waits before it kills the daemon.
STOP_MARGIN = 30.0


@click.group(cls=OutpostGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="outpost")
def main() -> None:
    """Run an Outpost endpoint: a daemon on this host that receives tasks from the Outpost
    service through RabbitMQ, runs them in local worker processes and sends the results back.

    \b
    First time:
      outpost-endpoint configure mycluster --service-url https://outpost.example.org
      outpost-endpoint start mycluster        # prints the endpoint id to submit tasks to
    Then:
      outpost-endpoint status mycluster
      outpost-endpoint logs mycluster --follow
      outpost-endpoint stop mycluster

    Files live in $OUTPOST_HOME/endpoints/NAME/ (default ~/.outpost): config.yaml,
    endpoint.json (the endpoint id), endpoint.pid, endpoint.log.
    """
    # Tokens, keys, journals and logs: private to this user (docs/SECURITY.md, "Files at
    # rest").  Restored when the command ends (matters only for in-process invocations).
    previous = os.umask(PRIVATE_UMASK)
    click.get_current_context().call_on_close(lambda: os.umask(previous))


@main.command()
@click.argument("name")
@click.option(
    "--service-url",
    help="Outpost service URL [default: $OUTPOST_URL, then the url "
    "in ~/.outpost/credentials.json].",
)
@click.option(
    "--token",
    metavar="TOKEN|@FILE",
    callback=secret_callback("OUTPOST_TOKEN", url=False),
    help="API token for this endpoint, stored 0600 in its credentials.json "
    "[default: $OUTPOST_TOKEN; else the token of `outpost login` is used at start]. Prefer "
    "$OUTPOST_TOKEN or @FILE (a file holding the token): a command line shows in ps.",
)
@click.option(
    "--template",
    type=click.Choice(TEMPLATES),
    default="local",
    show_default=True,
    help="Which commented config.yaml to start from.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing config.yaml.")
def configure(
    name: str, service_url: str | None, token: str | None, template: str, force: bool
) -> None:
    """Create endpoint NAME: write a commented config.yaml to edit before `start`.

    Non-interactive, so it works in scripts and batch jobs.
    """
    paths = EndpointPaths.for_name(name)
    if paths.config.exists() and not force:
        raise ConfigError(
            f"endpoint {name!r} is already configured ({paths.config}); pass --force to "
            "overwrite it, or edit the file"
        )
    url = service_url or os.environ.get("OUTPOST_URL") or read_credentials_file().get("url")
    token = token or os.environ.get("OUTPOST_TOKEN")
    # The token is stored with the URL it is for: `start` never sends it elsewhere, even when
    # service_url is edited later (outpost.credentials.stored_token).
    stored = {"url": _service_url(url), "token": token} if url else {"token": token}
    text = resources.files("outpost_endpoint").joinpath(f"config_templates/{template}.yaml")
    content = text.read_text()
    if url:
        content = content.replace("# service_url: http://127.0.0.1:8000", f"service_url: {url}")
    make_private_dir(paths.root)
    paths.config.write_text(content)
    if token:
        write_json_private(paths.credentials, stored)
    click.echo(f"configured endpoint {name} in {paths.config}")
    if not url:
        click.echo("no service URL known yet: set service_url in config.yaml or OUTPOST_URL")
    click.echo(f"start it with: outpost-endpoint start {name}")


def _service_url(url: str) -> str:
    try:
        return normalize_url(url)
    except ConfigurationError as exc:
        raise ConfigError(f"--service-url / OUTPOST_URL: {exc}") from exc


@main.command()
@click.argument("name")
@click.option(
    "--foreground",
    is_flag=True,
    help="Stay attached; log to the terminal; Ctrl-C stops the endpoint gracefully.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Register even while the service sees another instance of this endpoint connected "
    "(e.g. on another login node sharing this home); that instance is cut off and stops.",
)
def start(name: str, foreground: bool, force: bool) -> None:
    """Register endpoint NAME with the service and serve tasks.

    Daemonizes and exits 0 once the endpoint is registered and connected to RabbitMQ,
    printing `endpoint NAME started: <endpoint-id>`; otherwise prints why it could not start.
    """
    _start(EndpointPaths.for_name(name).require(), foreground, force)


def _start(paths: EndpointPaths, foreground: bool, force: bool = False) -> None:
    running = pidfile.read_pid(paths.pidfile)
    if running is not None:
        raise AlreadyRunning(
            f"endpoint {paths.name!r} is already running (pid {running}); "
            f"use `outpost-endpoint restart {paths.name}` to restart it"
        )
    load_config(paths.config)  # report config errors here, before detaching
    if not foreground:
        endpoint_id = start_daemon(paths, force=force)
        click.echo(f"endpoint {paths.name} started: {endpoint_id}")
        return
    setup_logging()
    errors: list[str] = []

    def ready(endpoint_id: str) -> None:
        click.echo(f"endpoint {paths.name} started: {endpoint_id}")
        sys.stdout.flush()

    status = run_endpoint(paths, on_ready=ready, on_error=errors.append, force=force)
    if status != 0:
        raise EndpointError(errors[0] if errors else f"endpoint {paths.name} failed")


_stop_timeout_option = click.option(
    "--timeout",
    type=float,
    default=None,
    help="Seconds to wait for the daemon to exit before killing it "
    f"[default: shutdown_grace + {STOP_MARGIN:g} s].",
)


@main.command()
@click.argument("name")
@_stop_timeout_option
def stop(name: str, timeout: float | None) -> None:
    """Stop endpoint NAME: no new tasks, running tasks finish (up to shutdown_grace), results
    are sent; unfinished tasks return to the queue for the next start."""
    paths = EndpointPaths.for_name(name).require()
    _stop(paths, timeout)
    click.echo(f"endpoint {name} stopped")


def _stop(paths: EndpointPaths, timeout: float | None = None) -> None:
    if timeout is None:
        timeout = _shutdown_grace(paths) + STOP_MARGIN
    pid = pidfile.read_pid(paths.pidfile)
    if pid is None:
        pidfile.remove_pid(paths.pidfile, pid=-1)  # drop a stale file
        if _end_leftovers(paths):  # a killed daemon's blocks: stop ends them all the same
            return
        raise NotRunning(f"endpoint {paths.name!r} is not running")
    if not pidfile.terminate(pid, timeout):
        click.echo(f"endpoint {paths.name} did not stop within {timeout:g} s; killed it", err=True)
    pidfile.remove_pid(paths.pidfile, pid)
    _end_leftovers(paths)


def _end_leftovers(paths: EndpointPaths) -> list[str]:
    """End the blocks (and local block processes) a daemon that is gone left running: after
    ``stop`` nothing of the endpoint may remain, even if the daemon was killed."""
    try:
        ended = end_leftovers_of(load_config(paths.config).engine, paths.root / "run")
    except EndpointError as exc:
        click.echo(f"could not check for blocks left running: {exc}", err=True)
        return []
    if ended:
        click.echo(f"ended block(s) {', '.join(ended)} left by a daemon that did not release them")
    return ended


def _shutdown_grace(paths: EndpointPaths) -> float:
    try:
        return load_config(paths.config).shutdown_grace
    except EndpointError:
        return float(EndpointConfig.model_fields["shutdown_grace"].default)


@main.command()
@click.argument("name")
@_stop_timeout_option
def restart(name: str, timeout: float | None) -> None:
    """Stop endpoint NAME if it runs, then start it again (same endpoint id)."""
    paths = EndpointPaths.for_name(name).require()
    if pidfile.read_pid(paths.pidfile) is not None:
        _stop(paths, timeout)
    _start(paths, foreground=False)


@main.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead.")
def status(name: str, as_json: bool) -> None:
    """Show whether endpoint NAME runs, its pid, endpoint id and service URL, and the engine's
    blocks, managers and queued tasks (from run/status.json, written at each scaling step)."""
    paths = EndpointPaths.for_name(name).require()
    info = paths.read_info()
    pid = pidfile.read_pid(paths.pidfile)
    rows = [
        ("state", _state(paths, pid, f"running (pid {pid})")),
        ("endpoint id", info.get("endpoint_id") or "- (never registered)"),
        ("service url", info.get("service_url") or _configured_url(paths) or "-"),
        ("config", str(paths.config)),
        ("log", str(paths.log)),
    ]
    engine = status_view.read(paths.root / "run")
    if as_json:
        click.echo(json.dumps({"name": name, "running": pid is not None, "pid": pid,
                               "failed": None if pid else paths.read_failure(),
                               **{k.replace(" ", "_"): v for k, v in rows[1:]},
                               "engine": engine}, indent=1))  # fmt: skip
        return
    click.echo(f"endpoint {name}")
    for label, value in rows:
        click.echo(f"  {label + ':':<13}{value}")
    if engine is not None:
        for line in status_view.render(engine):
            click.echo(f"  {line}")


def _state(paths: EndpointPaths, pid: int | None, running: str) -> str:
    """``running...``, ``failed: <why the last run stopped by itself>`` or ``stopped``."""
    if pid is not None:
        return running
    reason = paths.read_failure()
    return f"failed: {reason}" if reason else "stopped"


def _configured_url(paths: EndpointPaths) -> str | None:
    try:
        return load_config(paths.config).service_url
    except EndpointError:
        return None


@main.command(name="list")
def list_() -> None:
    """One row per configured endpoint: name, endpoint id, running/stopped."""
    rows = [
        (
            paths.name,
            _safe_info(paths).get("endpoint_id") or "-",
            _state(paths, pidfile.read_pid(paths.pidfile), "running"),
        )
        for paths in list_endpoints()
    ]
    if not rows:
        click.echo("no endpoints configured; create one with `outpost-endpoint configure NAME`")
        return
    width = max(len("NAME"), *(len(row[0]) for row in rows))
    click.echo(f"{'NAME':<{width}}  {'ENDPOINT ID':<36}  STATE")
    for row in rows:
        click.echo(f"{row[0]:<{width}}  {row[1]:<36}  {row[2]}")


def _safe_info(paths: EndpointPaths) -> dict[str, Any]:
    try:
        return paths.read_info()
    except EndpointError:
        return {}


@main.command()
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--local-only",
    is_flag=True,
    help="Only remove the local files; leave the endpoint registered on the service.",
)
def delete(name: str, yes: bool, local_only: bool) -> None:
    """Stop endpoint NAME, delete it on the service (with its queued tasks) and remove its
    directory."""
    paths = EndpointPaths.for_name(name).require()
    endpoint_id = _safe_info(paths).get("endpoint_id")
    if not yes:
        click.confirm(f"delete endpoint {name} ({endpoint_id or 'never registered'})?", abort=True)
    if pidfile.read_pid(paths.pidfile) is not None:
        _stop(paths)
    if endpoint_id and not local_only:
        config = load_config(paths.config)
        ServiceLink(resolve_access(paths, config.service_url, config.service_ca_file)).delete(
            endpoint_id
        )
    shutil.rmtree(paths.root)
    click.echo(f"deleted endpoint {name}" + (f" ({endpoint_id})" if endpoint_id else ""))


@main.command()
@click.argument("name")
@click.option(
    "-n",
    "--lines",
    "lines",
    type=int,
    default=50,
    show_default=True,
    help="How many lines from the end to show.",
)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C to quit).")
def logs(name: str, lines: int, follow: bool) -> None:
    """Print the end of endpoint NAME's log (endpoint.log)."""
    paths = EndpointPaths.for_name(name).require()
    if not paths.log.exists():
        raise NotRunning(f"endpoint {name!r} has no log yet ({paths.log}); start it first")
    with paths.log.open("r", errors="replace") as handle:
        for line in collections.deque(handle, maxlen=max(lines, 0)):
            click.echo(line, nl=False)
        while follow:
            line = handle.readline()
            if line:
                click.echo(line, nl=False)
            else:
                time.sleep(0.5)


if __name__ == "__main__":  # pragma: no cover
    main()
