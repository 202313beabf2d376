//! Deleting a container: libcontainer's part, then everything moat set up
//! for it ([`super::remove_moat_state`]).
//!
//! `--force` of a container that does not exist succeeds (containerd and
//! docker rely on that), and also sweeps what a moat killed mid-create left
//! behind: rootfs mounts, the id range and moat's private state. Deleting
//! a pod's owner deletes its members ([`crate::pod`]).

use crate::runc_contract::Op;
use anyhow::{anyhow, bail, Context, Result};
use libcontainer::container::Container;

use super::{remove_moat_state, remove_moat_state_after, validate_id, ContainerPaths, Ctx};

/// `moat delete [--force] ID`.
pub fn delete(ctx: &Ctx, id: &str, force: bool) -> Result<()> {
    validate_id(id)?;
    let root = ctx.root()?;
    let policy = ctx.policy_for_cleanup();
    let paths = ContainerPaths::new(&root, id);
    let (lc_dir, private) = (&paths.libcontainer_dir, &paths.private_dir);
    if force {
        // Before the sweep, which would kill the recorder unfinished.
        crate::learn::stop_recorder(private);
        super::sweep_create_leftovers(&root, id);
    }
    let lc_exists = lc_dir.exists();
    if !lc_exists && !private.exists() {
        if force {
            // Still sweep a range a crash may have left in the pool.
            remove_moat_state(&root, id, &policy)?;
            return Ok(());
        }
        bail!(crate::runc_contract::DOES_NOT_EXIST);
    }
    let mut lc_deleted = false;
    if lc_exists {
        match Container::load(lc_dir.clone()) {
            Ok(mut container) => {
                if !force {
                    crate::runc_contract::check(Op::Delete, id, container.status())
                        .map_err(anyhow::Error::msg)?;
                }
                // T39: the recorder sits in the container's cgroups; it
                // ends (profile written) before libcontainer removes them.
                crate::learn::stop_recorder(private);
                let first = container.delete(force);
                if first.is_err() && force {
                    // A process may have entered the cgroup while it was
                    // being removed (an interrupted create): kill what is
                    // there and try once more.
                    super::sweep_create_leftovers(&root, id);
                    super::sweep_cgroup(private, id, ctx.systemd_cgroup);
                    if let Ok(mut again) = Container::load(lc_dir.clone()) {
                        again
                            .delete(true)
                            .map_err(|e| anyhow!("{e}"))
                            .with_context(|| format!("cannot delete container {id}"))?;
                    }
                } else {
                    first
                        .map_err(|e| anyhow!("{e}"))
                        .with_context(|| format!("cannot delete container {id}"))?;
                    lc_deleted = true;
                }
            }
            Err(e) if force => {
                // A state file cut short by a crash: nothing to signal
                // through libcontainer, so remove its directory directly.
                tracing::warn!(id, error = %e, "container state unreadable; removing it");
                super::sweep_cgroup(private, id, ctx.systemd_cgroup);
                std::fs::remove_dir_all(lc_dir)
                    .with_context(|| format!("cannot remove {}", lc_dir.display()))?;
            }
            Err(e) => {
                return Err(anyhow!("{e}")).with_context(|| {
                    format!("cannot load container {id} (use --force to remove it)")
                })
            }
        }
    }
    crate::phase::done(crate::phase::LIBCONTAINER_DELETE);
    let torn_down = remove_moat_state_after(&root, id, &policy, lc_deleted);
    // Listed after the teardown, which took the range lock: a member whose
    // create recorded this owner meanwhile is listed too (its pod-owner
    // file is its own, not removed with the owner's state).
    let members = crate::pod::members(&root, id);
    // The pod's members do not outlive its owner: their processes were
    // killed and their id range freed above. An engine may never delete
    // them itself (containerd 2.1, when a pod's shim dies, deletes only
    // the sandbox's task and forgets its containers'), which would leave
    // their state and rootfs mounts behind; they are deleted here, and an
    // engine's own later delete finds "container does not exist", which
    // engines take as done.
    for member in members {
        if let Err(e) = delete(ctx, &member, true) {
            tracing::warn!(id, member, error = %format!("{e:#}"), "cannot delete a member of the pod");
        }
    }
    crate::phase::done(crate::phase::TEARDOWN);
    torn_down
}
