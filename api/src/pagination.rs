//! DRF page-number pagination: `page` (1-based) and `page_size` (default 50, at most 1000,
//! anything not a positive integer falls back to the default); `next`/`previous` are absolute
//! URLs keeping the other query parameters.

use axum::http::{header, HeaderMap, Uri};

use crate::error::ApiError;

pub const DEFAULT_PAGE_SIZE: i64 = 50;
pub const MAX_PAGE_SIZE: i64 = 1000;

pub struct PageRequest {
    pub page: i64,
    pub page_size: i64,
    /// The query as given, in order, to rebuild `next`/`previous` from.
    params: Vec<(String, String)>,
}

impl PageRequest {
    pub fn from_query(query: Option<&str>) -> Result<Self, ApiError> {
        let params = query_params(query);
        let page_size = param(&params, "page_size").map_or(DEFAULT_PAGE_SIZE, |raw| {
            clamped_positive(raw, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        });
        let page = match param(&params, "page") {
            None => 1,
            Some(raw) => raw
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|page| *page > 0)
                .ok_or(ApiError::InvalidPage)?,
        };
        Ok(Self {
            page,
            page_size,
            params,
        })
    }

    pub fn offset(&self) -> Result<i64, ApiError> {
        (self.page - 1)
            .checked_mul(self.page_size)
            .ok_or(ApiError::InvalidPage)
    }

    fn with_page(&self, page: i64) -> String {
        let mut serializer = form_urlencoded::Serializer::new(String::new());
        let mut placed = false;
        for (key, value) in &self.params {
            if key == "page" {
                if !placed && page > 1 {
                    serializer.append_pair("page", &page.to_string());
                }
                placed = true;
            } else {
                serializer.append_pair(key, value);
            }
        }
        if !placed && page > 1 {
            serializer.append_pair("page", &page.to_string());
        }
        serializer.finish()
    }
}

/// The query string as (name, value) pairs, in order, decoded.
pub fn query_params(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// The last value given for `name`, as DRF's `QueryDict` reads it.
pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .rev()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// A size parameter: a positive integer (of any length) is clamped to `max`; anything else
/// is `default`.
pub fn clamped_positive(raw: &str, default: i64, max: i64) -> i64 {
    let digits = raw.trim().trim_start_matches('+');
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return default;
    }
    match digits.parse::<i64>() {
        Ok(0) => default,
        Ok(size) => size.min(max),
        // More digits than an i64 holds: a very large positive integer.
        Err(_) => max,
    }
}

pub struct PageUrls {
    pub next: Option<String>,
    pub previous: Option<String>,
}

impl PageUrls {
    /// Fails with `Invalid page.` when the page is past the last one (page 1 always exists).
    pub fn new(
        headers: &HeaderMap,
        uri: &Uri,
        request: &PageRequest,
        count: i64,
    ) -> Result<Self, ApiError> {
        let last_page = ((count + request.page_size - 1) / request.page_size).max(1);
        if request.page > last_page {
            return Err(ApiError::InvalidPage);
        }
        let host = headers
            .get(header::HOST)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("localhost");
        let scheme = headers
            .get("x-forwarded-proto")
            .and_then(|value| value.to_str().ok())
            .filter(|proto| *proto == "https")
            .unwrap_or("http");
        let url = |page: i64| {
            let query = request.with_page(page);
            let separator = if query.is_empty() { "" } else { "?" };
            format!("{scheme}://{host}{}{separator}{query}", uri.path())
        };
        Ok(Self {
            next: (request.page < last_page).then(|| url(request.page + 1)),
            previous: (request.page > 1).then(|| url(request.page - 1)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_clamps_and_falls_back() {
        let size = |q: &str| PageRequest::from_query(Some(q)).unwrap().page_size;
        assert_eq!(size(""), 50);
        assert_eq!(size("page_size=5000"), 1000);
        assert_eq!(size("page_size=0"), 50);
        assert_eq!(size("page_size=-3"), 50);
        assert_eq!(size("page_size=abc"), 50);
        assert_eq!(size("page_size=7"), 7);
        assert_eq!(size("page_size=99999999999999999999"), 1000);
        assert_eq!(size("page_size=000"), 50);
        assert_eq!(clamped_positive("99999999999999999999", 100, 1000), 1000);
        assert_eq!(clamped_positive("-5", 100, 1000), 100);
    }

    #[test]
    fn a_bad_page_is_invalid() {
        for q in ["page=0", "page=-1", "page=x", "page="] {
            assert!(matches!(
                PageRequest::from_query(Some(q)),
                Err(ApiError::InvalidPage)
            ));
        }
    }

    #[test]
    fn page_links_keep_other_parameters() {
        let request = PageRequest::from_query(Some("page_size=2&page=2&q=a%20b")).unwrap();
        assert_eq!(request.with_page(3), "page_size=2&page=3&q=a+b");
        assert_eq!(request.with_page(1), "page_size=2&q=a+b");
    }
}
