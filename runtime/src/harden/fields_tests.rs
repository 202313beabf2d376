//! Unit tests of [`super`] (the field table).

use super::{class_of, unclassified, FieldClass, FIELDS};
use crate::harden::fixtures::*;
use crate::refusal::RefusalRule;

/// A spec with every field oci-spec 0.10 knows set (maps and lists with one
/// entry), as JSON that round-trips through `Spec`.
fn populated() -> Value {
    let mut v = docker_json();
    v["hostname"] = json!("h");
    v["domainname"] = json!("d");
    v["annotations"] = json!({"a": "b"});
    v["hooks"] = json!({"prestart": [{"path": "/bin/true", "args": ["true"], "env": ["A=b"], "timeout": 1}],
        "createRuntime": [{"path": "/bin/true"}], "createContainer": [{"path": "/bin/true"}],
        "startContainer": [{"path": "/bin/true"}], "poststart": [{"path": "/bin/true"}], "poststop": [{"path": "/bin/true"}]});
    v["root"]["readonly"] = json!(true);
    let p = &mut v["process"];
    p["terminal"] = json!(true);
    p["consoleSize"] = json!({"height": 1, "width": 1});
    p["user"] = json!({"uid": 0, "gid": 0, "umask": 18, "additionalGids": [1], "username": "u"});
    p["commandLine"] = json!("x");
    p["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 1, "soft": 1}]);
    p["apparmorProfile"] = json!("a");
    p["oomScoreAdj"] = json!(1);
    p["selinuxLabel"] = json!("s");
    p["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 1});
    p["scheduler"] = json!({"policy": "SCHED_OTHER", "nice": 1});
    p["execCPUAffinity"] = json!({"initial": "0", "final": "0"});
    let l = &mut v["linux"];
    l["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    l["resources"]["memory"] = json!({"limit": 1});
    l["resources"]["cpu"] = json!({"shares": 1});
    l["resources"]["blockIO"] = json!({"weight": 10});
    l["resources"]["hugepageLimits"] = json!([{"pageSize": "2MB", "limit": 1}]);
    l["resources"]["network"] = json!({"classID": 1});
    l["resources"]["rdma"] = json!({"x": {"hcaHandles": 1}});
    l["resources"]["unified"] = json!({"memory.max": "1"});
    l["cgroupsPath"] = json!("/x");
    l["devices"] = json!([{"path": "/dev/null", "type": "c", "major": 1, "minor": 3}]);
    l["seccomp"] =
        json!({"defaultAction": "SCMP_ACT_ERRNO", "listenerPath": "/x", "listenerMetadata": "m"});
    l["rootfsPropagation"] = json!("private");
    l["mountLabel"] = json!("m");
    l["personality"] = json!({"domain": "LINUX"});
    l["timeOffsets"] = json!({"monotonic": {"secs": 1, "nanosecs": 1}});
    l["intelRdt"] = json!({"closID": "x"});
    l["netDevices"] = json!({"eth1": {"name": "eth1"}});
    v["solaris"] = json!({"milestone": "m"});
    v["windows"] = json!({"layerFolders": ["x"]});
    v["vm"] = json!({"kernel": {"path": "/k"}});
    v
}

#[test]
fn every_field_of_a_populated_spec_is_classified() {
    let v = populated();
    let round: Value = serde_json::to_value(spec(v.clone())).unwrap();
    assert_eq!(unclassified(&round), Vec::<String>::new());
    assert_eq!(unclassified(&to_json(&docker_spec())), Vec::<String>::new());
    assert_eq!(unclassified(&to_json(&runc_spec())), Vec::<String>::new());
}

/// What a newer oci-spec adding a field would do: the walk names it. (Run
/// once with the fake field in `every_field_of_a_populated_spec_is_classified`
/// to see the failure; see the commit message.)
#[test]
fn an_unclassified_field_is_named() {
    let mut v = to_json(&docker_spec());
    v["linux"]["brandNewField"] = json!({"x": 1});
    v["process"]["user"]["alsoNew"] = json!(1);
    assert_eq!(
        unclassified(&v),
        vec!["linux.brandNewField.x".to_string()],
        "process.user is passed whole, so alsoNew is covered by it"
    );
}

#[test]
fn refused_fields_are_refused_naming_the_field() {
    for (path, class) in FIELDS {
        let FieldClass::Refused(_) = class else {
            continue;
        };
        let v = populated();
        let mut cleaned = docker_json();
        let (parent, key) = path.rsplit_once('.').unwrap_or(("", path));
        let src = if parent.is_empty() {
            &v[key]
        } else {
            &v[parent][key]
        };
        if src.is_null() {
            continue; // mounts[].uidMappings: judged by libcontainer.
        }
        if parent.is_empty() {
            cleaned[key] = src.clone();
        } else {
            cleaned[parent][key] = src.clone();
        }
        let r = refused(&spec(cleaned));
        assert_refusal(&r, "unsupported-field", None);
        assert!(r.detail.starts_with(path), "{path}: {r}");
    }
}

#[test]
fn table_names_real_rules_and_paths_once() {
    let refusal_names: Vec<&str> = RefusalRule::ALL.iter().map(|r| r.name()).collect();
    let mut seen = BTreeSet::new();
    for (path, class) in FIELDS {
        assert!(seen.insert(*path), "{path} twice");
        match class {
            FieldClass::Validated(r) => assert!(refusal_names.contains(r), "{path}: {r}"),
            FieldClass::Hardened(r) => assert!(
                serde_json::from_value::<Rule>(json!(r)).is_ok(),
                "{path}: {r}"
            ),
            _ => {}
        }
    }
    assert_eq!(
        class_of("linux.resources.cpu.quota"),
        class_of("linux.resources.cpu")
    );
    assert_eq!(class_of("linux.nothing"), None);
}

/// The OCI runtime spec's own JSON schema (v1.3.0, which oci-spec 0.10
/// implements; vendored under `oci-schema/`, Apache-2.0): a list of fields
/// that does not come from moat's hand-written `populated()`.
const SCHEMA_FILES: &[(&str, &str)] = &[
    (
        "config-schema.json",
        include_str!("oci-schema/config-schema.json"),
    ),
    (
        "config-linux.json",
        include_str!("oci-schema/config-linux.json"),
    ),
    (
        "config-solaris.json",
        include_str!("oci-schema/config-solaris.json"),
    ),
    (
        "config-windows.json",
        include_str!("oci-schema/config-windows.json"),
    ),
    ("config-vm.json", include_str!("oci-schema/config-vm.json")),
    (
        "config-zos.json",
        include_str!("oci-schema/config-zos.json"),
    ),
    (
        "config-freebsd.json",
        include_str!("oci-schema/config-freebsd.json"),
    ),
    ("defs.json", include_str!("oci-schema/defs.json")),
    (
        "defs-linux.json",
        include_str!("oci-schema/defs-linux.json"),
    ),
    (
        "defs-windows.json",
        include_str!("oci-schema/defs-windows.json"),
    ),
    ("defs-vm.json", include_str!("oci-schema/defs-vm.json")),
    ("defs-zos.json", include_str!("oci-schema/defs-zos.json")),
    (
        "defs-freebsd.json",
        include_str!("oci-schema/defs-freebsd.json"),
    ),
];

struct Schema(HashMap<String, Value>);

impl Schema {
    fn load() -> Schema {
        Schema(
            SCHEMA_FILES
                .iter()
                .map(|(name, text)| (name.to_string(), serde_json::from_str(text).unwrap()))
                .collect(),
        )
    }

    /// Follows `$ref`s (`file.json#/pointer` or `#/pointer`).
    fn resolve<'a>(&'a self, file: &str, node: &'a Value) -> (String, &'a Value) {
        let (mut file, mut node) = (file.to_string(), node);
        while let Some(r) = node.get("$ref").and_then(Value::as_str) {
            let (f, pointer) = r.split_once('#').unwrap_or((r, ""));
            if !f.is_empty() {
                file = f.to_string();
            }
            // The schema writes some pointers without their leading '/'.
            let pointer = match pointer {
                "" => String::new(),
                p if p.starts_with('/') => p.to_string(),
                p => format!("/{p}"),
            };
            node = self.0[&file]
                .pointer(&pointer)
                .unwrap_or_else(|| panic!("dangling $ref {r} in {file}"));
        }
        (file, node)
    }

    /// The alternatives a node stands for (allOf/anyOf/oneOf flattened).
    fn variants<'a>(&'a self, file: &str, node: &'a Value) -> Vec<(String, &'a Value)> {
        let (file, node) = self.resolve(file, node);
        let mut out = vec![(file.clone(), node)];
        for key in ["allOf", "anyOf", "oneOf"] {
            for alt in node
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                out.extend(self.variants(&file, alt));
            }
        }
        out
    }

    /// Every property path below `node` (`[]` for array items, `*` for a
    /// map's user-chosen keys).
    fn paths(&self, file: &str, node: &Value, path: &str, out: &mut BTreeSet<String>) {
        let join = |k: &str| {
            if path.is_empty() {
                k.to_string()
            } else {
                format!("{path}.{k}")
            }
        };
        for (file, node) in self.variants(file, node) {
            for (k, child) in node
                .get("properties")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                out.insert(join(k));
                self.paths(&file, child, &join(k), out);
            }
            let maps = node.get("patternProperties").and_then(Value::as_object);
            for child in maps.into_iter().flat_map(|m| m.values()) {
                self.paths(&file, child, &join("*"), out);
            }
            if let Some(child) = node.get("additionalProperties").filter(|v| v.is_object()) {
                self.paths(&file, child, &join("*"), out);
            }
            if let Some(items) = node.get("items") {
                self.paths(&file, items, &format!("{path}[]"), out);
            }
        }
    }
}

