//! Reading a request body: at most the size cap (checked from `Content-Length`
//! before reading, and while reading), within the body timeout (a client that trickles
//! its body is cut off), JSON only (`Content-Type: application/json` required), strict (unknown fields are refused). A refusal
//! that leaves the body unread closes the connection ([`ApiError::closing`]).

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The body, whole, or why not.
pub async fn read(
    headers: &HeaderMap,
    body: Body,
    max: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    read_whole(headers, body, max, timeout)
        .await
        .map_err(ApiError::closing)
}

async fn read_whole(
    headers: &HeaderMap,
    body: Body,
    max: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    // The media type is required (RFC 9110 8.3: a body without one may be read
    // as anything; this API reads only JSON).
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be application/json, with Content-Type: application/json",
        ));
    }
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body must be at most {max} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let limited = http_body_util::Limited::new(body, max);
    match tokio::time::timeout(timeout, limited.collect()).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "the body did not arrive in time",
        )),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Ok(Err(_)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "the body could not be read",
        )),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

/// Parse a JSON body into `T` (whose fields deny unknown ones).
pub fn json<T: DeserializeOwned>(b: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(b).map_err(|e| {
        let msg = e.to_string();
        // serde names the unknown field; the value is never echoed.
        let code = if msg.starts_with("unknown field") {
            "unknown_field"
        } else {
            "invalid_json"
        };
        let msg = match msg.find(" at line") {
            Some(i) if code == "unknown_field" => msg[..i].to_string(),
            _ => msg,
        };
        ApiError::new(StatusCode::BAD_REQUEST, code, msg)
    })
}

/// An optional whole number written `173` or `173.0` (JSON Schema counts both as
/// integers, and so do many JSON encoders); a fraction, a negative number or one
/// past `T`'s range is refused.
pub fn whole<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::de::{Deserialize, Error};
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let w = match (n.as_u64(), n.as_f64()) {
        (Some(u), _) => u,
        // 2^53: past it a float no longer holds every whole number exactly.
        (None, Some(f)) if f >= 0.0 && f.fract() == 0.0 && f <= 9_007_199_254_740_992.0 => f as u64,
        _ => {
            return Err(D::Error::custom(format!(
                "invalid value: {n}, expected a whole number"
            )));
        }
    };
    T::try_from(w)
        .map(Some)
        .map_err(|_| D::Error::custom(format!("invalid value: {n}, out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        a: u32,
    }

    #[derive(Debug, serde::Deserialize)]
    struct W {
        #[serde(default, deserialize_with = "whole")]
        n: Option<u8>,
    }

    #[test]
    fn whole_numbers_with_or_without_a_point() {
        let n = |s: &str| json::<W>(s.as_bytes()).map(|w| w.n);
        assert_eq!(n(r#"{"n":6}"#).unwrap(), Some(6));
        assert_eq!(n(r#"{"n":6.0}"#).unwrap(), Some(6));
        assert_eq!(n(r#"{"n":6e0}"#).unwrap(), Some(6));
        assert_eq!(n(r#"{}"#).unwrap(), None);
        assert_eq!(n(r#"{"n":null}"#).unwrap(), None);
        for bad in [
            r#"{"n":6.5}"#,
            r#"{"n":-1}"#,
            r#"{"n":256}"#,
            r#"{"n":"6"}"#,
            r#"{"n":1e300}"#,
        ] {
            assert_eq!(n(bad).unwrap_err().code, "invalid_json", "{bad}");
        }
    }

    #[test]
    fn strict_json() {
        assert!(json::<T>(br#"{"a":1}"#).is_ok());
        assert_eq!(
            json::<T>(br#"{"a":1,"b":2}"#).unwrap_err().code,
            "unknown_field"
        );
        assert_eq!(json::<T>(br#"{"a":"x"}"#).unwrap_err().code, "invalid_json");
        assert_eq!(json::<T>(b"{nope").unwrap_err().code, "invalid_json");
    }

    /// On paused tokio time: the body timeout is exact and takes no real time.
    #[tokio::test(start_paused = true)]
    async fn size_type_and_time() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        let e = read(&h, Body::from("x"), 10, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(e.code, "unsupported_media_type");
        let e = read(
            &HeaderMap::new(),
            Body::from("{}"),
            10,
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
        assert_eq!(e.code, "unsupported_media_type", "no Content-Type: 415");
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            "Application/JSON; charset=utf-8".parse().unwrap(),
        );
        let e = read(&h, Body::from(vec![b'x'; 11]), 10, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(e.code, "body_too_large");
        let close = |e: ApiError| {
            use axum::response::IntoResponse;
            e.into_response()
                .headers()
                .get(header::CONNECTION)
                .map(|v| v.to_str().unwrap_or("").to_string())
        };
        assert_eq!(close(e).as_deref(), Some("close"), "an unread body closes");
        let ok = read(&h, Body::from("12345"), 10, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(&ok[..], b"12345");
        // A body that never ends.
        let (_tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let stream =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|x| (x, rx)) },
            );
        let t0 = tokio::time::Instant::now();
        let e = read(&h, Body::from_stream(stream), 10, Duration::from_secs(10))
            .await
            .unwrap_err();
        assert_eq!(e.code, "body_timeout");
        assert_eq!(t0.elapsed(), Duration::from_secs(10), "exactly the timeout");
        assert_eq!(close(e).as_deref(), Some("close"), "an unread body closes");
        assert_eq!(close(ApiError::not_found()), None);
    }
}
