//! volume/snapshot → EBS, image → AMI from an instance, bucket → S3,
//! secret → Secrets Manager.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{ImageState, ResourceType, SnapshotState, VolumeState};
use cairn_engine::provider::*;
use cairn_engine::schema::storage::Volume;
use serde_json::json;

use crate::ec2::{by_tag, retag, spec, tag_map, with_name};
use crate::error::{classify, gone};
use crate::model::*;
use crate::provider::AwsProvider;

fn read_volume(p: &Json) -> ProviderResult<Volume> {
    Volume::read(p).map_err(|e| permanent(format!("volume {e}")))
}

fn secret_tags(map: &BTreeMap<String, String>) -> Vec<aws_sdk_secretsmanager::types::Tag> {
    map.iter()
        .map(|(k, v)| {
            aws_sdk_secretsmanager::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
        })
        .collect()
}

/// EBS counts gigabytes in an `i32`.
fn ebs_size(gb: u32) -> ProviderResult<i32> {
    i32::try_from(gb).map_err(|_| permanent(format!("size_gb {gb} is more than EBS takes")))
}

impl AwsProvider {
    pub(crate) async fn find_storage(
        &self,
        kind: Kind,
        token: &str,
    ) -> ProviderResult<Option<String>> {
        let tag = by_tag(TOKEN_TAG, token);
        let ec2 = &self.c.ec2;
        Ok(match kind {
            Kind::Volume => ec2
                .describe_volumes()
                .filters(tag)
                .send()
                .await
                .map_err(|e| classify("DescribeVolumes", e))?
                .volumes()
                .first()
                .and_then(|v| v.volume_id())
                .map(str::to_string),
            Kind::Snapshot => ec2
                .describe_snapshots()
                .owner_ids("self")
                .filters(tag)
                .send()
                .await
                .map_err(|e| classify("DescribeSnapshots", e))?
                .snapshots()
                .first()
                .and_then(|v| v.snapshot_id())
                .map(str::to_string),
            _ => ec2
                .describe_images()
                .owners("self")
                .filters(tag)
                .send()
                .await
                .map_err(|e| classify("DescribeImages", e))?
                .images()
                .first()
                .and_then(|v| v.image_id())
                .map(str::to_string),
        })
    }

    async fn first_zone(&self) -> ProviderResult<String> {
        self.c
            .ec2
            .describe_availability_zones()
            .send()
            .await
            .map_err(|e| classify("DescribeAvailabilityZones", e))?
            .availability_zones()
            .first()
            .and_then(|z| z.zone_name())
            .map(str::to_string)
            .ok_or_else(|| permanent(format!("no availability zone in {}", self.c.region)))
    }

    pub(crate) async fn create_volume(&self, req: &CreateRequest) -> ProviderResult<Json> {
        let volume = read_volume(&req.properties)?;
        let zone = match volume.zone {
            Some(z) => z,
            None => self.first_zone().await?,
        };
        let tags = with_name(&create_tags(&req.tags, &req.token), volume.name.as_deref());
        let out = self
            .c
            .ec2
            .create_volume()
            .availability_zone(zone)
            .size(ebs_size(volume.size_gb)?)
            .set_snapshot_id(volume.snapshot)
            .client_token(&req.token)
            .tag_specifications(spec(ResourceType::Volume, &tags))
            .send()
            .await
            .map_err(|e| classify("CreateVolume", e))?;
        let id = out.volume_id().unwrap_or_default().to_string();
        wait_for(&format!("volume {id}"), self.waits.short, || async {
            let v = self.volume(&id).await?;
            Ok(v.filter(|v| v.state() == Some(&VolumeState::Available))
                .map(|_| ()))
        })
        .await?;
        Ok(json!({"id": id, "path": Json::Null}))
    }

    async fn volume(&self, id: &str) -> ProviderResult<Option<aws_sdk_ec2::types::Volume>> {
        let out = self
            .c
            .ec2
            .describe_volumes()
            .volume_ids(id)
            .send()
            .await
            .map_err(|e| classify("DescribeVolumes", e));
        Ok(gone(out)?.and_then(|o| o.volumes().first().cloned()))
    }