/// Every property of the runtime spec's schema has a class: a field the
/// schema (a newer spec) adds fails here until someone decides.
#[test]
fn every_schema_property_is_classified() {
    let schema = Schema::load();
    let root = schema.0["config-schema.json"].clone();
    let mut paths = BTreeSet::new();
    schema.paths("config-schema.json", &root, "", &mut paths);
    assert!(
        paths.len() > 200,
        "the walk found only {} paths",
        paths.len()
    );
    for sample in [
        "process.user.uid",
        "linux.seccomp.syscalls[].args[].op",
        "hooks.prestart[].path",
        "linux.resources.rdma.*.hcaHandles",
    ] {
        assert!(paths.contains(sample), "the walk misses {sample}");
    }
    // Leaves: an object whose own properties are all classified needs no
    // class of its own (`linux`, `process`).
    let is_leaf = |p: &String| {
        !paths
            .iter()
            .any(|q| q.starts_with(&format!("{p}.")) || q.starts_with(&format!("{p}[]")))
    };
    let unclassified: Vec<&String> = paths
        .iter()
        .filter(|p| is_leaf(p) && class_of(p).is_none())
        .collect();
    assert_eq!(
        unclassified,
        Vec::<&String>::new(),
        "schema properties without a class in FIELDS"
    );
}

