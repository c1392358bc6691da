//! server → EC2 instance, ip_address → Elastic IP, key_pair → imported EC2
//! key pair (generated here as ed25519, as the local target does).

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{
    IamInstanceProfileSpecification, Instance, InstanceStateName, InstanceType, ResourceType,
};
use base64::Engine as _;
use cairn_engine::provider::*;
use cairn_engine::schema::server::{Server, Size};
use serde_json::json;

use crate::ec2::{by_tag, filter, retag, spec, tag_map, with_name};
use crate::error::{classify, gone};
use crate::model::*;
use crate::provider::AwsProvider;
use crate::shared_writes::REGION;

/// The image a server was asked for, when it was a name: `read` reports
/// it instead of the AMI id the name resolved to.
const IMAGE_TAG: &str = "cairn:image";
/// A key pair cairn generated: its private half exists only in the state.
const GENERATED_TAG: &str = "cairn:generated";

/// Portable image names → (owner account, AMI name pattern). The newest
/// match wins, as `aws ec2 describe-images` users pick them.
const IMAGES: &[(&str, &str, &str)] = &[
    ("debian-12", "136693071363", "debian-12-amd64-*"),
    ("debian-11", "136693071363", "debian-11-amd64-*"),
    (
        "ubuntu-24.04",
        "099720109477",
        "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*",
    ),
    (
        "ubuntu-22.04",
        "099720109477",
        "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*",
    ),
    (
        "ubuntu-16.04",
        "099720109477",
        "ubuntu/images/hvm-ssd/ubuntu-xenial-16.04-amd64-server-*",
    ),
    (
        "ubuntu-14.04",
        "099720109477",
        "ubuntu/images/hvm-ssd/ubuntu-trusty-14.04-amd64-server-*",
    ),
    ("amazon-linux-2023", "amazon", "al2023-ami-2023*-x86_64"),
];

/// Portable sizes → burstable general-purpose types.
pub fn instance_type(size: Size) -> &'static str {
    match size {
        Size::Nano => "t3.nano",
        Size::Micro => "t3.micro",
        Size::Small => "t3.small",
        Size::Medium => "t3.medium",
        Size::Large => "t3.large",
        Size::Xlarge => "t3.xlarge",
    }
}

/// The portable size of an instance type, or the type itself when it is
/// none of them (an instance made outside cairn, or with `instance_type`).
fn size_of(itype: &str) -> String {
    Size::ALL
        .into_iter()
        .find(|s| instance_type(*s) == itype)
        .map_or_else(|| itype.to_string(), |s| s.as_str().to_string())
}

/// The attributes of an instance, as on the local target: `address` is the
/// one its neighbours reach it at, which an Elastic IP associated later
/// does not change (load balancer backends built from it stay put).
pub fn server_attributes(i: &Instance) -> Json {
    let private = i.private_ip_address();
    let public = i.public_ip_address();
    let mut a = json!({
        "id": i.instance_id(),
        "address": private.or(public),
        "private_ip": private,
        "public_ip": public,
    });
    // The `aws: {iam_instance_profile}` it runs with, by name (EC2 reports
    // the ARN: `arn:aws:iam::ACCOUNT:instance-profile/PATH/NAME`).
    if let Some(arn) = i.iam_instance_profile().and_then(|p| p.arn()) {
        a["iam_instance_profile"] = json!(arn.rsplit('/').next().unwrap_or(arn));
    }
    a
}

/// IAM is eventually consistent: an instance profile made seconds ago may
/// not be visible to EC2 yet ("Invalid IAM Instance Profile name"), which
/// EC2 reports as a bad parameter. It is worth retrying.
fn profile_not_yet_visible(e: ProviderError) -> ProviderError {
    match e {
        ProviderError::Permanent(m)
            if m.contains("IAM Instance Profile") || m.contains("iamInstanceProfile") =>
        {
            ProviderError::Transient(m)
        }
        other => other,
    }
}

/// Devices for attached volumes, in the order the template lists them.
fn device(n: usize) -> String {
    format!("/dev/sd{}", (b'f' + n as u8) as char)
}

impl AwsProvider {
    /// The AMI an image name stands for, looked up once per run however
    /// many servers ask (the newest at the first ask).
    async fn resolve_image(&self, image: &str) -> ProviderResult<String> {
        if image.starts_with("ami-") {
            return Ok(image.to_string());
        }
        self.shared
            .images
            .get_or_try(image, || self.newest_image(image))
            .await
    }

