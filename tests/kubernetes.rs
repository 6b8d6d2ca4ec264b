//! deploy/kubernetes cannot drift from the binary: each manifest's
//! embedded config, rendered as its init container renders it (a pod's
//! name and address in place of the placeholders) with the files its pod
//! mounts, passes `keyfront check-config`; the DNS names its fleet members
//! use are headless Services of the manifests, at the ports they name;
//! every file the config reads is under a mount of its container; the
//! probes are the admin listener's; the grace period outlasts the drain.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use keyfront::auth::{KeyAlgorithm, PrivateKey};
use serde::Deserialize as _;
use serde_yaml::Value;

fn manifests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

/// Every document of every manifest.
fn documents() -> Vec<Value> {
    let mut all = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(manifests_dir())
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value = Value::deserialize(document).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            if !value.is_null() {
                all.push(value);
            }
        }
    }
    all
}

fn named<'a>(documents: &'a [Value], kind: &str, name: &str) -> &'a Value {
    documents
        .iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_else(|| panic!("not text: {value:?}"))
}

/// The seconds of a duration as the config writes it (`25s`).
fn seconds(duration: &str) -> u64 {
    duration
        .strip_suffix('s')
        .and_then(|n| n.parse().ok())
        .expect("a duration in seconds")
}

#[test]
fn every_workloads_config_checks_and_matches_its_pod() {
    let documents = documents();
    let workloads: Vec<&Value> = documents
        .iter()
        .filter(|d| d["kind"] == "Deployment" || d["kind"] == "StatefulSet")
        .collect();
    assert_eq!(workloads.len(), 2, "edges and shields");
    let secret = named(&documents, "Secret", "keyfront-fleet");
    let origin = named(&documents, "Secret", "keyfront-origin");
    for workload in workloads {
        let name = text(&workload["metadata"]["name"]);
        let pod = &workload["spec"]["template"]["spec"];
        let container = pod["containers"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "keyfront")
            .unwrap();
        // The config map the init container renders.
        let template_map = pod["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "template")
            .map(|v| text(&v["configMap"]["name"]))
            .unwrap();
        let template = text(&named(&documents, "ConfigMap", template_map)["data"]["keyfront.yaml"]);
        assert!(template.contains("@POD_NAME@") && template.contains("@POD_IP@"), "{name}");
        let init = text(&pod["initContainers"][0]["command"][2]);
        assert!(
            init.contains("@POD_NAME@") && init.contains("@POD_IP@"),
            "{name}: the init container fills both"
        );
        let rendered = template.replace("@POD_NAME@", &format!("{name}-0")).replace("@POD_IP@", "10.1.2.3");
        let config: Value = serde_yaml::from_str(&rendered).unwrap();

        // Every path it reads is under one of the container's mounts.
        let mounts: Vec<&str> = container["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|m| text(&m["mountPath"]))
            .collect();
        let mut paths = vec![text(&config["fleet"]["secret_file"])];
        if let Some(groups) = config["key_groups"].as_mapping() {
            for keys in groups.values() {
                paths.extend(keys.as_sequence().unwrap().iter().map(|key| text(&key["public_key"])));
            }
        }
        if let Some(disk) = config["cache"]["disk"]["path"].as_str() {
            paths.push(disk);
        }
        for path in &paths {
            assert!(
                mounts.iter().any(|mount| Path::new(path).starts_with(mount)),
                "{name}: {path} is under none of {mounts:?}"
            );
        }

        // The fleet's DNS members are headless Services here, at their ports.
        for list in ["parents", "site_peers"] {
            for member in config["fleet"][list].as_sequence().into_iter().flatten() {
                let target = text(&member["dns"]);
                let (host, port) = target.rsplit_once(':').unwrap();
                let service = host
                    .strip_suffix(".default.svc.cluster.local")
                    .expect("a Service of the default namespace");
                let service = named(&documents, "Service", service);
                assert_eq!(service["spec"]["clusterIP"], "None", "{name}: {service:?} is headless");
                let ports: Vec<u64> = service["spec"]["ports"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .map(|p| p["port"].as_u64().unwrap())
                    .collect();
                assert!(ports.contains(&port.parse().unwrap()), "{name}: {target} vs {ports:?}");
            }
        }

        // Probes on the admin port; the grace period outlasts the drain.
        let admin_port: u64 = text(&config["admin_listen"]).rsplit_once(':').unwrap().1.parse().unwrap();
        let admin = container["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "admin")
            .unwrap();
        assert_eq!(admin["containerPort"].as_u64(), Some(admin_port), "{name}");
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
        let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
        assert!(grace >= seconds(text(&config["drain_timeout"])) + 5, "{name}: grace {grace}s");

        // Rendered into a directory standing for the pod's file system, with
        // the mounted files, it passes `keyfront check-config`.
        let root = tempfile::tempdir().unwrap();
        let moved = |path: &str| root.path().join(path.trim_start_matches('/'));
        let mut local = rendered.clone();
        for path in &paths {
            local = local.replace(path, moved(path).to_str().unwrap());
        }
        let mut files: BTreeMap<PathBuf, String> = BTreeMap::new();
        files.insert(
            moved(text(&config["fleet"]["secret_file"])),
            text(&secret["stringData"]["fleet.secret"]).to_owned(),
        );
        if let Some(groups) = config["key_groups"].as_mapping() {
            for keys in groups.values() {
                for key in keys.as_sequence().unwrap() {
                    // The manifest's key is a placeholder: a real one stands in.
                    let pem = PrivateKey::generate(KeyAlgorithm::Ecdsa).public_key().to_pem();
                    files.insert(moved(text(&key["public_key"])), pem);
                }
            }
        }
        for (path, content) in &files {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        let config_path = root.path().join("keyfront.yaml");
        std::fs::write(&config_path, &local).unwrap();
        let env: Vec<(&str, &str)> = origin["stringData"]
            .as_mapping()
            .unwrap()
            .iter()
            .map(|(k, v)| (text(k), text(v)))
            .collect();
        let checked = Command::new(env!("CARGO_BIN_EXE_keyfront"))
            .args(["check-config", "--config", config_path.to_str().unwrap()])
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .envs(env)
            .output()
            .unwrap();
        assert!(
            checked.status.success(),
            "{name}: {}{}",
            String::from_utf8_lossy(&checked.stdout),
            String::from_utf8_lossy(&checked.stderr)
        );
    }
}
