-- Veena: API keys, credit holds, usage and sentence storage (PostgreSQL 13+, also Supabase).
-- Applied by `veena db migrate` or at start-up; each file runs once, in a transaction, in name
-- order, recorded in veena_schema_migrations.

CREATE TABLE IF NOT EXISTS veena_api_keys (
    id              text PRIMARY KEY,                 -- public id (key_...), safe to log
    key_hash        text NOT NULL UNIQUE,             -- hex SHA-256 of the secret key
    prefix          text NOT NULL,                    -- first characters, to recognise a key
    owner           text NOT NULL,
    name            text NOT NULL DEFAULT '',
    scopes          text[] NOT NULL DEFAULT '{tts}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz,
    revoked         boolean NOT NULL DEFAULT false,
    revoked_at      timestamptz,
    rate_per_minute integer,                          -- NULL: the rate-limit plugin's default
    max_streams     integer,                          -- NULL: the rate-limit plugin's default
    credits         bigint,                           -- NULL: not metered
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT veena_api_keys_credits_never_negative CHECK (credits IS NULL OR credits >= 0)
);
CREATE INDEX IF NOT EXISTS veena_api_keys_owner ON veena_api_keys (owner);

-- Credits taken before synthesis, until the request settles (what was delivered is charged,
-- the rest given back). A hold left by a crashed process is released by
-- veena_release_stale_holds.
CREATE TABLE IF NOT EXISTS veena_credit_holds (
    id         text PRIMARY KEY,
    key_id     text NOT NULL REFERENCES veena_api_keys (id),
    amount     bigint NOT NULL CHECK (amount >= 0),
    request_id text,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS veena_usage (
    id              text PRIMARY KEY,                 -- the hold id: settling twice is a no-op
    key_id          text NOT NULL,
    request_id      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    chars           integer NOT NULL,                 -- characters delivered (billed)
    chars_requested integer NOT NULL,
    audio_seconds   double precision NOT NULL,
    format          text NOT NULL,
    speaker         text NOT NULL,
    synthesizer     text NOT NULL,
    stream          boolean NOT NULL,
    outcome         text NOT NULL,
    ttfb_ms         double precision,
    total_ms        double precision NOT NULL,
    credits         bigint NOT NULL,                  -- charged
    held            bigint NOT NULL                   -- reserved before synthesis
);
CREATE INDEX IF NOT EXISTS veena_usage_key_time ON veena_usage (key_id, created_at);

CREATE TABLE IF NOT EXISTS veena_sentences (
    id              text PRIMARY KEY,
    request_id      text NOT NULL,
    key_id          text,
    created_at      timestamptz NOT NULL,
    original_text   text NOT NULL,
    normalized_text text NOT NULL,
    speaker         text NOT NULL,
    synthesizer     text NOT NULL,
    format          text NOT NULL,
    sample_rate     integer NOT NULL,
    stream          boolean NOT NULL,
    chunks          integer NOT NULL,
    chars_requested integer NOT NULL,
    chars_delivered integer NOT NULL,
    audio_seconds   double precision NOT NULL,
    bytes_sent      bigint NOT NULL,
    ttfb_ms         double precision,
    total_ms        double precision NOT NULL,
    outcome         text NOT NULL,
    error_code      text
);
CREATE INDEX IF NOT EXISTS veena_sentences_time ON veena_sentences (created_at);
CREATE INDEX IF NOT EXISTS veena_sentences_key ON veena_sentences (key_id, created_at);

-- The debit: one atomic statement. The row lock taken by UPDATE serialises concurrent holds on
-- one key, and the WHERE clause is re-checked against the latest balance, so parallel requests
-- can never take more than the balance (the CHECK constraint above guards it once more).
-- PL/pgSQL rather than SQL functions: their statements' plans are cached per connection.
CREATE OR REPLACE FUNCTION veena_reserve_credits(p_key_id text, p_hold_id text, p_amount bigint,
                                                 p_request_id text)
RETURNS TABLE (ok boolean, balance bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH k AS (
        UPDATE veena_api_keys SET credits = credits - p_amount, updated_at = now()
         WHERE id = p_key_id AND (credits IS NULL OR credits >= p_amount)
        RETURNING credits),
    h AS (
        INSERT INTO veena_credit_holds (id, key_id, amount, request_id)
        SELECT p_hold_id, p_key_id, p_amount, p_request_id FROM k)
    SELECT true, k.credits FROM k
    UNION ALL
    SELECT false, (SELECT credits FROM veena_api_keys WHERE id = p_key_id)
     WHERE NOT EXISTS (SELECT 1 FROM k);
END
$$;

-- Settles a request in one statement: records the usage row (its id is the hold id, so a
-- replayed settlement changes nothing), drops the hold and gives back what was held but not
-- charged. Returns the new balance (NULL for an unmetered key or a repeated settlement).
CREATE OR REPLACE FUNCTION veena_settle_usage(p jsonb)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    new_balance bigint;
BEGIN
    WITH u AS (
        INSERT INTO veena_usage (id, key_id, request_id, created_at, chars, chars_requested,
                                 audio_seconds, format, speaker, synthesizer, stream, outcome,
                                 ttfb_ms, total_ms, credits, held)
        SELECT r.id, r.key_id, r.request_id, to_timestamp(r.created_at), r.chars,
               r.chars_requested, r.audio_seconds, r.format, r.speaker, r.synthesizer, r.stream,
               r.outcome, r.ttfb_ms, r.total_ms, r.credits, r.held
          FROM jsonb_to_record(p) AS r(id text, key_id text, request_id text,
               created_at double precision, chars integer, chars_requested integer,
               audio_seconds double precision, format text, speaker text, synthesizer text,
               stream boolean, outcome text, ttfb_ms double precision,
               total_ms double precision, credits bigint, held bigint)
        ON CONFLICT (id) DO NOTHING
        RETURNING id, credits),
    h AS (
        DELETE FROM veena_credit_holds
         WHERE id = p->>'id' AND EXISTS (SELECT 1 FROM u)
        RETURNING key_id, amount)
    UPDATE veena_api_keys k
       SET credits = k.credits + (h.amount - LEAST(u.credits, h.amount)), updated_at = now()
      FROM h, u
     WHERE k.id = h.key_id
    RETURNING k.credits INTO new_balance;
    RETURN new_balance;
END
$$;

-- Adds (or, negative, removes) credits; a key that was unmetered starts from zero.
CREATE OR REPLACE FUNCTION veena_add_credits(p_key_id text, p_amount bigint)
RETURNS bigint
LANGUAGE sql AS $$
    UPDATE veena_api_keys SET credits = COALESCE(credits, 0) + p_amount, updated_at = now()
     WHERE id = p_key_id
    RETURNING credits
$$;

-- Gives back holds older than p_seconds (left by a process that died mid-request).
CREATE OR REPLACE FUNCTION veena_release_stale_holds(p_seconds double precision)
RETURNS bigint
LANGUAGE sql AS $$
    WITH h AS (
        DELETE FROM veena_credit_holds
         WHERE created_at < now() - make_interval(secs => p_seconds)
        RETURNING key_id, amount),
    s AS (SELECT key_id, sum(amount) AS amount, count(*) AS n FROM h GROUP BY key_id),
    k AS (
        UPDATE veena_api_keys SET credits = credits + s.amount, updated_at = now()
          FROM s WHERE veena_api_keys.id = s.key_id
        RETURNING 1)
    SELECT COALESCE(sum(n), 0)::bigint FROM s
$$;