impl Schema {
    /// A value of every property below `node`: the first of an enum, one
    /// array item, one map entry, and `samples` where oci-spec parses a
    /// string into a type of its own.
    fn instance(&self, file: &str, node: &Value, path: &str) -> Value {
        if let Some(v) = SAMPLES.iter().find(|(p, _)| *p == path) {
            return serde_json::from_str(v.1).unwrap();
        }
        let join = |k: &str| {
            if path.is_empty() {
                k.to_string()
            } else {
                format!("{path}.{k}")
            }
        };
        let variants = self.variants(file, node);
        let mut object = serde_json::Map::new();
        for (file, node) in &variants {
            if let Some(e) = node
                .get("enum")
                .and_then(Value::as_array)
                .and_then(|e| e.first())
            {
                return e.clone();
            }
            if let Some(c) = node.get("const") {
                return c.clone();
            }
            for (k, child) in node
                .get("properties")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                object.insert(k.clone(), self.instance(file, child, &join(k)));
            }
            let maps = node.get("patternProperties").and_then(Value::as_object);
            if let Some(child) = maps.into_iter().flat_map(|m| m.values()).next() {
                object.insert(map_key(path), self.instance(file, child, &join("*")));
            } else if let Some(child) = node.get("additionalProperties").filter(|v| v.is_object()) {
                object.insert(map_key(path), self.instance(file, child, &join("*")));
            }
            if let Some(items) = node.get("items") {
                return json!([self.instance(file, items, &format!("{path}[]"))]);
            }
        }
        if !object.is_empty() {
            return Value::Object(object);
        }
        let types: Vec<&str> = variants
            .iter()
            .flat_map(|(_, n)| match n.get("type") {
                Some(Value::String(t)) => vec![t.as_str()],
                Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            })
            .filter(|t| *t != "null")
            .collect();
        match types.first().copied() {
            Some("integer") | Some("number") => json!(1),
            Some("boolean") => json!(true),
            Some("object") => json!({}),
            Some("array") => json!([]),
            _ => json!("x"),
        }
    }
}

