//! aws.iam_role → IAM role (trust policy, inline policies, attached managed
//! policies); aws.iam_instance_profile → IAM instance profile holding one
//! role, which a server names in its `aws: {iam_instance_profile: ...}`.
//!
//! IAM has no client tokens: a create names the role (the template's name,
//! or one derived from the token), and a retried create that meets
//! `EntityAlreadyExists` adopts what it finds only when the token tag is
//! ours; anything else of that name is someone else's and a conflict. The
//! id of both types is the name, which every IAM call takes.
//!
//! IAM returns policy documents URL-encoded (RFC 3986); `read` decodes and
//! parses them, so what it reports compares with the template's maps.

use std::collections::BTreeMap;
use std::future::Future;

use aws_sdk_iam::types::{InstanceProfile, Role, Tag};
use cairn_engine::provider::*;
use serde_json::json;

use crate::error::{classify, gone};
use crate::model::*;
use crate::provider::AwsProvider;

/// Role names: 64 characters of `[\w+=,.@-]`; derived names fit.
const ROLE_NAME_MAX: usize = 64;
/// Instance profile names may be 128 long; 64 keeps them readable.
const PROFILE_NAME_MAX: usize = 64;

pub const ROLE: Kind = Kind::AwsIamRole;
pub const PROFILE: Kind = Kind::AwsIamInstanceProfile;

fn iam_tags(map: &BTreeMap<String, String>) -> ProviderResult<Vec<Tag>> {
    map.iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| permanent(e.to_string()))
        })
        .collect()
}

fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect()
}

/// `%7B%22Version%22...` → `{"Version"...`. Bytes that are not a valid
/// escape stay as they are.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex_digit(b[i + 1]), hex_digit(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_digit(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// A policy document as IAM returns it: URL-encoded JSON (AWS), or plain
/// JSON (some endpoints). Text that is neither is reported as it is, so a
/// comparison shows it rather than hiding it.
pub fn document(text: &str) -> Json {
    if let Ok(v) = serde_json::from_str::<Json>(text) {
        return v;
    }
    let decoded = percent_decode(text);
    serde_json::from_str(&decoded).unwrap_or(Json::String(decoded))
}

