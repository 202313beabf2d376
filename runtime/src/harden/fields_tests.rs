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
