"""How well the offline path reads the generated archive, on seeds nobody tuned on.

Two figures, both from our own code with no server:

* **extraction**: ``make_samples(count, seed)`` for each ``--seeds`` value, then
  :func:`taskflow_server.pdf.quality.evaluate_folder` (title precision and recall, body
  similarity of matched titles) against the ground truth written beside each PDF;
* **summaries**: ``--stories`` stories from :func:`taskflow_server.pdf.stories.write_story`,
  summarized offline; the share whose summary opens with the story's lead sentence, and the
  share whose summary names at least one of the headline's key nouns.

Run::

    python benchmarks/bench_quality.py                       # seeds 7 and 101, 20 issues each
    python benchmarks/bench_quality.py --seeds 3 4 --count 10 --stories 500
"""

from __future__ import annotations

import argparse
import random
import tempfile
from collections.abc import Sequence

from taskflow_server.llm.offline import split_sentences, summarize_text
from taskflow_server.pdf.quality import evaluate_folder
from taskflow_server.pdf.samples import make_samples
from taskflow_server.pdf.stories import write_story


def extraction(seed: int, count: int) -> tuple[float, float, float]:
    """Title precision, title recall and body similarity over ``count`` fresh issues."""
    with tempfile.TemporaryDirectory() as folder:
        make_samples(folder, count=count, seed=seed)
        quality = evaluate_folder(folder)
    return quality.title_precision, quality.title_recall, quality.body_similarity


def summaries(stories: int, seed: int) -> tuple[float, float]:
    """Share of summaries that open with the lead, and that name a key noun of the headline."""
    rng = random.Random(seed)
    leads = nouns = 0
    for _ in range(stories):
        story = write_story(rng, "2024-05-14")
        text = "\n\n".join(" ".join(words) for words in story.paragraphs)
        summary = summarize_text(text, sentences=2)
        first = split_sentences(text)[0]
        leads += summary.startswith(first)
        lowered = summary.lower()
        nouns += any(noun.lower() in lowered for noun in story.key_nouns)
    return leads / stories, nouns / stories


def main(argv: Sequence[str] | None = None) -> int:
    """Print both tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 101])
    parser.add_argument("--count", type=int, default=20, help="issues per seed")
    parser.add_argument("--stories", type=int, default=300)
    args = parser.parse_args(argv)
    print("| seed | issues | title precision | title recall | body similarity |")
    print("|---:|---:|---:|---:|---:|")
    for seed in args.seeds:
        precision, recall, body = extraction(seed, args.count)
        print(f"| {seed} | {args.count} | {precision:.3f} | {recall:.3f} | {body:.3f} |")
    lead, noun = summaries(args.stories, seed=args.seeds[0])
    print()
    print(
        f"summaries of {args.stories} stories: open with the lead {lead:.1%}, "
        f"name a headline key noun {noun:.1%}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
