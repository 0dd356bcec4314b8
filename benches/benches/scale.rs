//! Scale: `clear_expired` over many expired sessions (PostgreSQL, SQLite, files) and the
//! memory a MokaStore spends per session. Not a criterion benchmark: each measurement is
//! one long run, printed and written as JSON to `<target>/criterion/scale.json` (or
//! `BENCH_SCALE_OUT`) for the report.
//!
//! While `clear_expired` runs, a probe task loads one live session in a loop; the longest
//! probe is the longest a request waited behind a single clean-up statement.

#![allow(missing_docs)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use session_core::{Record, SessionKey, Store};
use session_tests::stores::{self, Namespace};
use time::OffsetDateTime;

use common::Size;

fn rows() -> u64 {
    if common::quick() { 10_000 } else { 1_000_000 }
}

fn files() -> u64 {
    if common::quick() { 2_000 } else { 100_000 }
}

fn moka_sessions() -> u64 {
    if common::quick() { 5_000 } else { 100_000 }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Loads `key` in a loop until stopped; returns the longest load.
async fn probe(store: Arc<dyn Store>, key: SessionKey, stop: Arc<AtomicBool>) -> (Duration, u64) {
    let mut longest = Duration::ZERO;
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let r = store.load(&key).await.expect("probe load");
        longest = longest.max(t.elapsed());
        n += 1;
        assert!(r.is_some(), "live session lost");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    (longest, n)
}

/// Runs `clear` with the probe beside it.
async fn timed_clear<F, Fut>(store: Arc<dyn Store>, clear: F) -> Value
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = (u64, Option<u64>)>,
{
    let live = store
        .create(&Size::K1.record())
        .await
        .expect("live session");
    let stop = Arc::new(AtomicBool::new(false));
    let probe = tokio::spawn(probe(Arc::clone(&store), live.clone(), Arc::clone(&stop)));
    let start = Instant::now();
    let (removed, statements) = clear().await;
    let total = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (longest, probes) = probe.await.expect("probe");
    store.delete(&live).await.expect("delete live");
    let mut v = json!({
        "removed": removed,
        "total_s": secs(total),
        "probe_max_ms": longest.as_secs_f64() * 1e3,
        "probes": probes,
    });
    if let Some(st) = statements {
        v["statements"] = json!(st);
        v["mean_statement_ms"] = json!(secs(total) * 1e3 / st.max(1) as f64);
    }
    v
}

async fn postgres() -> Option<Value> {
    let url = common::service_url("SESSION_TEST_POSTGRES_URL", "PostgreSQL scale")?;
    let store = stores::postgres(&url, &Namespace::named("bench_scale")).await;
    let pool = store.pool().clone();
    sqlx::query("TRUNCATE bench_scale")
        .execute(&pool)
        .await
        .expect("truncate");
    let n = rows();
    let t = Instant::now();
    sqlx::query(
        "INSERT INTO bench_scale (id, payload, expires_at, version) \
         SELECT md5(i::text) || md5((-i)::text), convert_to(repeat('x', 200), 'UTF8'), \
         now() - interval '1 hour', 1 FROM generate_series(1, $1) AS i",
    )
    .bind(i64::try_from(n).expect("rows"))
    .execute(&pool)
    .await
    .expect("fill");
    sqlx::query("ANALYZE bench_scale")
        .execute(&pool)
        .await
        .expect("analyze");
    let fill = t.elapsed();
    let store = Arc::new(store);
    let s2 = Arc::clone(&store);
    let mut v = timed_clear(store, || async move {
        let stats = s2.clear_expired_in_batches().await.expect("clear");
        (stats.removed, Some(stats.statements))
    })
    .await;
    v["rows"] = json!(n);
    v["fill_s"] = json!(secs(fill));
    Some(v)
}

async fn sqlite() -> Value {
    let dir = std::env::temp_dir().join("session-bench-scale-sqlite");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let url = format!("sqlite://{}", dir.join("scale.db").display());
    let store = stores::sqlite(&url, &Namespace::named("bench_scale")).await;
    let pool = store.pool().clone();
    let n = rows();
    let past = session_core::unix_millis(OffsetDateTime::now_utc()) - 3_600_000;
    let t = Instant::now();
    sqlx::query(
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?1) \
         INSERT INTO bench_scale (id, payload, expires_at, version) \
         SELECT printf('%064d', i), zeroblob(200), ?2, 1 FROM c",
    )
    .bind(i64::try_from(n).expect("rows"))
    .bind(past)
    .execute(&pool)
    .await
    .expect("fill");
    let fill = t.elapsed();
    let store = Arc::new(store);
    let s2 = Arc::clone(&store);
    let mut v = timed_clear(store, || async move {
        let stats = s2.clear_expired_in_batches().await.expect("clear");
        (stats.removed, Some(stats.statements))
    })
    .await;
    v["rows"] = json!(n);
    v["fill_s"] = json!(secs(fill));
    let _ = std::fs::remove_dir_all(&dir);
    v
}

