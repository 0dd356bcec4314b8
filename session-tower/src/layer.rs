//! The tower middleware.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::header::{CACHE_CONTROL, COOKIE, SET_COOKIE, VARY};
use http::{HeaderValue, Request, Response, StatusCode};
use session_core::{CacheControl, Commit, SessionConfig, SessionManager};
use tower_layer::Layer;
use tower_service::Service;

/// A tower [`Layer`] that gives every request a lazily loaded session and commits it on
/// the response.
///
/// For each request, [`SessionService`]:
/// 1. reads the session cookie and puts a [`LazySession`](session_core::LazySession) into
///    the request extensions (no store I/O: the handler loads it on first use);
/// 2. after the inner service answered, calls
///    [`SessionManager::commit`](session_core::SessionManager::commit), then appends the
///    `Set-Cookie` it asks for and `Vary: Cookie` when the session was read or the cookie
///    changes;
/// 3. keeps a response that sets or removes the session cookie out of shared caches: it
///    gets `Cache-Control: private` when the application set no `Cache-Control`, and one
///    the application marked `public` is reported with a `warn` event (or replaced, see
///    [`SessionConfig::override_public_cache_control`]);
/// 4. when the commit dropped the request's writes because a concurrent request of the
///    same browser ended or rotated the session, puts [`WritesDropped`] into the response
///    extensions (outer layers can react) and logs it.
///
/// A commit that fails (the store is down, or a conflict could not be resolved) turns the
/// response into an empty `500 Internal Server Error`, with the cause logged through
/// `tracing`; the client never sees which check failed.
#[derive(Clone, Debug)]
pub struct SessionLayer {
    manager: SessionManager,
}

impl SessionLayer {
    /// A layer committing sessions through `manager`.
    #[must_use]
    pub fn new(manager: SessionManager) -> Self {
        Self { manager }
    }

    /// The manager this layer uses.
    #[must_use]
    pub fn manager(&self) -> &SessionManager {
        &self.manager
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            manager: self.manager.clone(),
        }
    }
}

/// The service [`SessionLayer`] wraps around an inner service.
#[derive(Clone, Debug)]
pub struct SessionService<S> {
    inner: S,
    manager: SessionManager,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let lazy = self.manager.lazy_from_cookie_headers(
            req.headers()
                .get_all(COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        );
        req.extensions_mut().insert(lazy.clone());
        // The clone that was driven to readiness serves this request (tower's convention).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let manager = self.manager.clone();
        Box::pin(async move {
            let mut res = inner.call(req).await?;
            match manager.commit(&lazy, res.status().as_u16()).await {
                Ok(commit) => apply(&commit, manager.config(), &mut res),
                Err(error) => {
                    tracing::error!(%error, "session commit failed; answering 500");
                    res = server_error();
                }
            }
            Ok(res)
        })
    }
}

/// Put into a response's extensions when the commit dropped the request's session writes,
/// because a concurrent request of the same browser ended or rotated the session (see
/// [`Commit::writes_dropped`]). No cookie was sent, so the one that request set stays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WritesDropped;

fn apply<B>(commit: &Commit, config: &SessionConfig, res: &mut Response<B>) {
    if commit.writes_dropped {
        res.extensions_mut().insert(WritesDropped);
    }
    let headers = res.headers_mut();
    let existing = headers
        .get(CACHE_CONTROL)
        .map(|v| v.to_str().unwrap_or("(not text)"));
    if let CacheControl::Set(value) = commit.cache_control(existing, config) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static(value));
    }
    if let Some(set_cookie) = commit.cookie.header() {
        match HeaderValue::from_str(set_cookie.as_str()) {
            Ok(v) => {
                headers.append(SET_COOKIE, v);
            }
            // The configuration and the keys are validated, so this cannot happen; if it
            // did, sending no cookie is safer than sending a broken header.
            Err(_) => tracing::error!("session cookie is not a valid header value"),
        }
    }
    if commit.vary_cookie && !varies_on_cookie(headers) {
        headers.append(VARY, HeaderValue::from_static("Cookie"));
    }
}

fn varies_on_cookie(headers: &http::HeaderMap) -> bool {
    headers.get_all(VARY).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("cookie") || t.trim() == "*")
        })
    })
}

pub(crate) fn server_error<B: Default>() -> Response<B> {
    let mut res = Response::new(B::default());
    *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    res
}
