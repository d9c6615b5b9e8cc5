"""Every command a shipped study's header gives runs as written: the CLI accepts its flags, and a
cluster command names the tracking server and storage a remote cluster needs (a ray:// head on
another machine refuses local ones, sweeper.driver.cluster_address)."""

from __future__ import annotations

import shlex
from pathlib import Path

import click
import pytest

from sweeper.cli import cli
from sweeper.driver.cluster_address import is_local_storage, is_ray_client
from sweeper.record.store import TrackingStore

SWEEPS = Path(__file__).resolve().parents[1] / "sweeps"


def header_commands(path: Path) -> list[list[str]]:
    """The `sweeper ...` command lines of a study's header, continuation lines joined; a Ray job's
    entrypoint (`ray job submit ... -- sweeper run ...`) as `sweeper run ... --ray-job`, the
    marker that its trials run on a remote cluster."""
    commands, current = [], None
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if current is not None:
            current += " " + text.rstrip("\\").strip()
            if not text.endswith("\\"):
                commands.append(as_sweeper(current))
                current = None
        elif (text.startswith("sweeper ") or text.startswith("ray job submit ")) and " " in text:
            if text.endswith("\\"):
                current = text.rstrip("\\").strip()
            else:
                commands.append(as_sweeper(text))
    return commands


def as_sweeper(line: str) -> list[str]:
    argv = shlex.split(line)
    if argv[:3] == ["ray", "job", "submit"]:
        return argv[argv.index("--") + 1:] + [JOB]
    return argv


JOB = "--ray-job"


CASES = [(p, c) for p in sorted(SWEEPS.glob("*.yaml")) for c in header_commands(p)]


def test_the_papers_study_gives_its_commands():
    assert any(c[:2] == ["sweeper", "run"] and ("--address" in c or JOB in c) for _, c in CASES)


@pytest.mark.parametrize(("path", "argv"), CASES, ids=[f"{p.stem}:{' '.join(c[1:3])}" for p, c in CASES])
def test_a_header_command_is_accepted_as_written(path, argv):
    assert argv[0] == "sweeper"
    remote = JOB in argv
    argv = [a for a in argv if a != JOB]
    command = cli.commands[argv[1]]
    with click.Context(cli) as parent:
        ctx = command.make_context(argv[1], argv[2:], parent=parent)  # raises on an unknown flag or a missing value
    spec = ctx.params.get("spec")
    if spec is not None:
        assert (SWEEPS.parent / spec).is_file(), spec
    address = ctx.params.get("address")
    if remote or is_ray_client(address):
        assert ctx.params["tracking_uri"] and not TrackingStore.parse(ctx.params["tracking_uri"]).is_local
        assert not is_local_storage(ctx.params["storage"])
