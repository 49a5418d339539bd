-- Schema 1: records (partitioned by day on ts_ms), experiments, policy versions, audit log.
--
-- Records keep the columns that filters and aggregates read, plus the whole record in the
-- store's binary encoding (`body`, crate::codec), so a record round-trips exactly and a new
-- record field needs no migration.
CREATE TABLE llmopt_records (
    id                 text     NOT NULL,
    ts_ms              bigint   NOT NULL,
    -- Append order among equal timestamps: batch number << 20 | place in the batch.
    seq                bigint   NOT NULL,
    served_model       text     NOT NULL,
    provider           text     NOT NULL,
    tenant             text,
    experiment_id      text,
    tags               jsonb    NOT NULL,
    ok                 boolean  NOT NULL,
    cache_hit          boolean  NOT NULL,
    latency_us         bigint   NOT NULL,
    input_tokens       bigint,
    cache_read_tokens  bigint,
    cache_write_tokens bigint,
    output_tokens      bigint,
    -- Picodollars (i128): numeric keeps sums exact.
    cost               numeric(40, 0),
    saved_cost         numeric(40, 0),
    body               bytea    NOT NULL
) PARTITION BY RANGE (ts_ms);

-- Partitions (one per UTC day, `llmopt_records_YYYYMMDD`) are created on demand by the writer.
CREATE INDEX llmopt_records_time ON llmopt_records (ts_ms, seq);
CREATE INDEX llmopt_records_id ON llmopt_records (id);

CREATE SEQUENCE llmopt_record_batches;

CREATE TABLE llmopt_experiments (
    id         text   PRIMARY KEY,
    status     text   NOT NULL,
    revision   bigint NOT NULL,
    updated_ms bigint NOT NULL,
    body       text   NOT NULL
);

CREATE TABLE llmopt_policy_versions (
    version    bigint PRIMARY KEY,
    updated_ms bigint NOT NULL,
    reason     text   NOT NULL,
    body       text   NOT NULL
);

CREATE TABLE llmopt_audit (
    seq     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ts_ms   bigint NOT NULL,
    kind    text   NOT NULL,
    subject text   NOT NULL,
    detail  text   NOT NULL
);
