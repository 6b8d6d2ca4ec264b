//! Distributions and their invalidations: create (with tags), get, get
//! config, list, update, delete; the containers CloudFront always returns;
//! the checks that keep what is stored servable.

use super::api::{
    ACCOUNT, Api, ApiError, ApiReply, ApiRequest, ApiSettings, Created, VERSION_PREFIX, check_if_match, check_well_formed, iso_time,
    new_etag, ordered, page, random_id,
};
use super::functions;
use super::origins;
use super::policies;
use super::resources;
use super::store::{DistributionRecord, InvalidationRecord, Resource, State};
use super::xml::{Element, list};
use crate::config::AllowedMethods;
use crate::routing::{GeoRestriction, ViewerProtocol};

/// The origin statuses a custom error response may replace.
const ERROR_CODES: [&str; 11] = ["400", "403", "404", "405", "414", "416", "500", "501", "502", "503", "504"];

/// CloudFront's default quotas: distributions per account, and per
/// distribution cache behaviors (the default one not counted), alternate
/// domain names, origins and trusted key groups.
const MAX_DISTRIBUTIONS: usize = 200;
const MAX_CACHE_BEHAVIORS: usize = 25;
const MAX_ALIASES: usize = 100;
const MAX_ORIGINS: usize = 25;
const MAX_KEY_GROUPS: usize = 4;

/// CloudFront's limit on paths in one invalidation.
const MAX_INVALIDATION_PATHS: usize = 3000;

pub fn arn(id: &str) -> String {
    format!("arn:aws:cloudfront::{ACCOUNT}:distribution/{id}")
}

impl Created for DistributionRecord {
    fn created(&self) -> &str {
        &self.resource.created
    }
}

/// The bucket an S3 origin's DomainName names: `BUCKET.s3.amazonaws.com`,
/// `BUCKET.s3.REGION.amazonaws.com` or `BUCKET.s3-REGION.amazonaws.com`.
pub fn s3_bucket(domain_name: &str) -> Option<&str> {
    let domain = domain_name.strip_suffix(".amazonaws.com")?;
    let bucket = match domain.strip_suffix(".s3") {
        Some(bucket) => bucket,
        None => {
            let (rest, last) = domain.rsplit_once('.')?;
            let region = |name: &str| !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            match last.strip_prefix("s3-") {
                Some(legacy_region) if region(legacy_region) => rest,
                _ if region(last) => rest.strip_suffix(".s3")?,
                _ => return None,
            }
        }
    };
    let valid = !bucket.is_empty()
        && bucket.len() <= 63
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    valid.then_some(bucket)
}

/// The key group ids a distribution's behaviors trust.
/// `distribution ID` of the first distribution whose config `uses` something.
pub fn first_using(state: &State, uses: impl Fn(&Element) -> bool) -> Option<String> {
    state
        .distributions
        .iter()
        .find(|(_, distribution)| uses(&distribution.resource.config))
        .map(|(id, _)| format!("distribution {id}"))
}

pub fn key_group_ids(config: &Element) -> impl Iterator<Item = &str> {
    behaviors(config)
        .filter(|behavior| behavior.at(&["TrustedKeyGroups", "Enabled"]).is_some_and(|e| e.text == "true"))
        .flat_map(|behavior| behavior.child("TrustedKeyGroups").into_iter().flat_map(Element::items))
        .map(|group| group.text.as_str())
}

/// The cache behaviors in order, the default last.
pub fn behaviors(config: &Element) -> impl Iterator<Item = &Element> {
    config
        .child("CacheBehaviors")
        .into_iter()
        .flat_map(Element::items)
        .chain(config.child("DefaultCacheBehavior"))
}

