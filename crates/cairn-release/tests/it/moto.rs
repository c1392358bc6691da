//! The moto server of the tests (shared with the other suites that use
//! moto) and the clients this crate's tests make on it.

#[path = "../../../cairn-aws/tests/support/moto_server.rs"]
mod moto_server;

use aws_sdk_s3::config::Credentials;
use cairn_release::artifact::{S3Settings, S3Store};
pub use moto_server::Moto;

impl Moto {
    pub fn settings(&self) -> S3Settings {
        S3Settings {
            region: Some("us-east-1".into()),
            profile: None,
            endpoint_url: Some(self.url.clone()),
            credentials: Some(Credentials::new("testing", "testing", None, None, "tests")),
        }
    }

    /// A store on a new bucket of this server.
    pub async fn store(&self, bucket: &str, prefix: &str) -> S3Store {
        let store = S3Store::connect(bucket.into(), prefix.into(), &self.settings())
            .await
            .expect("an S3 client");
        store
            .client()
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .expect("create the bucket");
        store
    }
}
