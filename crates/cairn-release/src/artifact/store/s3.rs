//! Artifacts in an S3 bucket: `<prefix>/<app>/<version>/{manifest.json,
//! manifest.sig, artifact.tar.zst}`. The manifest is written last and a
//! version exists when its manifest does, so a reader never sees a version
//! whose archive is still uploading.
//!
//! Immutability is head-then-put: look for the manifest, write if absent.
//! Two writers of the same version at the same moment can both see it
//! absent, and the later manifest (or archive) wins. What a reader then
//! gets may be an archive that does not match its manifest, which every
//! install refuses (the archive's digest is in the signed manifest), never
//! a silently mixed release. Builds of one app are run one at a time by
//! the caller, which makes this race a misuse rather than a normal event.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use tokio::io::AsyncWriteExt as _;

use super::contract::{
    ARCHIVE_FILE, ArchiveReader, ArtifactStore, MANIFEST_FILE, PutOutcome, SIGNATURE_FILE,
    StoredManifest,
};
use super::put_check::{check_put, compare_existing};
use crate::artifact::manifest::Manifest;
use crate::artifact::sign::Signature;
use crate::error::{ReleaseError, Result};

/// Overrides of what the AWS environment and shared config say.
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    pub region: Option<String>,
    pub profile: Option<String>,
    /// A test endpoint (moto); `AWS_ENDPOINT_URL` does the same.
    pub endpoint_url: Option<String>,
    pub credentials: Option<Credentials>,
}

#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

impl S3Store {
    /// A store on a client configured elsewhere (the aws target's, for the
    /// deployment's own bucket).
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>, prefix: &str) -> S3Store {
        S3Store {
            client,
            bucket: bucket.into(),
            prefix: prefix.trim_matches('/').to_string(),
        }
    }

    /// A client configured as the aws target configures its own: rustls on
    /// ring, the environment's region and credentials, path-style
    /// addresses when an endpoint is given (moto serves no virtual hosts).
    pub async fn connect(bucket: String, prefix: String, settings: &S3Settings) -> Result<S3Store> {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            // Every call here can be repeated as it is (puts of the same
            // bytes to the same key), so the SDK's standard retries apply.
            .retry_config(RetryConfig::standard().with_max_attempts(4))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
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
        if conf.region().is_none() {
            return Err(ReleaseError::Store {
                store: format!("s3://{bucket}/{prefix}"),
                reason: "no AWS region: set AWS_REGION or a profile's region".into(),
            });
        }
        let s3_conf = aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(conf.endpoint_url().is_some())
            .build();
        Ok(S3Store::new(
            aws_sdk_s3::Client::from_conf(s3_conf),
            bucket,
            &prefix,
        ))
    }

    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    fn app_prefix(&self, app: &str) -> String {
        if self.prefix.is_empty() {
            format!("{app}/")
        } else {
            format!("{}/{app}/", self.prefix)
        }
    }

    fn key(&self, app: &str, version: &str, name: &str) -> Result<String> {
        crate::artifact::name::check_name("app", app)?;
        crate::artifact::name::check_name("version", version)?;
        Ok(format!("{}{version}/{name}", self.app_prefix(app)))
    }

    fn error<E>(&self, doing: &str, err: SdkError<E>) -> ReleaseError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        ReleaseError::Store {
            store: self.location(),
            reason: format!("{doing}: {}", DisplayErrorContext(err)),
        }
    }

    fn not_found(&self, app: &str, version: &str) -> ReleaseError {
        ReleaseError::NotFound {
            app: app.to_string(),
            version: version.to_string(),
            store: self.location(),
        }
    }

    /// The object's bytes, or None when there is no such key.
    async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                return Ok(None);
            }
            Err(e) => return Err(self.error(&format!("reading {key}"), e)),
        };
        let bytes = out.body.collect().await.map_err(|e| ReleaseError::Store {
            store: self.location(),
            reason: format!("reading {key}: {e}"),
        })?;
        Ok(Some(bytes.into_bytes().to_vec()))
    }

    async fn put_bytes(&self, key: &str, body: ByteStream) -> Result<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body)
            .send()
            .await
            .map_err(|e| self.error(&format!("writing {key}"), e))?;
        Ok(())
    }

    async fn archive_body(&self, app: &str, version: &str) -> Result<ByteStream> {
        let key = self.key(app, version, ARCHIVE_FILE)?;
        if !self.exists(app, version).await? {
            return Err(self.not_found(app, version));
        }
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| self.error(&format!("reading {key}"), e))?;
        Ok(out.body)
    }

    /// Every key under `prefix`, page after page.
    async fn keys(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
    ) -> Result<(Vec<String>, Vec<String>)> {
        let (mut keys, mut common) = (Vec::new(), Vec::new());
        let mut token = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_delimiter(delimiter.map(str::to_string))
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| self.error(&format!("listing {prefix}"), e))?;
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
            common.extend(
                out.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(str::to_string)),
            );
            match out.next_continuation_token() {
                Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok((keys, common))
    }
}

