"""Work out what the container image must add to the official Airflow image.

The ``Dockerfile`` runs this inside ``apache/airflow``: it reads the project's
fully pinned ``requirements.txt`` (``uv pip compile`` output, with its
``# via`` comments) and writes

- the requirements the image does not have yet (``--out``), and
- a constraints file pinning every distribution the image already has
  (``--constraints-out``), so installing the former can never upgrade or
  downgrade Airflow or a provider the image ships: a conflict fails the build
  instead of silently replacing a tested package.

Packages of the local development stack (``pgserver``, ``moto``) are left out,
together with every dependency that only they pull in: in Docker, PostgreSQL
and MinIO are services of ``docker-compose.yaml``.

Stdlib only (it runs before anything is installed). Usage::

    python image_requirements.py requirements.txt --out extra.txt --constraints-out image.txt
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

#: Distributions only the local stack (``make run`` / tests) needs.
LOCAL_ONLY = frozenset({"pgserver", "moto"})

_PIN_RE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(?P<version>[^\s;#]+)")
_DIRECT = "-r "


def canonical(name: str) -> str:
    """Return the PEP 503 normalised form of a distribution name.

    :param name: a distribution name as written anywhere (``Foo_Bar``, ``foo.bar``).
    """
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Pin:
    """One pinned requirement of ``requirements.txt``.

    :param name: canonical distribution name.
    :param version: the pinned version.
    :param line: the requirement line as written (extras and markers kept).
    :param via: canonical names of the packages that require it; ``"-r"`` for a
        direct requirement of ``requirements.in``.
    """

    name: str
    version: str
    line: str
    via: set[str] = field(default_factory=set)


def parse_requirements(text: str, *, source: str = "requirements.txt") -> dict[str, Pin]:
    """Parse ``uv pip compile`` output into pins with their ``# via`` parents.

    :param text: the file's text.
    :param source: file name, for error messages.
    :raises ValueError: a requirement line is not ``name==version`` (naming the line).
    """
    pins: dict[str, Pin] = {}
    current: Pin | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if current is None:
                continue
            comment = line.lstrip("#").strip()
            if comment.startswith("via"):
                comment = comment[3:].strip()
            if not comment:
                continue
            if comment.startswith(_DIRECT):
                current.via.add("-r")
            elif not comment.startswith("("):  # "(pyproject.toml)" style notes
                current.via.add(canonical(comment.split()[0]))
            continue
        if line.startswith("-"):  # --index-url and friends: not a requirement
            current = None
            continue
        match = _PIN_RE.match(line)
        if not match:
            raise ValueError(f"{source}:{number}: expected a pinned 'name==version' line, got {line!r}")
        current = Pin(canonical(match.group("name")), match.group("version"), line)
        pins[current.name] = current
    return pins


def needed(pins: dict[str, Pin], skip: frozenset[str] = LOCAL_ONLY) -> set[str]:
    """Return the pins still required once ``skip`` (and what only it needs) is dropped.

    A package is needed when it is a direct requirement not in ``skip``, or when
    a needed package requires it.

    :param pins: output of :func:`parse_requirements`.
    :param skip: canonical names to leave out.
    """
    keep = {name for name, pin in pins.items() if "-r" in pin.via and name not in skip}
    changed = True
    while changed:
        changed = False
        for name, pin in pins.items():
            if name not in keep and name not in skip and pin.via & keep:
                keep.add(name)
                changed = True
    return keep


def installed_distributions() -> dict[str, str]:
    """Return ``{canonical name: version}`` of what this interpreter has installed."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonical(name), dist.version)
    return found


def plan(
    pins: dict[str, Pin], installed: dict[str, str], skip: frozenset[str] = LOCAL_ONLY
) -> tuple[list[str], list[str], list[str]]:
    """Split the requirements into what to install and what the image already has.

    :param pins: output of :func:`parse_requirements`.
    :param installed: ``{canonical name: version}`` present in the image.
    :param skip: canonical names left out (local development stack).
    :return: (requirement lines to install, constraint lines for the image's
        distributions, notes on version differences kept from the image).
    """
    keep = needed(pins, skip)
    extra = [pins[name].line for name in sorted(keep) if name not in installed]
    notes = [
        f"{name}: image has {installed[name]}, requirements.txt pins {pins[name].version} "
        "(keeping the image's, tested with Airflow's constraints)"
        for name in sorted(keep)
        if name in installed and installed[name] != pins[name].version
    ]
    constraints = [f"{name}=={version}" for name, version in sorted(installed.items())]
    return extra, constraints, notes


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("requirements", type=Path, help="pinned requirements.txt")
    parser.add_argument("--out", type=Path, required=True, help="where to write the requirements to add")
    parser.add_argument(
        "--constraints-out", type=Path, required=True, help="where to write the image's own pins"
    )
    args = parser.parse_args(argv)
    pins = parse_requirements(args.requirements.read_text(encoding="utf-8"), source=str(args.requirements))
    extra, constraints, notes = plan(pins, installed_distributions())
    args.out.write_text("".join(f"{line}\n" for line in extra), encoding="utf-8")
    args.constraints_out.write_text("".join(f"{line}\n" for line in constraints), encoding="utf-8")
    for note in notes:
        print(f"image_requirements: {note}", file=sys.stderr)
    print(
        f"image_requirements: {len(extra)} to install ({', '.join(extra) or 'none'}); "
        f"{len(notes)} kept at the image's version; {len(constraints)} image distributions constrained",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
