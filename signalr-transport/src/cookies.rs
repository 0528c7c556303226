//! Cookies: one jar per connection, used by negotiate, every transport request and every
//! reconnect, so that a load balancer's affinity cookie (HAProxy's `cookie SRV insert`,
//! Azure App Service's `ARRAffinity`) keeps a connection on the instance that negotiated it.
//!
//! Storage and matching are the `cookie_store` crate's (RFC 6265 domain, path, expiry, `Secure`
//! and `HttpOnly` rules), the implementation reqwest's own jar uses. This wrapper adds bounds,
//! since a peer chooses what it sets: at most [`MAX_SET_COOKIES`] `Set-Cookie` headers are read
//! from one response, each at most [`MAX_COOKIE_BYTES`], and the jar holds at most
//! [`MAX_COOKIES`]. Values never reach logs: only counts are logged.

use std::{fmt, sync::RwLock};

use cookie_store::CookieStore;
use reqwest::{
    Url,
    header::{COOKIE, HeaderMap, HeaderValue, SET_COOKIE},
};
use tracing::debug;

use crate::error::TransportError;

/// The most cookies a jar holds (a browser keeps at least 50 per domain and 3,000 in all, RFC
/// 6265 §6.1; a SignalR connection talks to one or two hosts).
pub const MAX_COOKIES: usize = 300;
/// The longest `Set-Cookie` value accepted, in bytes (RFC 6265 §6.1's minimum for one cookie).
pub const MAX_COOKIE_BYTES: usize = 4096;
/// The most `Set-Cookie` headers read from one response; the rest are ignored.
pub const MAX_SET_COOKIES: usize = 50;

/// A cookie jar: what the servers set, sent back where RFC 6265 says it belongs.
///
/// [`HttpOptions`](crate::HttpOptions) holds one by default (`Some`), shared by the clones of
/// those options: the connection built from them keeps it across reconnects. Share one
/// between connections with `Arc`, or preset one (an authentication cookie) with
/// [`add`](Self::add).
///
/// ```
/// use signalr_transport::{CookieJar, HttpOptions};
/// use std::sync::Arc;
///
/// let jar = Arc::new(CookieJar::new());
/// jar.add("session=s3cret; Path=/; HttpOnly", "https://example.com/hub").unwrap();
/// assert_eq!(jar.len(), 1);
/// let options = HttpOptions::default().cookies(Some(jar));
/// # let _ = options;
/// ```
#[derive(Default)]
pub struct CookieJar {
    store: RwLock<CookieStore>,
}

impl fmt::Debug for CookieJar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the values: a cookie may be a session.
        f.debug_struct("CookieJar")
            .field("cookies", &self.len())
            .finish()
    }
}

/// The URL cookies are matched against: `ws`/`wss` are the `http`/`https` requests they begin
/// as (RFC 6455 §4.1), so `Secure` and `HttpOnly` cookies go on the upgrade too.
fn http_form(url: &Url) -> Url {
    let scheme = match url.scheme() {
        "ws" => "http",
        "wss" => "https",
        _ => return url.clone(),
    };
    let mut http = url.clone();
    // `set_scheme` refuses only changes between special and non-special schemes; ws and http
    // are both special.
    let _ = http.set_scheme(scheme);
    http
}

impl CookieJar {
    /// An empty jar.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `set_cookie` (a `Set-Cookie` header value) as if `url` had sent it.
    pub fn add(&self, set_cookie: &str, url: &str) -> Result<(), TransportError> {
        let invalid = |reason: String| TransportError::InvalidUrl {
            url: crate::redact(url),
            reason,
        };
        let url = Url::parse(url).map_err(|e| invalid(e.to_string()))?;
        if set_cookie.len() > MAX_COOKIE_BYTES {
            return Err(TransportError::InvalidCookie {
                reason: format!("longer than {MAX_COOKIE_BYTES} bytes"),
            });
        }
        let cookie = cookie_store::Cookie::parse(set_cookie, &http_form(&url)).map_err(|e| {
            TransportError::InvalidCookie {
                reason: e.to_string(),
            }
        })?;
        let mut store = self.write();
        if store.iter_any().count() >= MAX_COOKIES && make_room(&mut store) >= MAX_COOKIES {
            return Err(TransportError::InvalidCookie {
                reason: format!("the jar already holds {MAX_COOKIES} cookies"),
            });
        }
        store
            .insert(cookie.into_owned(), &http_form(&url))
            .map(drop)
            .map_err(|e| TransportError::InvalidCookie {
                reason: e.to_string(),
            })
    }

