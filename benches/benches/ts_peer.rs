//! The tower-sessions peers: a store of tower-sessions' 0.14 or 0.15 core trait, called
//! through that trait, as a [`Subject`](crate::driver::Subject).

use std::collections::HashMap;

use serde_json::Value;

use crate::common::Size;

/// The record's data as tower-sessions holds it.
pub(crate) fn peer_map(size: Size) -> HashMap<String, Value> {
    size.data().into_iter().collect()
}

/// A tower-sessions store (0.14 or 0.15 core trait). It has no compare-and-set and no
/// touch: `save` is its upsert, `touch` its save with a new expiry date (and so is `save`,
/// which must change the row to be a write).
macro_rules! ts_peer {
    ($name:ident, $core:ident) => {
        pub(crate) struct $name<S> {
            store: S,
            data: ::std::collections::HashMap<String, ::serde_json::Value>,
        }

        impl<S> $name<S> {
            pub(crate) fn new(store: S, size: $crate::common::Size) -> Self {
                Self {
                    store,
                    data: $crate::ts_peer::peer_map(size),
                }
            }
        }

        impl<S: $core::session_store::SessionStore> $crate::driver::Subject for $name<S> {
            type H = $core::session::Record;
            async fn create(&self) -> Self::H {
                let mut r = $core::session::Record {
                    id: $core::session::Id::default(),
                    data: self.data.clone(),
                    expiry_date: $crate::common::in_a_day(),
                };
                self.store.create(&mut r).await.expect("create");
                r
            }
            async fn load(&self, h: &Self::H) {
                let r = self.store.load(&h.id).await.expect("load");
                assert!(r.is_some(), "session missing");
            }
            async fn save(&self, h: &mut Self::H) {
                // A save writes a changed row, as ours does (its version moves). Re-saving
                // identical values would time no write at all on MySQL/MariaDB, which skips
                // an `ON DUPLICATE KEY UPDATE` that changes nothing, log flush included.
                h.expiry_date = $crate::common::in_a_day();
                self.store.save(h).await.expect("save");
            }
            async fn touch(&self, h: &mut Self::H) {
                h.expiry_date = $crate::common::in_a_day();
                self.store.save(h).await.expect("touch");
            }
            async fn delete(&self, h: Self::H) {
                self.store.delete(&h.id).await.expect("delete");
            }
        }
    };
}

// Used by the `stores` bench (for tower-sessions 0.15); the SQLite peer project does not.
#[allow(unused_imports)]
pub(crate) use ts_peer;

// tower-sessions-stores (moka, sqlx, redis, the caching store) implement the 0.14 trait.
ts_peer!(TowerSessions14, tower_sessions_core_014);
