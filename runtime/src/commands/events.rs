//! `moat events`: container events and resource statistics (docker stats).
//! Without `--stats`, the stream also carries what moat refused for the
//! container (`moat::resolver_stats`): one JSON object per line, between
//! the statistics objects: `{"type":"egress-dns","id":…,"time":…,"data":{…}}`
//! for a name its resolver refused, `{"type":"egress-connect",…}` for a
//! connection attempt its rules refused (rate-limited in the kernel).

use std::time::Duration;

use anyhow::{Context, Result};

use super::{load_container, Ctx};

pub fn events(ctx: &Ctx, args: liboci_cli::Events) -> Result<()> {
    let mut container = load_container(ctx, &args.container_id)?;
    if !args.stats {
        // From now on (the file's end as of here); printed whole, one
        // println each, so they never split a statistics object.
        let mut next = moat::resolver_stats::follow_events(&ctx.root()?, &args.container_id);
        std::thread::Builder::new()
            .name("egress-events".into())
            .spawn(move || loop {
                for line in next() {
                    println!("{line}");
                }
                std::thread::sleep(Duration::from_millis(250));
            })
            .context("cannot follow the container's egress events")?;
    }
    container
        .events(args.interval, args.stats)
        .with_context(|| format!("cannot read events of container {}", args.container_id))
}