#[async_trait]
impl ArtifactStore for S3Store {
    fn location(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    async fn put(
        &self,
        app: &str,
        version: &str,
        manifest_bytes: &[u8],
        signature: &Signature,
        archive: &Path,
    ) -> Result<PutOutcome> {
        check_put(app, version, manifest_bytes, archive).await?;
        let manifest_key = self.key(app, version, MANIFEST_FILE)?;
        if let Some(existing) = self.get_bytes(&manifest_key).await? {
            return compare_existing(app, version, &existing, manifest_bytes);
        }
        let archive_key = self.key(app, version, ARCHIVE_FILE)?;
        let body = ByteStream::from_path(archive)
            .await
            .map_err(|e| ReleaseError::Store {
                store: self.location(),
                reason: format!("reading {}: {e}", archive.display()),
            })?;
        self.put_bytes(&archive_key, body).await?;
        let sig_key = self.key(app, version, SIGNATURE_FILE)?;
        self.put_bytes(&sig_key, ByteStream::from(signature.0.to_vec()))
            .await?;
        self.put_bytes(&manifest_key, ByteStream::from(manifest_bytes.to_vec()))
            .await?;
        tracing::info!(%app, %version, store = %self.location(), "artifact stored");
        Ok(PutOutcome::Stored)
    }

    async fn get_manifest(&self, app: &str, version: &str) -> Result<StoredManifest> {
        let bytes = self
            .get_bytes(&self.key(app, version, MANIFEST_FILE)?)
            .await?
            .ok_or_else(|| self.not_found(app, version))?;
        let sig_key = self.key(app, version, SIGNATURE_FILE)?;
        let sig = self
            .get_bytes(&sig_key)
            .await?
            .ok_or_else(|| ReleaseError::Store {
                store: self.location(),
                reason: format!("{sig_key} is missing beside its manifest"),
            })?;
        Ok(StoredManifest {
            manifest: Manifest::from_bytes(&bytes)?,
            signature: Signature::from_bytes(&sig)?,
            bytes,
        })
    }

    async fn fetch_archive(&self, app: &str, version: &str, to: &Path) -> Result<u64> {
        let mut body = self.archive_body(app, version).await?;
        let mut file = tokio::fs::File::create(to)
            .await
            .map_err(ReleaseError::io(to))?;
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| ReleaseError::Store {
                store: self.location(),
                reason: format!("downloading {app} {version}: {e}"),
            })?;
            file.write_all(&chunk).await.map_err(ReleaseError::io(to))?;
            size += chunk.len() as u64;
        }
        file.sync_all().await.map_err(ReleaseError::io(to))?;
        Ok(size)
    }

    async fn open_archive(&self, app: &str, version: &str) -> Result<ArchiveReader> {
        Ok(Box::pin(
            self.archive_body(app, version).await?.into_async_read(),
        ))
    }

    async fn list(&self, app: &str) -> Result<Vec<String>> {
        crate::artifact::name::check_name("app", app)?;
        let prefix = self.app_prefix(app);
        let suffix = format!("/{MANIFEST_FILE}");
        let (keys, _) = self.keys(&prefix, None).await?;
        let mut versions: Vec<String> = keys
            .iter()
            .filter_map(|k| k.strip_prefix(&prefix)?.strip_suffix(&suffix))
            .filter(|v| crate::artifact::name::check_name("version", v).is_ok())
            .map(str::to_string)
            .collect();
        versions.sort();
        Ok(versions)
    }

    async fn apps(&self) -> Result<Vec<String>> {
        let prefix = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let (_, common) = self.keys(&prefix, Some("/")).await?;
        let mut apps: Vec<String> = common
            .iter()
            .filter_map(|p| p.strip_prefix(&prefix)?.strip_suffix('/'))
            .filter(|a| crate::artifact::name::check_name("app", a).is_ok())
            .map(str::to_string)
            .collect();
        apps.sort();
        Ok(apps)
    }

    async fn exists(&self, app: &str, version: &str) -> Result<bool> {
        let key = self.key(app, version, MANIFEST_FILE)?;
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
            Err(e) => Err(self.error(&format!("looking for {key}"), e)),
        }
    }
}
