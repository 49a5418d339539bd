use std::io::Write;

use llmopt_core::{RecordStore, StoreError, testsuite::full_record};
use llmopt_storage::{STORE_SCHEMA_VERSION, SledStore, StorageConfig};

fn assert_corrupt_naming(result: Result<SledStore, StoreError>, path: &std::path::Path) {
    match result {
        Err(StoreError::Corrupt { path: named, message }) => {
            assert_eq!(named, path.display().to_string(), "{message}");
        }
        other => panic!("expected Corrupt naming {}, got {other:?}", path.display()),
    }
}

#[test]
fn a_missing_directory_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("b");
    let store = SledStore::open(&path, StorageConfig::default()).unwrap();
    assert!(path.is_dir());
    assert_eq!(store.path(), path);
    assert_eq!(store.records().count().unwrap(), 0);
}

#[test]
fn a_directory_with_other_files_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
    assert_corrupt_naming(SledStore::open(dir.path(), StorageConfig::default()), dir.path());
    let names: Vec<_> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["notes.txt"], "nothing written");
}

#[test]
fn a_file_instead_of_a_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("file");
    std::fs::write(&path, b"x").unwrap();
    assert_corrupt_naming(SledStore::open(&path, StorageConfig::default()), &path);
}

#[test]
fn a_foreign_sled_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("foreign");
    {
        let db = sled::open(&path).unwrap();
        db.insert(b"their key", b"their value").unwrap();
        db.flush().unwrap();
    }
    assert_corrupt_naming(SledStore::open(&path, StorageConfig::default()), &path);
    let db = sled::open(&path).unwrap();
    assert_eq!(db.get(b"their key").unwrap().as_deref(), Some(&b"their value"[..]), "untouched");
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    drop(SledStore::open(&path, StorageConfig::default()).unwrap());
    {
        let db = sled::open(&path).unwrap();
        let meta = db.open_tree("meta").unwrap();
        meta.insert(b"schema", &(STORE_SCHEMA_VERSION + 1).to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let error = SledStore::open(&path, StorageConfig::default()).unwrap_err();
    assert!(error.to_string().contains("newer version"), "{error}");
    assert_corrupt_naming(Err(error), &path);
}

#[test]
fn damaged_files_are_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    {
        let store = SledStore::open(&path, StorageConfig::default()).unwrap();
        let records: Vec<_> =
            (0..2_000).map(|i| full_record(i, 1_767_225_600_000 + i as i64, "m", "t")).collect();
        store.records().append(&records).unwrap();
        store.flush().unwrap();
    }
    // Overwrite sled's configuration file with garbage: sled must not be able to make sense of
    // the directory.
    let mut conf =
        std::fs::OpenOptions::new().write(true).truncate(true).open(path.join("conf")).unwrap();
    conf.write_all(b"\x00\xffgarbage that is not a sled configuration\x13\x37").unwrap();
    drop(conf);
    let result = std::panic::catch_unwind(|| SledStore::open(&path, StorageConfig::default()));
    let result = result.expect("open must not panic");
    match result {
        Err(StoreError::Corrupt { path: named, .. } | StoreError::Io { path: named, .. }) => {
            assert_eq!(named, path.display().to_string());
        }
        other => panic!("expected an error naming the path, got {other:?}"),
    }
}

#[test]
fn a_directory_in_use_is_an_error_naming_the_lock_and_a_closed_one_reopens_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    let store = SledStore::open(&path, StorageConfig::default()).unwrap();
    store.records().append(&[full_record(1, 1_767_225_600_000, "gpt-4o", "acme")]).unwrap();
    match SledStore::open(&path, StorageConfig::default()) {
        Err(StoreError::Io { path: named, message }) => {
            assert_eq!(named, path.display().to_string());
            assert!(message.contains("locked by another process"), "{message}");
        }
        other => panic!("a second open of a directory in use must fail, got {other:?}"),
    }
    // Closed: reopening right away works, even while sled's threads let go of the lock.
    drop(store);
    for _ in 0..5 {
        let store = SledStore::open(&path, StorageConfig::default()).unwrap();
        assert_eq!(store.records().count().unwrap(), 1);
    }
}