    /// The value of the `Cookie` header a request to `url` would carry, if any.
    pub fn cookie_header(&self, url: &str) -> Option<String> {
        let url = Url::parse(url).ok()?;
        self.header_for(&url)
            .and_then(|v| v.to_str().ok().map(str::to_owned))
    }

    /// How many cookies the jar holds (expired ones not yet dropped included).
    pub fn len(&self) -> usize {
        self.read().iter_any().count()
    }

    /// Whether the jar is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every cookie.
    pub fn clear(&self) {
        self.write().clear();
    }

    /// The `Cookie` header for a request to `url`, marked sensitive (never logged by hyper).
    pub(crate) fn header_for(&self, url: &Url) -> Option<HeaderValue> {
        let url = http_form(url);
        let store = self.read();
        let mut value = String::new();
        for (name, v) in store.get_request_values(&url) {
            if !value.is_empty() {
                value.push_str("; ");
            }
            value.push_str(name);
            value.push('=');
            value.push_str(v);
        }
        if value.is_empty() {
            return None;
        }
        let mut header = HeaderValue::from_str(&value).ok()?;
        header.set_sensitive(true);
        Some(header)
    }

    /// Adds the `Cookie` header for `url` to `headers`.
    pub(crate) fn attach(&self, url: &Url, headers: &mut HeaderMap) {
        if let Some(value) = self.header_for(url) {
            headers.insert(COOKIE, value);
        }
    }

    /// Stores the `Set-Cookie` headers of a response from `url`, within the bounds.
    pub(crate) fn store_from(&self, url: &Url, headers: &HeaderMap) {
        let mut values = headers.get_all(SET_COOKIE).iter().peekable();
        if values.peek().is_none() {
            return;
        }
        self.store_values(url, values.filter_map(|v| v.to_str().ok()));
    }

