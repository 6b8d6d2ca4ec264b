//! The module map of DESIGN.md, held: arrows point down (no module reaches
//! itself through the modules it imports), and the modules DESIGN.md names
//! as leaves or as kept apart import nothing they must not.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each top-level module of `src/` and the modules of ours its code names
/// (`crate::name`), comments left out.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    fn walk(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, files);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&source, &mut files);
    let mut map: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&source).unwrap();
        let module = relative.iter().next().unwrap().to_string_lossy().trim_end_matches(".rs").to_owned();
        if module == "lib" || module == "main" {
            continue;
        }
        let named = map.entry(module.clone()).or_default();
        for line in std::fs::read_to_string(&file).unwrap().lines() {
            let code = line.split("//").next().unwrap();
            for (at, _) in code.match_indices("crate::") {
                let name: String = code[at + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != module {
                    named.insert(name);
                }
            }
        }
    }
    map
}

fn reaches(map: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut next = vec![from.to_owned()];
    while let Some(module) = next.pop() {
        for named in map.get(&module).into_iter().flatten() {
            if named == to {
                return true;
            }
            if seen.insert(named.clone()) {
                next.push(named.clone());
            }
        }
    }
    false
}

#[test]
fn no_module_reaches_itself() {
    let map = imports();
    assert!(map.len() > 10, "the walk found the modules: {map:?}");
    let circles: Vec<String> = map
        .iter()
        .flat_map(|(module, named)| named.iter().map(move |other| (module, other)))
        .filter(|(module, other)| reaches(&map, other, module))
        .map(|(module, other)| format!("{module} -> {other} -> ... -> {module}"))
        .collect();
    assert!(circles.is_empty(), "module circles: {circles:#?}");
}

#[test]
fn the_lower_modules_import_only_what_design_allows() {
    let map = imports();
    let allowed: [(&str, &[&str]); 8] = [
        ("config", &[]),
        ("clock", &[]),
        ("request", &[]),
        ("range", &[]),
        ("accesslog", &["config"]),
        ("cache", &["clock", "config", "origin", "range"]),
        ("metrics", &["cache"]),
        ("admin", &["config", "fleet"]),
    ];
    for (module, may) in allowed {
        let named = &map[module];
        let extra: Vec<&String> = named.iter().filter(|n| !may.contains(&n.as_str())).collect();
        assert!(extra.is_empty(), "{module} imports {extra:?}");
    }
}
