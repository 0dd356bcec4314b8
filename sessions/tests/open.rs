//! `sessions::open` for every scheme, and every malformed or unknown form.

use std::sync::Arc;

use sessions::{OpenError, Record, Store, StoreConfig, open, open_config};
use time::{Duration, OffsetDateTime};

/// A value cargo sets for every test process that is longer than the 32-byte minimum
/// secret (tests cannot set environment variables: that is `unsafe` in edition 2024).
const SECRET_VAR: &str = "CARGO_PKG_DESCRIPTION";

async fn works(store: Arc<dyn Store>) {
    let mut data = sessions::Data::new();
    data.insert("k".into(), "v".into());
    let key = store
        .create(&Record::new(
            data,
            OffsetDateTime::now_utc() + Duration::hours(1),
        ))
        .await
        .expect("create");
    let back = store.load(&key).await.expect("load").expect("stored");
    assert_eq!(back.data["k"], "v");
}

fn err(result: Result<Arc<dyn Store>, OpenError>) -> OpenError {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn memory_moka_sqlite_file_and_cookie_urls_open_working_stores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("s.db");
    let files = dir.path().join("sessions");
    let urls = [
        "memory://".to_owned(),
        "moka://".to_owned(),
        "moka://?max_bytes=1048576".to_owned(),
        format!("sqlite://{}", db.display()),
        format!("sqlite://{}?table=other_sessions", db.display()),
        "sqlite::memory:".to_owned(),
        format!("file://{}", files.display()),
        format!("file://{}?prefix=app_", files.display()),
        format!("cookie+signed://?secret_env={SECRET_VAR}"),
        format!("cookie+encrypted://?secret_env={SECRET_VAR}"),
        format!("cached:moka://|sqlite://{}", db.display()),
        format!(
            "cached:moka://?max_bytes=65536|sqlite://{}?table=cached",
            db.display()
        ),
    ];
    for url in urls {
        let store = open(&url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
        works(store).await;
    }
}

#[tokio::test]
async fn the_serde_config_picks_the_same_stores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = format!(
        r#"{{"url": "sqlite://{}", "table": "from_config", "cache": "moka://"}}"#,
        dir.path().join("c.db").display()
    );
    let config: StoreConfig = serde_json::from_str(&json).expect("parses");
    works(open_config(&config).await.expect("opens")).await;
    assert!(serde_json::from_str::<StoreConfig>(r#"{"url": "memory://", "tabel": "x"}"#).is_err());
}

#[tokio::test]
async fn unknown_and_scheme_less_urls_are_named() {
    for (url, needle) in [
        (
            "mongodb://localhost",
            "unknown session store scheme `mongodb`",
        ),
        ("", "no scheme"),
        ("just-a-path", "no scheme"),
        (":memory:", "no scheme"),
    ] {
        let e = err(open(url).await).to_string();
        assert!(e.contains(needle), "{url:?}: {e}");
    }
}

#[tokio::test]
async fn malformed_urls_and_parameters_are_clear_errors() {
    for (url, needle) in [
        ("memory://somewhere", "takes no path"),
        ("memory://?table=x&foo=1", "takes no parameter `foo`"),
        (
            "moka://?max_bytes=lots",
            "`max_bytes` must be a whole number",
        ),
        ("moka://?max_bytes=0", "more than 0"),
        ("file://", "needs a directory"),
        ("cookie+signed://?secret=abc", "secrets never go in the URL"),
        (
            "cookie+encrypted://host/path?secret_env=X",
            "takes no host or path",
        ),
        ("cached:moka://", "cached:CACHE_URL|DB_URL"),
        ("cached:file:///tmp|sqlite::memory:", "cannot be a cache"),
    ] {
        let e = err(open(url).await);
        assert!(matches!(e, OpenError::Malformed(_)), "{url}: {e:?}");
        assert!(e.to_string().contains(needle), "{url}: {e}");
    }
}

#[tokio::test]
async fn invalid_settings_are_refused_before_any_io() {
    for url in [
        "sqlite::memory:?table=a;drop",
        "sqlite::memory:?table=1abc",
        "postgres://127.0.0.1:1/x?table=bad%20name",
        "file:///tmp/x?prefix=../up",
    ] {
        let e = err(open(url).await);
        assert!(matches!(e, OpenError::Invalid(_)), "{url}: {e:?}");
    }
}

#[tokio::test]
async fn cookie_secrets_come_from_the_environment_and_must_be_long_enough() {
    let e = err(open("cookie+signed://?secret_env=SESSIONS_TEST_UNSET_VARIABLE").await);
    assert!(matches!(&e, OpenError::MissingSecret(v) if v == "SESSIONS_TEST_UNSET_VARIABLE"));
    // CARGO_PKG_NAME ("sessions") is far shorter than the minimum secret.
    let e = err(open("cookie+signed://?secret_env=CARGO_PKG_NAME").await);
    assert!(matches!(e, OpenError::Invalid(_)), "{e:?}");
    // The cookie store's own typed error is kept as the source, not flattened to text.
    let source = std::error::Error::source(&e).expect("a source");
    assert!(
        matches!(
            source.downcast_ref::<session_signed_cookie::BuildError>(),
            Some(session_signed_cookie::BuildError::SecretTooShort { .. })
        ),
        "{source:?}"
    );
    assert!(
        !e.to_string().contains("sessions\""),
        "the secret leaked: {e}"
    );
}

#[tokio::test]
async fn a_cookie_store_cannot_sit_under_a_cache() {
    let e = err(open(&format!(
        "cached:moka://|cookie+signed://?secret_env={SECRET_VAR}"
    ))
    .await);
    assert!(e.to_string().contains("server-side database"), "{e}");
}

#[tokio::test]
async fn an_unreachable_database_is_a_store_error() {
    let e = err(open("postgres://postgres@127.0.0.1:1/test").await);
    assert!(matches!(e, OpenError::Store(_)), "{e:?}");
}

#[cfg(not(feature = "redis-cluster"))]
#[tokio::test]
async fn a_scheme_whose_feature_is_off_names_the_feature() {
    let e = err(open("redis+cluster://127.0.0.1:7000,127.0.0.1:7001").await);
    assert!(
        e.to_string().contains("needs the `redis-cluster` feature"),
        "{e}"
    );
}

fn env_url(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set"))
}

#[tokio::test]
#[ignore = "needs SESSION_TEST_POSTGRES_URL"]
async fn postgres_url_opens_a_migrated_store() {
    let url = format!(
        "{}?table=facade_sessions",
        env_url("SESSION_TEST_POSTGRES_URL")
    );
    works(open(&url).await.expect("opens")).await;
    let cached = format!("cached:moka://|{url}");
    works(open(&cached).await.expect("opens")).await;
}

#[tokio::test]
#[ignore = "needs SESSION_TEST_MYSQL_URL"]
async fn mysql_and_mariadb_urls_open_a_migrated_store() {
    let url = format!(
        "{}?table=facade_sessions",
        env_url("SESSION_TEST_MYSQL_URL")
    );
    works(open(&url).await.expect("opens")).await;
    let maria = url.replacen("mysql:", "mariadb:", 1);
    works(open(&maria).await.expect("opens")).await;
}

#[tokio::test]
#[ignore = "needs SESSION_TEST_REDIS_URL and SESSION_TEST_POSTGRES_URL"]
async fn redis_url_opens_a_store_and_layers_over_postgres() {
    let redis = env_url("SESSION_TEST_REDIS_URL");
    let prefixed = format!("{redis}?prefix=facade:");
    works(open(&prefixed).await.expect("opens")).await;
    let pg = format!(
        "{}?table=facade_cached",
        env_url("SESSION_TEST_POSTGRES_URL")
    );
    works(
        open(&format!("cached:{prefixed}|{pg}"))
            .await
            .expect("opens"),
    )
    .await;
}

#[cfg(feature = "redis-cluster")]
#[tokio::test]
#[ignore = "needs SESSION_TEST_REDIS_CLUSTER_URLS"]
async fn redis_cluster_url_opens_a_store() {
    let urls = env_url("SESSION_TEST_REDIS_CLUSTER_URLS");
    let hosts: Vec<&str> = urls
        .split(',')
        .map(|u| {
            u.trim()
                .trim_start_matches("redis://")
                .trim_end_matches('/')
        })
        .collect();
    let url = format!("redis+cluster://{}?prefix=facade:", hosts.join(","));
    works(open(&url).await.expect("opens")).await;
}

#[tokio::test]
async fn the_cookie_name_has_one_source_the_session_config() {
    let url = format!("cookie+encrypted://?secret_env={SECRET_VAR}");
    let sid = sessions::SessionConfig::builder()
        .with_cookie_name("sid")
        .with_cookie_secure(false)
        .build()
        .expect("valid");
    let manager = sessions::manager(&url, sid).await.expect("opens");
    assert_eq!(manager.store().cookie_name(), Some("sid"));
    // A store opened for the default configuration binds `sessionid`, and cannot read a
    // value sealed for `sid`: the name is bound, and comes from one place.
    let other = open(&url).await.expect("opens");
    assert_eq!(other.cookie_name(), Some("sessionid"));
    let lazy = manager.lazy(None);
    lazy.load()
        .await
        .expect("load")
        .insert("a", 1)
        .expect("insert");
    let commit = manager.commit(&lazy, 200).await.expect("commit");
    let set = commit.cookie.header().expect("set").as_str().to_owned();
    let value = set
        .split(';')
        .next()
        .and_then(|p| p.split_once('='))
        .expect("pair")
        .1;
    let key = sessions::SessionKey::parse(value).expect("key");
    assert!(manager.store().load(&key).await.expect("load").is_some());
    assert!(other.load(&key).await.expect("load").is_none());
    // The URL cannot name a second one.
    let e = err(open(&format!("{url}&cookie_name=sid")).await);
    assert!(e.to_string().contains("SessionConfig"), "{e}");
}