/// Adds the containers CloudFront always returns (empty), and its
/// defaults for fields the client left out; what it sent stays as it sent it.
fn fill_containers(config: &mut Element) {
    for name in ["Aliases", "CacheBehaviors", "CustomErrorResponses", "OriginGroups", "Origins"] {
        config.ensure(list(name, Vec::new()));
    }
    for (name, default) in [
        ("DefaultRootObject", ""),
        ("PriceClass", "PriceClass_All"),
        ("HttpVersion", "http2"),
        ("IsIPV6Enabled", "true"),
        ("WebACLId", ""),
        ("Staging", "false"),
        ("ContinuousDeploymentPolicyId", ""),
    ] {
        config.ensure(Element::leaf(name, default));
    }
    config.ensure(
        Element::new("Logging")
            .with(Element::leaf("Enabled", "false"))
            .with(Element::leaf("IncludeCookies", "false"))
            .with(Element::leaf("Bucket", ""))
            .with(Element::leaf("Prefix", "")),
    );
    if let Some(origins) = config.child_mut("Origins").and_then(|o| o.child_mut("Items")) {
        for origin in &mut origins.children {
            origin.ensure(list("CustomHeaders", Vec::new()));
            origin.ensure(Element::leaf("ConnectionAttempts", "3"));
            origin.ensure(Element::leaf("ConnectionTimeout", "10"));
            origin.ensure(Element::new("OriginShield").with(Element::leaf("Enabled", "false")));
            origin.ensure(Element::leaf("OriginAccessControlId", ""));
            if let Some(custom) = origin.child_mut("CustomOriginConfig") {
                custom.ensure(Element::leaf("OriginReadTimeout", "30"));
                custom.ensure(Element::leaf("OriginKeepaliveTimeout", "5"));
            }
        }
    }
    config.ensure(Element::new("Restrictions")).ensure(
        Element::new("GeoRestriction")
            .with(Element::leaf("RestrictionType", "none"))
            .with(Element::leaf("Quantity", "0")),
    );
    config.ensure(
        Element::new("ViewerCertificate")
            .with(Element::leaf("CloudFrontDefaultCertificate", "true"))
            .with(Element::leaf("MinimumProtocolVersion", "TLSv1"))
            .with(Element::leaf("CertificateSource", "cloudfront")),
    );
    let get_head = || vec![Element::leaf("Method", "GET"), Element::leaf("Method", "HEAD")];
    let fill_behavior = |behavior: &mut Element| {
        let allowed = behavior.ensure(list("AllowedMethods", get_head()));
        allowed.ensure(list("CachedMethods", get_head()));
        behavior.ensure(list("FunctionAssociations", Vec::new()));
        for (name, default) in [("Compress", "false"), ("SmoothStreaming", "false"), ("FieldLevelEncryptionId", "")] {
            behavior.ensure(Element::leaf(name, default));
        }
        behavior.ensure(list("LambdaFunctionAssociations", Vec::new()));
        for signers in ["TrustedKeyGroups", "TrustedSigners"] {
            if behavior.child(signers).is_none() {
                behavior.children.push(
                    Element::new(signers)
                        .with(Element::leaf("Enabled", "false"))
                        .with(Element::leaf("Quantity", "0")),
                );
            }
        }
    };
    if let Some(default) = config.child_mut("DefaultCacheBehavior") {
        fill_behavior(default);
    }
    if let Some(items) = config.child_mut("CacheBehaviors").and_then(|c| c.child_mut("Items")) {
        items.children.iter_mut().for_each(fill_behavior);
    }
}

/// A behavior's `AllowedMethods`, which CloudFront takes as one of three
/// sets only (absent: GET and HEAD); `None` for any other.
pub fn allowed_methods(behavior: &Element) -> Option<AllowedMethods> {
    let Some(allowed) = behavior.child("AllowedMethods") else {
        return Some(AllowedMethods::GetHead);
    };
    let mut methods: Vec<&str> = allowed.items().map(|method| method.text.as_str()).collect();
    methods.sort_unstable();
    match methods.join(",").as_str() {
        "GET,HEAD" => Some(AllowedMethods::GetHead),
        "GET,HEAD,OPTIONS" => Some(AllowedMethods::GetHeadOptions),
        "DELETE,GET,HEAD,OPTIONS,PATCH,POST,PUT" => Some(AllowedMethods::All),
        _ => None,
    }
}

/// A behavior's `ViewerProtocolPolicy`; `None` for a value CloudFront refuses.
pub fn viewer_protocol(behavior: &Element) -> Option<ViewerProtocol> {
    match behavior.text_of("ViewerProtocolPolicy") {
        None | Some("allow-all") => Some(ViewerProtocol::AllowAll),
        Some("redirect-to-https") => Some(ViewerProtocol::RedirectToHttps),
        Some("https-only") => Some(ViewerProtocol::HttpsOnly),
        Some(_) => None,
    }
}

