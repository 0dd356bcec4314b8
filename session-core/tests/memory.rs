//! MemoryStore against the conformance suite.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};

use session_core::MemoryStore;

/// One map per namespace, so two handles on one namespace share their records.
static STORES: LazyLock<Mutex<HashMap<String, MemoryStore>>> = LazyLock::new(Default::default);

fn handle(ns: &str) -> MemoryStore {
    let mut stores = STORES.lock().unwrap_or_else(PoisonError::into_inner);
    stores.entry(ns.to_owned()).or_default().clone()
}

session_core::conformance_tests!(memory_store, |ns: String| async move { handle(&ns) });
