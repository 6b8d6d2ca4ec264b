//! The config file compiled into what requests are served with: its keys
//! parsed, its origins built, its behaviors bound to both. A key that does
//! not parse, or an id naming two keys, is the config's error, named by
//! field and value like every other.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::{Behavior, KeyGroups, ViewerFunctions, ViewerProtocol};
use crate::auth::{PublicKey, TrustedKeys};
use crate::config::{BehaviorSettings, Config, ConfigError, KeyGroupSettings};
use crate::origin::Origin;
use crate::request::{RequestValues, canonical_pattern};

/// The config file's part of the routing table, and the origins it names.
pub struct FileTable {
    /// The default distribution's behaviors, in the file's order.
    pub behaviors: Vec<Behavior>,
    pub key_groups: KeyGroups,
    /// Every origin the file defines, by name.
    pub origins: BTreeMap<String, Arc<Origin>>,
}

impl FileTable {
    /// Compiles `config`'s keys, origins and behaviors.
    pub fn compile(config: &Config) -> Result<FileTable, ConfigError> {
        let invalid = |field: String, value: &str, reason: String| ConfigError::Invalid {
            file: config.source.clone(),
            field,
            value: value.to_owned(),
            reason,
        };
        let key_groups = key_groups(&config.key_groups, invalid)?;
        let origins: BTreeMap<String, Arc<Origin>> = config
            .origins
            .iter()
            .map(|(name, settings)| (name.clone(), Arc::new(Origin::from_settings(settings))))
            .collect();
        let behaviors = config
            .behaviors
            .iter()
            .map(|settings| behavior(settings, &origins, &key_groups))
            .collect();
        Ok(FileTable {
            behaviors,
            key_groups,
            origins,
        })
    }
}

fn key_groups(groups: &KeyGroupSettings, invalid: impl Fn(String, &str, String) -> ConfigError) -> Result<KeyGroups, ConfigError> {
    let mut parsed = HashMap::new();
    let mut seen: HashMap<&str, [u8; 32]> = HashMap::new();
    for (name, keys) in groups {
        let mut group = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let public = PublicKey::from_pem(&key.pem)
                .map_err(|e| invalid(format!("key_groups.{name}[{i}].public_key"), &key.file, e.to_string()))?;
            if let Some(other) = seen.insert(&key.id, *public.fingerprint())
                && other != *public.fingerprint()
            {
                let reason = "this id names another key elsewhere".to_owned();
                return Err(invalid(format!("key_groups.{name}[{i}].id"), &key.id, reason));
            }
            group.push((key.id.clone(), public));
        }
        parsed.insert(name.clone(), group);
    }
    Ok(parsed)
}

/// `settings` bound to their origin and keys (the config checked both exist).
fn behavior(settings: &BehaviorSettings, origins: &BTreeMap<String, Arc<Origin>>, key_groups: &KeyGroups) -> Behavior {
    let trusted = settings
        .trusted_key_groups
        .iter()
        .filter_map(|group| key_groups.get(group))
        .flatten()
        .cloned();
    Behavior {
        // Matched against canonical paths, so spelled like them.
        path_pattern: canonical_pattern(&settings.path_pattern),
        origin_name: settings.origin.as_str().into(),
        origin: origins[&settings.origin].clone(),
        trusted_keys: TrustedKeys::new(trusted),
        trusted_key_groups: settings.trusted_key_groups.clone(),
        allowed_methods: settings.allowed_methods,
        ttl: settings.ttl,
        forward_metadata_headers: settings.forward_metadata_headers,
        slice_size: settings.slice_size,
        values: RequestValues::default(),
        viewer_protocol: ViewerProtocol::AllowAll,
        cors: settings.cors.clone(),
        response_headers: None,
        functions: ViewerFunctions::default(),
        failover: None,
        error_caching: Arc::from([]),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::auth::{KeyAlgorithm, PrivateKey};

    const CONFIG: &str = r#"
listen: 127.0.0.1:8080
key_groups:
  main:
    - id: K1
      public_key: one.pem
  other:
    - id: K2
      public_key: two.pem
origins:
  s3: {type: s3, endpoint: "https://s3.eu-west-1.amazonaws.com", bucket: media, region: eu-west-1, access_key_id: a, secret_access_key: s}
behaviors:
  - path_pattern: public/%7Ea*
    origin: s3
  - path_pattern: "*"
    origin: s3
    trusted_key_groups: [main, other]
"#;

    /// `CONFIG` with its two key files written as `one` and `two` say.
    fn compiled(one: &str, two: &str) -> Result<FileTable, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("one.pem"), one).unwrap();
        std::fs::write(dir.path().join("two.pem"), two).unwrap();
        let config = Config::parse(CONFIG, &dir.path().join("k.yaml"))?;
        FileTable::compile(&config)
    }

    fn pem() -> String {
        PrivateKey::generate(KeyAlgorithm::Ecdsa).public_key().to_pem()
    }

    #[test]
    fn behaviors_are_bound_to_their_origin_and_keys() {
        let table = compiled(&pem(), &pem()).unwrap();
        let [public, signed] = &table.behaviors[..] else {
            panic!("two behaviors")
        };
        assert_eq!(public.path_pattern, "/public/~a*", "spelled as canonical paths are");
        assert!(public.matches("/public/~abc") && !public.matches("/publicx"));
        assert!(public.trusted_keys.is_empty());
        assert!(signed.trusted_keys.get("K1").is_some() && signed.trusted_keys.get("K2").is_some());
        assert_eq!(signed.origin.host, "media.s3.eu-west-1.amazonaws.com");
        assert!(Arc::ptr_eq(&public.origin, &table.origins["s3"]), "one origin, shared");
    }

    #[test]
    fn a_key_that_does_not_parse_is_named() {
        let message = compiled(&pem(), "not a key").err().unwrap().to_string();
        assert!(
            message.contains("key_groups.other[0].public_key: \"two.pem\": not a PEM key"),
            "{message}"
        );
        assert!(message.contains(&Path::new("k.yaml").display().to_string()), "{message}");
    }

    #[test]
    fn one_id_for_two_keys_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let text = CONFIG.replace("id: K2", "id: K1");
        std::fs::write(dir.path().join("one.pem"), pem()).unwrap();
        std::fs::write(dir.path().join("two.pem"), pem()).unwrap();
        let config = Config::parse(&text, &dir.path().join("k.yaml")).unwrap();
        let message = FileTable::compile(&config).err().unwrap().to_string();
        assert!(
            message.contains("key_groups.other[0].id: \"K1\": this id names another key elsewhere"),
            "{message}"
        );
        let same = pem();
        std::fs::write(dir.path().join("two.pem"), &same).unwrap();
        std::fs::write(dir.path().join("one.pem"), &same).unwrap();
        let config = Config::parse(&text, &dir.path().join("k.yaml")).unwrap();
        assert!(FileTable::compile(&config).is_ok(), "one id for one key in two groups is fine");
    }
}
