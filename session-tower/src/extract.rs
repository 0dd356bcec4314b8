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

/// A session error as an axum response, so that handlers can use `?` on session
/// operations: it answers an empty `500 Internal Server Error` and logs the cause (the
/// client learns nothing about it).
///
/// # Examples
///
/// ```
/// use session_tower::{Session, SessionError};
///
/// async fn counter(session: Session) -> Result<String, SessionError> {
///     let visits = session.update("visits", |n: Option<u64>| n.unwrap_or(0) + 1)?;
///     session.insert("last_page", "/")?;
///     Ok(format!("{visits} visits"))
/// }
/// ```
#[derive(Debug)]
pub struct SessionError(pub session_core::Error);

impl From<session_core::Error> for SessionError {
    fn from(error: session_core::Error) -> Self {
        Self(error)
    }
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SessionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl IntoResponse for SessionError {
    fn into_response(self) -> Response {
        tracing::error!(error = %self.0, "session operation failed; answering 500");
        crate::layer::server_error()
    }
}
