//! Raw Redis: the commands and scripts of a compare-and-set store, on one connection.

use super::raw::{RawH, framed, with_version};
use crate::common::{Size, in_a_day};
use crate::driver::Subject;

/// Raw redis on one multiplexed connection: `SET … PX … NX`, `GET`, `EVALSHA` (a
/// compare-and-set script and an expiry script), `DEL`.
pub(crate) struct RawRedis<C> {
    pub(crate) conn: C,
    prefix: String,
    pub(crate) bytes: Vec<u8>,
    cas: redis::Script,
    extend: redis::Script,
}

pub(crate) const DAY_MS: i64 = 86_400_000;

impl<C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static> RawRedis<C> {
    pub(crate) fn new(conn: C, prefix: &str, size: Size) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
            bytes: framed(&size.record(), 1),
            cas: redis::Script::new(
                r"local h = redis.call('GETRANGE', KEYS[1], 3, 10)
if h ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1",
            ),
            extend: redis::Script::new(
                r"local h = redis.call('GETRANGE', KEYS[1], 0, 18)
if string.len(h) ~= 19 then return 0 end
redis.call('SETRANGE', KEYS[1], 11, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1",
            ),
        }
    }
    pub(crate) fn key(&self, h: &RawH) -> String {
        format!("{}{}", self.prefix, hex::encode(h.id))
    }
    async fn put(&self, h: &RawH) {
        let mut conn = self.conn.clone();
        let r: Option<String> = redis::cmd("SET")
            .arg(self.key(h))
            .arg(&self.bytes)
            .arg("PX")
            .arg(DAY_MS)
            .arg("NX")
            .query_async(&mut conn)
            .await
            .expect("SET");
        assert!(r.is_some());
    }
    pub(crate) async fn get(&self, h: &RawH) {
        let mut conn = self.conn.clone();
        let r: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.key(h))
            .query_async(&mut conn)
            .await
            .expect("GET");
        assert!(r.is_some(), "session missing");
    }
    async fn cas(&self, h: &RawH) {
        let mut conn = self.conn.clone();
        let next = with_version(&self.bytes, h.version + 1);
        let r: i64 = self
            .cas
            .key(self.key(h))
            .arg(&h.version.to_be_bytes()[..])
            .arg(next)
            .arg(DAY_MS)
            .invoke_async(&mut conn)
            .await
            .expect("EVALSHA");
        assert_eq!(r, 1);
    }
    async fn extend(&self, h: &RawH) {
        let mut conn = self.conn.clone();
        let at = session_core::unix_millis(in_a_day());
        let r: i64 = self
            .extend
            .key(self.key(h))
            .arg(&at.to_be_bytes()[..])
            .arg(DAY_MS)
            .invoke_async(&mut conn)
            .await
            .expect("EVALSHA");
        assert_eq!(r, 1);
    }
    pub(crate) async fn del(&self, h: &RawH) {
        let mut conn = self.conn.clone();
        let _: i64 = redis::cmd("DEL")
            .arg(self.key(h))
            .query_async(&mut conn)
            .await
            .expect("DEL");
    }
}

impl<C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static> Subject for RawRedis<C> {
    type H = RawH;
    async fn create(&self) -> RawH {
        let h = RawH::fresh();
        self.put(&h).await;
        h
    }
    async fn load(&self, h: &RawH) {
        self.get(h).await;
    }
    async fn save(&self, h: &mut RawH) {
        self.cas(h).await;
        h.version += 1;
    }
    async fn touch(&self, h: &mut RawH) {
        self.extend(h).await;
    }
    async fn delete(&self, h: RawH) {
        self.del(&h).await;
    }
}
