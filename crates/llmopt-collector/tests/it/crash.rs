//! Kill the process during ingest, reopen the sled directory, and compare what is stored with
//! what `record` acknowledged.
//!
//! The child is this test binary itself, re-run on the ignored test `crash::child_writer` with
//! `LLMOPT_CRASH_DIR` set. It ingests records `c0, c1, …` at a paced rate through a collector
//! into sled and prints `ack N` (unbuffered, every 100 records) once record `N-1` was
//! acknowledged. The parent SIGKILLs it mid-stream, reads the acknowledgements left in the pipe,
//! reopens the directory and checks:
//! - nothing unacknowledged-and-unknown appears: the stored ids are exactly `c0..cS` (a prefix,
//!   no holes), each equal to the record that was sent;
//! - the loss `acked - S` is within the documented bound: what is acknowledged during one
//!   flush interval plus the time a write and a store flush take.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use llmopt_collector::{Collector, CollectorConfig};
use llmopt_core::{Clock, RecordQuery, RecordStore, SystemClock, TenantId};
use llmopt_storage::{SledStore, StorageConfig};

/// Low enough that a debug build's writer keeps up with sled on two busy cores (the bound
/// assumes it does: a backlog adds its own length to the loss).
const RATE_PER_SECOND: u64 = 4_000;
const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// Allowance for one batch write plus one sled flush on two shared, busy cores.
const WRITE_AND_FLUSH_ALLOWANCE: Duration = Duration::from_millis(450);
const KILL_AFTER_ACKS: u64 = 12_000;

fn record(index: u64, ts_ms: i64) -> llmopt_core::RequestRecord {
    let mut record =
        crate::simple(index, ts_ms, ["gpt-4o", "gpt-4o-mini"][index as usize % 2], 1 + index % 900);
    record.id = format!("c{index}").into();
    record.tenant = Some(TenantId::new("crash"));
    record
}

#[test]
#[ignore = "child process of `kill_during_ingest_loses_at_most_one_flush_interval`"]
fn child_writer() {
    let Some(dir) = std::env::var_os("LLMOPT_CRASH_DIR") else { return };
    let store = SledStore::open(std::path::Path::new(&dir), StorageConfig::default()).unwrap();
    let config = CollectorConfig { flush_interval: FLUSH_INTERVAL, ..CollectorConfig::default() };
    let collector = Collector::start(store.records(), Arc::new(SystemClock), config);
    let started = Instant::now();
    let ts = SystemClock.now_ms();
    let mut stdout = std::io::stdout().lock();
    for index in 0.. {
        collector.record(record(index, ts)).unwrap();
        if (index + 1) % 100 == 0 {
            writeln!(stdout, "ack {}", index + 1).unwrap();
            stdout.flush().unwrap();
            // Pace the load so the bound can be stated in records: sleep until this batch of
            // 100 is due at RATE_PER_SECOND (pacing a load generator, not waiting for an event).
            let due =
                started + Duration::from_secs_f64((index + 1) as f64 / RATE_PER_SECOND as f64);
            if let Some(ahead) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(ahead);
            }
        }
    }
}

#[test]
fn kill_during_ingest_loses_at_most_one_flush_interval() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash::child_writer", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env("LLMOPT_CRASH_DIR", &data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = 0;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(count) = line.strip_prefix("ack ") {
            acked = count.parse().unwrap();
            if acked >= KILL_AFTER_ACKS {
                break;
            }
        }
    }
    assert!(acked >= KILL_AFTER_ACKS, "child stopped early at {acked}");
    child.kill().unwrap(); // SIGKILL: no destructor, no shutdown, no flush
    child.wait().unwrap();
    // Acknowledgements written before the kill are still in the pipe.
    for line in lines {
        if let Some(count) = line.unwrap().strip_prefix("ack ") {
            acked = count.parse().unwrap();
        }
    }

    let store = SledStore::open(&data, StorageConfig::default()).unwrap();
    let records = store.records();
    let stored = records.scan(&RecordQuery::range(i64::MIN, i64::MAX)).unwrap();
    let stored_count = stored.len() as u64;
    assert_eq!(records.count().unwrap(), stored_count);
    for (index, got) in stored.iter().enumerate() {
        assert_eq!(got, &record(index as u64, got.ts_ms), "stored records are a prefix, no holes");
    }
    // Up to 99 records may have been acknowledged after the last `ack` line.
    assert!(stored_count <= acked + 99, "stored {stored_count} > acknowledged {acked} + 99");
    let lost = acked.saturating_sub(stored_count);
    let bound = (RATE_PER_SECOND as f64
        * (FLUSH_INTERVAL + WRITE_AND_FLUSH_ALLOWANCE).as_secs_f64()) as u64;
    println!(
        "crash test: acknowledged {acked}, stored {stored_count}, lost {lost} \
         ({:.1} ms of traffic at {RATE_PER_SECOND}/s); bound {bound}",
        lost as f64 * 1000.0 / RATE_PER_SECOND as f64
    );
    assert!(lost <= bound, "lost {lost} records, more than the bound {bound}");
}