    async fn newest_image(&self, image: &str) -> ProviderResult<String> {
        let Some((_, owner, pattern)) = IMAGES.iter().find(|(n, ..)| *n == image) else {
            let known: Vec<&str> = IMAGES.iter().map(|(n, ..)| *n).collect();
            return Err(permanent(format!(
                "image `{image}` is neither an AMI id nor a known name ({})",
                known.join(", ")
            )));
        };
        let out = self
            .c
            .ec2
            .describe_images()
            .owners(*owner)
            .filters(filter("name", pattern))
            .filters(filter("state", "available"))
            .send()
            .await
            .map_err(|e| classify("DescribeImages", e))?;
        let mut images: Vec<_> = out.images().iter().collect();
        images.sort_by_key(|i| i.creation_date().unwrap_or_default().to_string());
        images
            .last()
            .and_then(|i| i.image_id())
            .map(str::to_string)
            .ok_or_else(|| {
                permanent(format!(
                    "no AMI named `{pattern}` from {owner} in {}",
                    self.c.region
                ))
            })
    }

    /// The instance with this id unless terminated. Instances asked for
    /// together (polls of many creates, a refresh) share one call.
    pub(crate) async fn instance(&self, id: &str) -> ProviderResult<Option<Instance>> {
        self.shared.instances.get(id).await
    }