/// The distribution's `Restrictions`; `None` for one CloudFront refuses: a
/// type other than none, whitelist or blacklist, a location that is not a
/// two-letter upper-case country code, locations with `none` or none with
/// a list.
pub fn geo_restriction(config: &Element) -> Option<GeoRestriction> {
    let Some(geo) = config.at(&["Restrictions", "GeoRestriction"]) else {
        return Some(GeoRestriction::Everywhere);
    };
    let codes: Vec<String> = geo.items().map(|location| location.text.clone()).collect();
    let country = |code: &String| code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase());
    if !codes.iter().all(country) {
        return None;
    }
    match (geo.text_of("RestrictionType")?, codes.is_empty()) {
        ("none", true) => Some(GeoRestriction::Everywhere),
        ("whitelist", false) => Some(GeoRestriction::Only(codes)),
        ("blacklist", false) => Some(GeoRestriction::Except(codes)),
        _ => None,
    }
}

/// Refuses a configuration keyfront could not serve as CloudFront would.
fn check_config(config: &Element, state: &State, own_id: Option<&str>, settings: &ApiSettings) -> Result<(), ApiError> {
    for name in ["CallerReference", "Origins", "DefaultCacheBehavior", "Comment", "Enabled"] {
        if config.child(name).is_none() {
            return Err(ApiError::invalid(format!("DistributionConfig needs {name}")));
        }
    }
    let origins: Vec<&Element> = config.child("Origins").into_iter().flat_map(Element::items).collect();
    if origins.is_empty() {
        return Err(ApiError::invalid("a distribution needs at least one origin"));
    }
    let over = |count: usize, most: usize, code: &'static str, what: &str| {
        (count > most).then(|| ApiError::new(400, code, format!("a distribution has at most {most} {what}; this one has {count}")))
    };
    let cache_behaviors = config.child("CacheBehaviors").into_iter().flat_map(Element::items).count();
    let mut key_groups: Vec<&str> = key_group_ids(config).collect();
    key_groups.sort_unstable();
    key_groups.dedup();
    let quotas = [
        over(cache_behaviors, MAX_CACHE_BEHAVIORS, "TooManyCacheBehaviors", "cache behaviors"),
        over(
            aliases(config).len(),
            MAX_ALIASES,
            "TooManyDistributionCNAMEs",
            "alternate domain names",
        ),
        over(origins.len(), MAX_ORIGINS, "TooManyOrigins", "origins"),
        over(
            key_groups.len(),
            MAX_KEY_GROUPS,
            "TooManyKeyGroupsAssociatedToDistribution",
            "trusted key groups",
        ),
    ];
    if let Some(refusal) = quotas.into_iter().flatten().next() {
        return Err(refusal);
    }
    if let Some(alias) = aliases(config).into_iter().find(|alias| !valid_alias(alias)) {
        return Err(ApiError::new(
            400,
            "InvalidArgument",
            format!("the alternate domain name {alias:?} is not a DNS name"),
        ));
    }
    for origin in &origins {
        origins::check(origin, &settings.custom_origin_networks)?;
        let origin_path = origin.text_of("OriginPath").unwrap_or("");
        if !origin_path.is_empty() && !canonical_prefix(origin_path) {
            return Err(ApiError::invalid(format!(
                "origin {:?}: OriginPath {origin_path:?} must start with / and name a folder canonically (no trailing /, no . or .. segments, no doubled /)",
                origin.text_of("Id").unwrap_or("")
            )));
        }
        if let Some(identity) = origin
            .at(&["S3OriginConfig", "OriginAccessIdentity"])
            .map(|element| element.text.as_str())
            .filter(|named| !named.is_empty())
            && !named_identity(identity).is_some_and(|id| state.origin_access_identities.contains_key(id))
        {
            return Err(ApiError::new(
                400,
                "InvalidOriginAccessIdentity",
                "The origin access identity is not valid or doesn't exist.",
            ));
        }
        if let Some(oac) = origin.text_of("OriginAccessControlId").filter(|id| !id.is_empty())
            && !state.origin_access_controls.contains_key(oac)
        {
            return Err(ApiError::new(
                404,
                "NoSuchOriginAccessControl",
                format!("no origin access control {oac}"),
            ));
        }
    }
    origins::check_groups(config)?;
    if geo_restriction(config).is_none() {
        return Err(ApiError::invalid(
            "GeoRestriction: RestrictionType must be none (with no Location) or whitelist or blacklist with at least one Location, each an ISO 3166-1 alpha-2 country code such as US",
        ));
    }
    for behavior in behaviors(config) {
        if viewer_protocol(behavior).is_none() {
            return Err(ApiError::invalid(
                "ViewerProtocolPolicy must be allow-all, https-only or redirect-to-https",
            ));
        }
        if allowed_methods(behavior).is_none() {
            return Err(ApiError::invalid(
                "AllowedMethods must be GET,HEAD or GET,HEAD,OPTIONS or GET,HEAD,OPTIONS,PUT,POST,PATCH,DELETE",
            ));
        }
        for policy in [
            &policies::CACHE_POLICIES,
            &policies::ORIGIN_REQUEST_POLICIES,
            &policies::RESPONSE_HEADERS_POLICIES,
        ] {
            policy.check_named(state, behavior)?;
        }
        functions::viewer_functions(behavior, state)?;
        let target = behavior.text_of("TargetOriginId").unwrap_or("");
        if !origins.iter().any(|origin| origin.text_of("Id") == Some(target)) && origins::group(config, target).is_none() {
            return Err(ApiError::new(
                404,
                "NoSuchOrigin",
                "One or more of your origins or origin groups do not exist.",
            ));
        }
    }
    for response in config.child("CustomErrorResponses").into_iter().flat_map(Element::items) {
        let code = response.text_of("ErrorCode").unwrap_or("");
        if !ERROR_CODES.contains(&code) {
            return Err(ApiError::new(
                400,
                "InvalidErrorCode",
                format!("CustomErrorResponses: ErrorCode {code:?}"),
            ));
        }
        if let Some(ttl) = response.text_of("ErrorCachingMinTTL")
            && ttl.parse::<u32>().is_err()
        {
            return Err(ApiError::invalid(format!(
                "CustomErrorResponses: ErrorCachingMinTTL {ttl:?} is not a number of seconds"
            )));
        }
        let page = response.text_of("ResponsePagePath").unwrap_or("");
        let answer = response.text_of("ResponseCode").unwrap_or("");
        if !page.is_empty() && !page.starts_with('/') {
            return Err(ApiError::invalid(format!("ResponsePagePath {page:?} does not start with /")));
        }
        if page.is_empty() != answer.is_empty()
            || !(answer.is_empty() || answer.parse::<u16>().is_ok_and(|code| (200..600).contains(&code)))
        {
            return Err(ApiError::new(
                400,
                "InvalidResponseCode",
                "ResponsePagePath and ResponseCode go together",
            ));
        }
    }
    if let Some(group) = key_group_ids(config).find(|group| !state.key_groups.contains_key(*group)) {
        return Err(ApiError::new(400, "TrustedKeyGroupDoesNotExist", format!("no key group {group}")));
    }
    let mine = aliases(config);
    for (id, other) in &state.distributions {
        let mut names = aliases(&other.resource.config);
        names.push(other.domain_name.to_ascii_lowercase());
        if Some(id.as_str()) != own_id
            && let Some(taken) = names.into_iter().find(|name| mine.contains(name))
        {
            return Err(ApiError::new(
                409,
                "CNAMEAlreadyExists",
                format!("{taken} is an alias of distribution {id}"),
            ));
        }
    }
    Ok(())
}

