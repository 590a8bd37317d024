"""The import rules of the layout (WORKSPACE.md): each part of the data flow imports only what comes before it.

Every import of every module is read with ``ast`` (function-local ones too), and the rules are
checked on what each module reaches, directly or through other modules of the project. Nothing is
imported, so the test needs no TensorFlow and runs in a second.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("dapter_tf", "cli", "experiments", "export", "bench", "android_app")
# Modules every part may import: one error type, the pixel conventions, the figures' set-up (none imports
# anything else of the project).
LEAVES = ("dapter_tf.cluster", "dapter_tf.errors", "dapter_tf.figures", "dapter_tf.pixels")
# The release: what builds and verifies a bundle a phone app ships (its package, but for VERIFY).
RELEASE = ("export.release",)
# The one binary of export/ that runs attack code: dapter-verify --attacks re-runs the reconstruction
# attack a card claims (its figure is re-measured, not trusted).
VERIFY = "export.release.verify"


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, module: str) -> set[str]:
    """Every module ``source`` names in an import (``from a import b`` names ``a`` and ``a.b``)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{module}: the project uses no relative imports"
            base = node.module
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def project_graph(sources: dict[str, str]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (names that are attributes, not modules, are dropped)."""
    graph = {}
    for module, source in sources.items():
        reached = set()
        for name in imports_of(source, module):
            # A name resolves to the longest prefix that is a module of the project.
            parts = name.split(".")
            for n in range(len(parts), 0, -1):
                if ".".join(parts[:n]) in sources:
                    reached.add(".".join(parts[:n]))
                    break
            if name.split(".")[0] == "absl":
                reached.add(name)
        graph[module] = reached
    return graph


def reach(graph: dict[str, set[str]], module: str) -> set[str]:
    """Every module ``module`` imports, directly or through project modules (importing a package's module
    also runs the package's ``__init__``)."""
    seen, todo = set(), [module]
    while todo:
        for name in graph.get(todo.pop(), ()):
            parents = [".".join(name.split(".")[:n]) for n in range(1, name.count(".") + 1)]
            for m in [name, *parents]:
                if m not in seen and m != module:
                    seen.add(m)
                    todo.append(m)
    return seen


def within(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def violations(sources: dict[str, str]) -> list[str]:
    """Every broken rule, as ``module -> what it must not import: rule``."""
    graph = project_graph(sources)
    broken = []

    def forbid(modules, forbidden, rule, allowed=()):
        for module in modules:
            for name in sorted(reach(graph, module)):
                # A package's own __init__ runs on any import from it; the root's imports only errors.
                if within(name, *forbidden) and not within(name, *allowed) and name not in PACKAGES:
                    broken.append(f"{module} -> {name}: {rule}")

    library = [m for m in sources if within(m, "dapter_tf")]
    forbid(
        library,
        ("absl.flags", "cli", "experiments", "export", "bench", "android_app"),
        "the library imports no flags module and no binary",
    )
    forbid(
        [m for m in library if within(m, "dapter_tf.models")],
        ("dapter_tf.train", "dapter_tf.data", "dapter_tf.losses"),
        "models import nothing of training, data or losses",
    )
    forbid([m for m in library if within(m, "dapter_tf.data")], ("dapter_tf.models",), "data imports no model")
    forbid(
        [m for m in library if within(m, "dapter_tf.losses", "dapter_tf.metrics", *LEAVES)],
        ("dapter_tf",),
        "losses and metrics import nothing of the project but the leaf modules",
        LEAVES,
    )
    forbid(
        [m for m in library if within(m, "dapter_tf.records")],
        ("dapter_tf.train", "dapter_tf.attacks", "dapter_tf.models", "dapter_tf.data", "dapter_tf.analysis"),
        "records are read without the code that wrote them",
    )
    export = [m for m in sources if within(m, "export") and m != VERIFY]
    forbid(
        export,
        ("dapter_tf.attacks", "dapter_tf.train", "dapter_tf.defences", "experiments"),
        "export imports nothing of attacks or training",
    )
    forbid(
        [m for m in export if within(m, *RELEASE) and m != VERIFY],
        ("dapter_tf.models.targets", "dapter_tf.attacks"),
        "the release carries no target or attack code",
    )
    binaries_only = [
        m
        for m in sources
        if not within(m, "experiments", "bench", "android_app.tools")
        and not (within(m, "export") and "DEFINE_" in sources[m])
        and not within(m, "cli")
    ]
    forbid(binaries_only, ("cli",), "only binaries import the command-line layer")
    forbid([m for m in sources if not within(m, "experiments")], ("experiments",), "no module imports a binary")
    return broken


def part_of(module: str) -> str:
    """The part of the data flow a module belongs to: a package (or module) of dapter_tf/, a job of export/
    (tflite, benchmark, release, convert), or a top folder."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] in ("dapter_tf", "export") and len(parts) > 1 else parts[0]


def part_circles(sources: dict[str, str]) -> list[str]:
    """Every circle of imports between parts, as ``a -> b -> a (a.module imports b.module, ...)``.

    Two parts that import each other (directly, or through other parts) have no order: neither can be
    read, tested or changed without the other.
    """
    edges = {}
    for module, names in project_graph(sources).items():
        for name in names:
            a, b = part_of(module), part_of(name)
            if a != b and name in sources and a not in ("dapter_tf", "export") and b not in ("dapter_tf", "export"):
                edges.setdefault(a, {}).setdefault(b, set()).add(f"{module} imports {name}")
    # Each step of a circle named by one import, the first in order of the most specific name.
    edges = {a: {b: min(why, key=lambda w: (-w.count("."), w)) for b, why in out.items()} for a, out in edges.items()}
    circles, seen = [], set()

    def walk(path):
        for nxt in sorted(edges.get(path[-1], {})):
            if nxt == path[0]:
                ring = path + [nxt]
                key = frozenset(path)
                if key not in seen:
                    seen.add(key)
                    why = ", ".join(edges[x][y] for x, y in zip(ring, ring[1:]))
                    circles.append(f"{' -> '.join(ring)} ({why})")
            elif nxt not in path and nxt > path[0]:  # Each circle once, from its smallest part.
                walk(path + [nxt])

    for start in sorted(edges):
        walk([start])
    return circles


def read_sources() -> dict[str, str]:
    sources = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            sources[module_name(path)] = path.read_text()
    return sources


def test_every_import_keeps_the_layouts_rules():
    sources = read_sources()
    assert len(sources) > 80  # The whole tree was read.
    broken = violations(sources)
    assert not broken, f"{len(broken)} imports cross a forbidden line:\n" + "\n".join(broken)


# Each row: a module | an import added to it | the rule that must catch it.
ADDED_IMPORTS = """
dapter_tf.models.converter | from dapter_tf.train import config | models import nothing of training
dapter_tf.models.targets | from dapter_tf import losses | models import nothing of training
dapter_tf.data.tasks | from dapter_tf.models import converter | data imports no model
dapter_tf.losses | from dapter_tf import metrics | losses and metrics import nothing
dapter_tf.metrics | import dapter_tf.data | losses and metrics import nothing
dapter_tf.evaluate | from absl import flags | the library imports no flags module
dapter_tf.train.loop | from cli import flags_lib | the library imports no flags module
export.tflite.contract | from dapter_tf.attacks import suite | export imports nothing of attacks
export.tflite.parity | from dapter_tf.train import strategy | export imports nothing of attacks or training
export.release.card | from dapter_tf.models import targets | the release carries no target
dapter_tf.records.suite | from dapter_tf.attacks import reconstruction | records are read without
"""


@pytest.mark.parametrize("module, line, rule", [row.split(" | ") for row in ADDED_IMPORTS.strip().splitlines()])
def test_an_added_forbidden_import_is_caught_naming_the_rule(module, line, rule):
    sources = read_sources()
    sources[module] = line + "\n" + sources[module]
    found = violations(sources)
    assert found, f"{line!r} in {module} broke no rule"
    assert any(v.startswith(f"{module} -> ") and rule in v for v in found), found


def test_a_forbidden_import_inside_a_function_or_through_another_module_is_caught():
    sources = read_sources()
    # Function-local: export.tflite.contract -> dapter_tf.attacks.
    sources["export.tflite.contract"] += "\n\ndef _late():\n    from dapter_tf import attacks\n"
    # Indirect: export.tflite.modes -> dapter_tf.evaluate -> dapter_tf.train.
    sources["dapter_tf.evaluate"] += "\n\ndef _late():\n    from dapter_tf.train import loop\n"
    found = violations(sources)
    assert any(v.startswith("export.tflite.contract -> dapter_tf.attacks") for v in found), found
    assert any(v.startswith("export.tflite.parity -> dapter_tf.train") for v in found), found


def test_no_two_parts_import_each_other():
    circles = part_circles(read_sources())
    assert not circles, f"{len(circles)} import circles between parts:\n" + "\n".join(circles)


def test_an_import_that_closes_a_circle_is_caught_naming_both_modules():
    sources = read_sources()
    # The attacks importing the λ study, which attacks: the circle this rule was written against.
    sources["dapter_tf.attacks.reconstruction"] += "\n\ndef _late():\n    from dapter_tf.analysis import lambda_study\n"
    circles = part_circles(sources)
    assert len(circles) == 1, circles
    assert circles[0].startswith("dapter_tf.analysis -> dapter_tf.attacks -> dapter_tf.analysis (")
    assert "dapter_tf.attacks.reconstruction imports dapter_tf.analysis.lambda_study" in circles[0]
    # Through a third part: train -> analysis -> attacks -> train.
    sources = read_sources()
    sources["dapter_tf.train.loop"] += "\n\ndef _late():\n    from dapter_tf.analysis import report\n"
    assert any(c.startswith("dapter_tf.analysis -> dapter_tf.train -> dapter_tf.analysis") for c in part_circles(sources))


def test_the_jobs_of_export_import_each_other_in_one_order():
    sources = read_sources()
    jobs = {part_of(m) for m in sources if within(m, "export") and m != "export"}
    assert jobs == {"export.tflite", "export.benchmark", "export.release", "export.convert"}
    # The TFLite export importing the model card, which reads the export's output contract.
    sources["export.tflite.contract"] += "\n\ndef _late():\n    from export.release import card\n"
    two_step = [c for c in part_circles(sources) if c.startswith("export.release -> export.tflite -> export.release (")]
    assert len(two_step) == 1, part_circles(sources)
    assert "export.tflite.contract imports export.release.card" in two_step[0]