    /// The live instance an earlier create with this token made.
    pub(crate) async fn instance_by_token(&self, token: &str) -> ProviderResult<Option<Instance>> {
        let out = self
            .c
            .ec2
            .describe_instances()
            .filters(by_tag(TOKEN_TAG, token))
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("instance-state-name")
                    .values("pending")
                    .values("running")
                    .values("stopping")
                    .values("stopped")
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify("DescribeInstances", e))?;
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .next()
            .cloned())
    }

    pub(crate) async fn create_server(&self, req: &CreateRequest) -> ProviderResult<Json> {
        let p = &req.properties;
        // RunInstances takes a client token, but a retry after the token's
        // window or against an endpoint that ignores it (moto does) would
        // make a second instance: the token tag is checked first.
        let earlier = match req.may_exist {
            true => self.instance_by_token(&req.token).await?,
            false => None,
        };
        let id = match earlier {
            Some(i) => {
                tracing::info!(address = %req.address, id = ?i.instance_id(), "adopting the instance of an earlier attempt");
                i.instance_id().unwrap_or_default().to_string()
            }
            None => self.run_instance(req).await?,
        };
        let running = self.wait_running(&id).await?;
        self.shared.running.saw(&running);
        let server = Server::read(p).map_err(|e| permanent(format!("server {e}")))?;
        for (n, vol) in server.volumes.iter().enumerate() {
            self.attach_volume(&id, vol, n).await?;
        }
        Ok(server_attributes(&running))
    }

    async fn run_instance(&self, req: &CreateRequest) -> ProviderResult<String> {
        let server = Server::read(&req.properties).map_err(|e| permanent(format!("server {e}")))?;
        let image = self.resolve_image(&server.image).await?;
        let target = req.target.clone().unwrap_or(Json::Null);
        let itype = prop_str(&target, "instance_type").unwrap_or(instance_type(server.size));
        let mut tags = with_name(&create_tags(&req.tags, &req.token), server.name.as_deref());
        tags.insert(IMAGE_TAG.into(), server.image.clone());
        let user_data = server
            .user_data
            .as_ref()
            .map(|u| base64::engine::general_purpose::STANDARD.encode(u.as_bytes()));
        // `aws: {iam_instance_profile: NAME}`: the role its programs act as.
        let profile = prop_str(&target, "iam_instance_profile").map(|name| {
            IamInstanceProfileSpecification::builder()
                .name(name)
                .build()
        });
        let out = self
            .c
            .ec2
            .run_instances()
            .image_id(image)
            .instance_type(InstanceType::from(itype))
            .min_count(1)
            .max_count(1)
            .subnet_id(server.subnet)
            .set_security_group_ids(Some(server.firewalls).filter(|v| !v.is_empty()))
            .set_key_name(server.key_pair)
            .set_user_data(user_data)
            .set_private_ip_address(server.address.map(|a| a.to_string()))
            .set_iam_instance_profile(profile)
            .client_token(&req.token)
            .tag_specifications(spec(ResourceType::Instance, &tags))
            .tag_specifications(spec(
                ResourceType::Volume,
                &create_tags(&req.tags, &req.token),
            ))
            .send()
            .await
            .map_err(|e| classify("RunInstances", e))
            .map_err(profile_not_yet_visible)?;
        out.instances()
            .first()
            .and_then(|i| i.instance_id())
            .map(str::to_string)
            .ok_or_else(|| permanent("RunInstances returned no instance"))
    }

    async fn wait_running(&self, id: &str) -> ProviderResult<Instance> {
        wait_for(&format!("instance {id}"), self.waits.instance, || async {
            let Some(i) = self.instance(id).await? else {
                // Just made: EC2 is eventually consistent.
                return Ok(None);
            };
            match i.state().and_then(|s| s.name()) {
                Some(InstanceStateName::Running) => Ok(Some(i)),
                Some(InstanceStateName::Pending) | None => Ok(None),
                Some(other) => Err(permanent(format!(
                    "instance {id} is {} instead of running: {}",
                    other.as_str(),
                    i.state_reason()
                        .and_then(|r| r.message())
                        .unwrap_or("no reason given")
                ))),
            }
        })
        .await
    }

    async fn attach_volume(&self, instance: &str, volume: &str, n: usize) -> ProviderResult<()> {
        let r = self
            .c
            .ec2
            .attach_volume()
            .instance_id(instance)
            .volume_id(volume)
            .device(device(n))
            .send()
            .await
            .map_err(|e| classify("AttachVolume", e));
        match r {
            Ok(_) => Ok(()),
            // A retried create: attached by the first attempt.
            Err(ProviderError::Permanent(m) | ProviderError::Conflict(m))
                if m.contains("VolumeInUse") || m.contains("already attached") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn user_data(&self, id: &str) -> ProviderResult<Option<String>> {
        let out = self
            .c
            .ec2
            .describe_instance_attribute()
            .instance_id(id)
            .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
            .send()
            .await
            .map_err(|e| classify("DescribeInstanceAttribute", e))?;
        Ok(out
            .user_data()
            .and_then(|v| v.value())
            .filter(|v| !v.is_empty())
            .map(|v| {
                base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_else(|_| v.to_string())
            }))
    }

    pub(crate) async fn read_server(&self, id: &str) -> ProviderResult<Option<Observed>> {
        let Some(i) = self.instance(id).await? else {
            self.shared.running.forget(id);
            return Ok(None);
        };
        self.shared.running.saw(&i);
        let tags = tag_map(i.tags());
        let root = i.root_device_name().unwrap_or_default();
        let volumes: Vec<&str> = i
            .block_device_mappings()
            .iter()
            .filter(|m| m.device_name() != Some(root))
            .filter_map(|m| m.ebs().and_then(|e| e.volume_id()))
            .collect();
        let mut p = blank(Kind::Server);
        p.insert("name".into(), json!(tags.get("Name")));
        p.insert(
            "image".into(),
            json!(tags.get(IMAGE_TAG).map(String::as_str).or(i.image_id())),
        );
        p.insert(
            "size".into(),
            json!(i.instance_type().map(|t| size_of(t.as_str()))),
        );
        p.insert("subnet".into(), json!(i.subnet_id()));
        p.insert(
            "firewalls".into(),
            json!(
                i.security_groups()
                    .iter()
                    .filter_map(|g| g.group_id())
                    .collect::<Vec<_>>()
            ),
        );
        p.insert("key_pair".into(), json!(i.key_name()));
        p.insert("user_data".into(), json!(self.user_data(id).await?));
        p.insert("volumes".into(), json!(volumes));
        Ok(Some(Observed {
            properties: Json::Object(p),
            attributes: server_attributes(&i),
            tags,
        }))
    }

    pub(crate) async fn update_server(&self, req: &UpdateRequest) -> ProviderResult<Json> {
        let p = &req.properties;
        if req.changed.iter().any(|c| c == "firewalls") {
            self.c
                .ec2
                .modify_instance_attribute()
                .instance_id(&req.id)
                .set_groups(Some(prop_strs(p, "firewalls")))
                .send()
                .await
                .map_err(|e| classify("ModifyInstanceAttribute", e))?;
        }
        if req.changed.iter().any(|c| c == "volumes") {
            let want = prop_strs(p, "volumes");
            let had = prop_strs(&req.prior, "volumes");
            for v in had.iter().filter(|v| !want.contains(v)) {
                let r = self
                    .c
                    .ec2
                    .detach_volume()
                    .instance_id(&req.id)
                    .volume_id(v)
                    .send()
                    .await
                    .map_err(|e| classify("DetachVolume", e));
                gone(r)?;
            }
            for (n, v) in want.iter().enumerate().filter(|(_, v)| !had.contains(v)) {
                self.attach_volume(&req.id, v, n).await?;
            }
        }
        let mut tags = with_name(&req.tags, prop_str(p, "name"));
        if let Some(image) = prop_str(p, "image") {
            tags.insert(IMAGE_TAG.into(), image.into());
        }
        retag(&self.c, &req.id, &tags).await?;
        let i = self
            .instance(&req.id)
            .await?
            .ok_or_else(|| ProviderError::NotFound(format!("instance {}", req.id)))?;
        Ok(server_attributes(&i))
    }

    pub(crate) async fn delete_server(&self, id: &str) -> ProviderResult<()> {
        // A balancer made later in this run must not take it for running.
        self.shared.running.forget(id);
        // With the other servers deleted now: one call for them all.
        let r = self.writes.terminations.write(REGION, id.to_string()).await;
        if gone(r)?.is_none() {
            return Ok(());
        }
        // Its network interfaces hold the subnet and security groups until
        // it is gone: deleting those next would fail.
        wait_for(
            &format!("instance {id} to terminate"),
            self.waits.instance,
            || async { Ok(self.instance(id).await?.is_none().then_some(())) },
        )
        .await
    }

    pub(crate) async fn create_ip_address(&self, req: &CreateRequest) -> ProviderResult<Json> {
        let p = &req.properties;
        let existing = self.address_by(by_tag(TOKEN_TAG, &req.token)).await?;
        let (alloc, public_ip) = match existing {
            Some(a) => a,
            None => {
                let tags = with_name(&create_tags(&req.tags, &req.token), prop_str(p, "name"));
                let out = self
                    .c
                    .ec2
                    .allocate_address()
                    .domain(aws_sdk_ec2::types::DomainType::Vpc)
                    .tag_specifications(spec(ResourceType::ElasticIp, &tags))
                    .send()
                    .await
                    .map_err(|e| classify("AllocateAddress", e))?;
                (
                    out.allocation_id().unwrap_or_default().to_string(),
                    out.public_ip().unwrap_or_default().to_string(),
                )
            }
        };
        if let Some(server) = prop_str(p, "server") {
            self.associate(&alloc, server).await?;
        }
        Ok(json!({"id": alloc, "address": public_ip}))
    }

    async fn associate(&self, alloc: &str, instance: &str) -> ProviderResult<()> {
        self.c
            .ec2
            .associate_address()
            .allocation_id(alloc)
            .instance_id(instance)
            .allow_reassociation(true)
            .send()
            .await
            .map_err(|e| classify("AssociateAddress", e))?;
        Ok(())
    }

    /// (allocation id, public ip) of the first address matching.
    async fn address_by(
        &self,
        f: aws_sdk_ec2::types::Filter,
    ) -> ProviderResult<Option<(String, String)>> {
        Ok(self.addresses(f).await?.into_iter().next().map(|a| {
            (
                a.allocation_id().unwrap_or_default().to_string(),
                a.public_ip().unwrap_or_default().to_string(),
            )
        }))
    }

    async fn addresses(
        &self,
        f: aws_sdk_ec2::types::Filter,
    ) -> ProviderResult<Vec<aws_sdk_ec2::types::Address>> {
        let out = self
            .c
            .ec2
            .describe_addresses()
            .filters(f)
            .send()
            .await
            .map_err(|e| classify("DescribeAddresses", e))?;
        Ok(out.addresses().to_vec())
    }

    pub(crate) async fn read_ip_address(&self, id: &str) -> ProviderResult<Option<Observed>> {
        let Some(a) = self
            .addresses(filter("allocation-id", id))
            .await?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        let tags = tag_map(a.tags());
        let mut p = blank(Kind::IpAddress);
        p.insert("name".into(), json!(tags.get("Name")));
        p.insert("server".into(), json!(associated(a.instance_id())));
        Ok(Some(Observed {
            properties: Json::Object(p),
            attributes: json!({"id": id, "address": a.public_ip()}),
            tags,
        }))
    }

    pub(crate) async fn update_ip_address(&self, req: &UpdateRequest) -> ProviderResult<Json> {
        let current = self
            .addresses(filter("allocation-id", &req.id))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| ProviderError::NotFound(format!("address {}", req.id)))?;
        let want = prop_str(&req.properties, "server");
        if associated(current.instance_id()) != want {
            if let Some(assoc) = associated(current.association_id()) {
                self.c
                    .ec2
                    .disassociate_address()
                    .association_id(assoc)
                    .send()
                    .await
                    .map_err(|e| classify("DisassociateAddress", e))?;
            }
            if let Some(server) = want {
                self.associate(&req.id, server).await?;
            }
        }
        retag(
            &self.c,
            &req.id,
            &with_name(&req.tags, prop_str(&req.properties, "name")),
        )
        .await?;
        Ok(json!({"id": req.id, "address": current.public_ip()}))
    }

    pub(crate) async fn delete_ip_address(&self, id: &str) -> ProviderResult<()> {
        let Some(a) = self
            .addresses(filter("allocation-id", id))
            .await?
            .into_iter()
            .next()
        else {
            return Ok(());
        };
        if let Some(assoc) = a.association_id() {
            let r = self
                .c
                .ec2
                .disassociate_address()
                .association_id(assoc)
                .send()
                .await
                .map_err(|e| classify("DisassociateAddress", e));
            gone(r)?;
        }
        let r = self
            .c
            .ec2
            .release_address()
            .allocation_id(id)
            .send()
            .await
            .map_err(|e| classify("ReleaseAddress", e));
        gone(r)?;
        Ok(())
    }

    pub(crate) async fn create_key_pair(&self, req: &CreateRequest) -> ProviderResult<Json> {
        let p = &req.properties;
        let name = required(p, "name")?;
        let mut attrs = key_material(p)?;
        let mut tags = create_tags(&req.tags, &req.token);
        if prop_str(p, "public_key").is_none() {
            tags.insert(GENERATED_TAG.into(), "true".into());
        }
        self.c
            .ec2
            .import_key_pair()
            .key_name(name)
            .public_key_material(aws_sdk_ec2::primitives::Blob::new(
                attrs["public_key"].as_str().unwrap_or_default().as_bytes(),
            ))
            .tag_specifications(spec(ResourceType::KeyPair, &tags))
            .send()
            .await
            .map_err(|e| classify("ImportKeyPair", e))?;
        // EC2 instances name their key pair, so the name is the id.
        attrs["id"] = json!(name);
        Ok(attrs)
    }

    pub(crate) async fn key_pair(
        &self,
        f: Option<aws_sdk_ec2::types::Filter>,
        name: Option<&str>,
    ) -> ProviderResult<Option<aws_sdk_ec2::types::KeyPairInfo>> {
        let out = self
            .c
            .ec2
            .describe_key_pairs()
            .set_filters(f.map(|f| vec![f]))
            .set_key_names(name.map(|n| vec![n.to_string()]))
            .include_public_key(true)
            .send()
            .await
            .map_err(|e| classify("DescribeKeyPairs", e));
        Ok(gone(out)?.and_then(|o| o.key_pairs().first().cloned()))
    }

    pub(crate) async fn read_key_pair(&self, id: &str) -> ProviderResult<Option<Observed>> {
        let Some(k) = self.key_pair(None, Some(id)).await? else {
            return Ok(None);
        };
        let tags = tag_map(k.tags());
        let public = k.public_key().map(|s| s.trim().to_string());
        let generated = tags.contains_key(GENERATED_TAG);
        let mut p = blank(Kind::KeyPair);
        p.insert("name".into(), json!(k.key_name()));
        p.insert(
            "public_key".into(),
            if generated { Json::Null } else { json!(public) },
        );
        let mut attrs = json!({"id": id, "public_key": public});
        if let Some(fp) = public.as_deref().and_then(fingerprint) {
            attrs["fingerprint"] = json!(fp);
        }
        Ok(Some(Observed {
            properties: Json::Object(p),
            attributes: attrs,
            tags,
        }))
    }

    pub(crate) async fn find_key_pair(&self, token: &str) -> ProviderResult<Option<String>> {
        let Some(k) = self.key_pair(Some(by_tag(TOKEN_TAG, token)), None).await? else {
            return Ok(None);
        };
        let name = k.key_name().unwrap_or_default().to_string();
        if tag_map(k.tags()).contains_key(GENERATED_TAG) {
            // Its private half died with the interrupted run: adopting it
            // would leave servers nobody can log into. Remove it so the
            // retried create generates a key whose private half is kept.
            tracing::warn!(key = %name, "removing a generated key pair whose private key was lost");
            self.delete_key_pair(&name).await?;
            return Ok(None);
        }
        Ok(Some(name))
    }

    pub(crate) async fn update_key_pair(&self, req: &UpdateRequest) -> ProviderResult<Json> {
        let k = self
            .key_pair(None, Some(&req.id))
            .await?
            .ok_or_else(|| ProviderError::NotFound(format!("key pair {}", req.id)))?;
        if let Some(kid) = k.key_pair_id() {
            let mut tags: BTreeMap<String, String> = req.tags.clone();
            if let Some(g) = tag_map(k.tags()).get(GENERATED_TAG) {
                tags.insert(GENERATED_TAG.into(), g.clone());
            }
            retag(&self.c, kid, &tags).await?;
        }
        Ok(json!({"id": req.id}))
    }

    pub(crate) async fn delete_key_pair(&self, name: &str) -> ProviderResult<()> {
        let r = self
            .c
            .ec2
            .delete_key_pair()
            .key_name(name)
            .send()
            .await
            .map_err(|e| classify("DeleteKeyPair", e));
        gone(r)?;
        Ok(())
    }
}

