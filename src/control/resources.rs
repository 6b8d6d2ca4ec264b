//! The three simple resources of the API (public keys, key groups, origin
//! access controls): their shapes, names, error codes and rules, which
//! `api` applies alike.

use std::collections::BTreeMap;

use super::api::{ApiError, ApiRequest, VERSION_PREFIX, random_id, random_uuid};
use super::distributions;
use super::store::{Resource, State};
use super::xml::Element;
use crate::auth::PublicKey;

/// An element's name and how its text follows from a resource's id.
pub type Derived = (&'static str, fn(&str) -> String);

/// One of the simple resources and its rules.
pub struct Kind {
    pub resource: &'static str,
    pub config: &'static str,
    /// The `Location` path segment.
    pub path: &'static str,
    /// The time element of the resource (`CreatedTime`, `LastModifiedTime`), if any.
    pub time: Option<&'static str>,
    /// An element derived from the id, shown after it (an origin access
    /// identity's `S3CanonicalUserId`), if any.
    pub derived: Option<Derived>,
    pub list: &'static str,
    pub marker_in_list: bool,
    pub not_found: &'static str,
    pub already_exists: &'static str,
    pub in_use: &'static str,
    pub collection: fn(&mut State) -> &mut BTreeMap<String, Resource>,
    /// The same collection, to read.
    pub resources: fn(&State) -> &BTreeMap<String, Resource>,
    pub new_id: fn() -> String,
    pub validate: fn(&Element, &State) -> Result<(), ApiError>,
    /// CloudFront's default quota of these per account, and the error
    /// code a create past it gets.
    pub quota: (usize, &'static str),
    pub check_update: fn(&Element, &Element) -> Result<(), ApiError>,
    /// What uses the resource, if anything does (it cannot be deleted).
    pub used_by: fn(&State, &str) -> Option<String>,
    pub summary: fn(&str, &Resource) -> Element,
}

impl Kind {
    pub fn resource(&self, id: &str, resource: &Resource) -> Element {
        let mut element = Element::new(self.resource).with(Element::leaf("Id", id));
        if let Some((name, derive)) = self.derived {
            element.children.push(Element::leaf(name, derive(id)));
        }
        match self.time {
            Some("CreatedTime") => element.children.push(Element::leaf("CreatedTime", resource.created.clone())),
            Some(name) => element.children.push(Element::leaf(name, resource.modified.clone())),
            None => {}
        }
        element.with(resource.config.clone())
    }

    pub fn location(&self, request: &ApiRequest<'_>, id: &str) -> String {
        format!("{}{VERSION_PREFIX}{}/{id}", request.base_url, self.path)
    }
}

fn required(config: &Element, names: &[&str]) -> Result<(), ApiError> {
    match names.iter().find(|name| config.child(name).is_none()) {
        Some(name) => Err(ApiError::invalid(format!("{} needs {name}", config.name))),
        None => Ok(()),
    }
}

pub const PUBLIC_KEY: Kind = Kind {
    resource: "PublicKey",
    config: "PublicKeyConfig",
    path: "public-key",
    time: Some("CreatedTime"),
    derived: None,
    list: "PublicKeyList",
    marker_in_list: false,
    not_found: "NoSuchPublicKey",
    already_exists: "PublicKeyAlreadyExists",
    in_use: "PublicKeyInUse",
    collection: |state| &mut state.public_keys,
    resources: |state| &state.public_keys,
    new_id: || random_id('K'),
    quota: (10, "TooManyPublicKeys"),
    validate: |config, _| {
        required(config, &["CallerReference", "Name", "EncodedKey"])?;
        PublicKey::from_pem(config.text_of("EncodedKey").unwrap_or(""))
            .map(|_| ())
            .map_err(|error| ApiError::invalid(format!("EncodedKey: {error}")))
    },
    check_update: |current, next| {
        if current.text_of("EncodedKey") != next.text_of("EncodedKey")
            || current.text_of("CallerReference") != next.text_of("CallerReference")
        {
            return Err(ApiError::new(
                400,
                "CannotChangeImmutablePublicKeyFields",
                "only the Comment of a public key can change",
            ));
        }
        Ok(())
    },
    used_by: |state, id| {
        state
            .key_groups
            .iter()
            .find(|(_, group)| group.config.items().any(|key| key.text == id))
            .map(|(group, _)| format!("key group {group}"))
    },
    summary: |id, resource| {
        let mut summary = Element::new("PublicKeySummary")
            .with(Element::leaf("Id", id))
            .with(Element::leaf("Name", resource.config.text_of("Name").unwrap_or("")))
            .with(Element::leaf("CreatedTime", resource.created.clone()))
            .with(Element::leaf("EncodedKey", resource.config.text_of("EncodedKey").unwrap_or("")));
        if let Some(comment) = resource.config.text_of("Comment") {
            summary.children.push(Element::leaf("Comment", comment));
        }
        summary
    },
};

pub const KEY_GROUP: Kind = Kind {
    resource: "KeyGroup",
    config: "KeyGroupConfig",
    path: "key-group",
    time: Some("LastModifiedTime"),
    derived: None,
    list: "KeyGroupList",
    marker_in_list: false,
    not_found: "NoSuchResource",
    already_exists: "KeyGroupAlreadyExists",
    in_use: "ResourceInUse",
    collection: |state| &mut state.key_groups,
    resources: |state| &state.key_groups,
    new_id: random_uuid,
    quota: (10, "TooManyKeyGroups"),
    validate: |config, state| {
        required(config, &["Name", "Items"])?;
        let keys: Vec<&Element> = config
            .child("Items")
            .map(|items| items.children.iter().collect())
            .unwrap_or_default();
        if keys.is_empty() || keys.len() > 5 {
            return Err(ApiError::invalid("a key group holds 1 to 5 public keys"));
        }
        match keys.iter().find(|key| !state.public_keys.contains_key(&key.text)) {
            Some(unknown) => Err(ApiError::new(404, "NoSuchPublicKey", format!("no public key {}", unknown.text))),
            None => Ok(()),
        }
    },
    check_update: |_, _| Ok(()),
    used_by: |state, id| distributions::first_using(state, |config| distributions::key_group_ids(config).any(|group| group == id)),
    summary: |id, resource| Element::new("KeyGroupSummary").with(KEY_GROUP.resource(id, resource)),
};

pub const ORIGIN_ACCESS_CONTROL: Kind = Kind {
    resource: "OriginAccessControl",
    config: "OriginAccessControlConfig",
    path: "origin-access-control",
    time: None,
    derived: None,
    list: "OriginAccessControlList",
    marker_in_list: true,
    not_found: "NoSuchOriginAccessControl",
    already_exists: "OriginAccessControlAlreadyExists",
    in_use: "OriginAccessControlInUse",
    collection: |state| &mut state.origin_access_controls,
    resources: |state| &state.origin_access_controls,
    new_id: || random_id('E'),
    quota: (100, "TooManyOriginAccessControls"),
    validate: |config, _| {
        required(
            config,
            &["Name", "SigningProtocol", "SigningBehavior", "OriginAccessControlOriginType"],
        )?;
        let one_of = |name: &str, allowed: &[&str]| match config.text_of(name) {
            Some(value) if allowed.contains(&value) => Ok(()),
            value => Err(ApiError::invalid(format!("{name} {value:?} is not one of {allowed:?}"))),
        };
        one_of("SigningProtocol", &["sigv4"])?;
        one_of("SigningBehavior", &["never", "always", "no-override"])?;
        one_of("OriginAccessControlOriginType", &["s3", "mediastore", "mediapackagev2", "lambda"])
    },
    check_update: |_, _| Ok(()),
    used_by: |state, id| {
        distributions::first_using(state, |config| {
            config
                .at(&["Origins"])
                .is_some_and(|origins| origins.items().any(|origin| origin.text_of("OriginAccessControlId") == Some(id)))
        })
    },
    summary: |id, resource| {
        let config = &resource.config;
        let field = |name: &str| Element::leaf(name, config.text_of(name).unwrap_or(""));
        Element::new("OriginAccessControlSummary")
            .with(Element::leaf("Id", id))
            .with(field("Description"))
            .with(field("Name"))
            .with(field("SigningProtocol"))
            .with(field("SigningBehavior"))
            .with(field("OriginAccessControlOriginType"))
    },
};

/// The prefix a distribution's `S3OriginConfig/OriginAccessIdentity` names
/// an identity with.
pub const IDENTITY_PREFIX: &str = "origin-access-identity/cloudfront/";

/// An identity's `S3CanonicalUserId`: 96 hex digits, derived from its id
/// (the emulator has no accounts to draw canonical users from).
fn canonical_user_id(id: &str) -> String {
    use sha2::Digest;
    let first = sha2::Sha256::digest(id.as_bytes());
    let second = sha2::Sha256::digest(first);
    hex::encode([&first[..], &second[..16]].concat())
}

/// Legacy origin access identities: stored, listed and named by S3
/// origins, which are served alike with an identity or with an OAC.
pub const ORIGIN_ACCESS_IDENTITY: Kind = Kind {
    resource: "CloudFrontOriginAccessIdentity",
    config: "CloudFrontOriginAccessIdentityConfig",
    path: "origin-access-identity/cloudfront",
    time: None,
    derived: Some(("S3CanonicalUserId", canonical_user_id)),
    list: "CloudFrontOriginAccessIdentityList",
    marker_in_list: true,
    not_found: "NoSuchCloudFrontOriginAccessIdentity",
    already_exists: "CloudFrontOriginAccessIdentityAlreadyExists",
    in_use: "CloudFrontOriginAccessIdentityInUse",
    collection: |state| &mut state.origin_access_identities,
    resources: |state| &state.origin_access_identities,
    new_id: || random_id('E'),
    quota: (100, "TooManyCloudFrontOriginAccessIdentities"),
    validate: |config, _| required(config, &["CallerReference", "Comment"]),
    check_update: |current, next| {
        if current.text_of("CallerReference") != next.text_of("CallerReference") {
            return Err(ApiError::new(
                400,
                "IllegalUpdate",
                "the CallerReference of an origin access identity cannot change",
            ));
        }
        Ok(())
    },
    used_by: |state, id| {
        let named = format!("{IDENTITY_PREFIX}{id}");
        distributions::first_using(state, |config| {
            config.at(&["Origins"]).is_some_and(|origins| {
                origins.items().any(|origin| {
                    origin
                        .at(&["S3OriginConfig", "OriginAccessIdentity"])
                        .is_some_and(|e| e.text == named)
                })
            })
        })
    },
    summary: |id, resource| {
        Element::new("CloudFrontOriginAccessIdentitySummary")
            .with(Element::leaf("Id", id))
            .with(Element::leaf("S3CanonicalUserId", canonical_user_id(id)))
            .with(Element::leaf("Comment", resource.config.text_of("Comment").unwrap_or("")))
    },
};