/// The identity id an origin's `OriginAccessIdentity` names.
fn named_identity(named: &str) -> Option<&str> {
    named.strip_prefix(resources::IDENTITY_PREFIX)
}

/// The alternate domain names of a distribution's config, lower case.
fn aliases(config: &Element) -> Vec<String> {
    config
        .child("Aliases")
        .into_iter()
        .flat_map(Element::items)
        .map(|alias| alias.text.to_ascii_lowercase())
        .collect()
}

/// Whether `alias` is a DNS name (its first label may be `*`), with a port
/// or not (a test reaches a local edge on its port).
fn valid_alias(alias: &str) -> bool {
    let name = match alias.rsplit_once(':') {
        Some((name, port)) if port.parse::<u16>().is_ok() => name,
        _ => alias,
    };
    let name = name.strip_prefix("*.").unwrap_or(name);
    (1..=253).contains(&name.len())
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Whether `origin_path` is a canonical folder: `/a/b`, as a request path
/// would spell it, with no trailing `/`.
fn canonical_prefix(origin_path: &str) -> bool {
    origin_path.len() > 1
        && !origin_path.ends_with('/')
        && crate::request::canonical_path(origin_path).is_ok_and(|canonical| canonical == origin_path)
}

fn status(record: &DistributionRecord, now: u64) -> &'static str {
    if now >= record.deployed_at { "Deployed" } else { "InProgress" }
}

