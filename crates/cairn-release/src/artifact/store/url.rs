//! Store addresses: [`StoreUrl`].

use std::path::PathBuf;

use crate::error::{ReleaseError, Result};

/// A parsed store address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Dir(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl StoreUrl {
    /// `s3://bucket[/prefix]`, `file:PATH`, `file://PATH`, or a plain path.
    pub fn parse(url: &str) -> Result<StoreUrl> {
        let bad = |reason: &str| ReleaseError::StoreUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let bucket_ok = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-'
                });
            if !bucket_ok {
                return Err(bad(
                    "an S3 bucket name is 3 to 63 lowercase letters, digits, `.`, `-`",
                ));
            }
            let prefix = prefix.trim_matches('/');
            if prefix.split('/').any(|p| p == "." || p == "..") || prefix.contains("//") {
                return Err(bad("the prefix has an empty, `.` or `..` part"));
            }
            return Ok(StoreUrl::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            });
        }
        let path = url
            .strip_prefix("file://")
            .or_else(|| url.strip_prefix("file:"))
            .unwrap_or(url);
        if path.contains("://") {
            return Err(bad(
                "known stores are s3://BUCKET/PREFIX and file:PATH (or a path)",
            ));
        }
        if path.is_empty() {
            return Err(bad("an empty path"));
        }
        Ok(StoreUrl::Dir(PathBuf::from(path)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls() {
        assert_eq!(
            StoreUrl::parse("s3://my-bucket/cairn/artifacts/").unwrap(),
            StoreUrl::S3 {
                bucket: "my-bucket".into(),
                prefix: "cairn/artifacts".into()
            }
        );
        assert_eq!(
            StoreUrl::parse("s3://my-bucket").unwrap(),
            StoreUrl::S3 {
                bucket: "my-bucket".into(),
                prefix: "".into()
            }
        );
        for (url, path) in [
            ("file:/srv/a", "/srv/a"),
            ("file:///srv/a", "/srv/a"),
            ("file:rel/a", "rel/a"),
            ("/srv/a", "/srv/a"),
            ("./a", "./a"),
        ] {
            assert_eq!(
                StoreUrl::parse(url).unwrap(),
                StoreUrl::Dir(path.into()),
                "{url}"
            );
        }
        for bad in [
            "s3://Bad_Bucket/x",
            "s3://",
            "s3://bucket/a/../b",
            "gs://b/p",
            "",
            "file:",
        ] {
            let err = StoreUrl::parse(bad).unwrap_err().to_string();
            assert!(err.starts_with("artifact store"), "{bad}: {err}");
        }
    }
}
