// The try-it page: pick a voice, format and speed, hear the stream while it downloads.
// mp3 (and whatever else MediaSource takes) plays through MediaSource; pcm, wav, mu-law and
// A-law are decoded here and Ogg Opus with WebCodecs, all scheduled on Web Audio; anything
// else plays once downloaded.
// "Speak as I type" sends new text over WS /v1/tts/ws and plays its pcm frames.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "veena.apiKey";
let audioCtx = null;
let current = null;

function authHeaders(json) {
  const h = json ? { "Content-Type": "application/json" } : {};
  const key = $("key").value.trim();
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

async function errorText(resp) {
  try {
    const body = await resp.json();
    const e = body.error || body;
    return `${resp.status} ${e.code || ""}: ${e.message || JSON.stringify(body)}`;
  } catch (_) {
    return `${resp.status} ${resp.statusText}`;
  }
}

async function getJson(path) {
  const resp = await fetch(path, { headers: authHeaders(false) });
  if (!resp.ok) throw new Error(await errorText(resp));
  return resp.json();
}

function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status").textContent = text || state;
}

function showError(message) {
  $("error").hidden = !message;
  $("error").textContent = message || "";
}

function setNumber(id, value, digits, attr) {
  const el = $(id);
  el.dataset[attr] = value == null ? "" : String(value);
  el.textContent = value == null ? "–" : value.toFixed(digits);
}

async function loadChoices() {
  try {
    const [voices, formats] = await Promise.all([getJson("/v1/voices"), getJson("/v1/formats")]);
    const vsel = $("voice");
    vsel.length = 1;
    for (const v of voices) {
      const label = v.description ? `${v.name} — ${v.description}` : v.name;
      vsel.add(new Option(label, v.name));
    }
    const fsel = $("format");
    const keep = fsel.value || "mp3";
    fsel.length = 0;
    for (const f of formats) {
      fsel.add(new Option(`${f.name} (${f.media_type})`, f.name));
      fsel.options[fsel.length - 1].dataset.mediaType = f.media_type;
    }
    if ([...fsel.options].some((o) => o.value === keep)) fsel.value = keep;
    showError("");
  } catch (err) {
    showError("Could not load voices and formats: " + err.message);
  }
}

// --- decoders: bytes in, float samples out; odd bytes wait for the next chunk -------------

function pcm16Decoder() {
  let rest = new Uint8Array(0);
  return (bytes) => {
    const all = new Uint8Array(rest.length + bytes.length);
    all.set(rest);
    all.set(bytes, rest.length);
    const n = all.length >> 1;
    rest = all.slice(n * 2);
    const view = new DataView(all.buffer, 0, n * 2);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = view.getInt16(i * 2, true) / 32768;
    return out;
  };
}

function g711Decoder(alaw) {
  const table = new Float32Array(256);
  for (let i = 0; i < 256; i++) {
    let v;
    if (alaw) {
      const a = i ^ 0x55, exp = (a >> 4) & 7, mant = a & 15;
      v = exp === 0 ? (mant << 4) + 8 : ((mant << 4) + 0x108) << (exp - 1);
      if (!(a & 0x80)) v = -v;
    } else {
      const u = ~i & 0xff, exp = (u >> 4) & 7, mant = u & 15;
      v = (((mant << 3) + 0x84) << exp) - 0x84;
      if (u & 0x80) v = -v;
    }
    table[i] = v / 32768;
  }
  return (bytes) => Float32Array.from(bytes, (b) => table[b]);
}