/// A document property as the IAM call takes it: JSON text. The engine
/// keeps documents as maps; a string is JSON text already.
fn document_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl AwsProvider {
    // ---- roles ------------------------------------------------------------

    pub(crate) async fn create_role(&self, req: &CreateRequest) -> ProviderResult<Json> {
        let p = &req.properties;
        let name = name_or_derived(req, ROLE_NAME_MAX);
        let trust = prop(p, "assume_role_policy")
            .map(document_text)
            .ok_or_else(|| permanent("`assume_role_policy` is required"))?;
        let made = self
            .c
            .iam
            .create_role()
            .role_name(&name)
            .assume_role_policy_document(&trust)
            .set_description(prop_str(p, "description").map(str::to_string))
            .set_tags(Some(iam_tags(&create_tags(&req.tags, &req.token))?))
            .send()
            .await
            .map_err(|e| classify("CreateRole", e));
        let arn = match made {
            Ok(out) => out.role().map(|r| r.arn().to_string()),
            Err(ProviderError::Conflict(m)) => {
                let live = adopt(req, ROLE, &name, m, self.role(&name).await?, Role::tags)?;
                // The first attempt may have died before its policies.
                self.set_role_trust(&name, p, &live).await?;
                Some(live.arn().to_string())
            }
            Err(e) => return Err(e),
        };
        self.set_inline_policies(&name, p, req.may_exist).await?;
        self.set_managed_policies(&name, p, req.may_exist).await?;
        Ok(json!({"id": name, "arn": arn}))
    }

    async fn role(&self, name: &str) -> ProviderResult<Option<Role>> {
        let r = self
            .c
            .iam
            .get_role()
            .role_name(name)
            .send()
            .await
            .map_err(|e| classify("GetRole", e));
        Ok(gone(r)?.and_then(|o| o.role))
    }

    /// An adopted role's trust policy and description, made what the
    /// template says.
    async fn set_role_trust(&self, name: &str, p: &Json, live: &Role) -> ProviderResult<()> {
        let want = prop(p, "assume_role_policy").cloned().unwrap_or(Json::Null);
        let have = live
            .assume_role_policy_document()
            .map(document)
            .unwrap_or(Json::Null);
        if want != have {
            self.update_trust(name, &want).await?;
        }
        if prop_str(p, "description") != live.description() {
            self.update_description(name, prop_str(p, "description"))
                .await?;
        }
        Ok(())
    }

    async fn update_trust(&self, name: &str, doc: &Json) -> ProviderResult<()> {
        self.c
            .iam
            .update_assume_role_policy()
            .role_name(name)
            .policy_document(document_text(doc))
            .send()
            .await
            .map_err(|e| classify("UpdateAssumeRolePolicy", e))?;
        Ok(())
    }

    async fn update_description(
        &self,
        name: &str,
        description: Option<&str>,
    ) -> ProviderResult<()> {
        self.c
            .iam
            .update_role()
            .role_name(name)
            .description(description.unwrap_or_default())
            .send()
            .await
            .map_err(|e| classify("UpdateRole", e))?;
        Ok(())
    }

    async fn inline_policy_names(&self, name: &str) -> ProviderResult<Vec<String>> {
        self.c
            .iam
            .list_role_policies()
            .role_name(name)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("ListRolePolicies", e))
    }

    async fn managed_policy_arns(&self, name: &str) -> ProviderResult<Vec<String>> {
        let attached = self
            .c
            .iam
            .list_attached_role_policies()
            .role_name(name)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("ListAttachedRolePolicies", e))?;
        Ok(attached
            .iter()
            .filter_map(|a| a.policy_arn().map(str::to_string))
            .collect())
    }

    /// Puts every inline policy the template names and deletes the others.
    /// A fresh role (`check_live` false) has none to delete: no listing.
    async fn set_inline_policies(
        &self,
        name: &str,
        p: &Json,
        check_live: bool,
    ) -> ProviderResult<()> {
        let want = prop(p, "inline_policies")
            .and_then(Json::as_object)
            .cloned()
            .unwrap_or_default();
        if check_live {
            for stale in self
                .inline_policy_names(name)
                .await?
                .iter()
                .filter(|n| !want.contains_key(n.as_str()))
            {
                let r = self
                    .c
                    .iam
                    .delete_role_policy()
                    .role_name(name)
                    .policy_name(stale)
                    .send()
                    .await
                    .map_err(|e| classify("DeleteRolePolicy", e));
                gone(r)?;
            }
        }
        // PutRolePolicy replaces a policy of that name: idempotent.
        for (policy, doc) in &want {
            self.c
                .iam
                .put_role_policy()
                .role_name(name)
                .policy_name(policy)
                .policy_document(document_text(doc))
                .send()
                .await
                .map_err(|e| classify("PutRolePolicy", e))?;
        }
        Ok(())
    }

    /// Attaches the managed policies the template lists and detaches the
    /// others. A fresh role has none attached: no listing.
    async fn set_managed_policies(
        &self,
        name: &str,
        p: &Json,
        check_live: bool,
    ) -> ProviderResult<()> {
        let want = prop_strs(p, "managed_policies");
        let have = match check_live {
            true => self.managed_policy_arns(name).await?,
            false => Vec::new(),
        };
        for arn in have.iter().filter(|a| !want.contains(a)) {
            let r = self
                .c
                .iam
                .detach_role_policy()
                .role_name(name)
                .policy_arn(arn)
                .send()
                .await
                .map_err(|e| classify("DetachRolePolicy", e));
            gone(r)?;
        }
        for arn in want.iter().filter(|a| !have.contains(a)) {
            self.c
                .iam
                .attach_role_policy()
                .role_name(name)
                .policy_arn(arn)
                .send()
                .await
                .map_err(|e| classify("AttachRolePolicy", e))
                .map_err(missing_is_permanent)?;
        }
        Ok(())
    }

    pub(crate) async fn read_role(&self, name: &str) -> ProviderResult<Option<Observed>> {
        let Some(role) = self.role(name).await? else {
            return Ok(None);
        };
        let mut inline = serde_json::Map::new();
        // A role deleted between the calls reads as gone.
        let Some(names) = gone(self.inline_policy_names(name).await)? else {
            return Ok(None);
        };
        for policy in names {
            let r = self
                .c
                .iam
                .get_role_policy()
                .role_name(name)
                .policy_name(&policy)
                .send()
                .await
                .map_err(|e| classify("GetRolePolicy", e));
            if let Some(out) = gone(r)? {
                inline.insert(policy, document(out.policy_document()));
            }
        }
        let Some(managed) = gone(self.managed_policy_arns(name).await)? else {
            return Ok(None);
        };
        let mut p = blank(ROLE);
        p.insert("name".into(), json!(role.role_name()));
        p.insert("description".into(), json!(role.description()));
        p.insert(
            "assume_role_policy".into(),
            role.assume_role_policy_document()
                .map(document)
                .unwrap_or(Json::Null),
        );
        p.insert("inline_policies".into(), Json::Object(inline));
        p.insert("managed_policies".into(), json!(managed));
        Ok(Some(Observed {
            properties: Json::Object(p),
            attributes: json!({"id": role.role_name(), "arn": role.arn()}),
            tags: tag_map(role.tags()),
        }))
    }

    pub(crate) async fn update_role(&self, req: &UpdateRequest) -> ProviderResult<Json> {
        let p = &req.properties;
        let name = req.id.as_str();
        let changed = |k: &str| req.changed.iter().any(|c| c == k);
        if changed("assume_role_policy") {
            let doc = prop(p, "assume_role_policy")
                .ok_or_else(|| permanent("`assume_role_policy` is required"))?;
            self.update_trust(name, doc).await?;
        }
        if changed("description") {
            self.update_description(name, prop_str(p, "description"))
                .await?;
        }
        // Against what the role has now, not the prior record: a policy
        // changed behind cairn's back is put back too.
        if changed("inline_policies") {
            self.set_inline_policies(name, p, true).await?;
        }
        if changed("managed_policies") {
            self.set_managed_policies(name, p, true).await?;
        }
        let live = self
            .role(name)
            .await?
            .ok_or_else(|| ProviderError::NotFound(format!("IAM role {name}")))?;
        self.retag_role(name, &tag_map(live.tags()), &req.tags)
            .await?;
        Ok(json!({"id": name, "arn": live.arn()}))
    }

    async fn retag_role(
        &self,
        name: &str,
        have: &BTreeMap<String, String>,
        want: &BTreeMap<String, String>,
    ) -> ProviderResult<()> {
        let (stale, set) = tag_changes(have, want);
        if !stale.is_empty() {
            self.c
                .iam
                .untag_role()
                .role_name(name)
                .set_tag_keys(Some(stale))
                .send()
                .await
                .map_err(|e| classify("UntagRole", e))?;
        }
        if !set.is_empty() {
            self.c
                .iam
                .tag_role()
                .role_name(name)
                .set_tags(Some(iam_tags(&set)?))
                .send()
                .await
                .map_err(|e| classify("TagRole", e))?;
        }
        Ok(())
    }

    /// A role can only be deleted bare: its managed policies detached, its
    /// inline policies deleted, and out of every instance profile.
    pub(crate) async fn delete_role(&self, name: &str) -> ProviderResult<()> {
        let Some(managed) = gone(self.managed_policy_arns(name).await)? else {
            return Ok(());
        };
        for arn in managed {
            let r = self
                .c
                .iam
                .detach_role_policy()
                .role_name(name)
                .policy_arn(&arn)
                .send()
                .await
                .map_err(|e| classify("DetachRolePolicy", e));
            gone(r)?;
        }
        let Some(inline) = gone(self.inline_policy_names(name).await)? else {
            return Ok(());
        };
        for policy in inline {
            let r = self
                .c
                .iam
                .delete_role_policy()
                .role_name(name)
                .policy_name(&policy)
                .send()
                .await
                .map_err(|e| classify("DeleteRolePolicy", e));
            gone(r)?;
        }
        let profiles = self
            .c
            .iam
            .list_instance_profiles_for_role()
            .role_name(name)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("ListInstanceProfilesForRole", e));
        let Some(profiles) = gone(profiles)? else {
            return Ok(());
        };
        for profile in profiles {
            self.remove_role(profile.instance_profile_name(), name)
                .await?;
        }
        let r = self
            .c
            .iam
            .delete_role()
            .role_name(name)
            .send()
            .await
            .map_err(|e| classify("DeleteRole", e));
        gone(r)?;
        Ok(())
    }

    /// Every role with its tags: one tag call per role in the account (see
    /// [`with_tags`]).
    async fn tagged_roles(&self) -> ProviderResult<Vec<(String, BTreeMap<String, String>)>> {
        let roles = self
            .c
            .iam
            .list_roles()
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("ListRoles", e))?;
        with_tags(&roles, Role::role_name, Role::tags, |name| async move {
            self.c
                .iam
                .list_role_tags()
                .role_name(name)
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| classify("ListRoleTags", e))
        })
        .await
    }

    // ---- instance profiles ------------------------------------------------

    pub(crate) async fn create_instance_profile(
        &self,
        req: &CreateRequest,
    ) -> ProviderResult<Json> {
        let name = name_or_derived(req, PROFILE_NAME_MAX);
        let made = self
            .c
            .iam
            .create_instance_profile()
            .instance_profile_name(&name)
            .set_tags(Some(iam_tags(&create_tags(&req.tags, &req.token))?))
            .send()
            .await
            .map_err(|e| classify("CreateInstanceProfile", e));
        let (arn, roles) = match made {
            Ok(out) => (
                out.instance_profile().map(|i| i.arn().to_string()),
                Vec::new(),
            ),
            Err(ProviderError::Conflict(m)) => {
                let live = adopt(
                    req,
                    PROFILE,
                    &name,
                    m,
                    self.profile(&name).await?,
                    InstanceProfile::tags,
                )?;
                let roles = live
                    .roles()
                    .iter()
                    .map(|r| r.role_name().to_string())
                    .collect();
                (Some(live.arn().to_string()), roles)
            }
            Err(e) => return Err(e),
        };
        self.set_profile_role(&name, prop_str(&req.properties, "role"), &roles)
            .await?;
        Ok(json!({"id": name, "arn": arn}))
    }

    async fn profile(&self, name: &str) -> ProviderResult<Option<InstanceProfile>> {
        let r = self
            .c
            .iam
            .get_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
            .map_err(|e| classify("GetInstanceProfile", e));
        Ok(gone(r)?.and_then(|o| o.instance_profile))
    }

    /// A profile holds at most one role: the others go first.
    async fn set_profile_role(
        &self,
        name: &str,
        want: Option<&str>,
        have: &[String],
    ) -> ProviderResult<()> {
        for role in have.iter().filter(|r| Some(r.as_str()) != want) {
            self.remove_role(name, role).await?;
        }
        if let Some(role) = want
            && !have.iter().any(|r| r == role)
        {
            self.c
                .iam
                .add_role_to_instance_profile()
                .instance_profile_name(name)
                .role_name(role)
                .send()
                .await
                .map_err(|e| classify("AddRoleToInstanceProfile", e))
                .map_err(missing_is_permanent)?;
        }
        Ok(())
    }

    async fn remove_role(&self, profile: &str, role: &str) -> ProviderResult<()> {
        let r = self
            .c
            .iam
            .remove_role_from_instance_profile()
            .instance_profile_name(profile)
            .role_name(role)
            .send()
            .await
            .map_err(|e| classify("RemoveRoleFromInstanceProfile", e));
        gone(r)?;
        Ok(())
    }

    pub(crate) async fn read_instance_profile(
        &self,
        name: &str,
    ) -> ProviderResult<Option<Observed>> {
        let Some(live) = self.profile(name).await? else {
            return Ok(None);
        };
        let mut p = blank(PROFILE);
        p.insert("name".into(), json!(live.instance_profile_name()));
        p.insert(
            "role".into(),
            json!(live.roles().first().map(|r| r.role_name())),
        );
        Ok(Some(Observed {
            properties: Json::Object(p),
            attributes: json!({"id": live.instance_profile_name(), "arn": live.arn()}),
            tags: tag_map(live.tags()),
        }))
    }

    pub(crate) async fn update_instance_profile(
        &self,
        req: &UpdateRequest,
    ) -> ProviderResult<Json> {
        let name = req.id.as_str();
        let live = self
            .profile(name)
            .await?
            .ok_or_else(|| ProviderError::NotFound(format!("IAM instance profile {name}")))?;
        let roles: Vec<String> = live
            .roles()
            .iter()
            .map(|r| r.role_name().to_string())
            .collect();
        self.set_profile_role(name, prop_str(&req.properties, "role"), &roles)
            .await?;
        let (stale, set) = tag_changes(&tag_map(live.tags()), &req.tags);
        if !stale.is_empty() {
            self.c
                .iam
                .untag_instance_profile()
                .instance_profile_name(name)
                .set_tag_keys(Some(stale))
                .send()
                .await
                .map_err(|e| classify("UntagInstanceProfile", e))?;
        }
        if !set.is_empty() {
            self.c
                .iam
                .tag_instance_profile()
                .instance_profile_name(name)
                .set_tags(Some(iam_tags(&set)?))
                .send()
                .await
                .map_err(|e| classify("TagInstanceProfile", e))?;
        }
        Ok(json!({"id": name, "arn": live.arn()}))
    }

    pub(crate) async fn delete_instance_profile(&self, name: &str) -> ProviderResult<()> {
        let Some(live) = self.profile(name).await? else {
            return Ok(());
        };
        for role in live.roles() {
            self.remove_role(name, role.role_name()).await?;
        }
        let r = self
            .c
            .iam
            .delete_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
            .map_err(|e| classify("DeleteInstanceProfile", e));
        gone(r)?;
        Ok(())
    }

    /// Every instance profile with its tags (one tag call per profile, as
    /// for roles: see [`with_tags`]).
    async fn tagged_profiles(&self) -> ProviderResult<Vec<(String, BTreeMap<String, String>)>> {
        let profiles = self
            .c
            .iam
            .list_instance_profiles()
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("ListInstanceProfiles", e))?;
        with_tags(
            &profiles,
            InstanceProfile::instance_profile_name,
            InstanceProfile::tags,
            |name| async move {
                self.c
                    .iam
                    .list_instance_profile_tags()
                    .instance_profile_name(name)
                    .into_paginator()
                    .items()
                    .send()
                    .try_collect()
                    .await
                    .map_err(|e| classify("ListInstanceProfileTags", e))
            },
        )
        .await
    }

    // ---- both -------------------------------------------------------------

    /// What an earlier create with this token made. The derived name is
    /// tried first (one call); a role the template named is found by
    /// listing (IAM has no tag filter).
    pub(crate) async fn find_iam(
        &self,
        kind: Kind,
        token: &str,
        derived: Option<(&str, &str)>,
    ) -> ProviderResult<Option<String>> {
        if let Some((deployment, address)) = derived {
            let (name, tags) = match kind {
                ROLE => {
                    let name = derived_name(deployment, address, token, ROLE_NAME_MAX);
                    (
                        name.clone(),
                        self.role(&name).await?.map(|r| tag_map(r.tags())),
                    )
                }
                _ => {
                    let name = derived_name(deployment, address, token, PROFILE_NAME_MAX);
                    (
                        name.clone(),
                        self.profile(&name).await?.map(|r| tag_map(r.tags())),
                    )
                }
            };
            if tags.is_some_and(|t| has_token(&t, token)) {
                return Ok(Some(name));
            }
        }
        let all = match kind {
            ROLE => self.tagged_roles().await?,
            _ => self.tagged_profiles().await?,
        };
        Ok(all
            .into_iter()
            .find(|(_, tags)| has_token(tags, token))
            .map(|(name, _)| name))
    }

    /// Roles and instance profiles carrying the deployment's tag.
    pub(crate) async fn list_iam(&self, deployment: &str) -> ProviderResult<Vec<Listed>> {
        let mut out = Vec::new();
        for (kind, all) in [
            (ROLE, self.tagged_roles().await?),
            (PROFILE, self.tagged_profiles().await?),
        ] {
            for (name, tags) in all {
                if tags.get(DEPLOYMENT_TAG).map(String::as_str) == Some(deployment) {
                    out.push(Listed {
                        kind,
                        id: name,
                        address: tags.get(RESOURCE_TAG).cloned(),
                    });
                }
            }
        }
        Ok(out)
    }
}

