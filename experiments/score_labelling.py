r"""Scores a visual-recognition labelling study (§5.2, §7.3.2): volunteers' answers against the key.

Each volunteer labels the page that dapter-attack --attacks=visual_recognition wrote
(visual_recognition/labelling.html) and exports a CSV. This binary reads those CSVs and the
answer key kept beside the page, and prints accuracy per attribute: right answers over images
("Can't tell" and blanks are not labels), and beside it the accuracy over the Yes/No answers alone.

Example:
  dapter-score-labelling --key=runs/attack_celeba_male/visual_recognition/answer_key.csv \
      --answers=answers-alice.csv,answers-bob.csv --output=scores.json
"""

from absl import flags

from cli import runner

_KEY = flags.DEFINE_string("key", None, "The study's answer_key.csv (written beside the page).", required=True)
_ANSWERS = flags.DEFINE_list("answers", None, "The volunteers' exported answer CSVs, comma-separated.", required=True)
_OUTPUT = flags.DEFINE_string(
    "output", "", "Also write the scores here as JSON (per attribute, per labeller, overall)."
)


def main():
    from dapter_tf.attacks import labelling
    from dapter_tf.records import files

    scores = labelling.score_answers(_ANSWERS.value, _KEY.value)
    print(labelling.format_scores(scores))
    if _OUTPUT.value:
        files.write_json(_OUTPUT.value, scores)
        print(f"wrote {_OUTPUT.value}")


def run():
    runner.run(main)


if __name__ == "__main__":
    run()
