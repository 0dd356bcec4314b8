//! The axum extractor.

use std::ops::Deref;

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use session_core::LazySession;

/// The session of the current request, loaded on extraction.
///
/// Dereferences to [`session_core::Session`], whose dictionary methods are synchronous.
/// Requires [`SessionLayer`](crate::SessionLayer) on the route; a handler that does not
/// extract it costs no store I/O.
#[derive(Clone, Debug)]
pub struct Session(pub session_core::Session);

impl Deref for Session {
    type Target = session_core::Session;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let lazy = parts
            .extensions
            .get::<LazySession>()
            .cloned()
            .ok_or(SessionRejection::MissingLayer)?;
        match lazy.load().await {
            Ok(session) => Ok(Self(session)),
            Err(error) => {
                tracing::error!(%error, "loading the session failed; answering 500");
                Err(SessionRejection::Unavailable)
            }
        }
    }
}

/// Why the [`Session`] extractor failed. Both answer an empty
/// `500 Internal Server Error`: the client learns nothing about the cause.
#[derive(Debug)]
#[non_exhaustive]
pub enum SessionRejection {
    /// The route has no [`SessionLayer`](crate::SessionLayer).
    MissingLayer,
    /// The store could not be read; the cause was logged.
    Unavailable,
}

impl IntoResponse for SessionRejection {
    fn into_response(self) -> Response {
        if matches!(self, Self::MissingLayer) {
            tracing::error!("the Session extractor needs SessionLayer on this route");
        }
        crate::layer::server_error()
    }
}