/// How messages name an entity of `kind`: with its article, and bare.
fn noun(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        ROLE => ("a role", "role"),
        _ => ("an instance profile", "instance profile"),
    }
}

/// A create that met `EntityAlreadyExists` (`conflict`), as a retried
/// create meets what its first attempt made: `live`, the entity of that
/// name, is adopted when it carries this create's token; anything else of
/// that name is someone else's, and a conflict.
fn adopt<T>(
    req: &CreateRequest,
    kind: Kind,
    name: &str,
    conflict: String,
    live: Option<T>,
    tags: impl Fn(&T) -> &[Tag],
) -> ProviderResult<T> {
    let Some(live) = live else {
        return Err(ProviderError::Conflict(conflict));
    };
    let (a_kind, kind) = noun(kind);
    if !has_token(&tag_map(tags(&live)), &req.token) {
        return Err(ProviderError::Conflict(format!(
            "{conflict} ({a_kind} named `{name}` exists that cairn did not make for {})",
            req.address
        )));
    }
    tracing::info!(address = %req.address, %name, "adopting the {kind} of an earlier attempt");
    Ok(live)
}

/// Each listed entity's name and tags. ListRoles and ListInstanceProfiles
/// leave tags out on AWS, so an entity listed without any has its own
/// listed (`list_tags`, one call each); one deleted in between is left out.
async fn with_tags<T, Listing>(
    listed: &[T],
    name: impl Fn(&T) -> &str,
    tags: impl Fn(&T) -> &[Tag],
    // Takes the name owned: a future borrowing it would not be `Send` for
    // every lifetime, which the provider's `async_trait` futures must be.
    list_tags: impl Fn(String) -> Listing,
) -> ProviderResult<Vec<(String, BTreeMap<String, String>)>>
where
    Listing: Future<Output = ProviderResult<Vec<Tag>>>,
{
    let mut out = Vec::with_capacity(listed.len());
    for entity in listed {
        let name = name(entity);
        let tags = match tags(entity) {
            [] => match gone(list_tags(name.to_string()).await)? {
                Some(t) => tag_map(&t),
                None => continue,
            },
            some => tag_map(some),
        };
        out.push((name.to_string(), tags));
    }
    Ok(out)
}

