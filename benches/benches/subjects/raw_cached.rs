//! A raw cache (moka or Redis) over raw PostgreSQL.

use super::raw::{RawH, RawMoka};
use super::raw_redis::{DAY_MS, RawRedis};
use super::raw_sql::RawPg;
use crate::driver::Subject;

/// A raw cache over raw PostgreSQL: reads from the cache, writes to both.
pub(crate) enum RawCache {
    Moka(RawMoka),
    Redis(RawRedis<redis::aio::MultiplexedConnection>),
}

pub(crate) struct RawCached {
    db: RawPg,
    cache: RawCache,
}

impl RawCached {
    pub(crate) fn new(db: RawPg, cache: RawCache) -> Self {
        Self { db, cache }
    }
    async fn fill(&self, h: &RawH) {
        match &self.cache {
            RawCache::Moka(m) => m.put(h).await,
            RawCache::Redis(r) => {
                let mut conn = r.conn.clone();
                let _: () = redis::cmd("SET")
                    .arg(r.key(h))
                    .arg(&r.bytes)
                    .arg("PX")
                    .arg(DAY_MS)
                    .query_async(&mut conn)
                    .await
                    .expect("SET");
            }
        }
    }
}

impl Subject for RawCached {
    type H = RawH;
    async fn create(&self) -> RawH {
        let h = RawH::fresh();
        self.db.insert(&h).await;
        self.fill(&h).await;
        h
    }
    async fn load(&self, h: &RawH) {
        match &self.cache {
            RawCache::Moka(m) => m.get(h).await,
            RawCache::Redis(r) => r.get(h).await,
        }
    }
    async fn save(&self, h: &mut RawH) {
        self.db.update(h).await;
        h.version += 1;
        self.fill(h).await;
    }
    async fn touch(&self, h: &mut RawH) {
        self.db.extend(h).await;
        self.fill(h).await;
    }
    async fn delete(&self, h: RawH) {
        self.db.remove(&h).await;
        match &self.cache {
            RawCache::Moka(m) => m.del(&h).await,
            RawCache::Redis(r) => r.del(&h).await,
        }
    }
}
