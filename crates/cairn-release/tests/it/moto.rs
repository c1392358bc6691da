//! The moto server of the tests (cairn-test-support's) and the clients
//! this crate's tests make on it.

use std::ops::Deref;

use aws_sdk_s3::config::Credentials;
use cairn_release::artifact::{S3Settings, S3Store};

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
