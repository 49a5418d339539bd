//! Experiment documents, policy versions and the audit log in PostgreSQL. Bodies are JSON text
//! (exactly what serde_json wrote: `jsonb` would reorder keys and reformat numbers, and nothing
//! queries inside them).

use std::sync::Arc;

use llmopt_core::{
    AuditEntry, ExperimentDoc, ExperimentStore, KeyStore, PolicyDoc, PolicyStore, StoreError,
    VirtualKey,
};

use super::{Engine, db_error, pool_error};
use crate::Result;

/// Key of the advisory lock that serialises policy saves ("llmopt" + 2).
const POLICY_LOCK: i64 = 0x6c6c_6d6f_7074_0002;

fn to_json(value: &serde_json::Value) -> Result<String> {
    serde_json::to_string(value).map_err(|error| StoreError::Encoding(error.to_string()))
}

fn from_json(text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|error| StoreError::Encoding(error.to_string()))
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn to_i64(value: u64, what: &str) -> Result<i64> {
    i64::try_from(value)
        .map_err(|_| StoreError::InvalidQuery(format!("{what} {value} is too large")))
}

#[derive(Debug)]
pub struct PgExperimentStore {
    engine: Arc<Engine>,
}

impl PgExperimentStore {
    pub(super) fn new(engine: Arc<Engine>) -> PgExperimentStore {
        PgExperimentStore { engine }
    }
}

fn experiment_from_row(row: &tokio_postgres::Row) -> Result<ExperimentDoc> {
    Ok(ExperimentDoc {
        id: row.get(0),
        status: row.get(1),
        revision: to_u64(row.get(2)),
        updated_ms: row.get(3),
        body: from_json(row.get(4))?,
    })
}

impl ExperimentStore for PgExperimentStore {
    fn put(&self, doc: &ExperimentDoc) -> Result<u64> {
        let location = self.engine.location().clone();
        let doc = doc.clone();
        let body = to_json(&doc.body)?;
        let expected = to_i64(doc.revision, "revision")?;
        self.engine.run(move |pool| async move {
            let client = pool.get().await.map_err(|error| pool_error(&location, error))?;
            let db = |error: tokio_postgres::Error| db_error(&location, &error);
            // Compare-and-swap in one statement: insert when new (revision 0), update when the
            // stored revision is the expected one. No row back means someone else wrote first.
            let written = if expected == 0 {
                let statement = client
                    .prepare_cached(
                        "INSERT INTO llmopt_experiments (id, status, revision, updated_ms, body)
                         VALUES ($1, $2, 1, $3, $4) ON CONFLICT (id) DO NOTHING RETURNING revision",
                    )
                    .await
                    .map_err(db)?;
                client
                    .query_opt(&statement, &[&doc.id, &doc.status, &doc.updated_ms, &body])
                    .await
                    .map_err(db)?
            } else {
                let statement = client
                    .prepare_cached(
                        "UPDATE llmopt_experiments
                         SET status = $2, revision = revision + 1, updated_ms = $3, body = $4
                         WHERE id = $1 AND revision = $5 RETURNING revision",
                    )
                    .await
                    .map_err(db)?;
                client
                    .query_opt(
                        &statement,
                        &[&doc.id, &doc.status, &doc.updated_ms, &body, &expected],
                    )
                    .await
                    .map_err(db)?
            };
            if let Some(row) = written {
                return Ok(to_u64(row.get(0)));
            }
            let found = client
                .query_opt("SELECT revision FROM llmopt_experiments WHERE id = $1", &[&doc.id])
                .await
                .map_err(db)?
                .map_or(0, |row| to_u64(row.get(0)));
            Err(StoreError::Conflict { key: doc.id, expected: doc.revision, found })
        })
    }

    fn get(&self, id: &str) -> Result<Option<ExperimentDoc>> {
        let location = self.engine.location().clone();
        let id = id.to_owned();
        self.engine.run(move |pool| async move {
            let client = pool.get().await.map_err(|error| pool_error(&location, error))?;
            let row = client
                .query_opt(
                    "SELECT id, status, revision, updated_ms, body FROM llmopt_experiments
                     WHERE id = $1",
                    &[&id],
                )
                .await
                .map_err(|error| db_error(&location, &error))?;
            row.as_ref().map(experiment_from_row).transpose()
        })
    }

    fn list(&self) -> Result<Vec<ExperimentDoc>> {
        let location = self.engine.location().clone();
        self.engine.run(move |pool| async move {
            let client = pool.get().await.map_err(|error| pool_error(&location, error))?;
            // Byte order of ids, as the other stores list them.
            let rows = client
                .query(
                    "SELECT id, status, revision, updated_ms, body FROM llmopt_experiments
                     ORDER BY id COLLATE \"C\"",
                    &[],
                )
                .await
                .map_err(|error| db_error(&location, &error))?;
            rows.iter().map(experiment_from_row).collect()
        })
    }

