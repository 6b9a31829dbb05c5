//! `ANY /internal/v1/users/{sub}/google/{host}/{path...}`: any Google API with the user's access token.
//!
//! The host must be allowed (`internal.proxy_hosts`, checked strictly before anything else); the caller's
//! `Authorization`, `Cookie`, `Host` and hop-by-hop headers are never forwarded; bodies stream both ways (a small
//! request body is kept so the request can be repeated after a refresh); Google's status, body and meaningful
//! headers come back as they are.

use axum::body::Body;
use axum::extract::{Extension, Request, State};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use offline_access_domain::{ProxyBody, ProxyError, ProxyRequest, ProxyUseError};

use super::{InternalState, KeyName};
use crate::error::{ApiError, ErrorBody};
use crate::extract::read_body;

/// Request headers never forwarded, whatever the case (the caller's credentials, and hop-by-hop headers of
/// RFC 9110 §7.6.1).
const DROPPED: &[&str] = &[
    "authorization",
    "cookie",
    "host",
    "proxy-authorization",
    "proxy-connection",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
];

/// The caller's headers that may go to Google: every header but those in [`DROPPED`] and those the `Connection`
/// header names; values that are not visible ASCII are dropped too.
pub(crate) fn forwardable_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    let named_by_connection: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    headers
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            !DROPPED.contains(&name) && !named_by_connection.iter().any(|n| n == name)
        })
        .filter_map(|(name, value)| {
            value
                .to_str()
                .ok()
                .map(|v| (name.as_str().to_owned(), v.to_owned()))
        })
        .collect()
}

/// The host and the path-and-query from the raw request path (still percent-encoded, as the caller sent it), for
/// `/internal/v1/users/{sub}/google/{host}/{path...}`.
pub(crate) fn target(path: &str, query: Option<&str>) -> Option<(String, String)> {
    let rest = path.strip_prefix("/internal/v1/users/")?;
    let (_sub, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("google/")?;
    let (host, tail) = rest.split_once('/')?;
    let host = host.to_ascii_lowercase();
    let mut path_and_query = format!("/{tail}");
    if let Some(query) = query {
        path_and_query.push('?');
        path_and_query.push_str(query);
    }
    Some((host, path_and_query))
}

/// Forward a request to a Google API with the user's access token.
#[utoipa::path(get, path = "/internal/v1/users/{sub}/google/{host}/{path}", tag = "internal",
    security(("api_key" = [])),
    description = "Any method. Forwards to `https://{host}/{path}` (query kept) with the user's access token \
        when `host` is allowed by internal.proxy_hosts. Google's status, body and meaningful headers come back \
        as they are.",
    responses(
        (status = 200, description = "Google's answer, passed through (any status)."),
        (status = 401, description = "`invalid_api_key`.", body = ErrorBody),
        (status = 403, description = "`host_not_allowed`.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such user.", body = ErrorBody),
        (status = 409, description = "`reconsent_required`.", body = ErrorBody),
        (status = 503, description = "`upstream_unavailable`.", body = ErrorBody),
    ))]
