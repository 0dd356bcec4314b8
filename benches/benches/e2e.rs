//! End to end: one axum request whose handler reads and writes one session value, driven
//! in-process with `tower::ServiceExt::oneshot`, through session-tower (MokaStore,
//! MemoryStore), through tower-sessions' layer on the same kinds of store, and with no
//! sessions at all.
//!
//! Benchmark ids: group `e2e.request.<mode>`, function the stack's name. Every request
//! but the first of a client carries its session cookie, so each one loads and saves.

#![allow(missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{BenchmarkId, SamplingMode, Throughput};
use http::{Request, StatusCode, header};
use session_core::{MemoryStore, SessionConfig, SessionManager, Store};
use session_tower::SessionLayer;
use tower::ServiceExt as _;

async fn bare() -> String {
    "1".to_owned()
}

async fn ours(session: session_tower::Session) -> String {
    let n = session.get::<u64>("n").ok().flatten().unwrap_or(0) + 1;
    let _ = session.insert("n", n);
    n.to_string()
}

async fn ts15(session: tower_sessions::Session) -> String {
    let n = session.get::<u64>("n").await.ok().flatten().unwrap_or(0) + 1;
    let _ = session.insert("n", n).await;
    n.to_string()
}

async fn ts14(session: tower_sessions_014::Session) -> String {
    let n = session.get::<u64>("n").await.ok().flatten().unwrap_or(0) + 1;
    let _ = session.insert("n", n).await;
    n.to_string()
}

fn ours_router(store: Arc<dyn Store>) -> Router {
    let manager = SessionManager::new(store, SessionConfig::default());
    Router::new()
        .route("/", get(ours))
        .layer(SessionLayer::new(manager))
}

fn routers() -> Vec<(&'static str, Router)> {
    vec![
        ("bare", Router::new().route("/", get(bare))),
        (
            "ours-moka",
            ours_router(Arc::new(session_cache::MokaStore::new())),
        ),
        ("ours-memory", ours_router(Arc::new(MemoryStore::new()))),
        (
            "tower-sessions-moka",
            Router::new().route("/", get(ts14)).layer(
                tower_sessions_014::SessionManagerLayer::new(
                    tower_sessions_moka_store::MokaStore::new(Some(1 << 20)),
                )
                .with_secure(false),
            ),
        ),
        (
            "tower-sessions-memory",
            Router::new().route("/", get(ts15)).layer(
                tower_sessions::SessionManagerLayer::new(tower_sessions::MemoryStore::default())
                    .with_secure(false),
            ),
        ),
    ]
}

fn request(cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().uri("/");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::empty()).expect("request")
}

/// One request; returns the `name=value` of a session cookie the response sets.
async fn call(router: &Router, cookie: Option<&str>) -> Option<String> {
    let response = router
        .clone()
        .oneshot(request(cookie))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    response
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
}

/// A client: `iters` requests with its session cookie.
async fn client(router: Router, cookie: Option<String>, iters: u64) {
    for _ in 0..iters {
        call(&router, cookie.as_deref()).await;
    }
}

fn main() {
    let mut c = common::criterion();
    let rt = common::runtime();
    let routers = routers();
    for (mode, tasks) in [("seq", 1u64), ("c32", 32)] {
        let mut group = c.benchmark_group(format!("e2e.request.{mode}"));
        group.sampling_mode(SamplingMode::Flat);
        group.throughput(Throughput::Elements(tasks));
        for (name, router) in &routers {
            group.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        // Each client's first request (no cookie yet) is not timed.
                        let mut cookies = Vec::new();
                        for _ in 0..tasks {
                            cookies.push(call(router, None).await);
                        }
                        let start = Instant::now();
                        let clients: Vec<_> = cookies
                            .into_iter()
                            .map(|cookie| tokio::spawn(client(router.clone(), cookie, iters)))
                            .collect();
                        for c in clients {
                            c.await.expect("client panicked");
                        }
                        start.elapsed()
                    })
                });
            });
        }
        group.finish();
    }
    c.final_summary();
}
