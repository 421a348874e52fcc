"""Measures a Veena3 voice's ``speed_levels``: the speaking rate each ``<|speed_label_0..4|>``
gives it, relative to the voice's own label, on a real checkpoint.

    .venv/bin/python tests/performance/bench_spark_speed.py --model /models/veena3 --voice kavya

Each text is spoken at each label with the same seeds; a label's rate is the voice's own label's
total audio duration over that label's (so faster labels read above 1.0). Prints a table and the
``speed_levels`` line for the voice's ``[synthesizers.spark]`` table. Without ``--model`` it
builds a tiny random checkpoint, which exercises the code but gives meaningless rates.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

import msgspec

from veena.platform.job import Job, OutputFormat, SamplingOptions
from veena.plugins.spark import Config
from veena.plugins.spark.prompt import SPEED_LABELS, VoiceSettings
from veena.plugins.spark.synthesizer import SparkSynthesizer
from veena.speakers import load_catalog

TEXTS = ("नमस्ते, आज मौसम बहुत अच्छा है और हम बाहर घूमने जाएंगे।",
         "The meeting starts at nine, so please be on time.",
         "మీరు ఎలా ఉన్నారు? నేను బాగున్నాను, ధన్యవాదాలు.")


async def duration(synth: SparkSynthesizer, speaker, text: str, seed: int) -> float:
    job = Job(request_id=f"speed-{seed}", text=text, speaker=speaker, synthesizer="spark",
              output=OutputFormat("wav", synth.sample_rate), sampling=SamplingOptions(seed=seed),
              chunks=[text])
    samples = sum([len(b.samples) async for b in synth.stream(job)])
    return samples / synth.sample_rate


def at_label(speaker, label: int):
    spark = dict(speaker.settings("spark"))
    spark["control"] = [c if "speed_label" not in c else f"<|speed_label_{label}|>"
                        for c in spark.get("control", [])]
    spark.pop("speed_levels", None)
    return msgspec.structs.replace(speaker, name=f"{speaker.name}@{label}", aliases=(),
                                   synthesizers={**speaker.synthesizers, "spark": spark})


async def measure(model: Path, voice: str, seeds: int) -> None:
    speaker = {s.name: s for s in load_catalog()}[voice]
    own = VoiceSettings.parse(speaker.settings("spark"), voice).speed_label
    if own is None:
        raise SystemExit(f"voice {voice!r} has no <|speed_label_N|> in its control tokens")
    synth = SparkSynthesizer(msgspec.convert({"model_path": str(model)}, Config), model)
    await synth.start([speaker])
    try:
        seconds = [sum([await duration(synth, at_label(speaker, label), t, s)
                        for t in TEXTS for s in range(seeds)]) for label in range(SPEED_LABELS)]
    finally:
        await synth.close()
    rates = [seconds[own] / s for s in seconds]
    print(f"voice {voice}, own label {own}, {len(TEXTS)} texts x {seeds} seeds\n")
    print("| label | audio s | rate |\n|---|---|---|")
    for label in range(SPEED_LABELS):
        print(f"| {label} | {seconds[label]:.2f} | {rates[label]:.3f} |")
    print(f"\nspeed_levels = [{', '.join(f'{r:.3f}' for r in rates)}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a Veena3 checkpoint folder (default: tiny random)")
    parser.add_argument("--voice", default="kavya")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    if args.model is not None:
        asyncio.run(measure(args.model, args.voice, args.seeds))
        return
    from veena.plugins.spark.checkpoint import write_random_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(measure(write_random_checkpoint(tmp, "tiny", seed=0), args.voice, args.seeds))


if __name__ == "__main__":
    main()
