//! The number of mounts a spec may ask for (threat T36): every bind source
//! and overlay layer is opened and held by moat as host root, and every bind
//! becomes a mount in the HOST mount namespace (staging) for the
//! container's life. The kernel allows `fs.mount-max` (100 000) mounts per
//! mount namespace, the host's included: a few specs of tens of thousands of
//! binds would stop every mount on the node (red-team R7-6). Real workloads
//! carry tens (docker's defaults and volumes, a pod's service account,
//! hosts, configmaps); the policy's `filesystem.max_mounts` bounds the rest.

use std::collections::HashMap;
use std::path::PathBuf;

use oci_spec::runtime::{Mount, Spec};

use crate::policy::Policy;
use crate::refusal::{Refusal, RefusalRule};

/// What one spec mount costs the host: the mount itself, plus one pinned
/// host path (and, staged, one host mount) per overlay layer it names,
/// plus, for a recursive bind (`rbind`), every host mount below its source
/// (`submounts`, from the mount table moat reads for the sources): staging
/// copies each into the host's mount namespace (review L4: one `rbind` of
/// a directory holding thousands of mounts cost thousands).
fn host_cost(m: &Mount, submounts: &HashMap<PathBuf, usize>) -> usize {
    let options = m.options().as_deref().unwrap_or_default();
    let layers = if m.typ().as_deref() == Some("overlay") {
        crate::path_syntax::overlay_option_paths(options).len()
    } else {
        0
    };
    let below = match m.source() {
        Some(source) if options.iter().any(|o| o == "rbind") => {
            submounts.get(source).copied().unwrap_or(0)
        }
        _ => 0,
    };
    1usize.saturating_add(layers).saturating_add(below)
}

/// Refuses a spec whose mounts (counting each overlay layer as one more,
/// and each host mount below an `rbind` source, `submounts`: source →
/// count) exceed the policy's `filesystem.max_mounts`. Judged on the spec
/// as given, before anything is mounted; create also runs it without the
/// submounts ([`refuse_too_many_mounts_early`]) before it opens the first
/// source, so a spec refused by its entries alone costs no host work per
/// entry.
pub fn refuse_too_many_mounts(
    spec: &Spec,
    policy: &Policy,
    submounts: &HashMap<PathBuf, usize>,
) -> Result<(), Refusal> {
    let mounts = spec.mounts().as_deref().unwrap_or_default();
    let count = mounts
        .iter()
        .fold(0usize, |n, m| n.saturating_add(host_cost(m, submounts)));
    let max = policy.filesystem.max_mounts;
    if count > max as usize {
        return Err(Refusal::new(
            RefusalRule::MountCount,
            format!(
                "the spec has {} mounts ({count} counting each overlay layer and every host mount below an rbind source), above filesystem.max_mounts ({max}): each is held as a host mount for the container's life",
                mounts.len()
            ),
            Some("filesystem.max_mounts"),
        ));
    }
    Ok(())
}

/// [`refuse_too_many_mounts`] with the operator's policy and the spec's
/// annotations, for create to run before it opens the first source (the
/// hardening runs it again on the same effective policy).
pub fn refuse_too_many_mounts_early(spec: &Spec, operator: &Policy) -> Result<(), Refusal> {
    let annotations = spec.annotations().clone().unwrap_or_default();
    let (policy, _) = operator.with_annotations(&annotations)?;
    refuse_too_many_mounts(spec, &policy, &HashMap::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::MountBuilder;

    fn spec_with(mounts: Vec<Mount>) -> Spec {
        let mut spec = Spec::default();
        spec.set_mounts(Some(mounts));
        spec
    }

    fn bind(i: usize) -> Mount {
        MountBuilder::default()
            .destination(format!("/m{i}"))
            .typ("bind")
            .source("/srv/data")
            .options(vec!["rbind".to_string(), "ro".to_string()])
            .build()
            .unwrap()
    }

    fn none() -> HashMap<PathBuf, usize> {
        HashMap::new()
    }

    /// Review L4: an `rbind` of a source with host mounts below it costs
    /// each of them too (staging copies them into the host's namespace);
    /// a plain `bind` of the same source does not carry them.
    #[test]
    fn an_rbind_counts_the_mounts_below_its_source() {
        let below = HashMap::from([(PathBuf::from("/srv/data"), 10)]);
        let spec = spec_with(vec![bind(0)]);
        assert!(refuse_too_many_mounts(&spec, &policy(11), &below).is_ok());
        let err = refuse_too_many_mounts(&spec, &policy(10), &below).unwrap_err();
        assert_eq!(err.rule, RefusalRule::MountCount);
        assert!(err.to_string().contains("11 counting"), "{err}");
        let mut plain = bind(0);
        plain.set_options(Some(vec!["bind".to_string()]));
        assert!(refuse_too_many_mounts(&spec_with(vec![plain]), &policy(1), &below).is_ok());
    }

    fn policy(max: u32) -> Policy {
        let mut p = Policy::default();
        p.filesystem.max_mounts = max;
        p
    }

    #[test]
    fn mounts_up_to_the_cap_pass_and_one_more_is_refused() {
        let at_cap = spec_with((0..8).map(bind).collect());
        assert!(refuse_too_many_mounts(&at_cap, &policy(8), &none()).is_ok());
        let over = spec_with((0..9).map(bind).collect());
        let err = refuse_too_many_mounts(&over, &policy(8), &none()).unwrap_err();
        assert_eq!(err.rule, RefusalRule::MountCount);
        let line = err.to_string();
        assert!(
            line.starts_with("refused by moat rule mount-count: "),
            "{line}"
        );
        assert!(
            line.contains("9 mounts") && line.contains("filesystem.max_mounts (8)"),
            "{line}"
        );
    }

    #[test]
    fn overlay_layers_count_as_mounts() {
        let overlay = MountBuilder::default()
            .destination("/o")
            .typ("overlay")
            .source("overlay")
            .options(vec![
                "lowerdir=/a:/b:/c".to_string(),
                "upperdir=/u".to_string(),
                "workdir=/w".to_string(),
            ])
            .build()
            .unwrap();
        // 1 mount + 5 layers.
        let spec = spec_with(vec![overlay]);
        assert!(refuse_too_many_mounts(&spec, &policy(6), &none()).is_ok());
        assert!(refuse_too_many_mounts(&spec, &policy(5), &none()).is_err());
    }

    #[test]
    fn the_default_cap_is_generous_for_real_workloads() {
        let p = Policy::embedded();
        assert_eq!(p.filesystem.max_mounts, 256);
        let docker_like = spec_with((0..64).map(bind).collect());
        assert!(refuse_too_many_mounts(&docker_like, &p, &none()).is_ok());
        let spec = spec_with(Vec::new());
        assert!(refuse_too_many_mounts(&spec, &p, &none()).is_ok());
    }
}
