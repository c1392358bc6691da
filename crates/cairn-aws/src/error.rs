//! SDK errors mapped to the engine's kinds. The engine owns retries, so the
//! only job here is to say which failures are worth retrying and how soon.

use std::time::Duration;

use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use cairn_engine::provider::ProviderError;

/// Errors of this crate that happen before any resource call.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error(
        "no AWS region: set `region` in the environment file, AWS_REGION, or a profile's region"
    )]
    NoRegion,
    #[error("the `aws` settings of the environment: {0}")]
    Settings(String),
}

/// Error codes that mean "slow down".
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "SlowDown",
    "PriorRequestNotComplete",
    "Rate exceeded",
];

/// Codes of something that clashes with what exists.
const CONFLICT: &[&str] = &[
    "InvalidGroup.Duplicate",
    "InvalidKeyPair.Duplicate",
    "InvalidPermission.Duplicate",
    "DependencyViolation",
    // IAM: a role still in a profile or with policies, a profile with a role.
    "DeleteConflict",
    "ResourceInUse",
    "ResourceInUseException",
    "ResourceExistsException",
    "BucketAlreadyExists",
    "BucketAlreadyOwnedByYou",
    "DuplicateLoadBalancerName",
    "DuplicateTargetGroupName",
    "DBInstanceAlreadyExists",
    "DBInstanceAlreadyExistsFault",
    "DBSubnetGroupAlreadyExists",
    "DBSubnetGroupAlreadyExistsFault",
    "HostedZoneAlreadyExists",
    "ConflictingDomainExists",
    "InvalidIPAddress.InUse",
    "InvalidSubnet.Conflict",
    "InvalidVpc.Range",
    "Resource.AlreadyAssociated",
    "IncorrectState",
    "InvalidDBInstanceState",
    "InvalidDBInstanceStateFault",
    "OperationAborted",
];

/// Codes that are transient on the service side.
const TRANSIENT: &[&str] = &[
    "InternalError",
    "InternalFailure",
    "InternalServiceError",
    "ServiceUnavailable",
    "Unavailable",
    "RequestTimeout",
    "RequestTimeoutException",
    "InsufficientInstanceCapacity",
    "IDPCommunicationError",
    // IAM: another change to the same entity is under way.
    "ConcurrentModification",
];

/// Classifies a failed call. `what` says which call, for the message.
pub fn classify<E>(what: &str, err: SdkError<E, HttpResponse>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    // The service's own code and message when it sent them (short and
    // what a user can act on), the whole error chain otherwise.
    let message = match (err.code(), err.message()) {
        (Some(code), Some(msg)) => format!("{what}: {code}: {msg}"),
        (Some(code), None) => format!("{what}: {code}"),
        _ => format!("{what}: {}", DisplayErrorContext(&err)),
    };
    match &err {
        // The request never got an answer: the network, a timeout, a reset.
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
            return ProviderError::Transient(message);
        }
        // An answer that could not be read is most often a cut connection.
        SdkError::ResponseError(_) => return ProviderError::Transient(message),
        // A request we could not even build will fail the same way again.
        SdkError::ConstructionFailure(_) => return ProviderError::Permanent(message),
        _ => {}
    }
    let code = err.code().unwrap_or_default().to_string();
    let status = err.raw_response().map(|r| r.status().as_u16());
    let retry_after = err
        .raw_response()
        .and_then(|r| r.headers().get("retry-after"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64);
    by_code(&code, status, retry_after, message)
}

/// The decision proper, apart from the SDK's types so it can be tested.
pub fn by_code(
    code: &str,
    status: Option<u16>,
    retry_after: Option<Duration>,
    message: String,
) -> ProviderError {
    if THROTTLING.contains(&code) || status == Some(429) {
        return ProviderError::Throttled {
            retry_after,
            message,
        };
    }
    if code.contains("NotFound")
        || code.starts_with("NoSuch")
        || code.ends_with(".Malformed") && code.starts_with("InvalidInstanceID")
        || code == "InvalidAllocationID.NotFound"
        || code == "LoadBalancerNotFound"
        || code == "TargetGroupNotFound"
        || code == "DBInstanceNotFound"
    {
        return ProviderError::NotFound(message);
    }
    if CONFLICT.contains(&code) || code.ends_with(".Duplicate") || code.ends_with("AlreadyExists") {
        return ProviderError::Conflict(message);
    }
    if TRANSIENT.contains(&code) || status.is_some_and(|s| s >= 500) {
        return ProviderError::Transient(message);
    }
    ProviderError::Permanent(message)
}

/// `NotFound` as `None`, for reads and deletes of what may be gone.
pub fn gone<T>(r: Result<T, ProviderError>) -> Result<Option<T>, ProviderError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(ProviderError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(code: &str, status: u16) -> ProviderError {
        by_code(code, Some(status), None, code.to_string())
    }

    #[test]
    fn throttling_is_throttled_with_its_delay() {
        for code in [
            "Throttling",
            "RequestLimitExceeded",
            "TooManyRequestsException",
        ] {
            assert!(matches!(kind(code, 400), ProviderError::Throttled { .. }));
        }
        let e = by_code("", Some(429), Some(Duration::from_secs(3)), "x".into());
        assert_eq!(
            e,
            ProviderError::Throttled {
                retry_after: Some(Duration::from_secs(3)),
                message: "x".into()
            }
        );
    }

    #[test]
    fn codes_map_to_kinds() {
        assert!(matches!(
            kind("InvalidVpcID.NotFound", 400),
            ProviderError::NotFound(_)
        ));
        assert!(matches!(
            kind("NoSuchBucket", 404),
            ProviderError::NotFound(_)
        ));
        assert!(matches!(
            kind("DBInstanceNotFound", 404),
            ProviderError::NotFound(_)
        ));
        assert!(matches!(
            kind("InvalidGroup.Duplicate", 400),
            ProviderError::Conflict(_)
        ));
        assert!(matches!(
            kind("DependencyViolation", 400),
            ProviderError::Conflict(_)
        ));
        assert!(matches!(
            kind("BucketAlreadyOwnedByYou", 409),
            ProviderError::Conflict(_)
        ));
        assert!(matches!(
            kind("InternalError", 500),
            ProviderError::Transient(_)
        ));
        assert!(matches!(kind("Whatever", 503), ProviderError::Transient(_)));
        assert!(matches!(
            kind("InvalidParameterValue", 400),
            ProviderError::Permanent(_)
        ));
        assert!(matches!(
            kind("UnauthorizedOperation", 403),
            ProviderError::Permanent(_)
        ));
    }
}
