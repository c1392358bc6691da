//! The moto server of the tests (cairn-test-support's) and the clients
//! this crate's tests make on it.

use std::ops::Deref;

use cairn_aws::{AwsProvider, AwsSettings, Waits};

/// A moto server for one test, with this crate's clients on it.
pub struct Moto(cairn_test_support::moto::Moto);

impl Deref for Moto {
    type Target = cairn_test_support::moto::Moto;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Moto {
    pub fn start() -> Moto {
        Moto(cairn_test_support::moto::Moto::start())
    }

    pub fn settings(&self) -> AwsSettings {
        AwsSettings {
            region: Some("us-east-1".into()),
            profile: None,
            endpoint_url: Some(self.url.clone()),
            credentials: Some(aws_sdk_ec2::config::Credentials::new(
                "testing", "testing", None, None, "tests",
            )),
        }
    }

    pub async fn provider(&self) -> AwsProvider {
        self.provider_via(&self.url.clone()).await
    }

    /// A provider whose calls go to `endpoint` (a relay in front of moto).
    pub async fn provider_via(&self, endpoint: &str) -> AwsProvider {
        let short = std::time::Duration::from_secs(60);
        let settings = AwsSettings {
            endpoint_url: Some(endpoint.to_string()),
            ..self.settings()
        };
        AwsProvider::connect(&settings)
            .await
            .expect("clients")
            .with_waits(Waits {
                short,
                instance: short,
                load_balancer: short,
                database: short,
                image: short,
            })
    }
}
