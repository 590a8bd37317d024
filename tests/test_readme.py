"""The README as a new user meets it: short, its binaries table true to setup.py, every link alive,
and its app-team path run as written on a fresh clone without ../shared."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]

# Flags the app-team test adds, and only adds, to each binary of the README's block, so that the whole
# path runs in about a minute and a half on 2 cores: fewer training and test images, one epoch, a narrower
# converter, one-epoch attackers, fewer calibration images, and no 224x224 phone-cost timing on the card.
# Nothing the README writes is changed or dropped. Release and verify keep all 500 held-out images of the
# sample (verify refuses fewer than 400 with --target and a float32 file).
TINY_FLAGS = {
    "dapter-train-target": ["--epochs=1", "--max_train=128", "--max_test=64"],
    "dapter-train-dapter": ["--epochs=1", "--max_train=128", "--max_test=64", "--eval_images=64", "--filters=4,8,8"],
    "dapter-attack-suite": [
        "--max_train=128",
        "--max_test=64",
        "--suite_symmetric_epochs=1",
        "--suite_unet_epochs=1",
        "--suite_recon_train_images=128",
    ],
    "dapter-export-tflite": ["--max_test=64", "--calibration_steps=8"],
    "dapter-release": ["--nophone_cost"],
    "dapter-verify": [],
    "dapter-convert": [],
}


def _without_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def _section(text: str, heading: str) -> str:
    """The text under the first ``## heading...`` line, up to the next ``## `` heading."""
    match = re.search(rf"^## {re.escape(heading)}.*?$(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"README has no '## {heading}' section"
    return match.group(1)


def app_team_commands() -> list[str]:
    """The commands of the first bash block under "## For an app team", continuation lines joined."""
    section = _section(README.read_text(), "For an app team")
    block = re.search(r"^```bash\n(.*?)^```", section, flags=re.M | re.S)
    assert block, "the app-team section has no ```bash block"
    script = block.group(1).replace("\\\n", "")  # What bash does with a backslash at a line's end.
    return [line.strip() for line in script.splitlines() if line.strip() and not line.strip().startswith("#")]


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def test_readme_reads_in_five_minutes():
    assert len(README.read_text().splitlines()) < 250


def test_binaries_table_names_exactly_the_console_scripts_of_setup_py():
    scripts = re.findall(r'"(dapter-[a-z0-9-]+)=', (REPO / "setup.py").read_text())
    table = _section(README.read_text(), "The binaries")
    rows = re.findall(r"^\| `(dapter-[a-z0-9-]+)` \|", table, flags=re.M)
    assert len(rows) == len(set(rows)), "a binary is listed twice"
    assert sorted(rows) == sorted(scripts)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", _without_code_blocks(page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(target)
        elif anchor and resolved.suffix == ".md":
            headings = re.findall(r"^#+ (.*)$", _without_code_blocks(resolved.read_text()), flags=re.M)
            if anchor not in {_slug(h) for h in headings}:
                broken.append(target)
    assert not broken, f"{page.name}: links to nothing: {broken}"


def test_app_team_path_runs_as_written_on_a_fresh_clone_without_shared(tmp_path):
    commands = app_team_commands()
    assert not any("../shared" in command for command in commands)
    venv_bin = Path(sys.executable).parent
    if not (venv_bin / "dapter-train-target").exists():
        pytest.skip(f"the console scripts are not installed beside {sys.executable} (make install puts them there)")
    if shutil.which("git") is None:
        pytest.skip("needs git to list what a clone holds")

    # A fresh clone: what git would check out (tracked and new, not ignored files), no runs/, and the venv
    # that `make install` creates; ../shared is absent beside it.
    clone = tmp_path / "clone"
    clone.mkdir()
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for top in sorted({path.split("/")[0] for path in listed}):
        if (REPO / top).exists():
            (clone / top).symlink_to(REPO / top)
    (clone / ".venv").symlink_to(venv_bin.parent)
    assert not (clone.parent / "shared").exists()
    env = dict(os.environ, DAPTER_SHARED_DATA=str(tmp_path / "no_shared_data"))

    used = set()
    for command in commands:
        binary = re.match(r"\.venv/bin/(dapter-[a-z0-9-]+)", command)
        if binary:
            name = binary.group(1)
            assert name in TINY_FLAGS, f"{name} is in the README's app-team path: add it to TINY_FLAGS"
            used.add(name)
            command = " ".join([command, *TINY_FLAGS[name]])
        proc = subprocess.run(
            ["bash", "-c", command], cwd=clone, env=env, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, f"{command}\nexit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert used == set(TINY_FLAGS), f"TINY_FLAGS names binaries the README no longer runs: {set(TINY_FLAGS) - used}"

    app = clone / "runs" / "app"
    assert (app / "release" / "manifest.json").is_file()
    assert len(list((app / "converted").glob("*.png"))) == len(list((app / "photos").glob("*.png"))) > 0


def test_the_examples_of_every_binary_name_only_bundles_and_results_that_exist():
    # A --help example that reads a bundle, or anything under results/, must find it in a clone (dapter-verify's
    # once named release/cifar10_resnet18, which no command writes).
    missing = []
    for path in sorted(p for top in ("cli", "experiments", "export", "bench") for p in (REPO / top).rglob("*.py")):
        text = path.read_text()
        named = re.findall(r"--bundle=([\w./-]+)", text) + re.findall(r"\b(results/[\w./-]*\w)", text)
        missing += [f"{path.relative_to(REPO)}: {name}" for name in named if not (REPO / name).exists()]
    assert not missing, missing
