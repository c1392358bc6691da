//! The moto server of the tests (shared with the other suites that use
//! moto) and the clients this crate's tests make on it.

#[path = "../support/moto_server.rs"]
mod moto_server;

use cairn_aws::{AwsProvider, AwsSettings, Waits};
pub use moto_server::Moto;

impl Moto {
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
        let short = std::time::Duration::from_secs(60);
        AwsProvider::connect(&self.settings())
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
