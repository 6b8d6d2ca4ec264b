use super::*;

/// A key file: the config reads it, `routing` parses it.
fn write_key(dir: &Path) {
    std::fs::write(dir.join("public.pem"), "-----BEGIN PUBLIC KEY-----\n(read, not parsed here)\n").unwrap();
}

const GOOD: &str = r#"
listen: 127.0.0.1:8080
key_groups:
  main:
    - id: K1
      public_key: public.pem
origins:
  store:
    type: embedded
    root: store
    listen: 127.0.0.1:9000
    bucket: media
    access_key_id: edge
    secret_access_key: edge-secret
behaviors:
  - path_pattern: public/*
    origin: store
  - path_pattern: "*"
    origin: store
    trusted_key_groups: [main]
    allowed_methods: [GET, HEAD, OPTIONS, PUT, POST, PATCH, DELETE]
    ttl: {min: 0, default: 1d, max: 365d}
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    write_key(dir.path());
    Config::parse(text, &dir.path().join("keyfront.yaml"))
}

fn error_text(text: &str) -> String {
    parse(text).expect_err("must be refused").to_string()
}

#[test]
fn a_good_config_validates() {
    let config = parse(GOOD).unwrap();
    assert!(
        !format!("{config:?}").contains("edge-secret"),
        "Debug never shows an origin's secret"
    );
    assert_eq!(config.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
    assert_eq!(config.behaviors[0].path_pattern, "/public/*");
    assert!(config.behaviors[0].trusted_key_groups.is_empty());
    assert_eq!(config.behaviors[1].trusted_key_groups, ["main"]);
    assert_eq!(config.key_groups["main"][0].id, "K1");
    assert!(config.key_groups["main"][0].pem.starts_with("-----BEGIN PUBLIC KEY-----"));
    assert_eq!(config.behaviors[1].allowed_methods, AllowedMethods::All);
    assert_eq!(config.behaviors[1].ttl.max, Duration::from_secs(365 * 86_400));
    assert_eq!(config.embedded_stores.len(), 1);
    assert_eq!(config.viewer_header_timeout, Duration::from_secs(10));
    assert_eq!(config.viewer_send_timeout, Duration::from_secs(30));
    assert_eq!(config.viewer_send_buffer, Some(DEFAULT_VIEWER_SEND_BUFFER));
    let autotuned = GOOD.replace("listen: 127.0.0.1:8080\n", "listen: 127.0.0.1:8080\nviewer_send_buffer: auto\n");
    assert_eq!(parse(&autotuned).unwrap().viewer_send_buffer, None);
    assert_eq!(config.upgrade_socket, Path::new(DEFAULT_UPGRADE_SOCKET));
}

#[test]
fn errors_name_the_field_and_the_value() {
    let cases = [
        (
            GOOD.replace("    bucket: media\n", "    bucket: media\n    colour: blue\n"),
            "origins.store: unknown field `colour`",
        ),
        (
            GOOD.replace("public_key: public.pem", "public_key: missing.pem"),
            "key_groups.main[0].public_key: \"missing.pem\"",
        ),
        (
            GOOD.replace("default: 1d", "default: 1 fortnight"),
            "behaviors[1].ttl.default: \"1 fortnight\"",
        ),
        (
            GOOD.replace("    origin: store\n    trusted", "    origin: nowhere\n    trusted"),
            "behaviors[1].origin: \"nowhere\": no such origin (known: store)",
        ),
        (
            GOOD.replace("trusted_key_groups: [main]", "trusted_key_groups: [other]"),
            "behaviors[1].trusted_key_groups[0]: \"other\"",
        ),
        (
            GOOD.replace("listen: 127.0.0.1:8080", "listen: localhost"),
            "listen[0]: \"localhost\"",
        ),
        (
            GOOD.replace("[GET, HEAD, OPTIONS, PUT, POST, PATCH, DELETE]", "[GET, PUT]"),
            "behaviors[1].allowed_methods: \"GET,PUT\"",
        ),
        (
            GOOD.replace("path_pattern: \"*\"", "path_pattern: \"/x/*\""),
            "behaviors[1].path_pattern: \"/x/*\": the last behavior is the default",
        ),
        (
            GOOD.replace(
                "    origin: store\n  - path",
                "    origin: store\n    cors: {allowed_origins: [\"*\"], allow_credentials: true}\n  - path",
            ),
            "behaviors[0].cors.allow_credentials: \"true\": browsers refuse credentials with the * origin",
        ),
        (
            GOOD.replace(
                "    origin: store\n  - path",
                "    origin: store\n    cors: {allowed_origins: [app.example.com]}\n  - path",
            ),
            "behaviors[0].cors.allowed_origins[0]: \"app.example.com\"",
        ),
        (
            GOOD.replace(
                "listen: 127.0.0.1:8080\n",
                "listen: 127.0.0.1:8080\ntls_listen: [{address: \"127.0.0.1:8443\", certificate: nope.pem, key: nope.pem}]\n",
            ),
            "tls_listen[0].certificate: \"nope.pem\"",
        ),
        (
            GOOD.replace("listen: 127.0.0.1:8080\n", "listen: 127.0.0.1:8080\nlog_level: loud\n"),
            "log_level: \"loud\": expected error, warn",
        ),
        (
            GOOD.replace("listen: 127.0.0.1:8080\n", "listen: 127.0.0.1:8080\nviewer_header_timeout: 0s\n"),
            "viewer_header_timeout: \"0s\": expected a duration from 1s to 300s",
        ),
        (
            GOOD.replace("listen: 127.0.0.1:8080\n", "listen: 127.0.0.1:8080\nviewer_send_timeout: 2d\n"),
            "viewer_send_timeout: \"2d\": expected a duration from 1s to 3600s",
        ),
        (
            GOOD.replace("listen: 127.0.0.1:8080\n", "listen: 127.0.0.1:8080\nviewer_send_buffer: 1KiB\n"),
            "viewer_send_buffer: \"1KiB\": expected auto or a size from 16KiB to 16MiB",
        ),
        (
            GOOD.replace("listen: 127.0.0.1:8080\n", "listen: 127.0.0.1:8080\nviewer_send_buffer: lots\n"),
            "viewer_send_buffer: \"lots\": expected a size such as",
        ),
        (
            GOOD.replace(
                "listen: 127.0.0.1:8080\n",
                "listen: 127.0.0.1:8080\nviewer_country_header: \"country code\"\n",
            ),
            "viewer_country_header: \"country code\": expected an HTTP header name",
        ),
        (
            GOOD.replace("listen: 127.0.0.1:8080\n", "listen: 127.0.0.1:8080\ndrain_timeout: soon\n"),
            "drain_timeout: \"soon\": expected a duration such as",
        ),
        (
            GOOD.replace(
                "listen: 127.0.0.1:8080\n",
                "listen: 127.0.0.1:8080\nfleet: {node: \"fra 1\", secret_file: public.pem}\n",
            ),
            "fleet.node: \"fra 1\": expected 1 to 64 of",
        ),
        (
            GOOD.replace(
                "listen: 127.0.0.1:8080\n",
                "listen: 127.0.0.1:8080\nfleet: {node: fra-1, secret_file: /dev/null}\n",
            ),
            "fleet.secret_file: \"/dev/null\": the secret must be at least 32 bytes",
        ),
        (
            GOOD.replace(
                "listen: 127.0.0.1:8080\n",
                "listen: 127.0.0.1:8080\nfleet: {node: fra-1, secret_file: /dev/zero}\n",
            ),
            "fleet.secret_file: \"/dev/zero\": larger than 262144 bytes",
        ),
        (
            GOOD.replace(
                "listen: 127.0.0.1:8080\n",
                "listen: 127.0.0.1:8080\nfleet: {node: fra-1, secret_file: public.pem, parents: [\"shield:8080\"]}\n",
            ),
            "fleet.parents[0]: \"shield:8080\"",
        ),
        (
            GOOD.replace(
                "listen: 127.0.0.1:8080\n",
                "listen: 127.0.0.1:8080\nfleet: {node: fra-1, secret_file: public.pem, peers: []}\n",
            ),
            "unknown field `peers`",
        ),
        (
            GOOD.replace("type: embedded", "type: ftp"),
            "origins.store.type: unknown variant `ftp`, expected `s3` or `embedded`",
        ),
    ];
    for (text, expected) in cases {
        let message = error_text(&text);
        assert!(message.contains(expected), "expected {expected:?} in {message:?}");
    }
}

#[test]
fn the_control_plane_is_validated_field_by_field() {
    let with = |control: &str| GOOD.replace("listen: 127.0.0.1:8080\n", &format!("listen: 127.0.0.1:8080\n{control}"));
    let good = with(
        "control_listen: 127.0.0.1:9581\ncontrol_api: {s3_origin: store, credentials: [{access_key_id: AK1, secret_access_key: secret-one}], distribution_addresses: [\"127.0.0.2:8080\"], deploy_delay: 5s}\n",
    );
    let control = parse(&good).unwrap().control_plane.unwrap();
    assert_eq!(control.credentials["AK1"].expose(), "secret-one");
    assert!(!format!("{control:?}").contains("secret-one"), "Debug never shows a secret");
    let config = parse(&with(
        "admin_token: a-token-of-twenty-chars
",
    ))
    .unwrap();
    assert!(!format!("{config:?}").contains("a-token-of-twenty-chars"), "nor the admin token");
    let off_loopback = with(
        "control_listen: 0.0.0.0:9581
control_api: {s3_origin: store, accept_any_credentials: true, accept_any_credentials_off_loopback: true}
",
    );
    assert!(
        parse(&off_loopback).unwrap().control_plane.unwrap().accept_any_credentials,
        "allowed when said twice"
    );
    assert_eq!(control.distribution_addresses, vec!["127.0.0.2:8080".parse().unwrap()]);
    assert_eq!((control.deploy_delay, control.state_dir.is_none()), (Duration::from_secs(5), true));
    assert_eq!(control.domain_suffix, "cloudfront.localhost");
    assert!(
        control.custom_origin_networks.is_empty(),
        "custom origins are refused unless networks are named"
    );
    for (control, expected) in [
        (
            "control_api: {s3_origin: store}\n",
            "control_listen: \"\": control_api and control_state need control_listen",
        ),
        (
            "control_listen: 127.0.0.1:9581\n",
            "control_api: \"\": control_listen needs control_api",
        ),
        (
            "control_listen: 127.0.0.1:9581\ncontrol_api: {s3_origin: nowhere, accept_any_credentials: true}\n",
            "control_api.s3_origin: \"nowhere\": no such origin (known: store)",
        ),
        (
            "control_listen: 127.0.0.1:9581\ncontrol_api: {s3_origin: store}\n",
            "control_api.credentials: \"[]\"",
        ),
        (
            "control_listen: 127.0.0.1:9581\ncontrol_api: {s3_origin: store, credentials: [{access_key_id: AK1, secret_access_key: short}]}\n",
            "control_api.credentials[0]: \"AK1\"",
        ),
        (
            "control_listen: 0.0.0.0:9581\ncontrol_api: {s3_origin: store, accept_any_credentials: true}\n",
            "control_api.accept_any_credentials: \"true\": accepted on loopback listeners only, and control_listen is 0.0.0.0:9581",
        ),
        (
            "control_listen: 127.0.0.1:9581\ncontrol_api: {s3_origin: store, accept_any_credentials: true, domain_suffix: \"a b\"}\n",
            "control_api.domain_suffix: \"a b\"",
        ),
        (
            "control_listen: 127.0.0.1:9581\ncontrol_api: {s3_origin: store, accept_any_credentials: true, distribution_addresses: [here]}\n",
            "control_api.distribution_addresses[0]: \"here\"",
        ),
        (
            "control_listen: 127.0.0.1:9581\ncontrol_api: {s3_origin: store, accept_any_credentials: true, reset_endpoint: true}\nfleet: {node: fra-1, secret_file: public.pem, control: {origin: store}}\n",
            "control_api.reset_endpoint: \"true\": not allowed in a fleet with a control log",
        ),
        (
            "control_listen: 127.0.0.1:9581\ncontrol_api: {s3_origin: store, accept_any_credentials: true, custom_origin_networks: [\"127.0.0.0/8\", \"10.0.0.0/33\"]}\n",
            "control_api.custom_origin_networks[1]: \"10.0.0.0/33\": expected a network in CIDR notation",
        ),
    ] {
        let error = error_text(&with(control));
        assert!(error.contains(expected), "{control}: {error}");
        assert!(!error.contains("short"), "a secret never appears: {error}");
    }
}

#[test]
fn s3_credentials_come_from_the_file_or_the_environment() {
    let file = r#"
listen: 127.0.0.1:8080
origins:
  s3:
    type: s3
    endpoint: https://s3.eu-west-1.amazonaws.com
    bucket: media
    region: eu-west-1
behaviors:
  - path_pattern: "*"
    origin: s3
"#;
    let parsed: ConfigFile = serde_yaml::from_str(file).unwrap();
    let dir = Path::new("/nonexistent");
    let with_env = |vars: &'static [(&'static str, &'static str)]| Validator {
        file: Path::new("k.yaml"),
        base_dir: dir,
        environment: move |name: &str| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string()),
    };
    let missing = with_env(&[]).validate(serde_yaml::from_str(file).unwrap()).unwrap_err().to_string();
    assert!(missing.contains("origins.s3.access_key_id"), "{missing}");
    let config = with_env(&[("AWS_ACCESS_KEY_ID", "AKID"), ("AWS_SECRET_ACCESS_KEY", "secret")])
        .validate(parsed)
        .unwrap();
    let origin = &config.origins["s3"];
    assert_eq!(origin.endpoint, Endpoint::parse("https://s3.eu-west-1.amazonaws.com").unwrap());
    assert_eq!(
        (origin.access_key_id.as_str(), origin.secret_access_key.expose()),
        ("AKID", "secret")
    );
    assert!((origin.bucket.as_str(), origin.path_style) == ("media", false));
}

/// The fleet's members by name: each form checked for its shape, refused
/// with the field and value named, never read as an address or a default.
#[test]
fn fleet_members_may_be_dns_and_srv_names_of_the_right_shape() {
    let fleet = |members: &str| {
        GOOD.replace(
            "listen: 127.0.0.1:8080\n",
            &format!("listen: 127.0.0.1:8080\nfleet: {{node: fra-1, secret_file: public.pem, {members}}}\n"),
        )
    };
    let config = parse(&fleet(
        "parents: [\"10.0.0.1:8080\", {dns: \"shields.default.svc.cluster.local:8080\"}, {srv: _http._tcp.shields}], dns: {server: \"10.96.0.10:53\", interval: 2s}",
    ))
    .unwrap();
    let tiers = &config.fleet.as_ref().unwrap().tiers;
    assert_eq!(
        tiers.parents,
        [
            Member::Address("10.0.0.1:8080".parse().unwrap()),
            Member::Dns {
                name: "shields.default.svc.cluster.local".into(),
                port: 8080
            },
            Member::Srv("_http._tcp.shields".into()),
        ]
    );
    assert_eq!(tiers.dns.server, Some("10.96.0.10:53".parse().unwrap()));
    assert_eq!(tiers.dns.interval, Duration::from_secs(2));
    let named_self = parse(&fleet("site_peers: [\"10.0.0.2:80\"], site_address: {dns: \"me.peers:80\"}")).unwrap();
    assert_eq!(
        named_self.fleet.unwrap().tiers.site.unwrap().0,
        Member::Dns {
            name: "me.peers".into(),
            port: 80
        }
    );
    let defaults = parse(&fleet("parents: [{dns: \"shields:8080\"}]")).unwrap();
    assert_eq!(defaults.fleet.unwrap().tiers.dns.interval, Duration::from_secs(5));
    for (members, expected) in [
        ("parents: [{dns: shields}]", "fleet.parents[0].dns: \"shields\": expected name:port"),
        ("parents: [{dns: \"shields:0\"}]", "fleet.parents[0].dns: \"shields:0\""),
        ("parents: [{dns: \"shields:http\"}]", "fleet.parents[0].dns: \"shields:http\""),
        ("parents: [{dns: \"bad name:80\"}]", "fleet.parents[0].dns: \"bad name:80\""),
        ("parents: [{dns: \"-bad.example:80\"}]", "fleet.parents[0].dns: \"-bad.example:80\""),
        (
            "site_peers: [{srv: shields}]",
            "fleet.site_peers[0].srv: \"shields\": expected an SRV name",
        ),
        (
            "parents: [{dns: \"a:80\", srv: _b._tcp}]",
            "fleet.parents[0]: \"\": expected an address, or exactly one of",
        ),
        ("parents: [{}]", "fleet.parents[0]: \"\": expected an address, or exactly one of"),
        ("parents: [{dsn: \"a:80\"}]", "fleet.parents"),
        (
            "parents: [{dns: \"a:80\"}], dns: {server: resolver}",
            "fleet.dns.server: \"resolver\"",
        ),
        ("parents: [{dns: \"a:80\"}], dns: {interval: 0s}", "fleet.dns.interval: \"0s\""),
    ] {
        let message = error_text(&fleet(members));
        assert!(message.contains(expected), "{members}: expected {expected:?} in {message:?}");
    }
}

#[test]
fn durations() {
    assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
    assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
    assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
    assert_eq!(parse_duration("2 h"), None);
    assert_eq!(parse_duration("h"), None);
}

#[test]
fn key_files_that_never_end_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = "listen: 127.0.0.1:8080\nkey_groups:\n  main:\n    - id: K1\n      public_key: /dev/zero\norigins:\n  s: {type: s3, endpoint: \"http://127.0.0.1:9000\", bucket: b, access_key_id: a, secret_access_key: s}\nbehaviors:\n  - path_pattern: \"*\"\n    origin: s\n    trusted_key_groups: [main]\n";
    let error = Config::parse(text, &dir.path().join("keyfront.yaml")).unwrap_err().to_string();
    assert!(
        error.contains("key_groups.main[0].public_key") && error.contains("not a key file"),
        "{error}"
    );
}

#[test]
fn a_config_is_as_new_as_its_newest_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyfront.yaml");
    std::fs::write(&path, GOOD).unwrap();
    write_key(dir.path());
    let mtime = |path: &Path| {
        let modified = std::fs::metadata(path).unwrap().modified().unwrap();
        modified.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
    };
    let key_file = dir.path().join("public.pem");
    let file = std::fs::File::options().write(true).open(&key_file).unwrap();
    file.set_modified(std::time::SystemTime::now() + Duration::from_secs(60)).unwrap();
    let config = Config::load(&path).unwrap();
    assert_eq!(
        config.modified_ms,
        mtime(&key_file),
        "a key replaced in place counts as a change of the config"
    );
    assert!(config.modified_ms > mtime(&path));
}