async fn file() -> Value {
    let dir = std::env::temp_dir().join("session-bench-scale-files");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let store = stores::file(&dir);
    let n = files();
    let mut record: Record = Size::K1.record();
    record.expires_at = OffsetDateTime::now_utc() - time::Duration::hours(1);
    record.version = 1;
    let bytes = record.encode_framed().expect("encode");
    let t = Instant::now();
    // Written directly in the store's layout (`session_<storage id>`, framed), unsynced.
    for _ in 0..n {
        let id = SessionKey::generate().storage_id().to_hex();
        std::fs::write(dir.join(format!("session_{id}")), &bytes).expect("write");
    }
    let fill = t.elapsed();
    let store = Arc::new(store);
    let s2 = Arc::clone(&store);
    let mut v = timed_clear(store, || async move {
        (s2.clear_expired().await.expect("clear"), None)
    })
    .await;
    v["files"] = json!(n);
    v["fill_s"] = json!(secs(fill));
    let _ = std::fs::remove_dir_all(&dir);
    v
}

/// Resident set size in bytes.
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

async fn moka() -> Value {
    let n = moka_sessions();
    let store = session_cache::MokaStore::with_capacity_bytes(8 << 30);
    store.run_pending_tasks().await;
    let before = rss();
    // Each session its own 1 KiB dictionary, as real sessions are; the store keeps it.
    let records: Vec<Record> = (0..n).map(|_| Size::K1.record()).collect();
    let t = Instant::now();
    let mut keys = Vec::with_capacity(records.len());
    for r in &records {
        keys.push(store.create(r).await.expect("create"));
    }
    drop(records);
    store.run_pending_tasks().await;
    let fill = t.elapsed();
    let after = rss();
    let weighted = store.weighted_size();
    json!({
        "sessions": n,
        "entries": store.entry_count(),
        "weighted_bytes_per_session": weighted as f64 / n as f64,
        "rss_bytes_per_session": after.saturating_sub(before) as f64 / n as f64,
        "payload_bytes": Size::K1.record().encode_payload().expect("encode").len(),
        "fill_s": secs(fill),
    })
}

fn out_path() -> PathBuf {
    if let Ok(p) = std::env::var("BENCH_SCALE_OUT") {
        return PathBuf::from(p);
    }
    // <target>/release/deps/scale-<hash>
    let exe = std::env::current_exe().expect("exe");
    let target = exe
        .ancestors()
        .nth(3)
        .map_or_else(|| PathBuf::from("target"), PathBuf::from);
    target.join("criterion").join("scale.json")
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that names no scale measurement skips them.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !filter.is_empty() && !filter.iter().any(|f| "scale".contains(f.as_str())) {
        return;
    }
    let rt = common::runtime();
    let mut report = json!({ "quick": common::quick() });
    rt.block_on(async {
        if common::selected("postgres")
            && let Some(v) = postgres().await
        {
            eprintln!("scale postgres: {v}");
            report["postgres"] = v;
        }
        if common::selected("sqlite-file") {
            let v = sqlite().await;
            eprintln!("scale sqlite: {v}");
            report["sqlite"] = v;
        }
        if common::selected("file") {
            let v = file().await;
            eprintln!("scale file: {v}");
            report["file"] = v;
        }
        if common::selected("moka") {
            let v = moka().await;
            eprintln!("scale moka: {v}");
            report["moka"] = v;
        }
    });
    let path = out_path();
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&path, report.to_string()).expect("write scale.json");
    eprintln!("scale results written to {}", path.display());
}