    pub(crate) async fn read_volume(&self, id: &str) -> ProviderResult<Option<Observed>> {
        let Some(v) = self.volume(id).await? else {
            return Ok(None);
        };
        let tags = tag_map(v.tags());
        let mut p = blank(Kind::Volume);
        p.insert("name".into(), json!(tags.get("Name")));
        p.insert("size_gb".into(), json!(v.size()));
        p.insert(
            "snapshot".into(),
            json!(v.snapshot_id().filter(|s| !s.is_empty())),
        );
        p.insert("zone".into(), json!(v.availability_zone()));
        Ok(Some(Observed {
            properties: Json::Object(p),
            attributes: json!({"id": id, "path": Json::Null}),
            tags,
        }))
    }

    pub(crate) async fn delete_volume(&self, id: &str) -> ProviderResult<()> {
        let r = self
            .c
            .ec2
            .delete_volume()
            .volume_id(id)
            .send()
            .await
            .map_err(|e| classify("DeleteVolume", e));
        gone(r)?;
        Ok(())
    }

    pub(crate) async fn create_snapshot(&self, req: &CreateRequest) -> ProviderResult<Json> {
        let p = &req.properties;
        let tags = with_name(&create_tags(&req.tags, &req.token), prop_str(p, "name"));
        let out = self
            .c
            .ec2
            .create_snapshot()
            .volume_id(required(p, "volume")?)
            .description(format!("cairn {}", req.address))
            .tag_specifications(spec(ResourceType::Snapshot, &tags))
            .send()
            .await
            .map_err(|e| classify("CreateSnapshot", e))?;
        let id = out.snapshot_id().unwrap_or_default().to_string();
        wait_for(&format!("snapshot {id}"), self.waits.image, || async {
            let s = self.snapshot(&id).await?;
            match s.as_ref().and_then(|s| s.state()) {
                Some(SnapshotState::Completed) => Ok(Some(())),
                Some(SnapshotState::Error) => Err(permanent(format!("snapshot {id} failed"))),
                _ => Ok(None),
            }
        })
        .await?;
        Ok(json!({"id": id, "size_gb": out.volume_size()}))
    }

    async fn snapshot(&self, id: &str) -> ProviderResult<Option<aws_sdk_ec2::types::Snapshot>> {
        let out = self
            .c
            .ec2
            .describe_snapshots()
            .snapshot_ids(id)
            .send()
            .await
            .map_err(|e| classify("DescribeSnapshots", e));
        Ok(gone(out)?.and_then(|o| o.snapshots().first().cloned()))
    }

    pub(crate) async fn read_snapshot(&self, id: &str) -> ProviderResult<Option<Observed>> {
        let Some(s) = self.snapshot(id).await? else {
            return Ok(None);
        };
        let tags = tag_map(s.tags());
        let mut p = blank(Kind::Snapshot);
        p.insert("name".into(), json!(tags.get("Name")));
        p.insert("volume".into(), json!(s.volume_id()));
        Ok(Some(Observed {
            properties: Json::Object(p),
            attributes: json!({"id": id, "size_gb": s.volume_size()}),
            tags,
        }))
    }

    pub(crate) async fn delete_snapshot(&self, id: &str) -> ProviderResult<()> {
        let r = self
            .c
            .ec2
            .delete_snapshot()
            .snapshot_id(id)
            .send()
            .await
            .map_err(|e| classify("DeleteSnapshot", e));
        gone(r)?;
        Ok(())
    }

    pub(crate) async fn create_image(&self, req: &CreateRequest) -> ProviderResult<Json> {
        let p = &req.properties;
        // AMI names are unique per account and region: the token's name
        // makes a retried create fail as a duplicate instead of a second.
        let name = name_or_derived(req, 128);
        let tags = with_name(&create_tags(&req.tags, &req.token), prop_str(p, "name"));
        // Only the image carries the deployment's tags: its snapshots so
        // tagged would be listed as snapshots of the deployment that its
        // state does not hold, and `--prune` would take them for orphans.
        // Deleting the image deletes them.
        let out = self
            .c
            .ec2
            .create_image()
            .instance_id(required(p, "server")?)
            .name(name)
            .no_reboot(true)
            .tag_specifications(spec(ResourceType::Image, &tags))
            .send()
            .await
            .map_err(|e| classify("CreateImage", e))?;
        let id = out.image_id().unwrap_or_default().to_string();
        wait_for(&format!("image {id}"), self.waits.image, || async {
            match self.image(&id).await?.as_ref().and_then(|i| i.state()) {
                Some(ImageState::Available) => Ok(Some(())),
                Some(ImageState::Failed | ImageState::Error) => {
                    Err(permanent(format!("image {id} failed")))
                }
                _ => Ok(None),
            }
        })
        .await?;
        Ok(json!({"id": id}))
    }

