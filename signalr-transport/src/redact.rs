//! Keeping tokens out of logs and error messages.

use std::fmt;

/// A URL that prints with its `access_token` query parameter replaced by `[redacted]`.
///
/// Every URL this crate logs or puts in an error goes through it.
pub struct Redacted<'a>(pub &'a str);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.0;
        let Some(q) = url.find('?') else {
            return f.write_str(url);
        };
        f.write_str(&url[..=q])?;
        let (query, fragment) = match url[q + 1..].find('#') {
            Some(h) => (&url[q + 1..q + 1 + h], &url[q + 1 + h..]),
            None => (&url[q + 1..], ""),
        };
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                f.write_str("&")?;
            }
            match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("access_token") => {
                    write!(f, "{key}=[redacted]")?;
                }
                _ => f.write_str(pair)?,
            }
        }
        f.write_str(fragment)
    }
}

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The redacted form of `url`, as a `String`.
pub fn redact(url: &str) -> String {
    Redacted(url).to_string()
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn only_the_token_is_hidden() {
        assert_eq!(redact("http://h/hub"), "http://h/hub");
        assert_eq!(
            redact("http://h/hub?id=abc&access_token=s3cret&x=1"),
            "http://h/hub?id=abc&access_token=[redacted]&x=1"
        );
        assert_eq!(
            redact("ws://h/hub?access_token=s3cret#frag"),
            "ws://h/hub?access_token=[redacted]#frag"
        );
        assert_eq!(
            redact("ws://h/hub?Access_Token=s"),
            "ws://h/hub?Access_Token=[redacted]"
        );
    }
}
