"""Normalization + chunking of 50,000 characters of mixed English/Hindi/Telugu text, one core;
the pronunciation lexicon empty (as most servers run it) and with 1,000 entries.

Run: .venv/bin/python tests/performance/bench_text.py
Prints a table (best of N runs, milliseconds) and exits non-zero if the total is over 50 ms.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

from veena.platform.job import Job
from veena.plugins.chunk.sentences import chunk
from veena.plugins.core import UnicodeNormalizer
from veena.plugins.lexicon import LexiconNormalizer
from veena.plugins.lexicon.matcher import Entry, Matcher
from veena.plugins.normalize import TextNormalizer

DENSE = (
    "Dr. Rao paid ₹2,50,000 on 15/08/2024 at 10:30 AM for 3.5 kg of saffron <laugh> and "
    "called +91 98765 43210 to confirm. Visit https://www.veena.ai/docs or mail help@veena.ai! ",
    "मेरे पास ₹2.5 करोड़ हैं और मैं 21वीं सदी में 1,00,000 लोगों से मिला। कल सुबह 10:30 बजे "
    "तापमान -5°C था, 50% लोग घर पर थे [sighs] । ",
    "నేను 1947లో పుట్టాను. ఈ రోజు 25 కిలోమీటర్లు నడిచాను, ధర ₹500 మాత్రమే. "
    "మీరు ఎప్పుడు వస్తారు? (laughing) ",
    "The meeting on Aug 5, 2024 ran 10-20 min over; approx. 1,234,567 people watched & 12.5% "
    "shared it. The 1990s were different, weren't they? ",
)
"""Every sentence has something to expand: the worst case (one rewrite per ~30 characters)."""
PROSE = (
    "This is plain prose with no numbers at all, the kind most of a long text is made of, "
    "sentence after sentence, with commas and a question now and then? Yes. ",
    "यह एक साधारण अनुच्छेद है जिसमें कोई संख्या नहीं है, और लंबे पाठ का अधिकांश हिस्सा ऐसा ही "
    "होता है। क्या आप सहमत हैं? ",
    "ఇది సంఖ్యలు లేని సాధారణ వాక్యం, పొడవైన పాఠంలో ఎక్కువ భాగం ఇలాగే ఉంటుంది. మీరు ఏమంటారు? ",
)
TYPICAL = DENSE + PROSE * 2
"""Mixed en/hi/te text where about a third of the paragraphs carry numbers, money, dates,
URLs or tags: closer to a real long-form request."""


def mixed_text(paragraphs=TYPICAL, n_chars: int = 50_000) -> str:
    out, size, i = [], 0, 0
    while size < n_chars:
        p = paragraphs[i % len(paragraphs)]
        out.append(p)
        size += len(p)
        i += 1
    return "".join(out)[:n_chars]


def big_lexicon(text: str, size: int = 1000) -> LexiconNormalizer:
    """A lexicon of ``size`` entries: 50 words of ``text`` (so it finds hundreds of matches)
    and made-up names for the rest, as one file would give it."""
    words = sorted({w.strip(".,!?;:()[]<>'") for w in text.split()} - {""})[:50]
    made_up = (f"Name{i:04d}{'xyz'[i % 3]}" for i in range(size - len(words)))
    lexicon = LexiconNormalizer()
    entries = [Entry(w, w.upper()) for w in words] + [Entry(w, "spoken") for w in made_up]
    lexicon.files = [_Fixed(Matcher(entries))]
    return lexicon


class _Fixed:
    """A lexicon file that never changes (no disk in the timed loop)."""

    language = None

    def __init__(self, matcher: Matcher) -> None:
        self.matcher = matcher

    def current(self) -> Matcher:
        return self.matcher


def best_ms(fn, runs: int) -> tuple[float, float]:
    """CPU time of this thread (best, median): other processes on a shared machine stretch wall
    time but not the work done here."""
    times = []
    for _ in range(runs):
        t = time.thread_time()
        fn()
        times.append((time.thread_time() - t) * 1000)
    return min(times), statistics.median(times)


def table(label: str, text: str, runs: int) -> float:
    job = Job(request_id="bench", text=text, speaker=None, synthesizer="-", output=None)
    unicode_, lexicon, rules = UnicodeNormalizer(), LexiconNormalizer(), TextNormalizer()
    big = big_lexicon(text)
    normalized = rules.normalize(unicode_.normalize(text, job), job)
    rows = [
        ("unicode (core)", lambda: unicode_.normalize(text, job)),
        ("lexicon, empty", lambda: lexicon.normalize(text, job)),
        ("lexicon, 1,000 entries", lambda: big.normalize(text, job)),
        ("text (normalize plugin)", lambda: rules.normalize(text, job)),
        ("chunk (chunk plugin)", lambda: chunk(normalized)),
        ("all: unicode + lexicon + text + chunk",
         lambda: chunk(rules.normalize(lexicon.normalize(unicode_.normalize(text, job), job),
                                       job))),
    ]
    print(f"\n{label}: {len(text)} characters, {len(chunk(normalized))} chunks; "
          f"CPU ms of one thread, best and median of {runs} runs")
    print(f"| {'stage':<37} | {'best ms':>8} | {'median ms':>9} |")
    print(f"|{'-' * 39}|{'-' * 10}|{'-' * 11}|")
    total = 0.0
    for name, fn in rows:
        best, med = best_ms(fn, runs)
        total = best
        print(f"| {name:<37} | {best:>8.1f} | {med:>9.1f} |")
    return total


def main() -> int:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    runs = int(os.environ.get("RUNS", "20"))
    typical = table("typical mixed en/hi/te text", mixed_text(TYPICAL), runs)
    dense = table("dense: every sentence has numbers, money, dates, URLs or tags",
                  mixed_text(DENSE), runs)
    print(f"\ntarget: typical 50,000 characters under 50 ms -> "
          f"{'met' if typical < 50 else 'MISSED'} ({typical:.1f} ms; dense {dense:.1f} ms)")
    return 0 if typical < 50 else 1


if __name__ == "__main__":
    sys.exit(main())
