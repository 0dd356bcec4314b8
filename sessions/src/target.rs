//! A store URL taken apart: scheme, driver URL, our parameters.

use session_core::SessionConfig;

use crate::{OpenError, StoreConfig};

/// The Cargo feature of this crate that the store behind `scheme` needs, or `None` for an
/// unknown scheme (`memory` needs none: `Some("")`).
#[must_use]
pub fn feature_for_scheme(scheme: &str) -> Option<&'static str> {
    Some(match scheme {
        "memory" | "cached" => "",
        "moka" => "moka",
        "sqlite" => "sqlite",
        "postgres" | "postgresql" => "postgres",
        "mysql" | "mariadb" => "mysql",
        "redis" | "rediss" => "redis",
        "redis+cluster" | "rediss+cluster" => "redis-cluster",
        "file" => "file",
        "cookie+signed" | "cookie+encrypted" => "cookie",
        _ => return None,
    })
}

/// A URL taken apart: its scheme, what goes on to the driver, and our parameters.
pub(crate) struct Target {
    pub(crate) scheme: String,
    /// The URL without our parameters.
    // Unread when no driver-backed store feature is on.
    #[allow(dead_code)]
    pub(crate) driver_url: String,
    /// After `scheme:` and any `//`, without our parameters.
    pub(crate) rest: String,
    pub(crate) params: Params,
}

#[derive(Default)]
pub(crate) struct Params {
    pub(crate) table: Option<String>,
    pub(crate) schema: Option<String>,
    pub(crate) prefix: Option<String>,
    pub(crate) max_bytes: Option<u64>,
    pub(crate) secret_env: Option<String>,
    pub(crate) previous_secrets_env: Option<String>,
    /// The session cookie's name (from the `SessionConfig`).
    #[cfg_attr(not(feature = "cookie"), allow(dead_code))] // only cookie stores bind it
    pub(crate) cookie_name: String,
    /// Query parameters that are not ours, for the driver.
    pub(crate) other: Vec<(String, String)>,
}

impl Target {
    pub(crate) fn parse(
        url: &str,
        config: &StoreConfig,
        session: &SessionConfig,
    ) -> Result<Self, OpenError> {
        let (scheme, after) = url
            .split_once(':')
            .filter(|(s, _)| !s.is_empty())
            .ok_or_else(|| OpenError::Malformed("no scheme (expected e.g. `sqlite://…`)".into()))?;
        let scheme = scheme.to_ascii_lowercase();
        if feature_for_scheme(&scheme).is_none() {
            return Err(OpenError::UnknownScheme(scheme));
        }
        let (body, query) = after.split_once('?').unwrap_or((after, ""));
        let mut params = Params {
            cookie_name: session.cookie_name().to_owned(),
            ..Params::default()
        };
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let v = v.into_owned();
            match &*k {
                "table" => params.table = Some(v),
                "schema" => params.schema = Some(v),
                "prefix" => params.prefix = Some(v),
                "max_bytes" => {
                    params.max_bytes = Some(v.parse().map_err(|_| {
                        OpenError::Malformed("`max_bytes` must be a whole number of bytes".into())
                    })?);
                }
                "secret_env" => params.secret_env = Some(v),
                "previous_secrets_env" => params.previous_secrets_env = Some(v),
                "cookie_name" => {
                    return Err(OpenError::Malformed(
                        "the cookie name comes from the SessionConfig (open the store with `open_with`)"
                            .into(),
                    ));
                }
                "secret" | "key" | "password" if scheme.starts_with("cookie") => {
                    return Err(OpenError::Malformed(
                        "secrets never go in the URL: name an environment variable with `secret_env`"
                            .into(),
                    ));
                }
                other => params.other.push((other.to_owned(), v)),
            }
        }
        overlay(&mut params.table, &config.table);
        overlay(&mut params.schema, &config.schema);
        overlay(&mut params.prefix, &config.prefix);
        if config.max_bytes.is_some() {
            params.max_bytes = config.max_bytes;
        }
        overlay(&mut params.secret_env, &config.secret_env);
        overlay(
            &mut params.previous_secrets_env,
            &config.previous_secrets_env,
        );

        let mut driver_url = format!("{scheme}:{body}");
        if !params.other.is_empty() {
            let q: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&params.other)
                .finish();
            driver_url = format!("{driver_url}?{q}");
        }
        let rest = body.strip_prefix("//").unwrap_or(body).to_owned();
        Ok(Self {
            scheme,
            driver_url,
            rest,
            params,
        })
    }

    /// Refuses driver parameters for stores that have no driver.
    pub(crate) fn no_driver_params(&self) -> Result<(), OpenError> {
        match self.params.other.first() {
            Some((k, _)) => Err(OpenError::Malformed(format!(
                "`{}://` takes no parameter `{k}`",
                self.scheme
            ))),
            None => Ok(()),
        }
    }

    // Unused only when every store feature is on.
    #[allow(dead_code)]
    pub(crate) fn disabled(&self) -> OpenError {
        OpenError::FeatureDisabled {
            scheme: self.scheme.clone(),
            feature: feature_for_scheme(&self.scheme).unwrap_or(""),
        }
    }
}

fn overlay(slot: &mut Option<String>, value: &Option<String>) {
    if value.is_some() {
        slot.clone_from(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact_url;

    #[test]
    fn every_scheme_names_its_feature() {
        for (scheme, feature) in [
            ("memory", ""),
            ("moka", "moka"),
            ("sqlite", "sqlite"),
            ("postgres", "postgres"),
            ("postgresql", "postgres"),
            ("mysql", "mysql"),
            ("mariadb", "mysql"),
            ("redis", "redis"),
            ("rediss", "redis"),
            ("redis+cluster", "redis-cluster"),
            ("file", "file"),
            ("cookie+signed", "cookie"),
            ("cookie+encrypted", "cookie"),
        ] {
            assert_eq!(feature_for_scheme(scheme), Some(feature), "{scheme}");
        }
        assert_eq!(feature_for_scheme("mongodb"), None);
    }

    #[test]
    fn our_parameters_are_taken_out_and_the_rest_goes_to_the_driver() {
        let t = Target::parse(
            "postgres://u@h/db?table=t1&sslmode=disable&schema=web",
            &StoreConfig::default(),
            &SessionConfig::default(),
        )
        .expect("parses");
        assert_eq!(t.driver_url, "postgres://u@h/db?sslmode=disable");
        assert_eq!(t.params.table.as_deref(), Some("t1"));
        assert_eq!(t.params.schema.as_deref(), Some("web"));
        assert_eq!(t.rest, "u@h/db");
    }

    #[test]
    fn config_fields_override_url_parameters() {
        let config = StoreConfig {
            table: Some("from_config".into()),
            ..StoreConfig::from_url("sqlite://x.db?table=from_url")
        };
        let t = Target::parse(&config.url, &config, &SessionConfig::default()).expect("parses");
        assert_eq!(t.params.table.as_deref(), Some("from_config"));
    }

    #[test]
    fn debug_and_redaction_hide_passwords() {
        let config = StoreConfig::from_url("postgres://app:hunter2@db.example/app");
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("***"));
        assert_eq!(redact_url("memory://"), "memory://");
    }
}