    /// Stores `Set-Cookie` values (as text) received from `url`, within the bounds.
    pub(crate) fn store_values<'a>(&self, url: &Url, values: impl Iterator<Item = &'a str>) {
        let url = http_form(url);
        let mut store = self.write();
        let mut held = store.iter_any().count();
        let (mut stored, mut ignored) = (0usize, 0usize);
        for (i, value) in values.enumerate() {
            if i >= MAX_SET_COOKIES || value.len() > MAX_COOKIE_BYTES {
                ignored += 1;
                continue;
            }
            let Ok(cookie) = cookie_store::Cookie::parse(value, &url) else {
                ignored += 1;
                continue;
            };
            let known = store.contains_any(
                &String::from(&cookie.domain),
                &String::from(&cookie.path),
                cookie.name(),
            );
            if !known && held >= MAX_COOKIES {
                held = make_room(&mut store);
                if held >= MAX_COOKIES {
                    ignored += 1;
                    continue;
                }
            }
            // `insert`, not `store_response_cookies`: the latter logs cookie values.
            match store.insert(cookie.into_owned(), &url) {
                Ok(cookie_store::StoreAction::Inserted) => {
                    stored += 1;
                    held += 1;
                }
                Ok(_) => stored += 1,
                Err(_) => ignored += 1,
            }
        }
        debug!(stored, ignored, "cookies from the server");
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, CookieStore> {
        // A panic elsewhere while holding the lock leaves a store that is still consistent.
        self.store
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, CookieStore> {
        self.store
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Drops the expired cookies, so that short-lived ones do not take the room of live ones;
/// returns how many cookies are left.
fn make_room(store: &mut CookieStore) -> usize {
    let live: Vec<_> = store.iter_unexpired().cloned().collect();
    if live.len() == store.iter_any().count() {
        return live.len();
    }
    store.clear();
    for cookie in live {
        if let Some(url) = cookie_url(&cookie) {
            let _ = store.insert(cookie, &url);
        }
    }
    store.iter_any().count()
}

/// A URL from which `cookie` could have been set (for re-inserting it).
fn cookie_url(cookie: &cookie_store::Cookie<'static>) -> Option<Url> {
    let host = cookie.domain.as_cow()?;
    let path = String::from(&cookie.path);
    Url::parse(&format!("https://{host}{path}")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn affinity_cookie_goes_back_to_the_host_that_set_it() {
        let jar = CookieJar::new();
        let mut headers = HeaderMap::new();
        headers.append(SET_COOKIE, HeaderValue::from_static("SRV=s1; path=/"));
        headers.append(SET_COOKIE, HeaderValue::from_static("other=x; path=/hub"));
        jar.store_from(&url("http://lb.example:8080/hub/negotiate"), &headers);
        assert_eq!(jar.len(), 2);
        let header = jar
            .header_for(&url("ws://lb.example:8080/hub?id=1"))
            .unwrap();
        assert!(header.is_sensitive());
        let mut sent: Vec<&str> = header.to_str().unwrap().split("; ").collect();
        sent.sort_unstable();
        assert_eq!(sent, ["SRV=s1", "other=x"]);
        assert!(
            jar.header_for(&url("http://elsewhere.example/hub"))
                .is_none()
        );
        // Only the root-path cookie matches outside /hub.
        assert_eq!(
            jar.cookie_header("http://lb.example:8080/").as_deref(),
            Some("SRV=s1")
        );
    }

    #[test]
    fn secure_cookies_go_on_wss_but_not_on_ws() {
        let jar = CookieJar::new();
        jar.add("s=1; Secure; HttpOnly", "https://h.example/hub")
            .unwrap();
        assert!(jar.header_for(&url("wss://h.example/hub")).is_some());
        assert!(jar.header_for(&url("ws://h.example/hub")).is_none());
    }

    #[test]
    fn a_flood_is_bounded() {
        let jar = CookieJar::new();
        let values: Vec<String> = (0..1_000).map(|i| format!("c{i}=v; path=/")).collect();
        for chunk in values.chunks(40) {
            jar.store_values(&url("http://h.example/"), chunk.iter().map(String::as_str));
        }
        assert_eq!(jar.len(), MAX_COOKIES);
        // One response carries at most MAX_SET_COOKIES.
        let fresh = CookieJar::new();
        fresh.store_values(&url("http://h.example/"), values.iter().map(String::as_str));
        assert_eq!(fresh.len(), MAX_SET_COOKIES);
        // Oversized values are ignored; an update of a known cookie still lands when full.
        let big = format!("big={}", "x".repeat(MAX_COOKIE_BYTES));
        jar.store_values(&url("http://h.example/"), std::iter::once(big.as_str()));
        assert_eq!(jar.len(), MAX_COOKIES);
        jar.store_values(&url("http://h.example/"), std::iter::once("c0=new; path=/"));
        assert!(
            jar.cookie_header("http://h.example/")
                .unwrap()
                .contains("c0=new")
        );
        assert!(jar.add(&big, "http://h.example/").is_err());
    }

    #[test]
    fn expired_cookies_make_room() {
        let jar = CookieJar::new();
        for i in 0..MAX_COOKIES {
            jar.store_values(
                &url("http://h.example/"),
                std::iter::once(format!("c{i}=v; Max-Age=0").as_str()),
            );
        }
        // Max-Age=0 cookies are expired on arrival and never stored.
        assert_eq!(jar.len(), 0);
        jar.store_values(&url("http://h.example/"), std::iter::once("live=1"));
        assert_eq!(jar.len(), 1);
    }

    #[test]
    fn debug_shows_no_values() {
        let jar = CookieJar::new();
        jar.add("token=s3cret", "http://h.example/").unwrap();
        let shown = format!("{jar:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
