//! SELinux labels (`linux.mountLabel`, `process.selinuxLabel`) must be
//! labels (T32; red-team pass 5 G6): libcontainer splices the mount label
//! into mount data (`context="<label>"` on the masked-path tmpfs, an
//! unquoted `context=<label>` on SELinux hosts), where the kernel splits
//! options at commas and quotes; a "label" like `",size=0,nr_inodes=0,"`
//! would be the comma class of mount options again. A label is
//! `user:role:type[:level]`, identifiers of `[A-Za-z0-9_.-]`, and the level
//! an MLS range whose only commas separate MCS categories (`c1,c2`).

use oci_spec::runtime::Spec;

use crate::refusal::{Refusal, RefusalRule};

/// Longer than any label a policy writes; bounds what reaches mount data.
pub const MAX_LABEL_LEN: usize = 1024;

/// Refuses a mount label or process label outside the grammar.
pub fn refuse_malformed_selinux_labels(spec: &Spec) -> Result<(), Refusal> {
    let mount = spec.linux().as_ref().and_then(|l| l.mount_label().clone());
    let process = spec
        .process()
        .as_ref()
        .and_then(|p| p.selinux_label().clone());
    for (field, label) in [
        ("linux.mountLabel", mount),
        ("process.selinuxLabel", process),
    ] {
        if let Some(label) = label {
            check_selinux_label(field, &label)?;
        }
    }
    Ok(())
}

/// One label against the grammar; `field` names it in the refusal.
/// The empty string is "no label" (what engines send when there is none).
pub fn check_selinux_label(field: &str, label: &str) -> Result<(), Refusal> {
    if label.is_empty() || is_selinux_label(label) {
        return Ok(());
    }
    let shown: String = label.chars().take(80).collect();
    Err(Refusal::new(
        RefusalRule::SelinuxLabel,
        format!(
            "{field} {shown:?} is not an SELinux label (user:role:type[:level], at most {MAX_LABEL_LEN} bytes; commas only between MCS categories)"
        ),
        None,
    ))
}

fn is_selinux_label(label: &str) -> bool {
    if label.len() > MAX_LABEL_LEN {
        return false;
    }
    let mut parts = label.splitn(4, ':');
    let idents_ok = (0..3).all(|_| parts.next().is_some_and(is_ident));
    idents_ok && parts.next().is_none_or(is_mls_range)
}

fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// `low[-high]`, each `sensitivity[:categories]`.
fn is_mls_range(s: &str) -> bool {
    let mut levels = s.splitn(2, '-');
    levels.all(is_mls_level)
}

fn is_mls_level(s: &str) -> bool {
    let (sensitivity, categories) = match s.split_once(':') {
        Some((sens, cats)) => (sens, Some(cats)),
        None => (s, None),
    };
    is_numbered(sensitivity, 's') && categories.is_none_or(|c| c.split(',').all(is_category))
}

/// `cN` or a range `cN.cM`.
fn is_category(s: &str) -> bool {
    let mut ends = s.splitn(2, '.');
    ends.all(|e| is_numbered(e, 'c'))
}

fn is_numbered(s: &str, letter: char) -> bool {
    s.strip_prefix(letter)
        .is_some_and(|n| !n.is_empty() && n.len() <= 5 && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_engines_send_pass() {
        for ok in [
            "system_u:system_r:container_t:s0:c123,c456",
            "system_u:object_r:container_file_t:s0:c123,c456",
            "system_u:system_r:spc_t:s0",
            "unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023",
            "system_u:system_r:svirt_lxc_net_t:s0:c1,c5.c9",
            "user_u:role_r:type_t",
            "",
        ] {
            check_selinux_label("linux.mountLabel", ok).unwrap();
        }
    }

    #[test]
    fn mount_data_smuggling_is_refused() {
        for bad in [
            "\",size=0,nr_inodes=0,\"",
            "a:b:c:s0,size=0",
            "a:b:c:s0:c1,size=0",
            "a:b:c:s0:c1\",mode=777",
            "a:b,c:d",
            "a:b:c d",
            "a:b",
            "a::c",
            "a:b:c:",
            "a:b:c:s0:",
            "a:b:c:s0:c1,",
            "a:b:c:s0-",
            "a:b:c:s0:c1\n",
        ] {
            let e = check_selinux_label("linux.mountLabel", bad).unwrap_err();
            assert_eq!(e.rule, RefusalRule::SelinuxLabel, "{bad:?}");
            assert!(e.to_string().contains("linux.mountLabel"), "{e}");
        }
        let long = format!("u:r:{}:s0", "t".repeat(MAX_LABEL_LEN));
        check_selinux_label("process.selinuxLabel", &long).unwrap_err();
    }

    #[test]
    fn both_spec_fields_are_checked() {
        let mut spec = Spec::default();
        let mut linux = spec.linux().clone().unwrap_or_default();
        linux.set_mount_label(Some("x,size=0".into()));
        spec.set_linux(Some(linux));
        let e = refuse_malformed_selinux_labels(&spec).unwrap_err();
        assert!(e.detail.starts_with("linux.mountLabel"), "{e}");

        let mut spec = Spec::default();
        let mut process = spec.process().clone().unwrap_or_default();
        process.set_selinux_label(Some("u:r:t:s0,context=x".into()));
        spec.set_process(Some(process));
        let e = refuse_malformed_selinux_labels(&spec).unwrap_err();
        assert!(e.detail.starts_with("process.selinuxLabel"), "{e}");
    }
}
