//! Peers: tower-sessions 0.15 and actix-session, and how the peer stores on services
//! are set up.

use std::collections::HashMap;
use std::sync::Arc;

use crate::common::Size;
use crate::driver::Subject;
use crate::ts_peer::ts_peer;

// tower-sessions 0.15 itself (its MemoryStore); the 0.14-trait stores are in `ts_peer`.
ts_peer!(TowerSessions15, tower_sessions);

/// An actix-session store: `save` creates, `update` saves, `update_ttl` touches.
pub(crate) struct Actix<S> {
    store: S,
    state: HashMap<String, String>,
}

impl<S> Actix<S> {
    pub(crate) fn new(store: S, size: Size) -> Self {
        Self {
            store,
            state: size
                .data()
                .into_iter()
                .map(|(k, v)| (k, v.to_string()))
                .collect(),
        }
    }
}

fn actix_ttl() -> time::Duration {
    time::Duration::days(1)
}

macro_rules! actix_peer {
    ($store:ty) => {
        impl Subject for Actix<$store> {
            type H = actix_session::storage::SessionKey;
            async fn create(&self) -> Self::H {
                use actix_session::storage::SessionStore as _;
                self.store
                    .save(self.state.clone(), &actix_ttl())
                    .await
                    .expect("create")
            }
            async fn load(&self, h: &Self::H) {
                use actix_session::storage::SessionStore as _;
                let r = self.store.load(h).await.expect("load");
                assert!(r.is_some(), "session missing");
            }
            async fn save(&self, h: &mut Self::H) {
                use actix_session::storage::SessionStore as _;
                let key = actix_session::storage::SessionKey::try_from(h.as_ref().to_owned())
                    .expect("key");
                *h = self
                    .store
                    .update(key, self.state.clone(), &actix_ttl())
                    .await
                    .expect("save");
            }
            async fn touch(&self, h: &mut Self::H) {
                use actix_session::storage::SessionStore as _;
                self.store.update_ttl(h, &actix_ttl()).await.expect("touch");
            }
            async fn delete(&self, h: Self::H) {
                use actix_session::storage::SessionStore as _;
                self.store.delete(&h).await.expect("delete");
            }
        }
    };
}

actix_peer!(actix_session::storage::CookieSessionStore);
actix_peer!(Arc<actix_session::storage::RedisSessionStore>);

pub(crate) async fn peer_pg(url: &str) -> tower_sessions_sqlx_store::PostgresStore {
    let pool = sqlx_08::PgPool::connect(url)
        .await
        .expect("postgres (sqlx 0.8)");
    let store = tower_sessions_sqlx_store::PostgresStore::new(pool.clone());
    store.migrate().await.expect("migrate");
    sqlx_08::query("DELETE FROM tower_sessions.session")
        .execute(&pool)
        .await
        .expect("clear");
    store
}

pub(crate) async fn peer_mysql(url: &str) -> tower_sessions_sqlx_store::MySqlStore {
    let pool = sqlx_08::MySqlPool::connect(url)
        .await
        .expect("mysql (sqlx 0.8)");
    let store = tower_sessions_sqlx_store::MySqlStore::new(pool.clone());
    store.migrate().await.expect("migrate");
    sqlx_08::query("DELETE FROM tower_sessions.session")
        .execute(&pool)
        .await
        .expect("clear");
    store
}

pub(crate) async fn fred_pool(url: &str) -> fred::prelude::Pool {
    use fred::prelude::*;
    let config = Config::from_url(url).expect("fred config");
    let pool = Builder::from_config(config)
        .build_pool(4)
        .expect("fred pool");
    pool.init().await.expect("fred connect");
    pool
}
