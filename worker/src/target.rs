//! The request's URL, split from the string the runtime hands over (already normalised by
//! the runtime's URL parser): scheme, path and query. Parsing it again with the `url` crate
//! would bring its IDNA tables into the wasm (≈ 25 KB gzip) for nothing.

/// A request's URL, in parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `https://…`.
    pub https: bool,
    /// The path, percent-encoded as received (`/p/sku-0005`).
    pub path: String,
    /// The query without `?`, if any.
    pub query: Option<String>,
}

impl Target {
    /// Splits an absolute URL (`scheme://host[:port]/path?query#fragment`).
    pub fn parse(url: &str) -> Target {
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        let rest = rest.split('#').next().unwrap_or_default();
        let (before_query, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q.to_string())),
            None => (rest, None),
        };
        let path = before_query
            .find('/')
            .map_or("/", |i| &before_query[i..])
            .to_string();
        Target {
            https: scheme.eq_ignore_ascii_case("https"),
            path,
            query,
        }
    }

    /// The request's own URL.
    pub fn of(req: &worker::Request) -> Target {
        Target::parse(&req.inner().url())
    }

    /// Decoded query pairs (`+` and `%xx` decoded, as HTML forms encode them).
    pub fn query_pairs(&self) -> form_urlencoded::Parse<'_> {
        form_urlencoded::parse(self.query.as_deref().unwrap_or_default().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_what_the_runtime_hands_over() {
        let t = Target::parse("https://shop.example.com:8443/p/sku-0005?limit=4&slot=a+b%21#top");
        assert!(t.https);
        assert_eq!(t.path, "/p/sku-0005");
        assert_eq!(t.query.as_deref(), Some("limit=4&slot=a+b%21"));
        let pairs: Vec<(String, String)> =
            t.query_pairs().map(|(k, v)| (k.into(), v.into())).collect();
        assert_eq!(
            pairs,
            [("limit".into(), "4".into()), ("slot".into(), "a b!".into())]
        );
        let bare = Target::parse("http://127.0.0.1:8787");
        assert_eq!(
            (bare.https, bare.path.as_str(), bare.query),
            (false, "/", None)
        );
        assert_eq!(Target::parse("http://h/?").query.as_deref(), Some(""));
    }
}
