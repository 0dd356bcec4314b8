//! What every benchmark target shares: the quick mode, criterion settings, the runtime,
//! the fixtures and the service URLs.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::Criterion;
use serde_json::{Map, Value};
use session_core::{Data, Record};
use time::OffsetDateTime;

/// Whether `BENCH_QUICK=1`: every benchmark runs very briefly (a smoke test, not a number).
pub fn quick() -> bool {
    std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Milliseconds from `var`, else `default`.
fn millis(var: &str, default: u64) -> Duration {
    Duration::from_millis(
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

/// Criterion configured for the mode: quick (50 ms warm-up, 100 ms measurement, 10
/// samples) or full (300 ms, 1 s, 20 samples; `BENCH_WARM_UP_MS`, `BENCH_MEASURE_MS`
/// override).
pub fn criterion() -> Criterion {
    let c = Criterion::default().without_plots();
    let c = if quick() {
        c.warm_up_time(Duration::from_millis(50))
            .measurement_time(Duration::from_millis(100))
            .sample_size(10)
    } else {
        c.warm_up_time(millis("BENCH_WARM_UP_MS", 300))
            .measurement_time(millis("BENCH_MEASURE_MS", 1000))
            .sample_size(20)
    };
    c.configure_from_args()
}

/// The multi-threaded runtime every benchmark runs on (one worker per core).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The two record sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// Ten keys, about 1 KiB of JSON.
    K1,
    /// Ten keys, about 10 KiB of JSON.
    K10,
}

impl Size {
    pub const ALL: [Size; 2] = [Size::K1, Size::K10];

    pub fn name(self) -> &'static str {
        match self {
            Size::K1 => "1k",
            Size::K10 => "10k",
        }
    }

    /// Ten keys whose JSON encoding is about 1 KiB or 10 KiB.
    pub fn data(self) -> Data {
        let per_value = match self {
            Size::K1 => 88,
            Size::K10 => 1012,
        };
        let mut data = Map::new();
        for i in 0..10 {
            let value: String = (0..per_value)
                .map(|j| char::from(b'a' + u8::try_from((i * 7 + j) % 26).unwrap_or(0)))
                .collect();
            data.insert(format!("key_{i:02}"), Value::String(value));
        }
        data
    }

    /// A fresh record (version 0) expiring in a day.
    pub fn record(self) -> Record {
        Record::new(self.data(), in_a_day())
    }
}

/// Now plus one day.
pub fn in_a_day() -> OffsetDateTime {
    OffsetDateTime::now_utc() + time::Duration::days(1)
}

/// The service URL in `var`, or `None` after printing why the benchmarks that need it
/// are skipped.
pub fn service_url(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            eprintln!("NOTICE: {var} is not set: skipping the {what} benchmarks");
            None
        }
    }
}

/// Whether the store named `name` is selected by `BENCH_STORES` (comma-separated; all
/// when unset).
pub fn selected(name: &str) -> bool {
    match std::env::var("BENCH_STORES") {
        Ok(list) if !list.trim().is_empty() => list.split(',').any(|s| s.trim() == name),
        _ => true,
    }
}

/// Where the file-backed subjects keep their directories.
pub fn file_root() -> PathBuf {
    std::env::temp_dir().join("session-bench-files")
}

/// `path`, emptied (or created) for one run.
pub fn fresh_dir(path: &Path) -> PathBuf {
    let _ = std::fs::remove_dir_all(path);
    std::fs::create_dir_all(path).expect("bench directory");
    path.to_owned()
}

/// 32 random bytes.
pub fn random_id() -> [u8; 32] {
    let mut id = [0u8; 32];
    getrandom::fill(&mut id).expect("getrandom");
    id
}

/// A short random suffix for table names and prefixes of one run.
pub fn run_suffix() -> String {
    hex::encode(&random_id()[..4])
}