    fn delete(&self, id: &str) -> Result<bool> {
        let location = self.engine.location().clone();
        let id = id.to_owned();
        self.engine.run(move |pool| async move {
            let client = pool.get().await.map_err(|error| pool_error(&location, error))?;
            let deleted = client
                .execute("DELETE FROM llmopt_experiments WHERE id = $1", &[&id])
                .await
                .map_err(|error| db_error(&location, &error))?;
            Ok(deleted > 0)
        })
    }
}

#[derive(Debug)]
pub struct PgPolicyStore {
    engine: Arc<Engine>,
}

impl PgPolicyStore {
    pub(super) fn new(engine: Arc<Engine>) -> PgPolicyStore {
        PgPolicyStore { engine }
    }
}

fn policy_from_row(row: &tokio_postgres::Row) -> Result<PolicyDoc> {
    Ok(PolicyDoc {
        version: to_u64(row.get(0)),
        updated_ms: row.get(1),
        reason: row.get(2),
        body: from_json(row.get(3))?,
    })
}

impl PolicyStore for PgPolicyStore {
    fn load(&self) -> Result<Option<PolicyDoc>> {
        Ok(self.history(1)?.into_iter().next())
    }

    /// One index lookup, cheap enough for every replica to poll each second.
    fn current_version(&self) -> Result<u64> {
        let location = self.engine.location().clone();
        self.engine.run(move |pool| async move {
            let client = pool.get().await.map_err(|error| pool_error(&location, error))?;
            let row = client
                .query_one("SELECT coalesce(max(version), 0) FROM llmopt_policy_versions", &[])
                .await
                .map_err(|error| db_error(&location, &error))?;
            Ok(to_u64(row.get(0)))
        })
    }

    fn save(&self, doc: &PolicyDoc) -> Result<()> {
        let location = self.engine.location().clone();
        let version = to_i64(doc.version, "policy version")?;
        let body = to_json(&doc.body)?;
        let (updated_ms, reason) = (doc.updated_ms, doc.reason.clone());
        self.engine.run(move |pool| async move {
            let mut client = pool.get().await.map_err(|error| pool_error(&location, error))?;
            let db = |error: tokio_postgres::Error| db_error(&location, &error);
            let transaction = client.transaction().await.map_err(db)?;
            // Versions only grow, across replicas too: saves are serialised.
            transaction
                .execute("SELECT pg_advisory_xact_lock($1)", &[&POLICY_LOCK])
                .await
                .map_err(db)?;
            let current: i64 = transaction
                .query_one("SELECT coalesce(max(version), 0) FROM llmopt_policy_versions", &[])
                .await
                .map_err(db)?
                .get(0);
            if version <= current {
                return Err(StoreError::Conflict {
                    key: "policy".to_owned(),
                    expected: to_u64(version),
                    found: to_u64(current),
                });
            }
            transaction
                .execute(
                    "INSERT INTO llmopt_policy_versions (version, updated_ms, reason, body)
                     VALUES ($1, $2, $3, $4)",
                    &[&version, &updated_ms, &reason, &body],
                )
                .await
                .map_err(db)?;
            transaction.commit().await.map_err(db)
        })
    }

    fn history(&self, limit: usize) -> Result<Vec<PolicyDoc>> {
        let location = self.engine.location().clone();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.engine.run(move |pool| async move {
            let client = pool.get().await.map_err(|error| pool_error(&location, error))?;
            let rows = client
                .query(
                    "SELECT version, updated_ms, reason, body FROM llmopt_policy_versions
                     ORDER BY version DESC LIMIT $1",
                    &[&limit],
                )
                .await
                .map_err(|error| db_error(&location, &error))?;
            rows.iter().map(policy_from_row).collect()
        })
    }

    fn append_audit(&self, entry: &AuditEntry) -> Result<u64> {
        let location = self.engine.location().clone();
        let detail = to_json(&entry.detail)?;
        let (ts_ms, kind, subject) = (entry.ts_ms, entry.kind.clone(), entry.subject.clone());
        self.engine.run(move |pool| async move {
            let client = pool.get().await.map_err(|error| pool_error(&location, error))?;
            let row = client
                .query_one(
                    "INSERT INTO llmopt_audit (ts_ms, kind, subject, detail)
                     VALUES ($1, $2, $3, $4) RETURNING seq",
                    &[&ts_ms, &kind, &subject, &detail],
                )
                .await
                .map_err(|error| db_error(&location, &error))?;
            Ok(to_u64(row.get(0)))
        })
    }