/// The key groups a distribution trusts, with their key ids.
fn active_key_groups(config: &Element, state: &State) -> Element {
    let mut groups: Vec<&str> = key_group_ids(config).collect();
    groups.sort_unstable();
    groups.dedup();
    let members = groups
        .iter()
        .map(|group| {
            let keys = state
                .key_groups
                .get(*group)
                .into_iter()
                .flat_map(|g| g.config.items())
                .map(|key| Element::leaf("KeyPairId", key.text.clone()))
                .collect();
            Element::new("KeyGroup")
                .with(Element::leaf("KeyGroupId", *group))
                .with(list("KeyPairIds", keys))
        })
        .collect::<Vec<_>>();
    let mut element = list("ActiveTrustedKeyGroups", members);
    element
        .children
        .insert(0, Element::leaf("Enabled", (!groups.is_empty()).to_string()));
    element
}

fn distribution_element(id: &str, record: &DistributionRecord, state: &State, status: &str) -> Element {
    let config = &record.resource.config;
    let mut signers = list("ActiveTrustedSigners", Vec::new());
    signers.children.insert(0, Element::leaf("Enabled", "false"));
    Element::new("Distribution")
        .with(Element::leaf("Id", id))
        .with(Element::leaf("ARN", arn(id)))
        .with(Element::leaf("Status", status))
        .with(Element::leaf("LastModifiedTime", record.resource.modified.clone()))
        .with(Element::leaf("InProgressInvalidationBatches", "0"))
        .with(Element::leaf("DomainName", record.domain_name.clone()))
        .with(signers)
        .with(active_key_groups(config, state))
        .with(config.clone())
}

fn summary(id: &str, record: &DistributionRecord, now: u64) -> Element {
    let config = &record.resource.config;
    let mut summary = Element::new("DistributionSummary")
        .with(Element::leaf("Id", id))
        .with(Element::leaf("ARN", arn(id)))
        .with(Element::leaf("ETag", record.resource.etag.clone()))
        .with(Element::leaf("Status", status(record, now)))
        .with(Element::leaf("LastModifiedTime", record.resource.modified.clone()))
        .with(Element::leaf("DomainName", record.domain_name.clone()));
    let defaults = [
        ("Aliases", None),
        ("Origins", None),
        ("OriginGroups", None),
        ("DefaultCacheBehavior", None),
        ("CacheBehaviors", None),
        ("CustomErrorResponses", None),
        ("Comment", Some("")),
        ("PriceClass", Some("PriceClass_All")),
        ("Enabled", Some("true")),
        ("ViewerCertificate", None),
        ("Restrictions", None),
        ("WebACLId", Some("")),
        ("HttpVersion", Some("http2")),
        ("IsIPV6Enabled", Some("true")),
        ("Staging", Some("false")),
    ];
    for (name, default) in defaults {
        match (config.child(name), default) {
            (Some(element), _) => summary.children.push(element.clone()),
            (None, Some(text)) => summary.children.push(Element::leaf(name, text)),
            (None, None) => {}
        }
    }
    summary
}

pub fn no_such_distribution() -> ApiError {
    ApiError::new(404, "NoSuchDistribution", "The specified distribution does not exist.")
}

