//! Virtual keys: JSON documents in the `keys` tree by id, and the `key_digests` tree from each
//! key's SHA-256 digest to its id, so that a digest belongs to one key. Keys are few and
//! written rarely (an admin creating or revoking one), so every write is flushed at once: a
//! key answered to the admin, or a revocation acknowledged, survives a crash.

use std::{
    path::PathBuf,
    sync::{Mutex, MutexGuard},
};

use llmopt_core::{KeyStore, StoreError, VirtualKey};
use sled::{
    Transactional, Tree,
    transaction::{ConflictableTransactionError, TransactionError},
};

use crate::{Result, sled_error};

#[derive(Debug)]
pub struct SledKeyStore {
    path: PathBuf,
    keys: Tree,
    digests: Tree,
    /// Makes read-modify-write of one key (revocation) atomic within the process.
    write_lock: Mutex<()>,
}

fn to_json(key: &VirtualKey) -> Result<Vec<u8>> {
    serde_json::to_vec(key).map_err(|error| StoreError::Encoding(error.to_string()))
}

fn from_json(bytes: &[u8]) -> Result<VirtualKey> {
    serde_json::from_slice(bytes).map_err(|error| StoreError::Encoding(error.to_string()))
}

impl SledKeyStore {
    pub(crate) fn open(path: PathBuf, db: &sled::Db) -> Result<Self> {
        let keys = db.open_tree("keys").map_err(|error| sled_error(&path, error))?;
        let digests = db.open_tree("key_digests").map_err(|error| sled_error(&path, error))?;
        Ok(SledKeyStore { path, keys, digests, write_lock: Mutex::new(()) })
    }

    fn err(&self, error: sled::Error) -> StoreError {
        sled_error(&self.path, error)
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.write_lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn flush(&self) -> Result<()> {
        self.keys.flush().map_err(|error| self.err(error))?;
        self.digests.flush().map_err(|error| self.err(error))?;
        Ok(())
    }
}

impl KeyStore for SledKeyStore {
    fn insert(&self, key: &VirtualKey) -> Result<()> {
        let _guard = self.lock();
        let value = to_json(key)?;
        let conflict = || StoreError::Conflict { key: key.id.clone(), expected: 0, found: 1 };
        // Both trees in one transaction: a key is never stored without its digest entry.
        let outcome = (&self.keys, &self.digests).transaction(|(keys, digests)| {
            if keys.get(key.id.as_bytes())?.is_some()
                || digests.get(key.sha256.as_bytes())?.is_some()
            {
                return Err(ConflictableTransactionError::Abort(()));
            }
            keys.insert(key.id.as_bytes(), value.as_slice())?;
            digests.insert(key.sha256.as_bytes(), key.id.as_bytes())?;
            Ok(())
        });
        match outcome {
            Ok(()) => self.flush(),
            Err(TransactionError::Abort(())) => Err(conflict()),
            Err(TransactionError::Storage(error)) => Err(self.err(error)),
        }
    }

    fn get(&self, id: &str) -> Result<Option<VirtualKey>> {
        match self.keys.get(id.as_bytes()).map_err(|error| self.err(error))? {
            Some(bytes) => Ok(Some(from_json(&bytes)?)),
            None => Ok(None),
        }
    }

    fn list(&self) -> Result<Vec<VirtualKey>> {
        self.keys
            .iter()
            .map(|item| {
                let (_, bytes) = item.map_err(|error| self.err(error))?;
                from_json(&bytes)
            })
            .collect()
    }

    fn revoke(&self, id: &str, at_ms: i64) -> Result<bool> {
        let _guard = self.lock();
        let Some(mut key) = self.get(id)? else { return Ok(false) };
        if key.revoked_ms.is_none() {
            key.revoked_ms = Some(at_ms);
            self.keys.insert(id.as_bytes(), to_json(&key)?).map_err(|error| self.err(error))?;
            self.flush()?;
        }
        Ok(true)
    }
}