fn fingerprint(public: &str) -> Option<String> {
    ssh_key::PublicKey::from_openssh(public)
        .ok()
        .map(|k| k.fingerprint(ssh_key::HashAlg::Sha256).to_string())
}

/// The public key given, or a new ed25519 pair with its private key as a
/// (secret) attribute.
fn key_material(p: &Json) -> ProviderResult<Json> {
    use ssh_key::private::{Ed25519Keypair, KeypairData};
    use ssh_key::{LineEnding, PrivateKey};
    if let Some(given) = prop_str(p, "public_key") {
        let fp = fingerprint(given)
            .ok_or_else(|| permanent("`public_key` is not an OpenSSH public key"))?;
        return Ok(
            json!({"public_key": given.trim(), "fingerprint": fp, "private_key": Json::Null}),
        );
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| permanent(format!("no randomness for a key: {e}")))?;
    let pair = Ed25519Keypair::from_seed(&seed);
    let private = PrivateKey::new(
        KeypairData::Ed25519(pair),
        prop_str(p, "name").unwrap_or("cairn"),
    )
    .map_err(|e| permanent(e.to_string()))?;
    let public = private
        .public_key()
        .to_openssh()
        .map_err(|e| permanent(e.to_string()))?;
    Ok(json!({
        "public_key": public,
        "fingerprint": fingerprint(&public),
        "private_key": private.to_openssh(LineEnding::LF).map_err(|e| permanent(e.to_string()))?.to_string(),
    }))
}

/// An address's instance or association id: moto (and EC2 in some answers)
/// gives an empty string rather than none once it is disassociated.
fn associated(id: Option<&str>) -> Option<&str> {
    id.filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_map_both_ways() {
        assert_eq!(instance_type(Size::Small), "t3.small");
        assert_eq!(size_of("t3.small"), "small");
        assert_eq!(size_of("m7g.large"), "m7g.large");
        assert_eq!(device(0), "/dev/sdf");
    }

    #[test]
    fn generated_keys_carry_their_private_half() {
        let k = key_material(&json!({"name": "k"})).unwrap();
        assert!(
            k["private_key"]
                .as_str()
                .unwrap()
                .contains("OPENSSH PRIVATE KEY")
        );
        assert!(k["fingerprint"].as_str().unwrap().starts_with("SHA256:"));
        let given = key_material(&json!({"public_key": k["public_key"]})).unwrap();
        assert_eq!(given["fingerprint"], k["fingerprint"]);
        assert!(given["private_key"].is_null());
    }
}
