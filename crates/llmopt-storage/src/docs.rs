//! Experiment documents, policy versions and the audit log. These are small, rarely written
//! JSON documents whose schemas belong to other crates, so they are stored as JSON (readable
//! with any sled tool, and tolerant of fields this crate does not know).

use std::{
    path::PathBuf,
    sync::{Mutex, MutexGuard},
};

use llmopt_core::{AuditEntry, ExperimentDoc, ExperimentStore, PolicyDoc, PolicyStore, StoreError};
use sled::Tree;

use crate::{Result, sled_error};

fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|error| StoreError::Encoding(error.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|error| StoreError::Encoding(error.to_string()))
}

#[derive(Debug)]
pub struct SledExperimentStore {
    path: PathBuf,
    docs: Tree,
}

impl SledExperimentStore {
    pub(crate) fn open(path: PathBuf, db: &sled::Db) -> Result<Self> {
        let docs = db.open_tree("experiments").map_err(|error| sled_error(&path, error))?;
        Ok(SledExperimentStore { path, docs })
    }

    fn err(&self, error: sled::Error) -> StoreError {
        sled_error(&self.path, error)
    }
}

impl ExperimentStore for SledExperimentStore {
    fn put(&self, doc: &ExperimentDoc) -> Result<u64> {
        let current = self.docs.get(doc.id.as_bytes()).map_err(|error| self.err(error))?;
        let found = match &current {
            Some(bytes) => from_json::<ExperimentDoc>(bytes)?.revision,
            None => 0,
        };
        if found != doc.revision {
            return Err(StoreError::Conflict {
                key: doc.id.clone(),
                expected: doc.revision,
                found,
            });
        }
        let mut stored = doc.clone();
        stored.revision = found + 1;
        // Compare-and-swap on the exact bytes read: a concurrent writer between the read and
        // the write makes this fail instead of being overwritten (optimistic concurrency across
        // processes and threads without a lock).
        let swapped = self
            .docs
            .compare_and_swap(doc.id.as_bytes(), current, Some(to_json(&stored)?))
            .map_err(|error| self.err(error))?;
        match swapped {
            Ok(()) => Ok(stored.revision),
            Err(conflict) => {
                let found = match conflict.current {
                    Some(bytes) => from_json::<ExperimentDoc>(&bytes)?.revision,
                    None => 0,
                };
                Err(StoreError::Conflict { key: doc.id.clone(), expected: doc.revision, found })
            }
        }
    }

    fn get(&self, id: &str) -> Result<Option<ExperimentDoc>> {
        match self.docs.get(id.as_bytes()).map_err(|error| self.err(error))? {
            Some(bytes) => Ok(Some(from_json(&bytes)?)),
            None => Ok(None),
        }
    }

    fn list(&self) -> Result<Vec<ExperimentDoc>> {
        // Keys are the ids' bytes, so sled's order is the id order.
        self.docs
            .iter()
            .map(|item| {
                let (_, bytes) = item.map_err(|error| self.err(error))?;
                from_json(&bytes)
            })
            .collect()
    }

    fn delete(&self, id: &str) -> Result<bool> {
        Ok(self.docs.remove(id.as_bytes()).map_err(|error| self.err(error))?.is_some())
    }
}

#[derive(Debug)]
pub struct SledPolicyStore {
    path: PathBuf,
    db: sled::Db,
    /// Policy versions keyed by big-endian version, so the last key is the current policy.
    versions: Tree,
    /// Audit entries keyed by big-endian sequence.
    audit: Tree,
    /// Makes "check the newest version, then write a newer one" atomic within the process.
    save_lock: Mutex<()>,
}

impl SledPolicyStore {
    pub(crate) fn open(path: PathBuf, db: &sled::Db) -> Result<Self> {
        let versions = db.open_tree("policy").map_err(|error| sled_error(&path, error))?;
        let audit = db.open_tree("audit").map_err(|error| sled_error(&path, error))?;
        Ok(SledPolicyStore { path, db: db.clone(), versions, audit, save_lock: Mutex::new(()) })
    }

    fn err(&self, error: sled::Error) -> StoreError {
        sled_error(&self.path, error)
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.save_lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl PolicyStore for SledPolicyStore {
    fn load(&self) -> Result<Option<PolicyDoc>> {
        match self.versions.last().map_err(|error| self.err(error))? {
            Some((_, bytes)) => Ok(Some(from_json(&bytes)?)),
            None => Ok(None),
        }
    }

    fn save(&self, doc: &PolicyDoc) -> Result<()> {
        let _guard = self.lock();
        if let Some(current) = self.load()?
            && doc.version <= current.version
        {
            return Err(StoreError::Conflict {
                key: "policy".to_owned(),
                expected: current.version + 1,
                found: doc.version,
            });
        }
        self.versions
            .insert(doc.version.to_be_bytes(), to_json(doc)?)
            .map_err(|error| self.err(error))?;
        // A policy change is rare and must survive a crash: flush it now.
        self.versions.flush().map_err(|error| self.err(error))?;
        Ok(())
    }

    fn history(&self, limit: usize) -> Result<Vec<PolicyDoc>> {
        self.versions
            .iter()
            .rev()
            .take(limit)
            .map(|item| {
                let (_, bytes) = item.map_err(|error| self.err(error))?;
                from_json(&bytes)
            })
            .collect()
    }

    fn append_audit(&self, entry: &AuditEntry) -> Result<u64> {
        // sled's id generator is monotonic across restarts; +1 keeps 0 free as "before all".
        let seq = self.db.generate_id().map_err(|error| self.err(error))? + 1;
        let mut stored = entry.clone();
        stored.seq = seq;
        self.audit.insert(seq.to_be_bytes(), to_json(&stored)?).map_err(|error| self.err(error))?;
        Ok(seq)
    }

    fn audit(&self, after_seq: u64, limit: usize) -> Result<Vec<AuditEntry>> {
        let Some(start) = after_seq.checked_add(1) else { return Ok(Vec::new()) };
        self.audit
            .range(start.to_be_bytes()..)
            .take(limit)
            .map(|item| {
                let (_, bytes) = item.map_err(|error| self.err(error))?;
                from_json(&bytes)
            })
            .collect()
    }
}
