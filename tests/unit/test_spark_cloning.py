"""Cloning: clips in any PyAV format, rate and channel count → 32 global tokens on the tiny
random checkpoint; bad clips → CloneError with a stable code; the mel front end's scale."""

from __future__ import annotations

import io
import math

import av
import numpy as np
import pytest
import torch

from tests.support.spark_checkpoint import ckpt  # noqa: F401 (fixture)
from tests.support.torch_threads import one_torch_thread  # noqa: F401 (autouse fixture)
from veena.plugins.spark.bicodec.mel import MelSettings, MelSpectrogram, hz_to_mel, mel_filterbank, mel_to_hz
from veena.plugins.spark.bicodec.speaker import BiCodecSpeakerEncoder
from veena.plugins.spark.cloning import (ClipLimits, CloneError, CloneErrorCode, clone_global_tokens,
                                         decode_clip, prepare_reference)


def voice_like(seconds: float, f0: float, rate: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))) / rate
    wave = sum(np.sin(k * phase) / k for k in range(1, 10) if k * f0 < rate / 2)
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3.7 * t) ** 2
    return (0.15 * wave * env + 0.005 * rng.standard_normal(t.shape)).astype(np.float32)


def encode(channels: np.ndarray, rate: int, container: str, codec: str, fmt: str = "s16") -> bytes:
    """(C, n) float32 in [-1, 1] → an encoded file in memory, through PyAV."""
    buf = io.BytesIO()
    layout = {1: "mono", 2: "stereo"}[channels.shape[0]]
    with av.open(buf, mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        stream.format = fmt
        samples = channels if fmt.endswith("p") else channels.T.reshape(1, -1)
        if fmt.startswith("s16"):
            samples = (np.clip(samples, -1, 1) * 32767).astype(np.int16)
        frame_size = stream.codec_context.frame_size or 1024
        step = 1 if fmt.endswith("p") else channels.shape[0]  # packed: channels interleaved
        for start in range(0, channels.shape[1], frame_size):
            part = np.ascontiguousarray(samples[:, start * step:(start + frame_size) * step])
            frame = av.AudioFrame.from_ndarray(part, format=fmt, layout=layout)
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


@pytest.fixture(scope="module")
def model(ckpt) -> BiCodecSpeakerEncoder:  # noqa: F811
    return BiCodecSpeakerEncoder.from_pretrained(ckpt / "BiCodec")


def test_tiny_checkpoint_holds_the_speaker_encoder(ckpt, model):  # noqa: F811
    from safetensors import safe_open

    with safe_open(str(ckpt / "BiCodec" / "model.safetensors"), framework="pt") as f:
        keys = set(f.keys())
    assert "speaker_encoder.speaker_encoder.layer1.conv.weight" in keys
    assert "speaker_encoder.perceiver_sampler.latents" in keys
    assert "speaker_encoder.quantizer.project_in.weight" in keys
    assert "decoder.model.0.weight_g" in keys  # the decode path is still there
    assert model.config.ref_samples == 96000


def test_wav_16k_mono_decodes_to_its_samples():
    clip = voice_like(3.0, 150, 16000)
    audio = decode_clip(encode(clip[None], 16000, "wav", "pcm_s16le"), 16000, 60)
    assert audio.shape == clip.shape
    assert np.abs(audio - clip).max() < 2 / 32768


def test_any_rate_and_channels_resampled_to_16k_mono():
    rate, seconds = 44100, 3.0
    left = voice_like(seconds, 150, rate)
    stereo = np.stack([left, 0.5 * left])
    audio = decode_clip(encode(stereo, rate, "flac", "flac"), 16000, 60)
    expected = decode_clip(encode((0.75 * left)[None], rate, "wav", "pcm_s16le"), 16000, 60)
    assert abs(audio.shape[0] - seconds * 16000) < 64
    n = min(len(audio), len(expected))
    assert np.abs(audio[:n] - expected[:n]).max() < 1e-3  # channels averaged, same resampler
    # Energy in the 16 kHz signal sits where the 44.1 kHz one had it (150 Hz fundamental).
    spectrum = np.abs(np.fft.rfft(audio[:16000]))
    assert 140 <= np.argmax(spectrum) <= 160


@pytest.mark.parametrize("container,codec,fmt,rate", [
    ("wav", "pcm_s16le", "s16", 16000), ("flac", "flac", "s16", 48000),
    ("mp3", "libmp3lame", "s16p", 44100), ("ogg", "libopus", "s16", 48000),
    ("adts", "aac", "fltp", 24000)])
def test_formats_give_32_tokens(model, container, codec, fmt, rate):
    clip = voice_like(4.0, 140, rate)
    data = encode(np.stack([clip, clip]), rate, container, codec, fmt)
    tokens = clone_global_tokens(model, data)
    assert len(tokens) == 32 and all(0 <= t < 4096 for t in tokens)
    assert tokens == clone_global_tokens(model, data)  # deterministic


def test_tokens_are_the_encoders_on_the_prepared_reference(model):
    clip = voice_like(8.0, 120, 16000)
    data = encode(clip[None], 16000, "wav", "pcm_s16le")
    wav = prepare_reference(decode_clip(data, 16000, 60), model)
    assert wav.shape == (96000,)
    with torch.inference_mode():
        direct = model(wav.unsqueeze(0))[0].tolist()
    assert clone_global_tokens(model, data) == direct
    other = clone_global_tokens(model, encode(voice_like(8.0, 260, 16000, seed=5)[None] * 0.3,
                                              16000, "wav", "pcm_s16le"))
    assert other != direct


def _code(model, data: bytes, limits: ClipLimits = ClipLimits()) -> CloneErrorCode:
    with pytest.raises(CloneError) as err:
        clone_global_tokens(model, data, limits)
    return err.value.code


def test_bad_clips_have_stable_codes(model):
    wav = lambda x: encode(x[None], 16000, "wav", "pcm_s16le")  # noqa: E731
    assert _code(model, b"") == CloneErrorCode.UNDECODABLE
    assert _code(model, b"this is not audio at all" * 100) == CloneErrorCode.UNDECODABLE
    assert _code(model, wav(voice_like(3, 150, 16000))[:60]) in (CloneErrorCode.UNDECODABLE,
                                                                CloneErrorCode.TOO_SHORT)
    assert _code(model, wav(voice_like(1.0, 150, 16000))) == CloneErrorCode.TOO_SHORT
    assert _code(model, wav(np.zeros(16000 * 4, np.float32))) == CloneErrorCode.SILENT
    assert _code(model, wav(voice_like(6.0, 150, 16000)),
                 ClipLimits(max_seconds=5.0)) == CloneErrorCode.TOO_LONG
    assert _code(model, wav(voice_like(3.0, 150, 16000)),
                 ClipLimits(max_bytes=1000)) == CloneErrorCode.TOO_LARGE
    assert CloneErrorCode.SILENT.value == "clip_silent"  # the code a route sends
    # Quiet is not silent: -40 dBFS speech is lifted by the volume normalisation.
    assert len(clone_global_tokens(model, wav(0.01 * voice_like(3.0, 150, 16000)))) == 32


def test_overlong_clip_is_not_decoded_to_the_end():
    data = encode(voice_like(20.0, 150, 16000)[None], 16000, "wav", "pcm_s16le")
    audio = decode_clip(data, 16000, max_seconds=5.0)
    assert 6 * 16000 <= len(audio) < 8 * 16000


def test_slaney_mel_scale_and_filterbank():
    assert float(hz_to_mel(torch.tensor(1000.0))) == pytest.approx(15.0)
    assert float(hz_to_mel(torch.tensor(500.0))) == pytest.approx(7.5)
    assert float(hz_to_mel(torch.tensor(6400.0))) == pytest.approx(15 + 27, rel=1e-6)
    hz = torch.tensor([0.0, 300.0, 999.0, 1000.0, 4000.0, 8000.0])
    assert torch.allclose(mel_to_hz(hz_to_mel(hz)), hz, rtol=1e-5)
    s = MelSettings()
    fb = mel_filterbank(s)
    assert fb.shape == (513, 128) and (fb >= 0).all()
    # Slaney norm: each triangle's area (in Hz) is 1; sampled every 15.6 Hz, wide (upper) bands
    # come close, narrow ones scatter around 1.
    df = 16000 / 1024
    areas = fb.sum(dim=0) * df
    assert torch.allclose(areas[50:], torch.ones(78), atol=0.03)
    assert (areas[8:] - 1).abs().max() < 0.15
    assert fb[: int(10 / df)].sum() == 0  # nothing below f_min = 10 Hz


def test_mel_of_a_sine_peaks_in_its_band():
    s = MelSettings()
    t = torch.arange(16000) / 16000
    mel = MelSpectrogram(s)(0.5 * torch.sin(2 * math.pi * 2000 * t).unsqueeze(0))
    assert mel.shape == (1, 128, 51)  # centred frames: 1 + 16000 // 320
    band = int(mel[0, :, 25].argmax())
    centres = mel_to_hz(torch.linspace(float(hz_to_mel(torch.tensor(10.0))),
                                       float(hz_to_mel(torch.tensor(8000.0))), 130))[1:-1]
    assert abs(float(centres[band]) - 2000) < 60


def test_mel_matches_torchaudio_where_installed():
    """torchaudio has no build for the pinned torch here; where it does, this is exact."""
    ta = pytest.importorskip("torchaudio")
    s = MelSettings()
    ref = ta.transforms.MelSpectrogram(s.sample_rate, s.n_fft, s.win_length, s.hop_length,
                                       s.f_min, s.f_max, n_mels=s.n_mels, power=1,
                                       norm="slaney", mel_scale="slaney")
    x = torch.from_numpy(voice_like(2.0, 150, 16000)).unsqueeze(0)
    assert torch.allclose(ref.mel_scale.fb, mel_filterbank(s), atol=1e-6)
    assert torch.allclose(ref(x), MelSpectrogram(s)(x), atol=1e-4)
