//! Read-only AWS calls retried where they fail, under the SDK.
//!
//! The SDK makes one attempt per call so that a create is never repeated
//! blindly (a second CreateVpc makes a second VPC); the engine retries a
//! whole create, which first looks for what an earlier attempt made. But a
//! create is many calls, most of them reads (describe the subnets, the
//! instances, wait until active), and when every one of them can fail, a
//! whole-create retry rarely gets through. Reads can be repeated as they
//! are, so this HTTP client retries those (transport errors, 5xx, 429) a few
//! times before the SDK sees the failure; anything that changes something
//! still gets exactly one attempt.

use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

/// Attempts of a read, the first included.
const ATTEMPTS: u32 = 4;
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const LONGEST_PAUSE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub(crate) struct ReadRetrying {
    inner: SharedHttpClient,
}

impl ReadRetrying {
    pub(crate) fn new(inner: SharedHttpClient) -> ReadRetrying {
        ReadRetrying { inner }
    }
}

impl HttpClient for ReadRetrying {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(Connector {
            inner: self.inner.http_connector(settings, components),
        })
    }
}

#[derive(Debug)]
struct Connector {
    inner: SharedHttpConnector,
}

/// A call that only reads: GET or HEAD (S3, Route 53), a query-protocol
/// action named Describe*, List* or Get* (EC2, ELB, RDS), or a JSON-protocol
/// target of that name (Secrets Manager).
pub(crate) fn is_read(method: &str, target: Option<&str>, body: Option<&[u8]>) -> bool {
    let read_name = |name: &str| {
        ["Describe", "List", "Get"]
            .iter()
            .any(|p| name.starts_with(p))
    };
    if method == "GET" || method == "HEAD" {
        return true;
    }
    if let Some(t) = target {
        return t.rsplit('.').next().is_some_and(read_name);
    }
    body.and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|b| b.split('&').find_map(|kv| kv.strip_prefix("Action=")))
        .is_some_and(read_name)
}

fn is_read_request(r: &HttpRequest) -> bool {
    is_read(
        r.method(),
        r.headers().get("x-amz-target"),
        r.body().bytes(),
    )
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        if !is_read_request(&request) {
            return self.inner.call(request);
        }
        let inner = self.inner.clone();
        HttpConnectorFuture::new(async move {
            let mut pause = FIRST_PAUSE;
            let mut attempt = 1;
            loop {
                // A body that cannot be copied (a stream) gets one attempt.
                let Some(copy) = request.try_clone().filter(|_| attempt < ATTEMPTS) else {
                    return inner.call(request).await;
                };
                let wait = match inner.call(copy).await {
                    Ok(r) if r.status().is_server_error() || r.status().as_u16() == 429 => r
                        .headers()
                        .get("retry-after")
                        .and_then(|s| s.trim().parse::<u64>().ok())
                        .map_or(pause, |s| Duration::from_secs(s).min(LONGEST_PAUSE)),
                    Ok(r) => return Ok(r),
                    Err(e) => {
                        tracing::debug!("a read failed ({e}); trying again");
                        pause
                    }
                };
                tokio::time::sleep(wait).await;
                pause = (pause * 2).min(LONGEST_PAUSE);
                attempt += 1;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::is_read;

    #[test]
    fn reads_are_told_from_writes_in_every_protocol() {
        assert!(is_read("GET", None, None));
        assert!(is_read("HEAD", None, None));
        assert!(is_read(
            "POST",
            None,
            Some(b"Action=DescribeInstances&Version=2016-11-15")
        ));
        assert!(is_read(
            "POST",
            None,
            Some(b"Version=2015-12-01&Action=DescribeTargetHealth")
        ));
        assert!(!is_read(
            "POST",
            None,
            Some(b"Action=RunInstances&ClientToken=x")
        ));
        assert!(!is_read(
            "POST",
            None,
            Some(b"Action=CreateVpc&CidrBlock=10.0.0.0%2F16")
        ));
        assert!(is_read(
            "POST",
            Some("secretsmanager.GetSecretValue"),
            Some(b"{}")
        ));
        assert!(!is_read(
            "POST",
            Some("secretsmanager.CreateSecret"),
            Some(b"{}")
        ));
        assert!(!is_read(
            "POST",
            None,
            Some(b"<ChangeResourceRecordSetsRequest/>")
        ));
        assert!(!is_read("DELETE", None, None));
        assert!(!is_read("PUT", None, None));
    }
}
