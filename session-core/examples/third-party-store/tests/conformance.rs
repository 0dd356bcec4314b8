use session_core::conformance::PerNamespace;
use third_party_store::ExampleStore as Store;
session_core::conformance_tests!(example, PerNamespace::new(|| async { Store::new() }));
