//! Numbered schema migrations, run at open and recorded in `llmopt_schema_migrations`.
//!
//! Each migration is a file `migrations/postgres/NNNN_name.sql` of this crate, applied once, in
//! order, in one transaction with its row in the table. Replicas starting together serialise on
//! a transaction-level advisory lock, so the second finds the work done. A database whose
//! highest applied version is above [`SCHEMA_VERSION`] was migrated by a newer build: this one
//! refuses it rather than misread or write it.

use llmopt_core::StoreError;

use super::{Engine, db_error, pool_error};
use crate::Result;

/// (version, name, SQL), in order. Never edit an applied migration: add the next one.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "initial", include_str!("../../migrations/postgres/0001_initial.sql")),
    (2, "virtual_keys", include_str!("../../migrations/postgres/0002_virtual_keys.sql")),
];

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: i32 = 2;

/// Key of the advisory lock migrations take ("llmopt" + 1).
const MIGRATION_LOCK: i64 = 0x6c6c_6d6f_7074_0001;

pub(super) fn run(engine: &Engine) -> Result<()> {
    let location = engine.location().clone();
    engine.run(move |pool| async move {
        let mut client = pool.get().await.map_err(|error| pool_error(&location, error))?;
        let db = |error: tokio_postgres::Error| db_error(&location, &error);
        let transaction = client.transaction().await.map_err(db)?;
        transaction
            .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(db)?;
        transaction
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS llmopt_schema_migrations (
                     version    integer     PRIMARY KEY,
                     name       text        NOT NULL,
                     applied_at timestamptz NOT NULL DEFAULT now()
                 )",
            )
            .await
            .map_err(db)?;
        let applied: i32 = transaction
            .query_one("SELECT coalesce(max(version), 0) FROM llmopt_schema_migrations", &[])
            .await
            .map_err(db)?
            .get(0);
        if applied > SCHEMA_VERSION {
            return Err(StoreError::Corrupt {
                path: location.to_string(),
                message: format!(
                    "the database schema is version {applied}, newer than this build reads \
                     ({SCHEMA_VERSION}): it was migrated by a newer llm-auto-optimizer; upgrade \
                     this one rather than risk misreading it"
                ),
            });
        }
        for (version, name, sql) in MIGRATIONS.iter().filter(|(version, ..)| *version > applied) {
            transaction.batch_execute(sql).await.map_err(|error| StoreError::Io {
                path: location.to_string(),
                message: format!(
                    "migration {version:04}_{name} failed: {}",
                    super::describe(&error)
                ),
            })?;
            transaction
                .execute(
                    "INSERT INTO llmopt_schema_migrations (version, name) VALUES ($1, $2)",
                    &[version, name],
                )
                .await
                .map_err(db)?;
        }
        transaction.commit().await.map_err(db)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_up_to_the_schema_version() {
        for (index, (version, ..)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version, index as i32 + 1);
        }
        assert_eq!(MIGRATIONS.last().map(|(version, ..)| *version), Some(SCHEMA_VERSION));
    }
}
