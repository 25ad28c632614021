"""`tlstudy journal list|clear`: the local run journals (``.tlstudy/journal/<config hash>/``).

A journal keeps a run's params, metrics and artifacts while the server cannot take them;
rerunning the same command replays it. One the server keeps refusing (its run was deleted,
a param it will not accept) makes every rerun fail the same way: clear it, and the next run
starts afresh. Journals moved aside after a failed run (``<hash>.failed-<time>``) are listed too.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click

from tracking.logger import LoggerSettings


def _root(work_dir: str) -> Path:
    return Path(work_dir or LoggerSettings().work_dir) / "journal"


def _summary(folder: Path) -> dict:
    events = folder / "events.jsonl"
    info = {"config_hash": folder.name.split(".")[0], "folder": str(folder), "run_id": "", "run_name": "",
            "experiment": "", "events": 0, "state": "moved aside" if "." in folder.name else "pending"}
    if events.exists():
        for line in events.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            op = event.get("op")
            info["events"] += op != "ack"
            if op == "open":
                info.update(run_name=event.get("run_name", ""), experiment=event.get("experiment", ""))
            elif op == "run":
                info["run_id"] = event.get("run_id", "")
            elif op == "finished":
                info["state"] = "finished"
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    info["size_mb"] = round(size / 1e6, 1)
    return info


@click.group("journal")
def journal_group() -> None:
    """List or clear the local run journals."""


@journal_group.command("list")
@click.option("--work-dir", default="", help="Folder holding journal/ (default: ./.tlstudy).")
def list_cmd(work_dir: str) -> None:
    """One line per journal: config hash, state, run, experiment, events, size."""
    root = _root(work_dir)
    folders = sorted(p for p in root.glob("*") if p.is_dir()) if root.exists() else []
    if not folders:
        click.echo(f"no journals under {root}")
        return
    for folder in folders:
        s = _summary(folder)
        click.echo(f"{s['config_hash']}  {s['state']:<11} run {s['run_id'] or '-':<32} {s['run_name']!r} "
                   f"experiment {s['experiment']!r}  {s['events']} events  {s['size_mb']} MB  {folder}")
    click.echo("clear one with `tlstudy journal clear --config-hash H` (its unsent results are lost)")


@journal_group.command("clear")
@click.option("--config-hash", "config_hash", default="", help="The journal to remove (see `tlstudy journal list`).")
@click.option("--all", "clear_all", is_flag=True, help="Remove every journal.")
@click.option("--work-dir", default="", help="Folder holding journal/ (default: ./.tlstudy).")
def clear_cmd(config_hash: str, clear_all: bool, work_dir: str) -> None:
    """Remove journals; the next run of their configurations starts afresh."""
    import fcntl

    if bool(config_hash) == clear_all:
        raise click.ClickException("give exactly one of --config-hash H or --all")
    root = _root(work_dir)
    folders = [p for p in (root.glob("*") if root.exists() else []) if p.is_dir()
               and (clear_all or p.name == config_hash or p.name.startswith(f"{config_hash}."))]
    if not folders:
        if clear_all:
            click.echo(f"no journals under {root}")
            return
        raise click.ClickException(f"no journal {config_hash!r} under {root} (see `tlstudy journal list`)")
    for folder in sorted(folders):
        lock = folder / ".lock"
        if lock.exists():
            with open(lock, "a+") as fh:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise click.ClickException(f"journal {folder} is in use by a running process; stop it first") from None
                shutil.rmtree(folder)
        else:
            shutil.rmtree(folder)
        click.echo(f"removed {folder}")
