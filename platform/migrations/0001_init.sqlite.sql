-- Veena: API keys, credit holds, usage and sentence storage (SQLite 3.35+).
-- The same tables as 0001_init.postgres.sql; times are Unix seconds, scopes a JSON array.
-- The atomic operations (hold, settle) are transactions in veena.platform.db.sqlite.

CREATE TABLE IF NOT EXISTS veena_api_keys (
    id              TEXT PRIMARY KEY,
    key_hash        TEXT NOT NULL UNIQUE,
    prefix          TEXT NOT NULL,
    owner           TEXT NOT NULL,
    name            TEXT NOT NULL DEFAULT '',
    scopes          TEXT NOT NULL DEFAULT '["tts"]',
    created_at      REAL NOT NULL,
    expires_at      REAL,
    revoked         INTEGER NOT NULL DEFAULT 0,
    revoked_at      REAL,
    rate_per_minute INTEGER,
    max_streams     INTEGER,
    credits         INTEGER CHECK (credits IS NULL OR credits >= 0),
    updated_at      REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS veena_api_keys_owner ON veena_api_keys (owner);

CREATE TABLE IF NOT EXISTS veena_credit_holds (
    id         TEXT PRIMARY KEY,
    key_id     TEXT NOT NULL REFERENCES veena_api_keys (id),
    amount     INTEGER NOT NULL CHECK (amount >= 0),
    request_id TEXT,
    created_at REAL NOT NULL
);

CREATE TABLE IF NOT EXISTS veena_usage (
    id              TEXT PRIMARY KEY,
    key_id          TEXT NOT NULL,
    request_id      TEXT NOT NULL,
    created_at      REAL NOT NULL,
    chars           INTEGER NOT NULL,
    chars_requested INTEGER NOT NULL,
    audio_seconds   REAL NOT NULL,
    format          TEXT NOT NULL,
    speaker         TEXT NOT NULL,
    synthesizer     TEXT NOT NULL,
    stream          INTEGER NOT NULL,
    outcome         TEXT NOT NULL,
    ttfb_ms         REAL,
    total_ms        REAL NOT NULL,
    credits         INTEGER NOT NULL,
    held            INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS veena_usage_key_time ON veena_usage (key_id, created_at);

CREATE TABLE IF NOT EXISTS veena_sentences (
    id              TEXT PRIMARY KEY,
    request_id      TEXT NOT NULL,
    key_id          TEXT,
    created_at      REAL NOT NULL,
    original_text   TEXT NOT NULL,
    normalized_text TEXT NOT NULL,
    speaker         TEXT NOT NULL,
    synthesizer     TEXT NOT NULL,
    format          TEXT NOT NULL,
    sample_rate     INTEGER NOT NULL,
    stream          INTEGER NOT NULL,
    chunks          INTEGER NOT NULL,
    chars_requested INTEGER NOT NULL,
    chars_delivered INTEGER NOT NULL,
    audio_seconds   REAL NOT NULL,
    bytes_sent      INTEGER NOT NULL,
    ttfb_ms         REAL,
    total_ms        REAL NOT NULL,
    outcome         TEXT NOT NULL,
    error_code      TEXT
);
CREATE INDEX IF NOT EXISTS veena_sentences_time ON veena_sentences (created_at);
CREATE INDEX IF NOT EXISTS veena_sentences_key ON veena_sentences (key_id, created_at);