    fn audit(&self, after_seq: u64, limit: usize) -> Result<Vec<AuditEntry>> {
        let location = self.engine.location().clone();
        let after = i64::try_from(after_seq).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.engine.run(move |pool| async move {
            let client = pool.get().await.map_err(|error| pool_error(&location, error))?;
            let rows = client
                .query(
                    "SELECT seq, ts_ms, kind, subject, detail FROM llmopt_audit
                     WHERE seq > $1 ORDER BY seq LIMIT $2",
                    &[&after, &limit],
                )
                .await
                .map_err(|error| db_error(&location, &error))?;
            rows.iter()
                .map(|row| {
                    Ok(AuditEntry {
                        seq: to_u64(row.get(0)),
                        ts_ms: row.get(1),
                        kind: row.get(2),
                        subject: row.get(3),
                        detail: from_json(row.get(4))?,
                    })
                })
                .collect()
        })
    }
}

/// Virtual keys (`llmopt_keys`): the document as JSON text, the digest unique.
#[derive(Debug)]
pub struct PgKeyStore {
    engine: Arc<Engine>,
}

impl PgKeyStore {
    pub(super) fn new(engine: Arc<Engine>) -> PgKeyStore {
        PgKeyStore { engine }
    }
}

fn key_from_text(text: &str) -> Result<VirtualKey> {
    serde_json::from_str(text).map_err(|error| StoreError::Encoding(error.to_string()))
}

impl KeyStore for PgKeyStore {
    fn insert(&self, key: &VirtualKey) -> Result<()> {
        let location = self.engine.location().clone();
        let body =
            serde_json::to_string(key).map_err(|error| StoreError::Encoding(error.to_string()))?;
        let key = key.clone();
        self.engine.run(move |pool| async move {
            let client = pool.get().await.map_err(|error| pool_error(&location, error))?;
            let inserted = client
                .execute(
                    "INSERT INTO llmopt_keys (id, sha256, revoked_ms, body) VALUES ($1, $2, $3, $4)
                     ON CONFLICT DO NOTHING",
                    &[&key.id, &key.sha256, &key.revoked_ms, &body],
                )
                .await
                .map_err(|error| db_error(&location, &error))?;
            if inserted == 0 {
                // Its id or its digest is already stored (as on sled).
                return Err(StoreError::Conflict { key: key.id.clone(), expected: 0, found: 1 });
            }
            Ok(())
        })
    }

    fn get(&self, id: &str) -> Result<Option<VirtualKey>> {
        let location = self.engine.location().clone();
        let id = id.to_owned();
        self.engine.run(move |pool| async move {
            let client = pool.get().await.map_err(|error| pool_error(&location, error))?;
            let row = client
                .query_opt("SELECT body FROM llmopt_keys WHERE id = $1", &[&id])
                .await
                .map_err(|error| db_error(&location, &error))?;
            row.map(|row| key_from_text(row.get(0))).transpose()
        })
    }

    fn list(&self) -> Result<Vec<VirtualKey>> {
        let location = self.engine.location().clone();
        self.engine.run(move |pool| async move {
            let client = pool.get().await.map_err(|error| pool_error(&location, error))?;
            let rows = client
                .query("SELECT body FROM llmopt_keys ORDER BY id", &[])
                .await
                .map_err(|error| db_error(&location, &error))?;
            rows.iter().map(|row| key_from_text(row.get(0))).collect()
        })
    }

    fn revoke(&self, id: &str, at_ms: i64) -> Result<bool> {
        let location = self.engine.location().clone();
        let id = id.to_owned();
        self.engine.run(move |pool| async move {
            let mut client = pool.get().await.map_err(|error| pool_error(&location, error))?;
            let db = |error: tokio_postgres::Error| db_error(&location, &error);
            // Read, mark and write in one transaction with the row locked: a second revocation
            // keeps the first one's time.
            let transaction = client.transaction().await.map_err(db)?;
            let Some(row) = transaction
                .query_opt("SELECT body FROM llmopt_keys WHERE id = $1 FOR UPDATE", &[&id])
                .await
                .map_err(db)?
            else {
                return Ok(false);
            };
            let mut key = key_from_text(row.get(0))?;
            if key.revoked_ms.is_none() {
                key.revoked_ms = Some(at_ms);
                let body = serde_json::to_string(&key)
                    .map_err(|error| StoreError::Encoding(error.to_string()))?;
                transaction
                    .execute(
                        "UPDATE llmopt_keys SET revoked_ms = $2, body = $3 WHERE id = $1",
                        &[&id, &key.revoked_ms, &body],
                    )
                    .await
                    .map_err(db)?;
            }
            transaction.commit().await.map_err(db)?;
            Ok(true)
        })
    }
}
