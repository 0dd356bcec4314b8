//! Ours: any `Store`, through the trait.

use session_core::{Record, SessionKey, Store};

use crate::common::{Size, in_a_day};
use crate::driver::Subject;

pub(crate) struct Ours<S> {
    store: S,
    record: Record,
}

impl<S: Store> Ours<S> {
    pub(crate) fn new(store: S, size: Size) -> Self {
        Self {
            store,
            record: size.record(),
        }
    }
}

impl<S: Store> Subject for Ours<S> {
    type H = (SessionKey, u64);

    async fn create(&self) -> Self::H {
        (self.store.create(&self.record).await.expect("create"), 1)
    }

    async fn load(&self, h: &Self::H) {
        let r = self.store.load(&h.0).await.expect("load");
        assert!(r.is_some(), "session missing");
    }

    async fn save(&self, h: &mut Self::H) {
        let mut r = self.record.clone();
        r.version = h.1;
        h.0 = self.store.save(&h.0, &r).await.expect("save");
        h.1 += 1;
    }

    async fn touch(&self, h: &mut Self::H) {
        h.0 = self.store.touch(&h.0, in_a_day()).await.expect("touch");
    }

    async fn delete(&self, h: Self::H) {
        self.store.delete(&h.0).await.expect("delete");
    }
}