/// The distribution operations but CreateInvalidation.
pub fn handle(api: &Api, request: &ApiRequest<'_>, segments: &[&str]) -> Result<ApiReply, ApiError> {
    match (request.method, segments) {
        ("POST", ["distribution"]) => create(api, request),
        ("GET", ["distribution"]) => {
            let summaries = api.store.read(|state| {
                ordered(&state.distributions)
                    .into_iter()
                    .map(|(id, record)| (id.clone(), summary(id, record, request.now)))
                    .collect()
            });
            Ok(ApiReply::ok(page("DistributionList", summaries, request, true)?))
        }
        ("GET", ["distribution", id]) => api.store.read(|state| {
            let record = state.distributions.get(*id).ok_or_else(no_such_distribution)?;
            let element = distribution_element(id, record, state, status(record, request.now));
            Ok(ApiReply::ok(element).with_etag(&record.resource.etag))
        }),
        ("GET", ["distribution", id, "config"]) => api.store.read(|state| {
            let record = state.distributions.get(*id).ok_or_else(no_such_distribution)?;
            Ok(ApiReply::ok(record.resource.config.clone()).with_etag(&record.resource.etag))
        }),
        ("PUT", ["distribution", id, "config"]) => update(api, id, request),
        ("DELETE", ["distribution", id]) => api.store.update(|state| {
            let record = state.distributions.get(*id).ok_or_else(no_such_distribution)?;
            check_if_match(request.if_match, &record.resource.etag)?;
            if record.resource.config.text_of("Enabled") != Some("false") || status(record, request.now) != "Deployed" {
                return Err(ApiError::new(
                    409,
                    "DistributionNotDisabled",
                    "disable the distribution, and wait until it is deployed, first",
                ));
            }
            state.distributions.remove(*id);
            state.invalidations.remove(*id);
            state.tags.remove(&arn(id));
            state.monitoring_subscriptions.remove(*id);
            Ok(ApiReply::no_content())
        }),
        ("GET", ["distribution", id, "invalidation"]) => {
            let summaries = api.store.read(|state| {
                if !state.distributions.contains_key(*id) {
                    return Err(no_such_distribution());
                }
                Ok(state
                    .invalidations
                    .get(*id)
                    .into_iter()
                    .flatten()
                    .rev()
                    .map(|invalidation| {
                        let summary = Element::new("InvalidationSummary")
                            .with(Element::leaf("Id", invalidation.id.clone()))
                            .with(Element::leaf("CreateTime", invalidation.created.clone()))
                            .with(Element::leaf("Status", "Completed"));
                        (invalidation.id.clone(), summary)
                    })
                    .collect())
            })?;
            Ok(ApiReply::ok(page("InvalidationList", summaries, request, true)?))
        }
        ("GET", ["distribution", id, "invalidation", invalidation]) => api.store.read(|state| {
            if !state.distributions.contains_key(*id) {
                return Err(no_such_distribution());
            }
            let found = state
                .invalidations
                .get(*id)
                .and_then(|all| all.iter().find(|i| i.id == *invalidation))
                .ok_or_else(|| ApiError::new(404, "NoSuchInvalidation", format!("no invalidation {invalidation}")))?;
            Ok(ApiReply::ok(invalidation_element(found, "Completed")))
        }),
        _ => Err(ApiError::invalid(format!(
            "keyfront's control plane has no operation {} /2020-05-31/{}",
            request.method,
            segments.join("/")
        ))),
    }
}

