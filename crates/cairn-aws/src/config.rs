//! Where the AWS clients come from: the standard chain (environment,
//! shared profiles) for credentials, the environment file's `region` first
//! for the region, and `AWS_ENDPOINT_URL` (or `aws: {endpoint_url}`) for a
//! test endpoint. Credentials stay inside the SDK: nothing here prints or
//! returns them.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_ec2::config::Region;
use serde_json::Value as Json;

use crate::error::AwsError;

/// What the environment file says about the aws target.
#[derive(Debug, Clone, Default)]
pub struct AwsSettings {
    /// `region:` of the environment file; wins over AWS_REGION and profiles.
    pub region: Option<String>,
    /// `aws: {profile: ...}`: a shared-config profile instead of AWS_PROFILE.
    pub profile: Option<String>,
    /// `aws: {endpoint_url: ...}`: instead of AWS_ENDPOINT_URL.
    pub endpoint_url: Option<String>,
    /// Credentials given in code (tests against moto); `None` uses the
    /// standard chain. Debug output of `Credentials` redacts the secret.
    pub credentials: Option<aws_sdk_ec2::config::Credentials>,
}

impl AwsSettings {
    /// From the environment file's `region` and its `aws:` block.
    pub fn from_environment(region: Option<&str>, aws: Option<&Json>) -> Result<Self, AwsError> {
        let mut s = AwsSettings {
            region: region.map(str::to_string),
            ..AwsSettings::default()
        };
        if let Some(Json::Object(m)) = aws {
            for (k, v) in m {
                let text = || {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| AwsError::Settings(format!("`{k}` must be a string")))
                };
                match k.as_str() {
                    "profile" => s.profile = Some(text()?),
                    "endpoint_url" => s.endpoint_url = Some(text()?),
                    "region" => s.region = s.region.or(Some(text()?)),
                    other => {
                        return Err(AwsError::Settings(format!(
                            "unknown setting `{other}` (known: profile, endpoint_url, region)"
                        )));
                    }
                }
            }
        }
        Ok(s)
    }
}

/// One client per service, sharing one configuration.
#[derive(Clone, Debug)]
pub struct Clients {
    pub ec2: aws_sdk_ec2::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    /// IAM is global: one endpoint whatever the region (the SDK resolves
    /// it and signs for us-east-1); `AWS_ENDPOINT_URL` replaces it as for
    /// the others, which is what moto needs.
    pub iam: aws_sdk_iam::Client,
    pub route53: aws_sdk_route53::Client,
    pub rds: aws_sdk_rds::Client,
    pub s3: aws_sdk_s3::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub region: String,
    /// A test endpoint (moto) is in use: S3 then needs path-style addresses.
    pub endpoint: Option<String>,
}

impl Clients {
    pub async fn load(settings: &AwsSettings) -> Result<Clients, AwsError> {
        // rustls on ring: a working HTTPS client without aws-lc's C build.
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(crate::read_retry::ReadRetrying::new(http))
            // One attempt: the engine retries with its own backoff, deadline
            // and journal; SDK retries underneath would repeat creates.
            // Reads alone are retried underneath (`read_retry`).
            .retry_config(RetryConfig::standard().with_max_attempts(1))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .operation_attempt_timeout(Duration::from_secs(60))
                    .build(),
            );
        if let Some(r) = &settings.region {
            loader = loader.region(Region::new(r.clone()));
        }
        if let Some(p) = &settings.profile {
            loader = loader.profile_name(p);
        }
        if let Some(c) = &settings.credentials {
            loader = loader.credentials_provider(c.clone());
        }
        if let Some(e) = &settings.endpoint_url {
            loader = loader.endpoint_url(e);
        }
        let conf = loader.load().await;
        let region = conf
            .region()
            .map(|r| r.to_string())
            .ok_or(AwsError::NoRegion)?;
        let endpoint = conf.endpoint_url().map(str::to_string);
        let s3_conf = aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(endpoint.is_some())
            .build();
        tracing::debug!(%region, endpoint = ?endpoint, "aws clients ready");
        Ok(Clients {
            ec2: aws_sdk_ec2::Client::new(&conf),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(&conf),
            iam: aws_sdk_iam::Client::new(&conf),
            route53: aws_sdk_route53::Client::new(&conf),
            rds: aws_sdk_rds::Client::new(&conf),
            s3: aws_sdk_s3::Client::from_conf(s3_conf),
            secrets: aws_sdk_secretsmanager::Client::new(&conf),
            region,
            endpoint,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn settings_come_from_the_environment_file() {
        let s = AwsSettings::from_environment(
            Some("eu-west-1"),
            Some(&json!({"profile": "prod", "region": "us-east-1"})),
        )
        .unwrap();
        assert_eq!(s.region.as_deref(), Some("eu-west-1"));
        assert_eq!(s.profile.as_deref(), Some("prod"));
        assert!(AwsSettings::from_environment(None, Some(&json!({"secret_key": "x"}))).is_err());
    }
}
