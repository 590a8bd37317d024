"""The visual-recognition attack (§5.2, §7.3.2) as a labelling-study kit, and its scorer.

``write_kit`` picks positive and negative converted images per attribute (the paper: 20 and 20),
shuffles them onto one self-contained HTML page and keeps the true answers in a separate CSV key.
A volunteer opens the page in any browser (no server, no network), answers Yes, No or Can't tell
for each image, and exports a CSV. ``score_answers`` reads the volunteers' CSVs and the key and
reports accuracy per attribute.

Accuracy counts only right answers: "Can't tell" and unanswered images count as not labelled,
which is how the paper's "about 0 %" reads (guessing alone would be right half the time, so the
accuracy over the Yes/No answers is reported beside it).
"""

import base64
import csv
import hashlib
import html
import io
import json
import os

import numpy as np
import PIL.Image

from dapter_tf.errors import DapterError

ANSWERS = ("yes", "no", "unsure")
ANSWER_COLUMNS = ("item", "attribute", "answer", "labeller")
KEY_COLUMNS = ("item", "attribute", "truth", "source_index", "source_name")
PAGE_FILE = "labelling.html"
KEY_FILE = "answer_key.csv"


def pick_items(labels: dict, attributes, per_class: int, seed: int) -> list[dict]:
    """Picks ``per_class`` positive and ``per_class`` negative images per attribute, shuffled together.

    An image is used for one attribute only, so every image on the page asks one question.

    Args:
        labels: Attribute -> N binary labels of the candidate images.
        attributes: The attributes asked about.
        per_class: Images per attribute and answer.
        seed: Seeds the choice and the order.

    Returns:
        One dict per page item, in page order: ``item`` (``"item_001"``...), ``attribute``,
        ``truth`` (``"yes"``/``"no"``) and ``index`` (into the candidates).

    Raises:
        DapterError: if an attribute has too few positive or negative images left.
    """
    rng = np.random.default_rng(seed)
    used = np.zeros(len(next(iter(labels.values()))), bool)
    chosen = []
    for attribute in attributes:
        values = np.asarray(labels[attribute])
        for truth, value in (("yes", 1), ("no", 0)):
            pool = np.flatnonzero((values == value) & ~used)
            if len(pool) < per_class:
                raise DapterError(
                    f"{attribute}: only {len(pool)} unused {'positive' if value else 'negative'} images, "
                    f"{per_class} needed; lower per_class or give more images"
                )
            picked = rng.choice(pool, per_class, replace=False)
            used[picked] = True
            chosen += [(attribute, truth, int(i)) for i in picked]
    order = rng.permutation(len(chosen))
    width = len(str(len(chosen)))
    return [
        {"item": f"item_{k + 1:0{width}d}", "attribute": chosen[j][0], "truth": chosen[j][1], "index": chosen[j][2]}
        for k, j in enumerate(order)
    ]


def _question(attribute: str) -> str:
    return attribute.replace("_", " ").lower()