fn create(api: &Api, request: &ApiRequest<'_>) -> Result<ApiReply, ApiError> {
    let (mut config, tags) = if request.query.contains_key("WithTags") {
        let mut with_tags = Element::parse(request.body, "DistributionConfigWithTags")?;
        let config = take_child(&mut with_tags, "DistributionConfig").ok_or_else(|| ApiError::invalid("no DistributionConfig"))?;
        let tags = with_tags
            .child("Tags")
            .into_iter()
            .flat_map(Element::items)
            .map(|tag| {
                (
                    tag.text_of("Key").unwrap_or("").to_owned(),
                    tag.text_of("Value").unwrap_or("").to_owned(),
                )
            })
            .collect();
        (config, tags)
    } else {
        (Element::parse(request.body, "DistributionConfig")?, Vec::new())
    };
    check_well_formed(&config)?;
    fill_containers(&mut config);
    let stamp = iso_time(request.now);
    api.store.update(|state| {
        let caller_reference = config.text_of("CallerReference");
        if let Some((id, record)) = state
            .distributions
            .iter()
            .find(|(_, record)| record.resource.config.text_of("CallerReference") == caller_reference)
        {
            return if record.resource.config == config {
                let element = distribution_element(id, record, state, status(record, request.now));
                Ok(ApiReply::created(element, Some(&record.resource.etag), location(request, id)))
            } else {
                Err(ApiError::new(
                    409,
                    "DistributionAlreadyExists",
                    format!(
                        "The caller reference that you are using to create a distribution is associated with another distribution. Already exists: {id}"
                    ),
                ))
            };
        }
        check_config(&config, state, None, &api.settings)?;
        if state.distributions.len() >= MAX_DISTRIBUTIONS {
            return Err(ApiError::new(
                400,
                "TooManyDistributions",
                format!("an account holds at most {MAX_DISTRIBUTIONS} distributions"),
            ));
        }
        let id = random_id('E');
        let taken: Vec<&str> = state.distributions.values().map(|d| d.domain_name.as_str()).collect();
        let domain_name = match api.settings.domain_pool.iter().find(|name| !taken.contains(&name.as_str())) {
            Some(name) => name.clone(),
            None => format!("{}.{}", id.to_ascii_lowercase(), api.settings.domain_suffix),
        };
        let record = DistributionRecord {
            resource: Resource {
                etag: new_etag(),
                created: stamp.clone(),
                modified: stamp,
                config,
            },
            domain_name,
            deployed_at: request.now + api.settings.deploy_delay_ms,
        };
        let element = distribution_element(&id, &record, state, "InProgress");
        let reply = ApiReply::created(element, Some(&record.resource.etag), location(request, &id));
        if !tags.is_empty() {
            state.tags.insert(arn(&id), tags);
        }
        state.distributions.insert(id, record);
        Ok(reply)
    })
}

fn update(api: &Api, id: &str, request: &ApiRequest<'_>) -> Result<ApiReply, ApiError> {
    let mut config = Element::parse(request.body, "DistributionConfig")?;
    check_well_formed(&config)?;
    fill_containers(&mut config);
    let stamp = iso_time(request.now);
    api.store.update(|state| {
        let record = state.distributions.get(id).ok_or_else(no_such_distribution)?;
        check_if_match(request.if_match, &record.resource.etag)?;
        if record.resource.config.text_of("CallerReference") != config.text_of("CallerReference") {
            return Err(ApiError::new(
                400,
                "IllegalUpdate",
                "the CallerReference of a distribution cannot change",
            ));
        }
        check_config(&config, state, Some(id), &api.settings)?;
        let record = state.distributions.get_mut(id).expect("found above");
        record.resource.config = config;
        record.resource.etag = new_etag();
        record.resource.modified = stamp;
        record.deployed_at = request.now + api.settings.deploy_delay_ms;
        let (record, state) = (record.clone(), &*state);
        Ok(ApiReply::ok(distribution_element(id, &record, state, "InProgress")).with_etag(&record.resource.etag))
    })
}

fn take_child(element: &mut Element, name: &str) -> Option<Element> {
    let index = element.children.iter().position(|child| child.name == name)?;
    Some(element.children.remove(index))
}

fn location(request: &ApiRequest<'_>, id: &str) -> String {
    format!("{}{VERSION_PREFIX}distribution/{id}", request.base_url)
}

fn invalidation_element(invalidation: &InvalidationRecord, status: &str) -> Element {
    Element::new("Invalidation")
        .with(Element::leaf("Id", invalidation.id.clone()))
        .with(Element::leaf("Status", status))
        .with(Element::leaf("CreateTime", invalidation.created.clone()))
        .with(invalidation.batch.clone())
}

