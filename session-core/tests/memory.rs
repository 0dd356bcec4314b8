//! MemoryStore against the conformance suite.
use session_core::MemoryStore;
use session_core::conformance::PerNamespace;
session_core::conformance_tests!(
    memory_store,
    PerNamespace::new(|| async { MemoryStore::new() })
);
