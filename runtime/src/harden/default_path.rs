//! A default `PATH` for the container's init when `process.env` has none.
//!
//! libcontainer resolves `args[0]` through `PATH` and fails with "PATH
//! environment variable is not set" even when `args[0]` is absolute; runc
//! runs such a spec (`ctr run --rootfs DIR ID /bin/sh` makes one). moat
//! sets docker's default list, the one engines put in images' configs, and
//! says so in the report. Not a hardening rule: a compatibility default.

use oci_spec::runtime::Spec;

use crate::report::{Report, Rule};

/// docker's default PATH (what `docker run` gives an image that sets none).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Adds `PATH=`[`DEFAULT_PATH`] to the init's environment when it has no
/// `PATH` entry at all (an explicit empty `PATH=` is the spec's choice).
pub(super) fn set_default_path(spec: &mut Spec, report: &mut Report) {
    let Some(mut process) = spec.process().clone() else {
        return;
    };
    let mut env = process.env().clone().unwrap_or_default();
    if env.iter().any(|e| e.starts_with("PATH=")) {
        return;
    }
    env.push(format!("PATH={DEFAULT_PATH}"));
    process.set_env(Some(env));
    spec.set_process(Some(process));
    report.change(
        Rule::DefaultPath,
        "process.env.PATH",
        "unset",
        DEFAULT_PATH,
        "docker's default, as runc runs a spec without PATH (libcontainer refuses to start one)",
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harden::fixtures::runc_spec as base_spec;

    fn env_of(spec: &Spec) -> Vec<String> {
        spec.process()
            .as_ref()
            .unwrap()
            .env()
            .clone()
            .unwrap_or_default()
    }

    #[test]
    fn a_spec_without_path_gets_dockers_default_and_a_report_line() {
        let mut spec = base_spec();
        let mut p = spec.process().clone().unwrap();
        p.set_env(Some(vec!["TERM=xterm".into()]));
        spec.set_process(Some(p));
        let mut report = Report::default();
        set_default_path(&mut spec, &mut report);
        assert_eq!(
            env_of(&spec),
            vec!["TERM=xterm".to_string(), format!("PATH={DEFAULT_PATH}")]
        );
        let c = &report.changes[0];
        assert_eq!(
            (c.rule, c.field.as_str(), c.before.as_str()),
            (Rule::DefaultPath, "process.env.PATH", "unset")
        );
    }

    #[test]
    fn a_spec_path_even_empty_is_kept() {
        for path in ["PATH=/opt/bin", "PATH="] {
            let mut spec = base_spec();
            let mut p = spec.process().clone().unwrap();
            p.set_env(Some(vec![path.to_string()]));
            spec.set_process(Some(p));
            let mut report = Report::default();
            set_default_path(&mut spec, &mut report);
            assert_eq!(env_of(&spec), vec![path.to_string()]);
            assert!(report.changes.is_empty());
        }
    }
}