def _png_data_uri(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    PIL.Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; max-width: 70em; }
.items { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; padding: .5em; border: 2px solid #ccc; border-radius: 6px; width: 10em; text-align: center; }
figure.answered { border-color: #4a4; background: #f3fbf3; }
figure img { width: 8em; height: 8em; image-rendering: pixelated; }
figcaption { margin: .3em 0; min-height: 2.6em; }
button.choice { margin: .1em; }
button.choice[aria-pressed="true"] { background: #264; color: white; }
#bar { position: sticky; top: 0; background: white; padding: .5em 0; border-bottom: 1px solid #ddd; }
textarea { width: 100%; height: 8em; margin-top: 1em; }
"""

# Answers live in the page's localStorage as well, so closing the tab or reloading loses nothing.
_SCRIPT = """
const PAGE = document.body.dataset.page;
const store = JSON.parse(localStorage.getItem(PAGE) || "{}");
const items = Array.from(document.querySelectorAll("figure.item"));
const labeller = document.getElementById("labeller");
labeller.value = store.__labeller__ || "";
function show() {
  let answered = 0;
  for (const fig of items) {
    const answer = store[fig.dataset.item];
    fig.classList.toggle("answered", !!answer);
    if (answer) answered++;
    for (const b of fig.querySelectorAll("button.choice")) {
      b.setAttribute("aria-pressed", String(b.dataset.answer === answer));
    }
  }
  document.getElementById("progress").textContent = answered + " / " + items.length + " answered";
}
function save() { localStorage.setItem(PAGE, JSON.stringify(store)); show(); }
for (const fig of items) {
  for (const b of fig.querySelectorAll("button.choice")) {
    b.addEventListener("click", () => { store[fig.dataset.item] = b.dataset.answer; save(); });
  }
}
labeller.addEventListener("input", () => { store.__labeller__ = labeller.value; save(); });
function csvField(s) { return /[",\\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s; }
document.getElementById("export").addEventListener("click", () => {
  const rows = ["item,attribute,answer,labeller"];
  for (const fig of items) {
    rows.push([fig.dataset.item, fig.dataset.attribute, store[fig.dataset.item] || "", labeller.value]
      .map(csvField).join(","));
  }
  const text = rows.join("\\n") + "\\n";
  document.getElementById("csv").value = text;
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([text], {type: "text/csv"}));
  link.download = "answers" + (labeller.value ? "-" + labeller.value.replace(/[^A-Za-z0-9_-]/g, "_") : "") + ".csv";
  document.body.appendChild(link);
  link.click();
  link.remove();
});
show();
"""


def render_page(items: list[dict], images: np.ndarray, title: str) -> str:
    """The labelling page: every image inlined, the questions, and the CSV export; no answers in it.

    Args:
        items: From ``pick_items`` (``truth`` is not written to the page).
        images: uint8 N x H x W x 3 candidates ``items`` index into.
        title: The page's heading.
    """
    page_id = hashlib.sha256(json.dumps([(i["item"], i["index"]) for i in items]).encode()).hexdigest()[:16]
    figures = []
    for item in items:
        choices = "".join(
            f'<button class="choice" data-answer="{a}" aria-pressed="false">{label}</button>'
            for a, label in (("yes", "Yes"), ("no", "No"), ("unsure", "Can't tell"))
        )
        figures.append(
            f'<figure class="item" id="{item["item"]}" data-item="{item["item"]}" '
            f'data-attribute="{html.escape(item["attribute"])}">'
            f'<img src="{_png_data_uri(images[item["index"]])}" alt="{item["item"]}">'
            f"<figcaption>{item['item']}: <b>{html.escape(_question(item['attribute']))}</b>?</figcaption>"
            f"{choices}</figure>"
        )
    attributes = sorted({i["attribute"] for i in items})
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_STYLE}</style></head>
<body data-page="dapter-labelling-{page_id}">
<h1>{html.escape(title)}</h1>
<p>Each of the {len(items)} images below asks about one attribute
({html.escape(", ".join(_question(a) for a in attributes))}). For each, answer <b>Yes</b> if the image
shows it, <b>No</b> if it does not, or <b>Can't tell</b>. Your answers are kept in this browser as you
go. When you are done, press <b>Export answers</b> and send the CSV file it saves.</p>
<div id="bar"><label>Your name or code: <input id="labeller" size="12"></label>
<span id="progress"></span> <button id="export">Export answers (CSV)</button></div>
<div class="items">
{chr(10).join(figures)}
</div>
<textarea id="csv" readonly placeholder="The exported CSV also appears here."></textarea>
<script>{_SCRIPT}</script>
</body></html>
"""


def write_kit(
    images: np.ndarray, labels: dict, workdir: str, attributes, per_class: int, seed: int, title: str, names=None
) -> tuple[str, str, int]:
    """Writes the labelling page and its answer key.

    Args:
        images: uint8 converted images to pick from.
        labels: Attribute -> their binary labels.
        workdir: Where ``labelling.html`` and ``answer_key.csv`` go.
        attributes: The attributes asked about.
        per_class: Positive and negative images per attribute.
        seed: Seeds the choice and order.
        title: The page's heading.
        names: The candidates' file names, recorded in the key (optional).

    Returns:
        (page path, key path, number of items).
    """
    items = pick_items(labels, attributes, per_class, seed)
    os.makedirs(workdir, exist_ok=True)
    page = os.path.join(workdir, PAGE_FILE)
    with open(f"{page}.tmp", "w") as f:
        f.write(render_page(items, images, title))
    os.replace(f"{page}.tmp", page)
    key = os.path.join(workdir, KEY_FILE)
    with open(f"{key}.tmp", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(KEY_COLUMNS)
        for item in items:
            name = "" if names is None else str(names[item["index"]])
            writer.writerow([item["item"], item["attribute"], item["truth"], item["index"], name])
    os.replace(f"{key}.tmp", key)
    return page, key, len(items)


def _read_csv(path: str, columns, what: str) -> list[dict]:
    if not os.path.isfile(path):
        raise DapterError(f"{what} not found: {path}")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or ())]
        if missing:
            raise DapterError(f"{path}: not {what}: no column(s) {', '.join(missing)}")
        return list(reader)


def read_key(path: str) -> dict:
    """Reads an answer key: item -> (attribute, truth)."""
    key = {}
    for row in _read_csv(path, KEY_COLUMNS, "an answer key"):
        if row["truth"] not in ("yes", "no"):
            raise DapterError(f"{path}: {row['item']} has truth {row['truth']!r}; expected yes or no")
        key[row["item"]] = (row["attribute"], row["truth"])
    return key


def read_answers(path: str, key: dict) -> tuple[str, dict]:
    """Reads one volunteer's exported CSV: (labeller, item -> answer), checked against the key.

    Raises:
        DapterError: on an item the key lacks, an attribute that differs from the key's, an answer
            other than yes, no, unsure or blank, or an item answered twice.
    """
    answers, labellers = {}, set()
    for n, row in enumerate(_read_csv(path, ANSWER_COLUMNS, "an answer file"), start=2):
        item, answer = row["item"], row["answer"].strip().lower()
        if item not in key:
            raise DapterError(f"{path}:{n}: {item!r} is not an item of this study's answer key")
        if row["attribute"] != key[item][0]:
            raise DapterError(f"{path}:{n}: {item} asks about {key[item][0]}, not {row['attribute']!r}")
        if answer and answer not in ANSWERS:
            raise DapterError(f"{path}:{n}: answer {row['answer']!r}; expected one of {', '.join(ANSWERS)} or blank")
        if item in answers:
            raise DapterError(f"{path}:{n}: {item} is answered twice")
        answers[item] = answer
        labellers.add(row["labeller"])
    labeller = "/".join(sorted(x for x in labellers if x)) or os.path.basename(path)
    return labeller, answers


def _tally(key: dict, answers: dict, attributes) -> dict:
    out = {}
    for attribute in attributes:
        items = [i for i, (a, _) in key.items() if a == attribute]
        given = [answers.get(i, "") for i in items]
        correct = sum(g == key[i][1] for i, g in zip(items, given))
        decided = sum(g in ("yes", "no") for g in given)
        out[attribute] = {
            "items": len(items),
            "correct": correct,
            "yes_or_no": decided,
            "unsure": sum(g == "unsure" for g in given),
            "blank": sum(g == "" for g in given),
            "accuracy": correct / len(items),
            "accuracy_of_yes_or_no": correct / decided if decided else None,
        }
    return out


def score_answers(answer_paths, key_path: str) -> dict:
    """Scores volunteers' answer files against the study's key.

    Returns:
        ``{"attributes": {attribute: tally}, "labellers": {labeller: {attribute: tally}},
        "overall": tally}`` where a tally holds ``items``, ``correct``, ``yes_or_no``, ``unsure``,
        ``blank``, ``accuracy`` (right answers over items) and ``accuracy_of_yes_or_no``. The
        per-attribute and overall tallies pool every labeller's answers.
    """
    if not answer_paths:
        raise DapterError("no answer files to score")
    key = read_key(key_path)
    attributes = sorted({a for a, _ in key.values()})
    labellers, pooled_key, pooled_answers = {}, {}, {}
    for k, path in enumerate(answer_paths):
        labeller, answers = read_answers(path, key)
        if labeller in labellers:
            labeller = f"{labeller} ({os.path.basename(path)})"
        labellers[labeller] = _tally(key, answers, attributes)
        pooled_key.update({(k, i): v for i, v in key.items()})
        pooled_answers.update({(k, i): a for i, a in answers.items()})
    overall_key = {i: ("all", t) for i, (_, t) in pooled_key.items()}
    return {
        "attributes": _tally(pooled_key, pooled_answers, attributes),
        "labellers": labellers,
        "overall": _tally(overall_key, pooled_answers, ["all"])["all"],
    }


def format_scores(scores: dict) -> str:
    """The scores as a plain-text table, one row per attribute and the pooled total."""
    lines = [
        f"{'attribute':<20} {'items':>6} {'correct':>8} {'unsure':>7} {'blank':>6} {'accuracy':>9} {'of yes/no':>10}"
    ]
    rows = list(scores["attributes"].items()) + [("all", scores["overall"])]
    for name, t in rows:
        of_decided = "n/a" if t["accuracy_of_yes_or_no"] is None else f"{t['accuracy_of_yes_or_no']:.3f}"
        lines.append(
            f"{name:<20} {t['items']:>6} {t['correct']:>8} {t['unsure']:>7} {t['blank']:>6} "
            f"{t['accuracy']:>9.3f} {of_decided:>10}"
        )
    lines.append(f"labellers: {', '.join(scores['labellers'])}")
    return "\n".join(lines)
