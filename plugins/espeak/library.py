"""ctypes bindings to the eSpeak NG shared library shipped by the ``espeakng-loader`` wheel.

eSpeak NG keeps all of its state in process globals, so one loaded library is one engine that
only one thread may drive at a time. ``acquire_libraries`` hands out *private copies*: the
``.so`` file is copied into a temporary folder and ``dlopen``-ed from there, which gives each
copy its own globals (``RTLD_LOCAL``; a different inode, so the dynamic loader cannot hand back
an already-loaded copy). Loaded copies are never unloaded; released ones go back to a pool and
are reused by the next engine, so tests that build many engines do not pile up libraries.
"""

from __future__ import annotations

import ctypes
import logging
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import espeakng_loader
import numpy as np

log = logging.getLogger("veena.espeak")

# speak_lib.h
AUDIO_OUTPUT_SYNCHRONOUS = 2
POS_CHARACTER = 1
espeakCHARS_UTF8 = 0x1
espeakSSML = 0x10  # never set: request text is plain text, not markup
espeakENDPAUSE = 0x1000
espeakINITIALIZE_DONT_EXIT = 0x8000
espeakRATE = 1
espeakPITCH = 3
EE_OK = 0

DEFAULT_RATE = 175  # words per minute, eSpeak NG's own default
DEFAULT_PITCH = 50
MIN_RATE, MAX_RATE = 80, 450

espeakEVENT_LIST_TERMINATED = 0
espeakEVENT_WORD = 1


class _Event(ctypes.Structure):
    """``espeak_EVENT``."""

    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
                ("text_position", ctypes.c_int), ("length", ctypes.c_int),
                ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
                                  ctypes.POINTER(_Event))

Sink = Callable[[np.ndarray | None, list[tuple[int, int, int]] | None], bool]
"""Receives each buffer of int16 samples (None for an event-only callback) and, when asked
for, the words that start in it as (1-based character position in the text, length in
characters, sample index from the start of the synthesis); returns True to abort the synthesis
in progress."""


class EspeakError(RuntimeError):
    """The eSpeak NG library could not be loaded, initialized or driven."""


class EspeakLibrary:
    """One loaded, initialized copy of libespeak-ng in synchronous (callback) mode.

    Not thread-safe: hold ``lock`` around every call sequence (set voice, parameters, synth).
    """

    def __init__(self, path: str, data_path: str, buffer_ms: int) -> None:
        self.path = path
        self.buffer_ms = buffer_ms
        self.lock = threading.Lock()
        lib = self._lib = ctypes.CDLL(path)
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_GetCurrentVoice.argtypes = []
        lib.espeak_GetCurrentVoice.restype = ctypes.c_void_p
        rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, buffer_ms, data_path.encode(),
                                     espeakINITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise EspeakError(f"espeak_Initialize failed ({rate}) with data at {data_path}")
        self.sample_rate = rate
        self._sink: Sink | None = None
        self._want_words = False
        self._voice: str | None = None
        self._callback = _SynthCallback(self._on_audio)  # kept alive as long as the library
        lib.espeak_SetSynthCallback(self._callback)

    @property
    def handle(self) -> int:
        return self._lib._handle

    def state_address(self) -> int:
        """Address of the library's current-voice struct: distinct copies have distinct globals."""
        return self._lib.espeak_GetCurrentVoice() or 0

    def _on_audio(self, wav: int | None, numsamples: int, events) -> int:
        sink = self._sink
        if sink is None:
            return 1
        try:
            if wav and numsamples > 0:
                samples = np.array((ctypes.c_int16 * numsamples).from_address(wav), dtype=np.int16)
            else:
                samples = None
            words = None
            if self._want_words and events:
                words = []
                i = 0
                while (event := events[i]).type != espeakEVENT_LIST_TERMINATED:
                    if event.type == espeakEVENT_WORD:
                        words.append((event.text_position, event.length, event.sample))
                    i += 1
            return 1 if sink(samples, words) else 0
        except BaseException:  # never let an exception unwind through C
            log.exception("eSpeak NG audio callback failed; aborting this synthesis")
            return 1

    def set_voice(self, name: str) -> bool:
        """Selects a voice such as ``en-us`` or ``hi+f3``; False when eSpeak NG has none."""
        if name == self._voice:
            return True
        ok = self._lib.espeak_SetVoiceByName(name.encode()) == EE_OK
        self._voice = name if ok else None
        return ok

    def set_parameters(self, rate: int, pitch: int) -> None:
        self._lib.espeak_SetParameter(espeakRATE, rate, 0)
        self._lib.espeak_SetParameter(espeakPITCH, pitch, 0)

    def synth(self, text: str, sink: Sink, words: bool = False) -> int:
        """Synthesizes ``text`` (plain UTF-8, no SSML) on this thread, feeding ``sink`` each
        buffer as it is produced (with word positions when ``words``); returns eSpeak's status
        (0 also when the sink aborted)."""
        data = text.replace("\x00", " ").encode("utf-8", "replace") + b"\x00"
        self._sink = sink
        self._want_words = words
        try:
            return self._lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0,
                                          espeakCHARS_UTF8 | espeakENDPAUSE, None, None)
        finally:
            self._sink = None


def data_path() -> str:
    return espeakng_loader.get_data_path()


def has_variant(name: str) -> bool:
    """Whether the variant part of ``lang+variant`` exists (eSpeak NG ignores unknown ones)."""
    if "+" not in name:
        return True
    variant = name.split("+", 1)[1]
    return bool(variant) and "/" not in variant and (Path(data_path()) / "voices" / "!v" / variant).is_file()


# --- the pool of private copies --------------------------------------------------------------

_pool_lock = threading.Lock()
_idle: dict[int, list[EspeakLibrary]] = {}
_loaded: list[EspeakLibrary] = []


def _load_private_copy(buffer_ms: int) -> EspeakLibrary:
    src = espeakng_loader.get_library_path()
    with tempfile.TemporaryDirectory(prefix="veena-espeak-") as tmp:
        dst = Path(tmp) / f"libespeak-ng-veena{len(_loaded)}.so"
        shutil.copyfile(src, dst)
        # Deleting the file after dlopen is safe: the mapping keeps the inode alive, so a later
        # copy can never get the same inode and be mistaken for this one by the loader.
        lib = EspeakLibrary(str(dst), data_path(), buffer_ms)
    for other in _loaded:
        if other.handle == lib.handle or other.state_address() == lib.state_address():
            raise EspeakError("a private copy of libespeak-ng shares state with another copy")
    _loaded.append(lib)
    return lib


def acquire_libraries(count: int, buffer_ms: int) -> list[EspeakLibrary]:
    """``count`` independent engines, reused from the pool or freshly loaded."""
    with _pool_lock:
        idle = _idle.setdefault(buffer_ms, [])
        libs = [idle.pop() for _ in range(min(count, len(idle)))]
        try:
            while len(libs) < count:
                libs.append(_load_private_copy(buffer_ms))
        except BaseException:
            idle.extend(libs)
            raise
        return libs


def release_libraries(libs: list[EspeakLibrary]) -> None:
    """Returns engines to the pool; the caller must no longer use them."""
    with _pool_lock:
        for lib in libs:
            _idle.setdefault(lib.buffer_ms, []).append(lib)


def loaded_count() -> int:
    """How many private copies this process has loaded (for tests and diagnostics)."""
    with _pool_lock:
        return len(_loaded)
