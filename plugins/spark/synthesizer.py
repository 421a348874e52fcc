"""The ``spark`` synthesizer: Veena3 LLM tokens → streaming BiCodec decode → PCM blocks.

Per job: the voice's prompt settings; the first chunk's 32 global tokens (pinned by the voice
or generated in phase 1) reused for every later chunk; per chunk a semantic-token request to the
engine whose tokens feed a sliding-window decoder, each window decoded off the event loop while
the engine keeps generating; chunks joined with a short crossfade. Closing the stream aborts the
engine request at once (synchronously, in ``finally``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from veena.platform.audio import PCM
from veena.platform.logs import event
from veena.plugins.spark.engine.base import SamplingParams, TokenRequest, TokenSet, TokenStream
from veena.plugins.spark.prompt import PromptBuilder, VoiceSettings
from veena.plugins.spark.streaming import ChunkJoiner, StreamingDecoder
from veena.plugins.spark.tokens import GLOBAL_TOKENS_PER_VOICE

if TYPE_CHECKING:
    from veena.platform.job import Job
    from veena.plugins.spark import Config
    from veena.speakers import Speaker

log = logging.getLogger("veena.spark")


class GenerationError(RuntimeError):
    """The engine ended a request without what the voice needs (e.g. fewer than 32 globals)."""


ROW_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128)
"""Decoder batch sizes on a GPU: a batch is padded up to the next one."""


class DecoderRunner:
    """Runs BiCodec off the event loop, batching the windows of concurrent streams.

    Windows wait in a queue while ``workers`` batches are in flight; each launch takes the
    oldest waiting window and every other waiting window of the same length (up to
    ``max_batch``) into one decoder call. A lone stream is decoded at once; under load the
    batches grow by themselves, with no fixed collection delay.
    """

    def __init__(self, decoder: Any, device: Any, workers: int, max_batch: int = 64) -> None:
        self.decoder = decoder
        self.first_window: Any = None
        """A ``FirstWindowGraph`` once ``warm_up`` captured one (CUDA only)."""
        self.device = device
        self.workers = workers
        self.max_batch = max_batch
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="spark-decode")
        self._speakers: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self._waiting: list[tuple[tuple[int, ...], Any, asyncio.Future]] = []
        self._in_flight = 0
        self._streams = threading.local()
        self.pad_rows = device.type == "cuda"
        """Pad batches to ``ROW_BUCKETS`` (on a GPU: fixed shapes stay warm; on CPU, waste)."""
        self.batches = 0
        self.windows = 0

    async def speaker(self, global_tokens: Sequence[int]) -> Any:
        """The d-vector for 32 global tokens (cached: pinned voices compute it once)."""
        key = tuple(global_tokens)
        if key in self._speakers:
            self._speakers.move_to_end(key)
            return self._speakers[key]
        d = await asyncio.get_running_loop().run_in_executor(self._pool, self._speaker, key)
        self._speakers[key] = d
        if len(self._speakers) > 256:
            self._speakers.popitem(last=False)
        return d

    async def decode(self, tokens: Sequence[int], d_vector: Any) -> np.ndarray:
        """The waveform of one window of semantic tokens for the speaker ``d_vector``."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((tuple(tokens), d_vector, future))
        self._launch()
        return await future

    def _launch(self) -> None:
        loop = asyncio.get_running_loop()
        while self._in_flight < self.workers:
            self._waiting = [w for w in self._waiting if not w[2].done()]  # drop cancelled
            if not self._waiting:
                return
            length = len(self._waiting[0][0])
            batch = [w for w in self._waiting if len(w[0]) == length][: self.max_batch]
            taken = {id(w) for w in batch}
            self._waiting = [w for w in self._waiting if id(w) not in taken]
            self._in_flight += 1
            work = loop.run_in_executor(self._pool, self._decode, [w[0] for w in batch],
                                        [w[1] for w in batch])
            work.add_done_callback(lambda done, batch=batch: self._finished(done, batch))

    def _finished(self, done: asyncio.Future, batch: list) -> None:
        self._in_flight -= 1
        self.batches += 1
        self.windows += len(batch)
        error = done.exception() if not done.cancelled() else asyncio.CancelledError()
        for i, (_, _, future) in enumerate(batch):
            if not future.done():
                if error is None:
                    future.set_result(done.result()[i])
                else:
                    future.set_exception(error)
        self._launch()

    def warm_up(self, lengths: Sequence[int], first_window: int | None = None) -> None:
        """Decodes windows of ``lengths`` at every padded batch size on every worker thread, so
        no request pays for loading kernels, choosing convolution algorithms or growing the
        memory pool (CUDA only; blocking). Each worker decodes on its own CUDA stream, and
        PyTorch keeps freed memory per stream, so warming one thread left the others cold (on
        an H200, warming them all took the 8-stream p95 time to first byte from 278 to 195 ms).
        With ``first_window`` (a token count), also captures that one-row window as a graph."""
        if self.device.type != "cuda":
            return
        everyone = threading.Barrier(self.workers, timeout=300)

        def warm() -> None:
            everyone.wait()  # holds each task on its own thread until all have one
            d = self._speaker(tuple(range(32)))
            for rows in self._row_buckets():
                for n in lengths:
                    self._decode([tuple(range(n))] * rows, [d] * rows)

        for done in [self._pool.submit(warm) for _ in range(self.workers)]:
            done.result()
        if first_window:
            self.first_window = self._pool.submit(self._capture, first_window).result()

    def _capture(self, length: int) -> Any:
        import torch

        from veena.plugins.spark.decoder_graph import FirstWindowGraph

        d = self._speaker(tuple(range(32)))
        with torch.inference_mode(), self._gpu_stream():
            return FirstWindowGraph(self.decoder, self.device, length, d.shape[-1])

    def _row_buckets(self) -> list[int]:
        return [r for r in ROW_BUCKETS if r < self.max_batch] + [self.max_batch]

    def _gpu_stream(self) -> contextlib.AbstractContextManager:
        """On CUDA, this worker thread's own stream: decoder kernels then overlap the LLM's
        decode steps instead of queueing behind them on the default stream."""
        import torch

        if self.device.type != "cuda":
            return contextlib.nullcontext()
        stream = getattr(self._streams, "stream", None)
        if stream is None:
            stream = self._streams.stream = torch.cuda.Stream(self.device)
        return torch.cuda.stream(stream)

    def _speaker(self, key: tuple[int, ...]) -> Any:
        import torch

        with torch.inference_mode(), self._gpu_stream():
            d = self.decoder.speaker_embedding(torch.tensor([key], device=self.device))
            if self.device.type == "cuda":
                torch.cuda.current_stream().synchronize()  # other streams will read it
        return d

    def _decode(self, windows: list[tuple[int, ...]], d_vectors: list[Any]) -> np.ndarray:
        import torch

        n = len(windows)
        if n == 1 and self.first_window is not None:
            with torch.inference_mode(), self._gpu_stream():
                wav = self.first_window.decode(windows[0], d_vectors[0])
            if wav is not None:
                return wav.numpy()
        if self.pad_rows:  # a few fixed shapes: pad rows with the last window
            rows = next(r for r in self._row_buckets() if r >= n)
            windows = list(windows) + [windows[-1]] * (rows - n)
            d_vectors = list(d_vectors) + [d_vectors[-1]] * (rows - n)
        with torch.inference_mode(), self._gpu_stream():
            ids = torch.tensor(windows, dtype=torch.long, device=self.device)
            wav = self.decoder.decode_with_embedding(ids, torch.cat(d_vectors))
            return wav[:n].float().cpu().numpy()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class _Loaded:
    """What ``start`` loads: tokenizer, token maps, prompts, decoder, engine."""

    def __init__(self, tokenizer, tokens, prompts, runner, engine, global_set, semantic_set) -> None:
        self.tokenizer = tokenizer
        self.tokens = tokens
        self.prompts: PromptBuilder = prompts
        self.runner: DecoderRunner = runner
        self.engine = engine
        self.global_set: TokenSet = global_set
        self.semantic_set: TokenSet = semantic_set


