-- The task history: one row per task (its latest known state), its state changes and its attempts.
-- Applied once, in a transaction, by taskflow_server.history.db (schema_version records it).
-- Times are timestamptz; money is numeric; ids are the store's task ids and event-log ids.

CREATE TABLE tasks (
    id               text PRIMARY KEY,
    task_type        text        NOT NULL,
    lane             text        NOT NULL DEFAULT 'local',
    priority         text        NOT NULL DEFAULT 'default',
    state            text        NOT NULL,
    created_at       timestamptz NOT NULL,
    started_at       timestamptz,
    finished_at      timestamptz,          -- COMPLETED, CANCELLED or DLQ time; NULL while open
    updated_at       timestamptz NOT NULL,
    attempts         integer     NOT NULL DEFAULT 0,
    retry_count      integer     NOT NULL DEFAULT 0,
    max_retries      integer     NOT NULL DEFAULT 0,
    error_class      text,                 -- the last error's class (error_type)
    error_message    text,
    provider         text,
    model            text,
    prompt_tokens    bigint,
    completion_tokens bigint,
    cost_usd         numeric(18, 8),
    idempotency_key  text,
    batch            text,                 -- the batch or run the task belongs to (metadata)
    metadata         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    result           jsonb,                -- NULL when larger than the recorder's limit ...
    result_ref       text,                 -- ... then a note of where it was (and its size)
    last_event_id    text        NOT NULL, -- the newest event of the batch that wrote the row
    revision         integer     NOT NULL DEFAULT 0, -- state changes in the Redis record (0: from
                                           -- an event alone); (updated_at, revision) never goes back
    recorded_at      timestamptz NOT NULL DEFAULT now() -- when the row last changed
);

-- Keyset pagination walks (created_at, id); the filters below each have an index.
CREATE INDEX tasks_created_idx     ON tasks (created_at DESC, id DESC);
CREATE INDEX tasks_finished_idx    ON tasks (finished_at DESC) WHERE finished_at IS NOT NULL;
CREATE INDEX tasks_type_idx        ON tasks (task_type, created_at DESC);
CREATE INDEX tasks_state_idx       ON tasks (state, created_at DESC);
CREATE INDEX tasks_error_class_idx ON tasks (error_class, created_at DESC) WHERE error_class IS NOT NULL;
CREATE INDEX tasks_batch_idx       ON tasks (batch, created_at DESC) WHERE batch IS NOT NULL;

-- Every state change, keyed by the event-log id: a replayed event is a no-op (ON CONFLICT).
CREATE TABLE task_events (
    event_id   text        PRIMARY KEY,   -- the stream id, <ms>-<seq>
    task_id    text        NOT NULL,
    type       text        NOT NULL,      -- task_created, task_state_changed, task_deleted, ...
    old_state  text,
    state      text,
    at         timestamptz NOT NULL,
    data       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    recorded_at timestamptz NOT NULL DEFAULT now() -- commit time minus 'at' is the recorder's lag
);
CREATE INDEX task_events_task_idx ON task_events (task_id, at);

-- One row per attempt (a claim): when it ran, how it ended and why.
CREATE TABLE attempts (
    task_id     text        NOT NULL,
    attempt     integer     NOT NULL,      -- 1 for the first run
    worker_id   text,
    started_at  timestamptz,
    ended_at    timestamptz,
    outcome     text        NOT NULL,      -- COMPLETED; FAILED (a retry was scheduled); DLQ;
                                           -- CANCELLED; REQUEUED (handed back, lease lost);
                                           -- ACTIVE (still running)
    error_class text,
    error       text,
    PRIMARY KEY (task_id, attempt)
);
CREATE INDEX attempts_error_class_idx ON attempts (error_class) WHERE error_class IS NOT NULL;
