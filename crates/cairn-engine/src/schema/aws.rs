//! Types of the aws target alone: what the portable types do not cover.
//! A template that uses one deploys only to aws (`validate -e ENV` says so
//! for an environment of another target).

use super::definition::{Attr, Prop, PropType as T, ResourceSchema, attr, prop};

/// An IAM policy document: a map, or its JSON text (parsed when the
/// template is evaluated, so both spellings are the same value).
const DOCUMENT: T = T::Either(&T::Map(&T::Any), &T::String);

const ID: Attr = attr("id", "the name IAM knows it by");
const ARN: Attr = attr("arn", "its Amazon Resource Name");
const TAGS: Prop = prop("tags", T::Map(&T::String))
    .doc("extra tags, merged with the resource's and the environment's");

pub const AWS: &[ResourceSchema] = &[
    ResourceSchema {
        kind: "aws.iam_role",
        description: "an IAM role: who may assume it, and what it may do (inline and managed policies)",
        properties: &[
            prop("name", T::String).chosen().force_new().doc(
                "the role's name (64 characters at most); derived from the deployment when omitted",
            ),
            prop("description", T::String),
            prop("assume_role_policy", DOCUMENT)
                .required()
                .document()
                .doc("the trust policy: who may assume the role (a map, or its JSON text)"),
            prop("inline_policies", T::Map(&DOCUMENT))
                .default("{}")
                .document()
                .doc("policies embedded in the role, by name (each a map, or its JSON text)"),
            prop("managed_policies", T::List(&T::String))
                .default("[]")
                .doc("ARNs of managed policies attached to the role"),
            TAGS,
        ],
        attributes: &[ID, ARN],
        data_holding: false,
        taggable: true,
    },
    ResourceSchema {
        kind: "aws.iam_instance_profile",
        description: "an IAM instance profile: the role a server's programs act as (a server's `aws: {iam_instance_profile: ...}`)",
        properties: &[
            prop("name", T::String).chosen().force_new().doc(
                "the profile's name (128 characters at most); derived from the deployment when omitted",
            ),
            prop("role", T::Ref).doc("the role's name, as in `{{ role.id }}`"),
            TAGS,
        ],
        attributes: &[ID, ARN],
        data_holding: false,
        taggable: true,
    },
];
