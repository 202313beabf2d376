//! One module per CLI command: each parses its arguments, calls the
//! container library ([`moat::container`]) and prints, as youki's
//! `commands/` does. The lifecycle itself (create, exec, delete, teardown)
//! lives in `moat::container`.

pub use moat::container::{
    load_container, load_moat_state, remove_moat_state, remove_moat_state_after, status_name,
    validate_id, Ctx, DEFAULT_ROOT,
};

/// The [`create::CreateOpts`] of `moat create` and `moat run`: their
/// arguments are two liboci-cli types that share these field names, and a
/// create option must mean the same under both.
macro_rules! create_opts {
    ($args:expr, detach: $detach:expr) => {
        CreateOpts {
            id: &$args.container_id,
            bundle: &$args.bundle,
            pid_file: $args.pid_file.as_deref(),
            console_socket: $args.console_socket.as_deref(),
            preserve_fds: $args.preserve_fds,
            no_pivot: $args.no_pivot,
            detach: $detach,
        }
    };
}

pub mod egress;
pub mod events;
pub mod explain;
pub mod features;
pub mod hook;
pub mod install;
pub mod kill;
pub mod learn;
pub mod list;
pub mod metrics;
pub mod pause;
pub mod ps;
pub mod report;
pub mod resolver;
pub mod resume;
pub mod run;
pub mod selftest;
pub mod spec;
pub mod start;
pub mod state;
pub mod update;

/// `moat create`: see [`moat::container::create`].
pub mod create {
    use anyhow::Result;
    pub use moat::container::create::{
        bundle_rootfs, create_container, load_bundle_spec, CreateOpts,
    };

    use super::Ctx;

    pub fn create(ctx: &Ctx, args: liboci_cli::Create) -> Result<()> {
        create_container(ctx, &create_opts!(args, detach: true)).map(|_| ())
    }
}

/// `moat exec`: see [`moat::container::exec`].
pub mod exec {
    use anyhow::Result;

    use super::Ctx;

    pub fn exec(ctx: &Ctx, args: liboci_cli::Exec) -> Result<i32> {
        moat::container::exec::exec(ctx, args)
    }
}

/// `moat delete [--force]`: see [`moat::container::delete`].
pub mod delete {
    use anyhow::Result;

    use super::Ctx;

    pub fn delete(ctx: &Ctx, args: liboci_cli::Delete) -> Result<()> {
        moat::container::delete::delete(ctx, &args.container_id, args.force)
    }
}
