"""``veena normalize TEXT [--lang LANG] [--chunks] [--lexicon FILE]``: what the voice will be
given."""

from __future__ import annotations

import argparse
import sys

from veena.platform.cli import command, config_from_args


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("text", help="text to normalize ('-' reads standard input)")
    p.add_argument("--lang", help="language hint, as a request's `language` (en, hi, te)")
    p.add_argument("--chunks", action="store_true",
                   help="print the chunks the voice generates in order, one a line")
    p.add_argument("--lexicon", action="append", default=[], metavar="FILE",
                   help="also read this pronunciation lexicon (.toml, or word<TAB>spoken form "
                        "lines), after those of the config; repeatable "
                        "(config: [[plugins.lexicon.files]])")


@command("normalize", _args)
def normalize(args: argparse.Namespace) -> int:
    """Prints the normalized text (or its chunks) exactly as a request would produce them."""
    from veena.platform.pipeline import Pipeline
    from veena.platform.plugins import build_runtime
    from veena.platform.schemas import GenerateRequest

    text = sys.stdin.read() if args.text == "-" else args.text
    config = config_from_args(args)
    if args.lexicon:  # the lexicon plugin's own setting, as a config file would give it
        files = config.plugins.setdefault("lexicon", {}).setdefault("files", [])
        files.extend({"path": path} for path in args.lexicon)
    runtime = build_runtime(config)
    job = Pipeline(runtime).prepare(GenerateRequest(text=text, language=args.lang), "cli")
    if args.chunks:
        for chunk in job.chunks:
            print(chunk.replace("\n", " "))
    else:
        print(job.normalized_text)
    return 0
