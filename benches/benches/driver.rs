//! The driver every store benchmark shares: the [`Subject`] trait (one thing measured:
//! a store, its raw medium or a peer), the operations, and how a subject's operations are
//! timed on one task or on 32 at once.
//!
//! Benchmark ids: group `<store>.<op>.<size>.<mode>`, function `ours`, `raw` or the
//! peer's name. `seq` runs one task; `c32` runs 32 tasks at once on the multi-threaded
//! runtime, and one criterion iteration is then one operation on each of the 32 tasks.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use tokio::runtime::Runtime;

use crate::common::Size;

/// One thing measured: a store, the raw medium or a peer, with its own handle type.
pub(crate) trait Subject: Send + Sync + 'static {
    /// What identifies one stored session (key, version, token...).
    type H: Send + 'static;
    fn create(&self) -> impl Future<Output = Self::H> + Send;
    fn load(&self, h: &Self::H) -> impl Future<Output = ()> + Send;
    fn save(&self, h: &mut Self::H) -> impl Future<Output = ()> + Send;
    fn touch(&self, h: &mut Self::H) -> impl Future<Output = ()> + Send;
    fn delete(&self, h: Self::H) -> impl Future<Output = ()> + Send;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Create,
    Load,
    Save,
    Touch,
    Delete,
}

impl Op {
    const ALL: [Op; 5] = [Op::Create, Op::Load, Op::Save, Op::Touch, Op::Delete];
    fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Load => "load",
            Op::Save => "save",
            Op::Touch => "touch",
            Op::Delete => "delete",
        }
    }
}

/// Tasks at once: 1 (`seq`) or 32 (`c32`).
const MODES: [(&str, u64); 2] = [("seq", 1), ("c32", 32)];

/// A subject with its type erased.
pub(crate) trait Runner: Send + Sync {
    fn run(&self, rt: &Runtime, op: Op, tasks: u64, iters: u64) -> Duration;
}

struct Wrap<S>(Arc<S>);

impl<S: Subject> Runner for Wrap<S> {
    fn run(&self, rt: &Runtime, op: Op, tasks: u64, iters: u64) -> Duration {
        rt.block_on(drive(Arc::clone(&self.0), op, tasks, iters))
    }
}

pub(crate) fn runner<S: Subject>(s: S) -> Arc<dyn Runner> {
    Arc::new(Wrap(Arc::new(s)))
}

/// Runs `f` on `inputs.len()` tasks at once and returns the wall time and the outputs.
async fn par<S, I, T, F, Fut>(s: &Arc<S>, inputs: Vec<I>, f: F) -> (Duration, Vec<T>)
where
    S: Subject,
    I: Send + 'static,
    T: Send + 'static,
    F: Fn(Arc<S>, I) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let start = Instant::now();
    let handles: Vec<_> = inputs
        .into_iter()
        .map(|input| tokio::spawn(f(Arc::clone(s), input)))
        .collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("benchmark task panicked"));
    }
    (start.elapsed(), out)
}

async fn create_n<S: Subject>(s: Arc<S>, n: u64) -> Vec<S::H> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(s.create().await);
    }
    v
}

async fn delete_all<S: Subject>(s: Arc<S>, hs: Vec<S::H>) {
    for h in hs {
        s.delete(h).await;
    }
}

/// `iters` criterion iterations of `op` on `tasks` tasks; only the operations are timed.
async fn drive<S: Subject>(s: Arc<S>, op: Op, tasks: u64, iters: u64) -> Duration {
    let task_list = |n: u64| (0..tasks).map(move |_| n).collect::<Vec<u64>>();
    match op {
        Op::Create | Op::Delete => {
            // In chunks, so that created sessions never pile up in memory.
            let chunk = if tasks == 1 { 1024 } else { 64 };
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(chunk);
                left -= n;
                if op == Op::Create {
                    let (d, made) = par(&s, task_list(n), create_n).await;
                    total += d;
                    par(&s, made, delete_all).await;
                } else {
                    let (_, made) = par(&s, task_list(n), create_n).await;
                    let (d, _) = par(&s, made, delete_all).await;
                    total += d;
                }
            }
            total
        }
        Op::Load | Op::Save | Op::Touch => {
            let (_, made) = par(&s, task_list(1), create_n).await;
            let inputs: Vec<S::H> = made.into_iter().flatten().collect();
            let (d, kept) = par(&s, inputs, move |s, mut h| async move {
                for _ in 0..iters {
                    match op {
                        Op::Load => s.load(&h).await,
                        Op::Save => s.save(&mut h).await,
                        _ => s.touch(&mut h).await,
                    }
                }
                h
            })
            .await;
            par(&s, vec![kept], delete_all).await;
            d
        }
    }
}

/// One store: its name and, per size, the subjects measured (`ours` first).
pub(crate) type Subjects = Vec<(&'static str, Arc<dyn Runner>)>;

pub(crate) fn bench_store(
    c: &mut Criterion,
    rt: &Runtime,
    store: &str,
    sizes: &[(Size, Subjects)],
) {
    for (size, subjects) in sizes {
        for op in Op::ALL {
            for (mode, tasks) in MODES {
                let group_name = format!("{store}.{}.{}.{mode}", op.name(), size.name());
                let mut group = c.benchmark_group(&group_name);
                group.sampling_mode(SamplingMode::Flat);
                group.throughput(Throughput::Elements(tasks));
                for (name, subject) in subjects {
                    group.bench_function(BenchmarkId::from_parameter(name), |b| {
                        b.iter_custom(|iters| subject.run(rt, op, tasks, iters));
                    });
                }
                group.finish();
            }
        }
    }
}