    async fn image(&self, id: &str) -> ProviderResult<Option<aws_sdk_ec2::types::Image>> {
        let out = self
            .c
            .ec2
            .describe_images()
            .image_ids(id)
            .send()
            .await
            .map_err(|e| classify("DescribeImages", e));
        Ok(gone(out)?.and_then(|o| o.images().first().cloned()))
    }

    pub(crate) async fn read_image(&self, id: &str) -> ProviderResult<Option<Observed>> {
        let Some(i) = self.image(id).await? else {
            return Ok(None);
        };
        if i.state() == Some(&ImageState::Deregistered) {
            return Ok(None);
        }
        let tags = tag_map(i.tags());
        let mut p = blank(Kind::Image);
        p.insert("name".into(), json!(i.name()));
        p.insert("server".into(), json!(i.source_instance_id()));
        Ok(Some(Observed {
            properties: Json::Object(p),
            attributes: json!({"id": id}),
            tags,
        }))
    }

    pub(crate) async fn delete_image(&self, id: &str) -> ProviderResult<()> {
        let Some(i) = self.image(id).await? else {
            return Ok(());
        };
        let snapshots: Vec<String> = i
            .block_device_mappings()
            .iter()
            .filter_map(|m| m.ebs().and_then(|e| e.snapshot_id()).map(str::to_string))
            .collect();
        let r = self
            .c
            .ec2
            .deregister_image()
            .image_id(id)
            .send()
            .await
            .map_err(|e| classify("DeregisterImage", e));
        gone(r)?;
        // The AMI's snapshots would outlive it and keep costing.
        for s in snapshots {
            self.delete_snapshot(&s).await?;
        }
        Ok(())
    }

    pub(crate) async fn update_storage(&self, req: &UpdateRequest) -> ProviderResult<Json> {
        let p = &req.properties;
        if req.kind == "volume" && req.changed.iter().any(|c| c == "size_gb") {
            let size = ebs_size(read_volume(p)?.size_gb)?;
            self.c
                .ec2
                .modify_volume()
                .volume_id(&req.id)
                .size(size)
                .send()
                .await
                .map_err(|e| classify("ModifyVolume", e))?;
        }
        retag(&self.c, &req.id, &with_name(&req.tags, prop_str(p, "name"))).await?;
        let r = ReadRequest {
            deployment: req.deployment.clone(),
            address: req.address.clone(),
            kind: req.kind,
            id: req.id.clone(),
        };
        let o = match req.kind.as_str() {
            "volume" => self.read_volume(&req.id).await?,
            "snapshot" => self.read_snapshot(&req.id).await?,
            _ => self.read_image(&r.id).await?,
        };
        Ok(o.map_or(json!({"id": req.id}), |o| o.attributes))
    }

    // ---- S3 ----

    fn bucket_url(&self, name: &str) -> String {
        match &self.c.endpoint {
            Some(e) => format!("{}/{name}", e.trim_end_matches('/')),
            None => format!("https://{name}.s3.{}.amazonaws.com", self.c.region),
        }
    }

