//! The number of mounts a spec may ask for (threat T36): every bind source
//! and overlay layer is opened and held by moat as host root, and every bind
//! becomes a mount in the HOST mount namespace (staging) for the
//! container's life. The kernel allows `fs.mount-max` (100 000) mounts per
//! mount namespace, the host's included: a few specs of tens of thousands of
//! binds would stop every mount on the node (red-team R7-6). Real workloads
//! carry tens (docker's defaults and volumes, a pod's service account,
//! hosts, configmaps); the policy's `filesystem.max_mounts` bounds the rest.

use oci_spec::runtime::{Mount, Spec};

use crate::policy::Policy;
use crate::refusal::{Refusal, RefusalRule};

/// What one spec mount costs the host: the mount itself, plus one pinned
/// host path (and, staged, one host mount) per overlay layer it names.
fn host_cost(m: &Mount) -> usize {
    let layers = if m.typ().as_deref() == Some("overlay") {
        crate::path_syntax::overlay_option_paths(m.options().as_deref().unwrap_or_default()).len()
    } else {
        0
    };
    1 + layers
}

/// Refuses a spec whose mounts (counting each overlay layer as one more)
/// exceed the policy's `filesystem.max_mounts`. Judged on the spec as
/// given, before anything is opened or mounted; create also runs it
/// ([`refuse_too_many_mounts_early`]) before it opens the first source, so
/// a refused spec costs no host work per entry.
pub fn refuse_too_many_mounts(spec: &Spec, policy: &Policy) -> Result<(), Refusal> {
    let mounts = spec.mounts().as_deref().unwrap_or_default();
    let count = mounts
        .iter()
        .fold(0usize, |n, m| n.saturating_add(host_cost(m)));
    let max = policy.filesystem.max_mounts;
    if count > max as usize {
        return Err(Refusal::new(
            RefusalRule::MountCount,
            format!(
                "the spec has {} mounts ({count} counting each overlay layer), above filesystem.max_mounts ({max}): each is held as a host mount for the container's life",
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
    refuse_too_many_mounts(spec, &policy)
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

    fn policy(max: u32) -> Policy {
        let mut p = Policy::default();
        p.filesystem.max_mounts = max;
        p
    }

    #[test]
    fn mounts_up_to_the_cap_pass_and_one_more_is_refused() {
        let at_cap = spec_with((0..8).map(bind).collect());
        assert!(refuse_too_many_mounts(&at_cap, &policy(8)).is_ok());
        let over = spec_with((0..9).map(bind).collect());
        let err = refuse_too_many_mounts(&over, &policy(8)).unwrap_err();
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
        assert!(refuse_too_many_mounts(&spec, &policy(6)).is_ok());
        assert!(refuse_too_many_mounts(&spec, &policy(5)).is_err());
    }

    #[test]
    fn the_default_cap_is_generous_for_real_workloads() {
        let p = Policy::embedded();
        assert_eq!(p.filesystem.max_mounts, 256);
        let docker_like = spec_with((0..64).map(bind).collect());
        assert!(refuse_too_many_mounts(&docker_like, &p).is_ok());
        let spec = spec_with(Vec::new());
        assert!(refuse_too_many_mounts(&spec, &p).is_ok());
    }
}