/// A key for a map the schema leaves to the user.
fn map_key(path: &str) -> String {
    match path {
        "linux.timeOffsets" => "monotonic".into(),
        _ => "k".into(),
    }
}

/// Values oci-spec parses into types of its own (the schema only says
/// "string"), by path.
const SAMPLES: &[(&str, &str)] = &[
    ("process.capabilities.bounding", r#"["CAP_CHOWN"]"#),
    ("process.capabilities.effective", r#"["CAP_CHOWN"]"#),
    ("process.capabilities.permitted", r#"["CAP_CHOWN"]"#),
    ("process.capabilities.inheritable", r#"["CAP_CHOWN"]"#),
    ("process.capabilities.ambient", r#"["CAP_CHOWN"]"#),
    ("process.rlimits[].type", r#""RLIMIT_NOFILE""#),
    ("linux.devices[].type", r#""c""#),
    ("linux.resources.devices[].type", r#""c""#),
    ("linux.resources.hugepageLimits[].pageSize", r#""2MB""#),
    ("linux.resources.cpu.cpus", r#""0""#),
    ("linux.resources.cpu.mems", r#""0""#),
    ("process.execCPUAffinity.initial", r#""0""#),
    ("process.execCPUAffinity.final", r#""0""#),
    // The schema's first flag is SCHED_FLAG_RESET_ON_FORK; oci-spec 0.10
    // names it SCHED_RESET_ON_FORK and refuses the schema's spelling.
    ("process.scheduler.flags[]", r#""SCHED_FLAG_RECLAIM""#),
];

/// The keys of every object in `v`, as paths (`[]` for array items).
fn key_paths(v: &Value, path: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                out.insert(p.clone());
                key_paths(child, &p, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                key_paths(item, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

/// Fields oci-spec 0.10 drops when it parses a spec: neither moat nor
/// libcontainer (which parses with oci-spec too) ever acts on them, and
/// each lies in a section moat refuses whole when present (`freebsd`,
/// `vm`, `windows`).
const DROPPED_BY_OCI_SPEC: &[&str] = &[
    "freebsd",
    "vm.hwConfig",
    "windows.hyperv.utilityVMPath",
    "windows.resources.cpu.affinity",
];

/// A spec holding every property of the schema parses into oci-spec's
/// `Spec` and back with no key lost (but the known drops): a field oci-spec
/// does not know would pass moat's walk unseen.
#[test]
fn every_schema_property_survives_oci_spec() {
    let schema = Schema::load();
    let root = schema.0["config-schema.json"].clone();
    let instance = schema.instance("config-schema.json", &root, "");
    let mut before = BTreeSet::new();
    key_paths(&instance, "", &mut before);
    let parsed: Spec = serde_json::from_value(instance.clone())
        .unwrap_or_else(|e| panic!("oci-spec refuses the schema's instance: {e}\n{instance:#}"));
    let mut after = BTreeSet::new();
    key_paths(&serde_json::to_value(&parsed).unwrap(), "", &mut after);
    let lost: Vec<&String> = before
        .difference(&after)
        .filter(|p| {
            !DROPPED_BY_OCI_SPEC
                .iter()
                .any(|d| *p == d || p.starts_with(&format!("{d}.")))
        })
        .collect();
    assert_eq!(lost, Vec::<&String>::new(), "keys oci-spec lost");
    for d in DROPPED_BY_OCI_SPEC {
        assert!(
            before.contains(*d) && !after.contains(*d),
            "{d} is no longer dropped: classify it"
        );
    }
}