    pub(crate) async fn create_bucket(&self, req: &CreateRequest) -> ProviderResult<Json> {
        use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
        let p = &req.properties;
        // Bucket names are global: derived from the token, so a retried
        // create meets its own bucket (BucketAlreadyOwnedByYou).
        let name = name_or_derived(req, 63);
        let mut call = self.c.s3.create_bucket().bucket(&name);
        // us-east-1 is the one region that refuses its own constraint.
        if self.c.region != "us-east-1" {
            call = call.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(self.c.region.as_str()))
                    .build(),
            );
        }
        let fresh = match call.send().await.map_err(|e| classify("CreateBucket", e)) {
            Ok(_) => true,
            Err(ProviderError::Conflict(m)) if m.contains("BucketAlreadyOwnedByYou") => false,
            Err(e) => return Err(e),
        };
        self.tag_bucket(&name, &create_tags(&req.tags, &req.token))
            .await?;
        // A bucket just made never had versioning.
        let versioning = match fresh {
            true => None,
            false => self.versioning(&name).await?,
        };
        self.set_bucket(&name, p, versioning).await?;
        Ok(json!({"id": name, "url": self.bucket_url(&name)}))
    }

    async fn tag_bucket(&self, name: &str, tags: &BTreeMap<String, String>) -> ProviderResult<()> {
        use aws_sdk_s3::types::{Tag, Tagging};
        let tagging = Tagging::builder()
            .set_tag_set(Some(
                tags.iter()
                    .map(|(k, v)| Tag::builder().key(k).value(v).build())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| permanent(e.to_string()))?,
            ))
            .build()
            .map_err(|e| permanent(e.to_string()))?;
        self.c
            .s3
            .put_bucket_tagging()
            .bucket(name)
            .tagging(tagging)
            .send()
            .await
            .map_err(|e| classify("PutBucketTagging", e))?;
        Ok(())
    }

    /// Versioning and public access as the properties say; `current` is
    /// the bucket's versioning now.
    async fn set_bucket(
        &self,
        name: &str,
        p: &Json,
        current: Option<aws_sdk_s3::types::BucketVersioningStatus>,
    ) -> ProviderResult<()> {
        use aws_sdk_s3::types::{
            BucketVersioningStatus, PublicAccessBlockConfiguration, VersioningConfiguration,
        };
        let versioning = prop_bool(p, "versioning");
        let on = current == Some(BucketVersioningStatus::Enabled);
        // A bucket that never had versioning stays unversioned: S3 can only
        // suspend versioning once enabled, never return to "never".
        if versioning != on && (versioning || current.is_some()) {
            self.c
                .s3
                .put_bucket_versioning()
                .bucket(name)
                .versioning_configuration(
                    VersioningConfiguration::builder()
                        .status(if versioning {
                            BucketVersioningStatus::Enabled
                        } else {
                            BucketVersioningStatus::Suspended
                        })
                        .build(),
                )
                .send()
                .await
                .map_err(|e| classify("PutBucketVersioning", e))?;
        }
        let block = !prop_bool(p, "public");
        self.c
            .s3
            .put_public_access_block()
            .bucket(name)
            .public_access_block_configuration(
                PublicAccessBlockConfiguration::builder()
                    .block_public_acls(block)
                    .ignore_public_acls(block)
                    .block_public_policy(block)
                    .restrict_public_buckets(block)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify("PutPublicAccessBlock", e))?;
        Ok(())
    }

    /// The bucket's versioning status; `None` when it was never set.
    async fn versioning(
        &self,
        name: &str,
    ) -> ProviderResult<Option<aws_sdk_s3::types::BucketVersioningStatus>> {
        use aws_sdk_s3::types::BucketVersioningStatus;
        match self.c.s3.get_bucket_versioning().bucket(name).send().await {
            Ok(o) => Ok(o.status().cloned()),
            // moto answers with a `GetBucketVersioningResponse` root where
            // S3 has `VersioningConfiguration`, which the SDK refuses to
            // parse: the status is read from the body itself then.
            Err(e)
                if e.raw_response()
                    .and_then(|r| r.body().bytes())
                    .is_some_and(|b| {
                        String::from_utf8_lossy(b).contains("<GetBucketVersioningResponse")
                    }) =>
            {
                let body = e
                    .raw_response()
                    .and_then(|r| r.body().bytes())
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                Ok(if body.contains("<Status>Enabled</Status>") {
                    Some(BucketVersioningStatus::Enabled)
                } else if body.contains("<Status>Suspended</Status>") {
                    Some(BucketVersioningStatus::Suspended)
                } else {
                    None
                })
            }
            Err(e) => Err(classify("GetBucketVersioning", e)),
        }
    }

    pub(crate) async fn bucket_tags(&self, name: &str) -> ProviderResult<BTreeMap<String, String>> {
        let out = self
            .c
            .s3
            .get_bucket_tagging()
            .bucket(name)
            .send()
            .await
            .map_err(|e| classify("GetBucketTagging", e));
        match out {
            Ok(o) => Ok(o
                .tag_set()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect()),
            // A bucket without tags answers NoSuchTagSet.
            Err(ProviderError::NotFound(m)) if m.contains("NoSuchTagSet") => Ok(BTreeMap::new()),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn find_bucket(&self, token: &str) -> ProviderResult<Option<String>> {
        let out = self
            .c
            .s3
            .list_buckets()
            .send()
            .await
            .map_err(|e| classify("ListBuckets", e))?;
        for b in out.buckets() {
            let Some(name) = b.name() else { continue };
            let tags = match gone(self.bucket_tags(name).await)? {
                Some(t) => t,
                None => continue,
            };
            if has_token(&tags, token) {
                return Ok(Some(name.to_string()));
            }
        }
        Ok(None)
    }

    pub(crate) async fn read_bucket(
        &self,
        name: &str,
        _req: &ReadRequest,
    ) -> ProviderResult<Option<Observed>> {
        let head = self
            .c
            .s3
            .head_bucket()
            .bucket(name)
            .send()
            .await
            .map_err(|e| classify("HeadBucket", e));
        match head {
            Ok(_) => {}
            Err(ProviderError::NotFound(_)) => return Ok(None),
            // HeadBucket has no body: a missing bucket is a bare 404.
            Err(ProviderError::Permanent(m)) if m.contains("404") || m.contains("NotFound") => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
        let versioning = self.versioning(name).await?;
        let block = self
            .c
            .s3
            .get_public_access_block()
            .bucket(name)
            .send()
            .await
            .map_err(|e| classify("GetPublicAccessBlock", e));
        let public = match block {
            Ok(b) => b
                .public_access_block_configuration()
                .map(|c| {
                    !c.block_public_policy().unwrap_or(false)
                        && !c.block_public_acls().unwrap_or(false)
                })
                .unwrap_or(true),
            // No block configured at all: nothing stops public access.
            Err(ProviderError::NotFound(_)) => true,
            Err(e) => return Err(e),
        };
        let mut p = blank(Kind::Bucket);
        p.insert("name".into(), json!(name));
        p.insert(
            "versioning".into(),
            json!(versioning == Some(aws_sdk_s3::types::BucketVersioningStatus::Enabled)),
        );
        p.insert("public".into(), json!(public));
        Ok(Some(Observed {
            properties: Json::Object(p),
            attributes: json!({"id": name, "url": self.bucket_url(name)}),
            tags: self.bucket_tags(name).await?,
        }))
    }

    pub(crate) async fn update_bucket(&self, req: &UpdateRequest) -> ProviderResult<Json> {
        let current = self.versioning(&req.id).await?;
        self.set_bucket(&req.id, &req.properties, current).await?;
        let mut tags = req.tags.clone();
        if let Some(t) = self.bucket_tags(&req.id).await?.get(TOKEN_TAG) {
            tags.insert(TOKEN_TAG.into(), t.clone());
        }
        self.tag_bucket(&req.id, &tags).await?;
        Ok(json!({"id": req.id, "url": self.bucket_url(&req.id)}))
    }

    pub(crate) async fn delete_bucket(&self, name: &str) -> ProviderResult<()> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        // S3 deletes only an empty bucket: most are, so the delete is tried
        // first and the bucket emptied only when S3 says it is not.
        let r = self
            .c
            .s3
            .delete_bucket()
            .bucket(name)
            .send()
            .await
            .map_err(|e| classify("DeleteBucket", e));
        match gone(r) {
            Ok(_) => return Ok(()),
            Err(e) if e.to_string().contains("BucketNotEmpty") => {}
            Err(e) => return Err(e),
        }
        // The engine has already asked for `--allow-data-loss`, so every
        // object version goes.
        loop {
            let out = self
                .c
                .s3
                .list_object_versions()
                .bucket(name)
                .send()
                .await
                .map_err(|e| classify("ListObjectVersions", e));
            let Some(out) = gone(out)? else {
                return Ok(());
            };
            let ids: Vec<ObjectIdentifier> = out
                .versions()
                .iter()
                .filter_map(|v| {
                    ObjectIdentifier::builder()
                        .set_key(v.key().map(str::to_string))
                        .set_version_id(v.version_id().map(str::to_string))
                        .build()
                        .ok()
                })
                .chain(out.delete_markers().iter().filter_map(|v| {
                    ObjectIdentifier::builder()
                        .set_key(v.key().map(str::to_string))
                        .set_version_id(v.version_id().map(str::to_string))
                        .build()
                        .ok()
                }))
                .collect();
            if ids.is_empty() {
                break;
            }
            self.c
                .s3
                .delete_objects()
                .bucket(name)
                .delete(
                    Delete::builder()
                        .set_objects(Some(ids))
                        .build()
                        .map_err(|e| permanent(e.to_string()))?,
                )
                .send()
                .await
                .map_err(|e| classify("DeleteObjects", e))?;
        }
        let r = self
            .c
            .s3
            .delete_bucket()
            .bucket(name)
            .send()
            .await
            .map_err(|e| classify("DeleteBucket", e));
        gone(r)?;
        Ok(())
    }

    // ---- Secrets Manager ----

    pub(crate) async fn create_secret(&self, req: &CreateRequest) -> ProviderResult<Json> {
        let p = &req.properties;
        let name = prop_str(p, "name")
            .map(str::to_string)
            .unwrap_or_else(|| format!("cairn/{}/{}", req.deployment, req.address));
        let out = self
            .c
            .secrets
            .create_secret()
            .name(&name)
            .secret_string(required(p, "value")?)
            .set_description(prop_str(p, "description").map(str::to_string))
            // Secrets Manager's own idempotency token (32-64 characters).
            .client_request_token(&digest(&[&req.token])[..64])
            .set_tags(Some(secret_tags(&create_tags(&req.tags, &req.token))))
            .send()
            .await
            .map_err(|e| classify("CreateSecret", e))?;
        Ok(json!({"id": out.arn(), "version": out.version_id()}))
    }

    pub(crate) async fn find_secret(&self, token: &str) -> ProviderResult<Option<String>> {
        use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
        let out = self
            .c
            .secrets
            .list_secrets()
            .filters(
                Filter::builder()
                    .key(FilterNameStringType::TagKey)
                    .values(TOKEN_TAG)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify("ListSecrets", e))?;
        Ok(out
            .secret_list()
            .iter()
            .find(|s| {
                s.tags()
                    .iter()
                    .any(|t| t.key() == Some(TOKEN_TAG) && t.value() == Some(token))
            })
            .and_then(|s| s.arn().map(str::to_string)))
    }

    pub(crate) async fn read_secret(&self, id: &str) -> ProviderResult<Option<Observed>> {
        let out = self
            .c
            .secrets
            .describe_secret()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| classify("DescribeSecret", e));
        let Some(d) = gone(out)? else {
            return Ok(None);
        };
        if d.deleted_date().is_some() {
            return Ok(None);
        }
        let value = self
            .c
            .secrets
            .get_secret_value()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| classify("GetSecretValue", e))?;
        let tags = d
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
            .collect();
        let mut p = blank(Kind::Secret);
        p.insert("name".into(), json!(d.name()));
        p.insert("value".into(), json!(value.secret_string()));
        p.insert("description".into(), json!(d.description()));
        Ok(Some(Observed {
            properties: Json::Object(p),
            attributes: json!({"id": id, "version": value.version_id()}),
            tags,
        }))
    }

    pub(crate) async fn update_secret(&self, req: &UpdateRequest) -> ProviderResult<Json> {
        let p = &req.properties;
        let mut version = None;
        if req.changed.iter().any(|c| c == "value") {
            let out = self
                .c
                .secrets
                .put_secret_value()
                .secret_id(&req.id)
                .secret_string(required(p, "value")?)
                // The update's token: a retried put makes no second version.
                .client_request_token(&digest(&[&req.token, "value"])[..64])
                .send()
                .await
                .map_err(|e| classify("PutSecretValue", e))?;
            version = out.version_id().map(str::to_string);
        }
        if req.changed.iter().any(|c| c == "description") {
            self.c
                .secrets
                .update_secret()
                .secret_id(&req.id)
                .description(prop_str(p, "description").unwrap_or_default())
                .send()
                .await
                .map_err(|e| classify("UpdateSecret", e))?;
        }
        self.c
            .secrets
            .tag_resource()
            .secret_id(&req.id)
            .set_tags(Some(secret_tags(&req.tags)))
            .send()
            .await
            .map_err(|e| classify("TagResource", e))?;
        let version = match version {
            Some(v) => Some(v),
            None => self
                .read_secret(&req.id)
                .await?
                .and_then(|o| o.attributes["version"].as_str().map(str::to_string)),
        };
        Ok(json!({"id": req.id, "version": version}))
    }

    pub(crate) async fn delete_secret(&self, id: &str) -> ProviderResult<()> {
        // Without recovery: the engine has asked for `--allow-data-loss`,
        // and a secret pending deletion keeps its name from a new one.
        let r = self
            .c
            .secrets
            .delete_secret()
            .secret_id(id)
            .force_delete_without_recovery(true)
            .send()
            .await
            .map_err(|e| classify("DeleteSecret", e));
        gone(r)?;
        Ok(())
    }
}