/// CreateInvalidation: the answer and the paths to purge.
pub fn create_invalidation(api: &Api, id: &str, request: &ApiRequest<'_>) -> Result<(ApiReply, Vec<String>), ApiError> {
    let batch = Element::parse(request.body, "InvalidationBatch")?;
    check_well_formed(&batch)?;
    let paths: Vec<String> = batch
        .child("Paths")
        .into_iter()
        .flat_map(Element::items)
        .map(|p| p.text.clone())
        .collect();
    if paths.is_empty() || paths.len() > MAX_INVALIDATION_PATHS {
        return Err(ApiError::invalid(format!(
            "an invalidation lists 1 to {MAX_INVALIDATION_PATHS} paths"
        )));
    }
    if let Some(bad) = paths.iter().find(|path| !path.starts_with('/') && *path != "*") {
        return Err(ApiError::invalid(format!("the path {bad:?} does not start with /")));
    }
    let caller_reference = batch
        .text_of("CallerReference")
        .ok_or_else(|| ApiError::invalid("InvalidationBatch needs CallerReference"))?
        .to_owned();
    let reply = api.store.update(|state| {
        if !state.distributions.contains_key(id) {
            return Err(no_such_distribution());
        }
        let all = state.invalidations.entry(id.to_owned()).or_default();
        if let Some(existing) = all.iter().find(|i| i.batch.text_of("CallerReference") == Some(&caller_reference)) {
            return if existing.batch == batch {
                Ok(ApiReply::created(
                    invalidation_element(existing, "Completed"),
                    None,
                    invalidation_location(request, id, &existing.id),
                ))
            } else {
                Err(ApiError::new(
                    409,
                    "InvalidationBatchAlreadyExists",
                    "the CallerReference was used with other paths",
                ))
            };
        }
        let invalidation = InvalidationRecord {
            id: random_id('I'),
            created: iso_time(request.now),
            batch: batch.clone(),
        };
        let reply = ApiReply::created(
            invalidation_element(&invalidation, "InProgress"),
            None,
            invalidation_location(request, id, &invalidation.id),
        );
        all.push(invalidation);
        Ok(reply)
    })?;
    let paths = paths
        .into_iter()
        .map(|path| if path == "*" { "/*".to_owned() } else { path })
        .collect();
    Ok((reply, paths))
}

fn invalidation_location(request: &ApiRequest<'_>, distribution: &str, id: &str) -> String {
    format!("{}{VERSION_PREFIX}distribution/{distribution}/invalidation/{id}", request.base_url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_domain_names_give_their_bucket_and_nothing_else_does() {
        for (domain, bucket) in [
            ("media.s3.amazonaws.com", Some("media")),
            ("media.s3.eu-west-1.amazonaws.com", Some("media")),
            ("my.dotted.bucket.s3.us-east-1.amazonaws.com", Some("my.dotted.bucket")),
            ("media.s3-eu-west-1.amazonaws.com", Some("media")),
            ("media.example.com", None),
            ("s3.amazonaws.com", None),
            ("MEDIA.s3.amazonaws.com", None),
            ("media.s3.amazonaws.com.evil.net", None),
            ("media.s3.eu-west-1.evil.amazonaws.com", None),
        ] {
            assert_eq!(s3_bucket(domain), bucket, "{domain}");
        }
    }

    #[test]
    fn missing_containers_are_added_and_present_ones_kept() {
        let mut config = Element::parse(
            b"<DistributionConfig><DefaultCacheBehavior><TargetOriginId>o</TargetOriginId><AllowedMethods><Quantity>3</Quantity><Items><Method>GET</Method><Method>HEAD</Method><Method>OPTIONS</Method></Items></AllowedMethods></DefaultCacheBehavior><Aliases><Quantity>1</Quantity><Items><CNAME>a.example</CNAME></Items></Aliases></DistributionConfig>",
            "DistributionConfig",
        )
        .unwrap();
        fill_containers(&mut config);
        assert_eq!(config.at(&["Aliases", "Quantity"]).unwrap().text, "1", "kept as sent");
        assert_eq!(config.at(&["OriginGroups", "Quantity"]).unwrap().text, "0");
        let default = config.child("DefaultCacheBehavior").unwrap();
        assert_eq!(default.at(&["AllowedMethods", "Quantity"]).unwrap().text, "3");
        assert_eq!(default.at(&["AllowedMethods", "CachedMethods", "Quantity"]).unwrap().text, "2");
        assert_eq!(default.at(&["TrustedSigners", "Enabled"]).unwrap().text, "false");
        assert_eq!(
            config.at(&["Restrictions", "GeoRestriction", "RestrictionType"]).unwrap().text,
            "none"
        );
    }
}
