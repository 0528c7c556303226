//! Credentials: where a bearer token comes from, and the header that carries it (marked
//! sensitive, so it is never logged).

use reqwest::header::HeaderValue;

use crate::{
    error::{Result, TransportError},
    options::HttpOptions,
};

/// Where a token comes from at one point of the redirect chain.
#[derive(Clone, Debug)]
pub(crate) enum TokenSource {
    None,
    /// The user's factory, called for each request.
    Factory,
    /// A redirect's `accessToken`.
    Fixed(String),
}

/// Resolves a token source to the token to send now (`None` for none, or an empty token).
pub(crate) async fn token(source: &TokenSource, options: &HttpOptions) -> Result<Option<String>> {
    let token = match source {
        TokenSource::None => return Ok(None),
        TokenSource::Fixed(t) => t.clone(),
        TokenSource::Factory => match &options.access_token_factory {
            Some(factory) => factory().await.map_err(TransportError::AccessToken)?,
            None => return Ok(None),
        },
    };
    Ok(Some(token).filter(|t| !t.is_empty()))
}

pub(crate) fn bearer(token: &str) -> Result<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| TransportError::AccessToken("the token is not a valid header value".into()))?;
    value.set_sensitive(true);
    Ok(value)
}
