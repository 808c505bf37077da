"""The package's architecture, enforced: stages import only lower layers' public modules.

``plugins/events_pipeline`` is one sub-package per stage. Layers, lowest first::

    common                                  building blocks (settings, db, s3, partitions...)
    privacy, attribution                    the rules every stage applies
    ingest, export, billing, maintenance, health   the stages (one DAG each, or two)
    erasure                                 uses the export's key and manifest code
    orchestration                           Airflow glue, imported by dags/ only

A module may import its own package, or a package of a LOWER layer; never a
sibling stage (``ingest`` -> ``export``) or a higher layer (``common`` ->
``health``). Across packages only public names are imported (no ``_private``
module or name). The production package never imports the local-run tooling
(``devtools``), the tests or the DAG files.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "plugins" / "events_pipeline"
ROOT = "events_pipeline"

#: Layer of each sub-package; a new sub-package must be given one here.
LAYERS = {
    "common": 0,
    "privacy": 1,
    "attribution": 1,
    "ingest": 2,
    "export": 2,
    "billing": 2,
    "maintenance": 2,
    "health": 2,
    "erasure": 3,
    "orchestration": 4,
}
#: Top-level packages the production code must never import.
FORBIDDEN_TOP_LEVEL = ("devtools", "tests", "dags", "benchmarks", "scripts")


@dataclass(frozen=True)
class Import:
    """One ``events_pipeline`` import found in a module's source."""

    line: int
    target: str  # dotted module, e.g. "events_pipeline.export.keys"
    names: tuple[str, ...]  # names imported from it (empty for ``import x``)


def imports_of(source: str) -> Iterator[Import]:
    """Yield every import of ``source`` (module level and inside functions)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(node.lineno, alias.name, ())
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield Import(node.lineno, node.module, tuple(a.name for a in node.names))


def violations(module: str, source: str) -> list[str]:
    """Return what breaks the layering in ``source``, the text of module ``module``.

    :param module: the dotted name of the module, e.g. ``"events_pipeline.ingest.landing"``.
    :param source: its Python source.
    """
    parts = module.split(".")
    own = parts[1] if len(parts) > 2 else None
    problems = []
    for imp in imports_of(source):
        top = imp.target.split(".")[0]
        if top in FORBIDDEN_TOP_LEVEL:
            problems.append(f"{module}:{imp.line} imports {imp.target} (not production code)")
            continue
        if top != ROOT:
            continue
        target = imp.target.split(".")
        # ``from events_pipeline import <package>`` names packages; otherwise the module path does
        single = len(target) == 1
        targets = [(name, ()) for name in imp.names] if single else [(target[1], tuple(target[2:]))]
        for package, rest in targets:
            if package not in LAYERS:
                problems.append(f"{module}:{imp.line} imports {imp.target}: {package!r} has no layer")
                continue
            if package == own:
                continue
            if own is not None and LAYERS[package] >= LAYERS[own]:
                kind = "a sibling stage" if LAYERS[package] == LAYERS[own] else "a higher layer"
                problems.append(f"{module}:{imp.line} imports {imp.target}, {kind} ({own} -> {package})")
            private = [p for p in (*rest, *imp.names) if p.startswith("_") and not p.startswith("__")]
            if private:
                problems.append(f"{module}:{imp.line} imports private {private} of {imp.target}")
    return problems


def package_modules() -> Iterator[tuple[str, Path]]:
    """Yield (dotted name, path) of every module of the production package."""
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        rel = path.relative_to(PACKAGE_ROOT.parent).with_suffix("")
        yield ".".join(p for p in rel.parts if p != "__init__"), path


def test_every_sub_package_has_a_layer_and_no_module_sits_at_the_top():
    packages = {p.name for p in PACKAGE_ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(LAYERS), (
        f"sub-packages without a layer (or layers without a package): {packages ^ set(LAYERS)}"
    )
    loose = [p.name for p in PACKAGE_ROOT.glob("*.py") if p.name != "__init__.py"]
    assert not loose, f"modules outside a stage package: {loose}"


def test_the_package_imports_follow_the_layers():
    problems = [v for name, path in package_modules() for v in violations(name, path.read_text())]
    assert not problems, "import layering broken:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("events_pipeline.common.db", "from events_pipeline.health.checks import x", "a higher layer"),
        ("events_pipeline.ingest.landing", "from events_pipeline.export import keys", "a sibling stage"),
        (
            "events_pipeline.health.checks",
            "from events_pipeline.orchestration.dag_defaults import x",
            "higher",
        ),
        ("events_pipeline.erasure.requests", "from events_pipeline.export.keys import _layout", "private"),
        ("events_pipeline.export.keys", "from events_pipeline.ingest._state import x", "sibling"),
        ("events_pipeline.common.db", "def f():\n    from events_pipeline import maintenance", "higher"),
        ("events_pipeline.ingest.pipeline", "from devtools import demo_data", "not production code"),
        ("events_pipeline.ingest.pipeline", "import events_pipeline.newstage.x", "has no layer"),
    ],
)
def test_a_wrong_import_is_reported(module, source, expected):
    found = violations(module, source)
    assert found and expected in found[0], found


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("events_pipeline.ingest.pipeline", "from events_pipeline.common.db import connect"),
        ("events_pipeline.ingest.pipeline", "from events_pipeline.ingest.landing import _code"),
        ("events_pipeline.erasure.requests", "from events_pipeline.export.manifest import build_manifest"),
        ("events_pipeline.maintenance.reattribution", "from events_pipeline.privacy import sweep"),
        ("events_pipeline.common.db", "import psycopg"),
    ],
)
def test_an_allowed_import_is_not_reported(module, source):
    assert violations(module, source) == []
