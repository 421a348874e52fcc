"""Cloning cost: a 10 s clip → 32 global tokens, split into decode+resample, preparation, mel and
the speaker encoder, on CPU and (where present) CUDA.

    .venv/bin/python tests/performance/bench_spark_cloning.py                 # CPU, 1 thread
    .venv/bin/python tests/performance/bench_spark_cloning.py --device cuda   # GPU too

Random weights in the released shapes (``--size full``, the default: the speaker encoder's
shapes do not depend on the checkpoint size in practice) with the released config. The clip is a
synthetic harmonic voice encoded as 44.1 kHz stereo MP3 and as 16 kHz mono WAV. Results and the
machine go into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import time

import av
import numpy as np
import torch

from veena.plugins.spark.bicodec.speaker import (BiCodecSpeakerEncoder, SpeakerEncoderConfig,
                                                 random_speaker_state)
from veena.plugins.spark.checkpoint import bicodec_config
from veena.plugins.spark.cloning import (ClipLimits, check_clip, clone_global_tokens, decode_clip,
                                         prepare_reference)


def voice_like(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(140 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))) / rate
    wave = sum(np.sin(k * phase) / k for k in range(1, 12))
    return (0.15 * wave * (0.5 + 0.5 * np.sin(2 * np.pi * 3.7 * t) ** 2)).astype(np.float32)


def encode(clip: np.ndarray, rate: int, channels: int, container: str, codec: str) -> bytes:
    buf = io.BytesIO()
    layout = "stereo" if channels == 2 else "mono"
    with av.open(buf, mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        stream.format = "s16p"
        pcm = (np.stack([clip] * channels) * 32767).astype(np.int16)
        size = stream.codec_context.frame_size or 1024
        for i in range(0, pcm.shape[1], size):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, i:i + size]),
                                               format="s16p", layout=layout)
            frame.sample_rate = rate
            for p in stream.encode(frame):
                out.mux(p)
        for p in stream.encode(None):
            out.mux(p)
    return buf.getvalue()


def timed(fn, repeats: int) -> float:
    """Median milliseconds of ``repeats`` calls after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--size", default="full", choices=["tiny", "full"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = bicodec_config(args.size)
    model = BiCodecSpeakerEncoder(SpeakerEncoderConfig.from_dict(cfg))
    model.load_released_state(random_speaker_state(cfg, seed=0))
    model = model.eval().requires_grad_(False).to(args.device)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)

    clips = {"mp3 44.1k stereo": encode(voice_like(10, 44100), 44100, 2, "mp3", "libmp3lame"),
             "wav 16k mono": encode(voice_like(10, 16000), 16000, 1, "wav", "pcm_s16le")}
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, torch {torch.__version__}, device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else "")
          + f", {args.threads} thread(s), size {args.size}, median of {args.repeats}")
    print("| clip (10 s) | bytes | decode+resample ms | prepare ms | mel ms | encoder ms | total ms |")
    print("|---|---|---|---|---|---|---|")
    for name, data in clips.items():
        audio = decode_clip(data, 16000, 60)
        check_clip(audio, 16000, ClipLimits())
        wav = prepare_reference(audio, model).unsqueeze(0).to(args.device)
        with torch.inference_mode():
            mel = model.mel_spectrogram(wav)

            def run_mel():
                model.mel_spectrogram(wav)
                sync()

            def run_encoder():
                model.tokenize_mel(mel)
                sync()

            def run_all():
                clone_global_tokens(model, data)
                sync()

            t_dec = timed(lambda: decode_clip(data, 16000, 60), args.repeats)
            t_prep = timed(lambda: prepare_reference(audio, model), args.repeats)
            t_mel = timed(run_mel, args.repeats)
            t_enc = timed(run_encoder, args.repeats)
            t_all = timed(run_all, args.repeats)
        print(f"| {name} | {len(data)} | {t_dec:.1f} | {t_prep:.1f} | {t_mel:.1f} | {t_enc:.1f} "
              f"| {t_all:.1f} |")


if __name__ == "__main__":
    main()