// A streamed WAV: RIFF chunks up to "data" (whose size may be a placeholder), then 16-bit PCM.
function wavDecoder(onFormat) {
  let head = new Uint8Array(0);
  let pcm = null;
  return (bytes) => {
    if (pcm) return pcm(bytes);
    const all = new Uint8Array(head.length + bytes.length);
    all.set(head);
    all.set(bytes, head.length);
    head = all;
    const view = new DataView(all.buffer);
    let pos = 12, channels = 1, bits = 16, rate = 0;
    while (pos + 8 <= all.length) {
      const id = String.fromCharCode(...all.subarray(pos, pos + 4));
      const size = view.getUint32(pos + 4, true);
      if (id === "fmt " && pos + 24 <= all.length) {
        channels = view.getUint16(pos + 10, true);
        rate = view.getUint32(pos + 12, true);
        bits = view.getUint16(pos + 22, true);
      }
      if (id === "data") {
        if (bits !== 16 || channels !== 1) throw new Error(`WAV ${bits}-bit ${channels} ch is not played here`);
        onFormat(rate);
        pcm = pcm16Decoder();
        return pcm(all.subarray(pos + 8));
      }
      pos += 8 + size + (size & 1);
    }
    return new Float32Array(0);
  };
}

// --- players ---------------------------------------------------------------------------------

class WebAudioPlayer {
  constructor(ctx, rate, onFirst) {
    this.ctx = ctx;
    this.rate = rate;
    this.onFirst = onFirst;
    this.next = 0;
    this.samples = 0;
    this.sources = [];
  }

  push(samples) {
    if (!samples.length) return;
    const buf = this.ctx.createBuffer(1, samples.length, this.rate);
    buf.copyToChannel(samples, 0);
    const src = this.ctx.createBufferSource();
    src.buffer = buf;
    src.connect(this.ctx.destination);
    const at = Math.max(this.next, this.ctx.currentTime + 0.03);
    src.start(at);
    this.next = at + buf.duration;
    this.samples += samples.length;
    this.sources.push(src);
    $("mode").dataset.buffers = String(this.sources.length);
    if (this.sources.length === 1) this.onFirst((at - this.ctx.currentTime) * 1000);
  }

  get duration() { return this.samples / this.rate; }

  stop() { for (const s of this.sources) { try { s.stop(); } catch (_) { /* not started */ } } }
}

function appendBuffer(sb, chunk) {
  return new Promise((resolve, reject) => {
    sb.addEventListener("updateend", resolve, { once: true });
    sb.addEventListener("error", () => reject(new Error("MediaSource could not take the audio")), { once: true });
    sb.appendBuffer(chunk);
  });
}

async function readAll(reader, onChunk, mark) {
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    mark.firstByte();
    await onChunk(value);
  }
  mark.downloaded();
}

async function playMediaSource(resp, mime, mark, run) {
  const audio = $("audio");
  const ms = new MediaSource();
  audio.src = URL.createObjectURL(ms);
  await new Promise((resolve) => ms.addEventListener("sourceopen", resolve, { once: true }));
  const sb = ms.addSourceBuffer(mime);
  audio.addEventListener("playing", () => mark.firstAudio(0), { once: true });
  audio.play().catch(() => { /* stopped before it started */ });
  await readAll(resp.body.getReader(), (chunk) => appendBuffer(sb, chunk), mark);
  if (run.stopped) return;
  ms.endOfStream();
  mark.duration(ms.duration);
}

async function playWebAudio(resp, kind, mark, run) {
  if (!audioCtx) audioCtx = new AudioContext();
  if (audioCtx.state === "suspended") await audioCtx.resume();
  let rate = Number(resp.headers.get("X-Sample-Rate")) || 24000;
  let player = null;
  const start = (r) => {
    player = new WebAudioPlayer(audioCtx, r, (delayMs) => mark.firstAudio(delayMs));
    run.stopPlayer = () => player.stop();
  };
  let decode;
  if (kind === "wav") decode = wavDecoder((r) => start(r || rate));
  else {
    decode = kind === "pcm" ? pcm16Decoder() : g711Decoder(kind === "alaw");
    start(rate);
  }
  await readAll(resp.body.getReader(), (chunk) => {
    const samples = decode(chunk);
    if (player) player.push(samples);
  }, mark);
  if (player) mark.duration(player.duration);
}

