//! Store operations (create, load, save, touch, delete) for every store of the workspace,
//! beside the raw medium doing the same work and the peer libraries on the same medium.
//!
//! Benchmark ids: group `<store>.<op>.<size>.<mode>`, function `ours`, `raw` or the
//! peer's name. `seq` runs one task; `c32` runs 32 tasks at once on the multi-threaded
//! runtime, and one criterion iteration is then one operation on each of the 32 tasks.

#![allow(missing_docs, clippy::print_stdout)]

mod common;
mod driver;
mod subjects;
mod ts_peer;

fn main() {
    let mut c = common::criterion();
    let rt = common::runtime();
    for store in subjects::NAMES {
        if !common::selected(store) {
            continue;
        }
        let Some(sizes) = rt.block_on(subjects::build(store)) else {
            continue;
        };
        driver::bench_store(&mut c, &rt, store, &sizes);
    }
    c.final_summary();
}