pub(crate) async fn proxy(
    State(state): State<InternalState>,
    Extension(key): Extension<KeyName>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let (host, path_and_query) = target(parts.uri.path(), parts.uri.query()).ok_or_else(|| {
        ApiError::invalid_request("The path must be /internal/v1/users/{sub}/google/{host}/{path}.")
    })?;
    if !(state.config.allow_host)(&host) {
        tracing::info!(key = %key.0, "internal API: proxy to a host not allowed refused");
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "host_not_allowed",
            "The proxy may not reach this host (internal.proxy_hosts).",
        ));
    }
    let sub = parts
        .uri
        .path()
        .trim_start_matches("/internal/v1/users/")
        .split('/')
        .next()
        .unwrap_or_default();
    let subject = super::routes::subject(sub)?;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let chunked = parts.headers.contains_key(header::TRANSFER_ENCODING);
    let body = match declared {
        Some(0) => ProxyBody::Empty,
        None if !chunked => ProxyBody::Empty,
        Some(n) if n <= state.config.repeatable_body_limit as u64 => ProxyBody::Full(
            read_body(&parts.headers, body, state.config.repeatable_body_limit).await?,
        ),
        _ => ProxyBody::Streaming(Box::pin(body.into_data_stream().map(|chunk| {
            chunk.map_err(|e| ProxyError::BadRequest(format!("the request body broke off: {e}")))
        }))),
    };
    let method = parts.method.as_str().to_owned();
    // The query may hold secrets (API keys, tokens of other services): only the path is logged.
    let logged_path = path_and_query
        .split('?')
        .next()
        .unwrap_or_default()
        .to_owned();
    let forwarded = ProxyRequest {
        method: method.clone(),
        host: host.clone(),
        path_and_query,
        headers: forwardable_headers(&parts.headers),
        body,
    };
    let service = state.service.clone();
    let target_subject = subject.clone();
    let result =
        crate::routes::run_to_completion(
            async move { service.proxy(&target_subject, forwarded).await },
        )
        .await?;
    let answer = match result {
        Ok(answer) => answer,
        Err(ProxyUseError::Access(e)) => return Err(e.into()),
        Err(ProxyUseError::Upstream(ProxyError::BadRequest(detail))) => {
            tracing::info!(detail = %detail, "internal API: a request could not be forwarded");
            return Err(ApiError::invalid_request(
                "The request could not be forwarded to Google.",
            ));
        }
        Err(ProxyUseError::Upstream(_)) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream_unavailable",
                "Google is unavailable right now; try again later.",
            ));
        }
        Err(ProxyUseError::NotConfigured) => {
            tracing::error!("the internal API's proxy has no Google API port");
            return Err(ApiError::internal());
        }
    };
    tracing::info!(key = %key.0, subject = %subject, method = %method, host = %host, path = %logged_path, status = answer.status, "internal API: Google API call proxied");
    metrics::counter!("offline_access_internal_proxied_total", "key" => key.0, "host" => host, "status" => answer.status.to_string())
        .increment(1);
    let mut response = Body::from_stream(answer.body).into_response();
    response
        .extensions_mut()
        .insert(crate::middleware::PassedThrough);
    *response.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let headers = response.headers_mut();
    for (name, value) in answer.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.append(name, value);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_target_keeps_the_raw_path_and_query_and_lower_cases_the_host() {
        assert_eq!(
            target(
                "/internal/v1/users/123/google/WWW.googleapis.com/calendar/v3/calendars/a%2Fb/events",
                Some("maxResults=5&q=x%20y")
            ),
            Some((
                "www.googleapis.com".to_owned(),
                "/calendar/v3/calendars/a%2Fb/events?maxResults=5&q=x%20y".to_owned()
            ))
        );
        assert_eq!(target("/internal/v1/users/123/drive/x/y", None), None);
        assert_eq!(target("/internal/v1/users/123/google/host", None), None);
    }

    #[test]
    fn credentials_and_hop_by_hop_headers_are_never_forwarded() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("authorization", "Bearer oak_secret"),
            ("cookie", "session=1"),
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("host", "internal.example"),
            ("content-type", "application/json"),
            ("if-none-match", "\"etag\""),
            ("x-goog-api-client", "svc/1"),
        ] {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let forwarded = forwardable_headers(&headers);
        let names: Vec<&str> = forwarded.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["content-type", "if-none-match", "x-goog-api-client"]
        );
    }

    proptest! {
        /// The proxy's path parsing (a `just fuzz` target): never panics; a target it finds has a host without
        /// `/`, `?` or upper case, and a path-and-query that starts with `/` and keeps the caller's bytes.
        #[test]
        fn fuzz_proxy_path_parsing_never_panics_and_keeps_the_path_under_the_host(
            sub in "[0-9a-zA-Z%./-]{0,24}",
            host in "[a-zA-Z0-9.:%@\\[\\]-]{0,40}",
            tail in "[ -~]{0,80}",
            query in proptest::option::of("[ -~]{0,40}"),
        ) {
            let path = format!("/internal/v1/users/{sub}/google/{host}/{tail}");
            let found = target(&path, query.as_deref());
            if let Some((found_host, path_and_query)) = &found {
                prop_assert!(!found_host.contains('/') && !found_host.contains('?'));
                prop_assert_eq!(found_host.clone(), found_host.to_ascii_lowercase());
                prop_assert!(path_and_query.starts_with('/'));
            }
            if !sub.contains('/') && !host.contains('/') {
                let mut expected = format!("/{}", tail);
                if let Some(q) = &query {
                    expected.push('?');
                    expected.push_str(q);
                }
                prop_assert_eq!(found, Some((host.to_ascii_lowercase(), expected)));
            }
        }

        /// Whatever the case and the company, a forbidden header never passes.
        #[test]
        fn forbidden_headers_never_pass_in_any_case(
            pick in 0..DROPPED.len(),
            upper in proptest::collection::vec(any::<bool>(), 32),
            others in proptest::collection::vec("x-[a-z]{1,8}", 0..5),
        ) {
            let name: String = DROPPED[pick]
                .chars()
                .zip(upper.iter().cycle())
                .map(|(c, u)| if *u { c.to_ascii_uppercase() } else { c })
                .collect();
            let mut headers = HeaderMap::new();
            headers.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_static("v"));
            for other in &others {
                headers.append(HeaderName::from_bytes(other.as_bytes()).unwrap(), HeaderValue::from_static("o"));
            }
            let forwarded = forwardable_headers(&headers);
            prop_assert!(forwarded.iter().all(|(n, _)| !DROPPED.contains(&n.as_str())));
            prop_assert_eq!(forwarded.len(), headers.len() - headers.get_all(name.as_str()).iter().count());
        }
    }
}