// Ogg pages in, Opus packets out (RFC 3533 lacing: a segment shorter than 255 ends a packet).
function oggPackets(onPacket) {
  let buf = new Uint8Array(0);
  let partial = [];
  return (bytes) => {
    const all = new Uint8Array(buf.length + bytes.length);
    all.set(buf);
    all.set(bytes, buf.length);
    let pos = 0;
    while (all.length - pos >= 27) {
      if (all[pos] !== 0x4f || all[pos + 1] !== 0x67 || all[pos + 2] !== 0x67 || all[pos + 3] !== 0x53) throw new Error("not an Ogg stream");
      const nseg = all[pos + 26];
      if (all.length - pos < 27 + nseg) break;
      let body = 0;
      for (let i = 0; i < nseg; i++) body += all[pos + 27 + i];
      if (all.length - pos < 27 + nseg + body) break;
      let off = pos + 27 + nseg;
      for (let i = 0; i < nseg; i++) {
        const len = all[pos + 27 + i];
        partial.push(all.subarray(off, off + len));
        off += len;
        if (len < 255) {
          const size = partial.reduce((n, p) => n + p.length, 0);
          const packet = new Uint8Array(size);
          let at = 0;
          for (const p of partial) { packet.set(p, at); at += p.length; }
          partial = [];
          onPacket(packet);
        }
      }
      pos = off;
    }
    partial = partial.map((p) => p.slice());  // the buffer they point into is dropped
    buf = all.slice(pos);
  };
}

async function opusDecodable() {
  if (!window.AudioDecoder) return false;
  const cfg = { codec: "opus", sampleRate: 48000, numberOfChannels: 1 };
  return (await AudioDecoder.isConfigSupported(cfg)).supported;
}

// Ogg Opus decoded with WebCodecs (MediaSource takes no Ogg), then scheduled on Web Audio.
async function playOggOpus(resp, mark, run) {
  if (audioCtx.state === "suspended") await audioCtx.resume();
  let player = null, decoder = null, failure = null, packets = 0, timestamp = 0;
  const output = (data) => {
    const samples = new Float32Array(data.numberOfFrames);
    data.copyTo(samples, { planeIndex: 0, format: "f32-planar" });
    if (!player) {
      player = new WebAudioPlayer(audioCtx, data.sampleRate, (delayMs) => mark.firstAudio(delayMs));
      run.stopPlayer = () => player.stop();
    }
    player.push(samples);
    data.close();
  };
  const parse = oggPackets((packet) => {
    packets += 1;
    if (packets === 1) {  // OpusHead: channel count at byte 9
      decoder = new AudioDecoder({ output, error: (e) => { failure = e; } });
      decoder.configure({ codec: "opus", sampleRate: 48000, numberOfChannels: packet[9], description: packet });
    } else if (packets > 2) {  // the second packet is OpusTags
      decoder.decode(new EncodedAudioChunk({ type: "key", timestamp, data: packet }));
      timestamp += 20000;
    }
  });
  await readAll(resp.body.getReader(), parse, mark);
  if (decoder) await decoder.flush();
  if (failure) throw failure;
  if (player) mark.duration(player.duration);
}

async function playWhole(resp, mark) {
  const audio = $("audio");
  const parts = [];
  await readAll(resp.body.getReader(), (chunk) => { parts.push(chunk); }, mark);
  const blob = new Blob(parts, { type: resp.headers.get("Content-Type") || "" });
  audio.src = URL.createObjectURL(blob);
  audio.addEventListener("playing", () => mark.firstAudio(0), { once: true });
  await audio.play();
  if (Number.isFinite(audio.duration)) mark.duration(audio.duration);
  else {  // a stream header without a length (streamed FLAC): count the decoded samples
    try {
      mark.duration((await audioCtx.decodeAudioData(await blob.arrayBuffer())).duration);
    } catch (_) { /* playing, with no length known */ }
  }
}

function webAudioKind(mediaType) {
  const base = mediaType.split(";")[0].trim();
  return { "audio/pcm": "pcm", "audio/wav": "wav", "audio/basic": "mulaw",
    "audio/x-alaw-basic": "alaw" }[base] || null;
}

// --- speak as I type: WS /v1/tts/ws, pcm frames scheduled on Web Audio -------------------