class SparkSynthesizer:
    """Veena3 neural voice (Spark-TTS-style LLM + BiCodec), 16 kHz."""

    name = "spark"
    sample_rate = 16000

    def __init__(self, config: Config, model_path: Path) -> None:
        self.config = config
        self.model_path = model_path
        self.plan = config.window_plan()
        self._loaded: _Loaded | None = None
        self._lock = asyncio.Lock()
        self._voices: dict[str, VoiceSettings] = {}
        self._speakers: list[Speaker] = []

    # --- lifecycle ---

    async def start(self, speakers: Sequence[Speaker] = ()) -> None:
        """Loads the checkpoint (idempotent) and checks every voice against its vocabulary."""
        self._speakers = list(speakers)
        async with self._lock:
            if self._loaded is None:
                self._loaded = await self._load()

    async def _load(self) -> _Loaded:
        t = time.perf_counter()
        cfg = self.config
        loaded = await asyncio.to_thread(self._load_sync)
        try:
            await loaded.engine.start()
        except BaseException:
            loaded.runner.close()
            raise
        random = (self.model_path / "random_checkpoint.json").exists()
        event("spark.model_loaded", path=str(self.model_path), engine=cfg.engine,
              device=str(loaded.runner.device), dtype=cfg.resolved_dtype(str(loaded.runner.device)),
              decoder_dtype=cfg.decoder_dtype,
              random_weights=random, ms=round((time.perf_counter() - t) * 1000, 1))
        if random:
            log.warning("spark: %s holds RANDOM weights (a test checkpoint): the audio is noise",
                        self.model_path)
        return loaded

    def _load_sync(self) -> _Loaded:
        import torch
        import transformers
        from transformers import AutoTokenizer

        from veena.plugins.spark.bicodec import BiCodecDecoder
        from veena.plugins.spark.engine import create_engine
        from veena.plugins.spark.tokens import TokenMap

        transformers.utils.logging.disable_progress_bar()  # no tqdm bars in JSON logs
        cfg = self.config
        device = cfg.resolved_device()
        self._device = device
        if device == "cpu":
            torch.set_num_threads(cfg.threads or 1)
        elif cfg.threads:
            torch.set_num_threads(cfg.threads)
        tokenizer = AutoTokenizer.from_pretrained(self.model_path / "LLM")
        tokens = TokenMap(tokenizer.get_vocab(), tokenizer.eos_token_id)
        prompts = PromptBuilder(tokenizer, tokens)
        for speaker in self._speakers:
            settings = self._settings(speaker)
            prompts.check(settings, speaker.name)
        decoder = BiCodecDecoder.from_pretrained(
            self.model_path / "BiCodec", device=device, dtype=getattr(torch, cfg.decoder_dtype))
        if decoder.sample_rate != self.sample_rate:
            raise ValueError(f"BiCodec sample rate {decoder.sample_rate} != {self.sample_rate}")
        if decoder.hop_length != self.plan.hop:
            raise ValueError(f"BiCodec hop {decoder.hop_length} != {self.plan.hop}")
        runner = DecoderRunner(decoder, torch.device(device), cfg.decode_workers)
        runner.warm_up(self.plan.window_lengths(),
                       self.plan.first_audio_after() if cfg.first_window_graph else None)
        options: dict[str, Any] = {"dtype": cfg.resolved_dtype(device)}
        if cfg.engine in ("torch", "hf"):
            options.update(device=device, threads=cfg.threads or (1 if device == "cpu" else None))
        if cfg.engine == "torch":
            options.update(slots=cfg.slots or (4 if device == "cpu" else 64),
                           max_len=cfg.max_sequence, prefill_tokens=cfg.prefill_tokens)
        if cfg.engine == "vllm":
            options.update(cfg.vllm)
        engine = create_engine(cfg.engine, self.model_path / "LLM", **options)
        global_set = TokenSet("global", tuple(int(i) for i in tokens.global_ids))
        semantic_set = TokenSet("semantic+stop",
                                tuple(int(i) for i in tokens.semantic_ids) + tokens.stop_ids)
        return _Loaded(tokenizer, tokens, prompts, runner, engine, global_set, semantic_set)

    async def close(self) -> None:
        loaded, self._loaded = self._loaded, None
        if loaded is not None:
            await loaded.engine.close()
            loaded.runner.close()

    @property
    def engine(self):
        return self._loaded.engine if self._loaded else None

    def _settings(self, speaker: Speaker) -> VoiceSettings:
        settings = self._voices.get(speaker.name)
        if settings is None:
            settings = VoiceSettings.parse(speaker.settings(self.name), speaker.name)
            self._voices[speaker.name] = settings
        return settings

    def speed_factor(self, speed: float, speaker: Speaker) -> float:
        """The part of a request's ``speed`` the voice's own speed label gives (where its TOML
        has measured ``speed_levels``); the pipeline time-stretches the rest."""
        return self._settings(speaker).at_speed(speed)[1]

    def token_limit(self, text: str, requested: int | None) -> int:
        """Semantic tokens one chunk may generate: the request's ``max_tokens`` (if any), the
        configured cap, and a guard proportional to the chunk's length against run-away output."""
        cfg = self.config
        guard = max(cfg.min_tokens_per_chunk, math.ceil(cfg.max_tokens_per_char * len(text)))
        return max(1, min(cfg.max_tokens, guard, requested or cfg.max_tokens))

    # --- synthesis ---

    async def stream(self, job: Job) -> AsyncIterator[PCM]:
        if self._loaded is None:
            await self.start()
        m = self._loaded
        assert m is not None
        settings = self._settings(job.speaker).at_speed(job.speed)[0]
        s = job.sampling
        joiner = ChunkJoiner(round(self.config.chunk_crossfade_ms * self.sample_rate / 1000))
        global_tokens = list(settings.global_tokens) if settings.global_tokens else None
        d_vector = None
        current: TokenStream | None = None
        try:
            for index, text in enumerate(job.chunks):
                if not text.strip():
                    continue
                params = SamplingParams(s.temperature, s.top_k, s.top_p,
                                        None if s.seed is None else s.seed + index)
                t0 = time.perf_counter()
                pinned = global_tokens is not None
                if global_tokens is None:
                    current = m.engine.submit(TokenRequest(
                        f"{job.request_id}:{index}:global",
                        tuple(m.prompts.global_phase(text, settings)), GLOBAL_TOKENS_PER_VOICE,
                        params, m.global_set))
                    generated = [t async for t in current]
                    current = None
                    global_tokens = m.tokens.parse_global(generated)
                    if len(global_tokens) != GLOBAL_TOKENS_PER_VOICE:
                        raise GenerationError(f"the model produced {len(global_tokens)} global "
                                              f"tokens, not {GLOBAL_TOKENS_PER_VOICE}")
                if d_vector is None:
                    d_vector = await m.runner.speaker(global_tokens)
                limit = self.token_limit(text, s.max_tokens)
                current = m.engine.submit(TokenRequest(
                    f"{job.request_id}:{index}:semantic",
                    tuple(m.prompts.semantic_phase(text, settings, global_tokens)), limit, params,
                    m.semantic_set, m.tokens.stop_ids))
                decoder = StreamingDecoder(self.plan)
                started = False
                while True:
                    window = decoder.next_window()
                    if window is None:
                        if decoder.done or current is None:
                            break
                        try:
                            token_id = await anext(current)
                        except StopAsyncIteration:
                            reason, generated_count = current.finish_reason, decoder.received
                            current = None
                            decoder.finish()
                            continue
                        value = m.tokens.semantic_value(token_id)
                        if value is not None:
                            decoder.push(value)
                        continue
                    audio = decoder.accept(window, await m.runner.decode(window.tokens, d_vector))
                    out = joiner.feed(audio, chunk_ends=window.last)
                    if len(out):
                        if not started:
                            job.mark_chunk_started(index)
                            started = True
                        yield PCM.from_float(out, self.sample_rate)
                event("spark.chunk_generated", chunk=index, semantic_tokens=generated_count,
                      finish_reason=reason, max_new_tokens=limit, global_tokens_pinned=pinned,
                      ms=round((time.perf_counter() - t0) * 1000, 1))
            tail = joiner.finish()
            if len(tail):
                yield PCM.from_float(tail, self.sample_rate)
        finally:
            if current is not None:
                current.abort()