/// A policy or role named in the template that IAM does not have: not the
/// resource being changed gone (which `NotFound` would tell the engine),
/// but a wrong name that retrying will not fix.
fn missing_is_permanent(e: ProviderError) -> ProviderError {
    match e {
        ProviderError::NotFound(m) => ProviderError::Permanent(m),
        other => other,
    }
}

/// Tag keys to remove and tags to set for `have` to become `want` (the
/// token tag stays).
fn tag_changes(
    have: &BTreeMap<String, String>,
    want: &BTreeMap<String, String>,
) -> (Vec<String>, BTreeMap<String, String>) {
    let stale = stale_tag_keys(have.keys().map(String::as_str), want);
    let set = want
        .iter()
        .filter(|(k, v)| have.get(*k) != Some(v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (stale, set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_come_back_decoded_and_parsed() {
        let encoded = "%7B%22Version%22%3A%20%222012-10-17%22%2C%20%22Statement%22%3A%20%5B%5D%7D";
        assert_eq!(
            document(encoded),
            json!({"Version": "2012-10-17", "Statement": []})
        );
        // Plain JSON (moto, some endpoints) as it is, even with a `%` inside.
        assert_eq!(document(r#"{"Sid": "100%25"}"#), json!({"Sid": "100%25"}));
        // Neither: reported as text, so a comparison shows it.
        assert_eq!(document("%zz"), json!("%zz"));
        assert_eq!(percent_decode("a%2"), "a%2");
    }

    #[test]
    fn only_an_entity_with_this_creates_token_is_adopted() {
        let req: CreateRequest = serde_json::from_value(json!({
            "deployment": "d", "address": "app_role", "kind": "aws.iam_role",
            "properties": {}, "tags": {}, "target": null, "token": "t-1",
        }))
        .unwrap();
        let tagged =
            |token: &str| vec![Tag::builder().key(TOKEN_TAG).value(token).build().unwrap()];
        let met = |kind, name, live: Option<Vec<Tag>>| {
            adopt(&req, kind, name, "exists".into(), live, Vec::as_slice)
        };
        assert_eq!(met(ROLE, "r", Some(tagged("t-1"))).unwrap(), tagged("t-1"));
        let conflict = |m: &str| ProviderError::Conflict(m.into());
        assert_eq!(met(ROLE, "r", None).unwrap_err(), conflict("exists"));
        assert_eq!(
            met(PROFILE, "p", Some(tagged("t-2"))).unwrap_err(),
            conflict(
                "exists (an instance profile named `p` exists that cairn did not make for app_role)"
            )
        );
        assert_eq!(
            met(ROLE, "r", Some(Vec::new())).unwrap_err(),
            conflict("exists (a role named `r` exists that cairn did not make for app_role)")
        );
    }

    #[test]
    fn tag_changes_keep_the_token() {
        let have: BTreeMap<String, String> = [
            (TOKEN_TAG, "t"),
            ("team", "web"),
            ("old", "x"),
            (DEPLOYMENT_TAG, "d"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let want: BTreeMap<String, String> = [("team", "api"), (DEPLOYMENT_TAG, "d")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (stale, set) = tag_changes(&have, &want);
        assert_eq!(stale, ["old"]);
        assert_eq!(set.len(), 1);
        assert_eq!(set["team"], "api");
    }
}