class TypingSession {
  constructor(withSpeed = true) {
    this.withSpeed = withSpeed;
    this.speedRefused = false;
    this.sent = $("text").value;  // what is in the box already is not spoken
    this.player = null;
    this.decode = pcm16Decoder();
    this.t0 = null;
    this.audioNext = false;
    const url = new URL("/v1/tts/ws", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    this.socket = new WebSocket(url);
    this.socket.binaryType = "arraybuffer";
    this.socket.onopen = () => this.open();
    this.socket.onmessage = (e) => this.message(e.data);
    this.socket.onclose = (e) => this.closed(e);
  }

  open() {
    const start = { type: "start", format: "pcm", binary: true };
    if ($("voice").value) start.voice = $("voice").value;
    const speed = Number($("speed").value);
    if (speed !== 1 && this.withSpeed) start.speed = speed;
    const key = $("key").value.trim();
    if (key) start.api_key = key;
    this.socket.send(JSON.stringify(start));
  }

  message(data) {
    if (data instanceof ArrayBuffer) {
      if (!this.player) return;
      this.player.push(this.decode(new Uint8Array(data)));
      setNumber("duration-s", this.player.duration, 2, "s");
      return;
    }
    const msg = JSON.parse(data);
    if (msg.type === "ready") {
      this.player = new WebAudioPlayer(audioCtx, msg.sample_rate, (delayMs) => {
        if (this.t0 !== null) setNumber("first-audio-ms", performance.now() - this.t0 + delayMs, 0, "ms");
      });
      $("mode").textContent = `WebSocket → Web Audio (pcm, ${msg.sample_rate} Hz)`;
      setStatus("listening", "speaking as you type");
      this.typed();
    } else if (msg.type === "error" && !this.player && msg.code === "invalid_message"
               && msg.message.includes("`speed`")) {
      this.speedRefused = true;  // a server whose WebSocket has no speed yet: retry at 1x
    } else if (msg.type === "error") {
      showError(`${msg.code}: ${msg.message}`);
    }
  }

  typed() {
    if (!this.player || this.socket.readyState !== WebSocket.OPEN) return;
    const text = $("text").value;
    if (!text.startsWith(this.sent)) { this.sent = text; return; }  // an edit: only new text is spoken
    const delta = text.slice(this.sent.length);
    if (!delta) return;
    if (this.t0 === null) this.t0 = performance.now();
    this.sent = text;
    this.socket.send(JSON.stringify({ type: "text", text: delta }));
  }

  flush() {
    if (this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify({ type: "flush" }));
  }

  stop() {
    if (this.player) this.player.stop();
    if (this.socket.readyState <= WebSocket.OPEN) this.socket.close(1000, "stopped");
  }

  closed(e) {
    if (typing === this && this.speedRefused) {
      showError("This server's WebSocket does not take a speed yet: speaking at 1×.");
      typing = new TypingSession(false);
      return;
    }
    if (typing === this) {
      typing = null;
      $("ws-mode").checked = false;
      if (e.code !== 1000) { setStatus("error", "error"); if ($("error").hidden) showError(`WebSocket closed: ${e.code} ${e.reason}`); }
      else setStatus("idle", "idle");
    }
  }
}

let typing = null;

function toggleTyping(on) {
  if (typing) { const t = typing; typing = null; t.stop(); setStatus("idle", "idle"); $("stop").disabled = true; }
  if (!on) return;
  stopCurrent();
  showError("");
  resetNumbers();
  $("stop").disabled = false;
  if (!audioCtx) audioCtx = new AudioContext();  // inside the click: allowed to play
  if (audioCtx.state === "suspended") audioCtx.resume();
  setStatus("loading", "connecting…");
  typing = new TypingSession();
}

// --- one request -------------------------------------------------------------------------

function resetNumbers() {
  for (const [id, attr] of [["first-byte-ms", "ms"], ["first-audio-ms", "ms"], ["download-ms", "ms"], ["duration-s", "s"]]) setNumber(id, null, 0, attr);
  delete $("mode").dataset.buffers;
}

function stopCurrent() {
  if (!current) return;
  current.stopped = true;
  current.abort.abort();
  if (current.stopPlayer) current.stopPlayer();
  $("audio").pause();
  current = null;
  $("stop").disabled = true;
}

async function speak() {
  stopCurrent();
  $("audio").pause();  // a Web Audio or WebCodecs run leaves the element to the last one
  showError("");
  resetNumbers();
  const run = { abort: new AbortController(), stopped: false, stopPlayer: null };
  current = run;
  $("stop").disabled = false;
  const t0 = performance.now();
  const since = () => performance.now() - t0;
  let firstByte = false, firstAudio = false;
  const mark = {
    firstByte: () => { if (!firstByte) { firstByte = true; setNumber("first-byte-ms", since(), 0, "ms"); } },
    firstAudio: (delayMs) => { if (!firstAudio) { firstAudio = true; setNumber("first-audio-ms", since() + delayMs, 0, "ms"); } },
    downloaded: () => { setNumber("download-ms", since(), 0, "ms"); setStatus("downloaded", "downloaded, playing"); },
    duration: (s) => setNumber("duration-s", Number.isFinite(s) ? s : null, 2, "s"),
  };
  if (!audioCtx) audioCtx = new AudioContext();  // created inside the click: allowed to play
  const body = { text: $("text").value, format: $("format").value, stream: true };
  if ($("voice").value) body.speaker = $("voice").value;
  const speed = Number($("speed").value);
  if (speed !== 1) body.speed = speed;
  setStatus("loading", "generating…");
  try {
    const resp = await fetch("/v1/tts/generate", {
      method: "POST", headers: authHeaders(true), body: JSON.stringify(body), signal: run.abort.signal,
    });
    if (!resp.ok) throw new Error(await errorText(resp));
    const mediaType = resp.headers.get("Content-Type") || "";
    const kind = webAudioKind(mediaType);
    setStatus("streaming", "streaming");
    if (kind) {
      $("mode").textContent = `Web Audio (${kind}, ${resp.headers.get("X-Sample-Rate")} Hz)`;
      await playWebAudio(resp, kind, mark, run);
    } else if (/^audio\/ogg;\s*codecs=opus/.test(mediaType) && await opusDecodable()) {
      $("mode").textContent = `WebCodecs → Web Audio (${mediaType})`;
      await playOggOpus(resp, mark, run);
    } else if (window.MediaSource && MediaSource.isTypeSupported(mediaType)) {
      $("mode").textContent = `MediaSource (${mediaType})`;
      await playMediaSource(resp, mediaType, mark, run);
    } else {
      $("mode").textContent = `whole file (${mediaType}: this browser cannot stream it)`;
      await playWhole(resp, mark);
    }
    if (!run.stopped) setStatus("done", "done");
  } catch (err) {
    if (run.stopped) return;
    setStatus("error", "error");
    showError(err.message);
  } finally {
    if (current === run) $("stop").disabled = true;
  }
}

function init() {
  const key = $("key");
  key.value = sessionStorage.getItem(KEY_STORE) || "";
  if (key.value) $("key-box").open = true;
  key.addEventListener("change", () => {
    if (key.value.trim()) sessionStorage.setItem(KEY_STORE, key.value.trim());
    else sessionStorage.removeItem(KEY_STORE);
    loadChoices();
  });
  $("speed").addEventListener("input", () => { $("speed-value").textContent = Number($("speed").value).toFixed(2) + "×"; });
  $("form").addEventListener("submit", (e) => { e.preventDefault(); if (typing) typing.flush(); else speak(); });
  $("text").addEventListener("input", () => { if (typing) typing.typed(); });
  if (document.body.dataset.ws) {
    $("ws-label").hidden = false;
    $("ws-mode").addEventListener("change", () => toggleTyping($("ws-mode").checked));
  }
  $("stop").addEventListener("click", () => {
    stopCurrent();
    if (typing) { $("ws-mode").checked = false; toggleTyping(false); }
    setStatus("idle", "stopped");
  });
  loadChoices().then(() => { document.body.dataset.ready = "1"; });
}

init();
