//! containerd's config.toml for the tests' private containerds, for
//! config version 2 (containerd 1.x) and 3 (containerd 2.x) from one
//! description: [`cri_options`] is the one place to add or change a CRI
//! option, whatever table each version keeps it in.

use moat::install::ContainerdRuntime;

use super::{Layout, PAUSE_IMAGE};

/// The CRI plugin an option belongs to. Config version 2 (containerd 1.x)
/// keeps every CRI option in `io.containerd.grpc.v1.cri`; version 3
/// (containerd 2.x) moves the image and runtime options to plugins of
/// their own (where `moat install containerd` puts a handler).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CriPlugin {
    Images,
    Server,
    Runtime,
}

impl CriPlugin {
    /// In the order the config lists them.
    const ALL: [CriPlugin; 3] = [CriPlugin::Images, CriPlugin::Server, CriPlugin::Runtime];

    /// The plugin's id (its table below `plugins`) in config `version`.
    fn id(self, version: u32) -> &'static str {
        match (self, version) {
            (CriPlugin::Images, 3..) => "io.containerd.cri.v1.images",
            (CriPlugin::Runtime, 3..) => "io.containerd.cri.v1.runtime",
            _ => "io.containerd.grpc.v1.cri",
        }
    }

    /// The ids of the CRI plugins in config `version`, each once.
    fn ids(version: u32) -> Vec<&'static str> {
        let mut ids: Vec<&str> = Self::ALL.iter().map(|p| p.id(version)).collect();
        ids.dedup();
        ids
    }
}

/// One option of the CRI plugins, for every config version.
struct CriOption {
    plugin: CriPlugin,
    /// Its dotted path below the plugin's table.
    key: &'static str,
    /// Its path in version 3, where that differs.
    key_v3: Option<&'static str>,
    /// Its value, as TOML.
    value: String,
    /// Why the tests set it (a comment above it).
    why: Option<&'static str>,
}

impl CriOption {
    fn new(plugin: CriPlugin, key: &'static str, value: impl Into<String>) -> CriOption {
        CriOption {
            plugin,
            key,
            key_v3: None,
            value: value.into(),
            why: None,
        }
    }

    fn key_v3(self, key: &'static str) -> CriOption {
        CriOption {
            key_v3: Some(key),
            ..self
        }
    }

    fn why(self, why: &'static str) -> CriOption {
        CriOption {
            why: Some(why),
            ..self
        }
    }

    /// (table below the plugin's, "" for the plugin's own; key) in
    /// config `version`.
    fn place(&self, version: u32) -> (&'static str, &'static str) {
        let key = match self.key_v3 {
            Some(k) if version >= 3 => k,
            _ => self.key,
        };
        key.rsplit_once('.').unwrap_or(("", key))
    }
}

/// `s` as a TOML string.
fn toml_str(s: impl std::fmt::Display) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// What the tests' CRI plugins are set to: the one place to add an option.
fn cri_options(layout: &Layout) -> Vec<CriOption> {
    use CriPlugin::{Images, Runtime, Server};
    vec![
        CriOption::new(Images, "sandbox_image", toml_str(PAUSE_IMAGE))
            .key_v3("pinned_images.sandbox"),
        CriOption::new(Runtime, "restrict_oom_score_adj", "true")
            .why("Needed in this VM (containerd runs with a raised oom_score_adj floor)."),
        CriOption::new(Runtime, "netns_mounts_under_state_dir", "true")
            .why("Pod network namespaces under our own state dir, not /var/run/netns."),
        CriOption::new(Server, "stream_server_address", toml_str("127.0.0.1")),
        CriOption::new(Server, "stream_server_port", toml_str("0")),
        CriOption::new(Runtime, "cni.bin_dir", toml_str("/usr/lib/cni")),
        CriOption::new(
            Runtime,
            "cni.conf_dir",
            toml_str(layout.cni_conf_dir.display()),
        ),
        CriOption::new(Runtime, "containerd.default_runtime_name", toml_str("runc")),
        CriOption::new(
            Runtime,
            "containerd.runtimes.runc.runtime_type",
            toml_str(moat::install::RUNC_SHIM_TYPE),
        ),
    ]
}

/// `options` as the CRI plugins' tables of config `version`: a plugin's
/// own keys, then its tables in the order the options name them, each
/// indented below the closest table it extends.
fn render_cri(options: &[CriOption], version: u32) -> String {
    let mut out = String::new();
    for plugin in CriPlugin::ids(version) {
        let placed: Vec<(&str, &str, &CriOption)> = options
            .iter()
            .filter(|o| o.plugin.id(version) == plugin)
            .map(|o| {
                let (table, key) = o.place(version);
                (table, key, o)
            })
            .collect();
        let mut tables: Vec<&str> = vec![""];
        for (table, _, _) in &placed {
            if !tables.contains(table) {
                tables.push(table);
            }
        }
        out.push_str(&format!("\n[plugins.\"{plugin}\"]\n"));
        let mut depths: Vec<(&str, usize)> = Vec::new();
        for table in tables {
            let depth = if table.is_empty() {
                0
            } else {
                let parent = depths
                    .iter()
                    .filter(|(t, _)| t.is_empty() || table.starts_with(&format!("{t}.")))
                    .map(|(_, d)| *d)
                    .max()
                    .unwrap_or(0);
                out.push_str(&format!(
                    "{}[plugins.\"{plugin}\".{table}]\n",
                    "  ".repeat(parent + 1)
                ));
                parent + 1
            };
            depths.push((table, depth));
            let indent = "  ".repeat(depth + 1);
            for (_, key, o) in placed.iter().filter(|(t, _, _)| *t == table) {
                if let Some(why) = o.why {
                    out.push_str(&format!("{indent}# {why}\n"));
                }
                out.push_str(&format!("{indent}{key} = {}\n", o.value));
            }
        }
    }
    out
}

/// containerd's config.toml of config `version` for `layout`: root, state,
/// sockets and plugin directory in the test's directory; with `cri`, the
/// CRI plugins as [`cri_options`] sets them, else the CRI plugins off.
pub(super) fn render_config(layout: &Layout, version: u32, cri: bool) -> String {
    let d = layout.dir.display();
    let sock = layout.socket.display();
    let mut out = format!(
        "# A private containerd for moat's tests (integration/src/containerd.rs).\n\
         version = {version}\nroot = {}\nstate = {}\n",
        toml_str(format!("{d}/root")),
        toml_str(format!("{d}/state")),
    );
    if !cri {
        let ids: Vec<String> = CriPlugin::ids(version).into_iter().map(toml_str).collect();
        out.push_str(&format!("disabled_plugins = [{}]\n", ids.join(", ")));
    }
    out.push_str(&format!(
        "\n[grpc]\n  address = {}\n\n[ttrpc]\n  address = {}\n\n\
         [plugins.\"io.containerd.internal.v1.opt\"]\n  path = {}\n",
        toml_str(&sock),
        toml_str(format!("{sock}.ttrpc")),
        toml_str(format!("{d}/opt")),
    ));
    if cri {
        out.push_str(&render_cri(&cri_options(layout), version));
    }
    out
}

/// containerd's config.toml for `layout` with its CRI plugins on: CRI
/// with the sandbox image, CNI from `layout`, the runc handler
/// (containerd requires its default runtime), and each of `handlers`
/// merged in by moat's installer code.
pub fn containerd_config(layout: &Layout, handlers: &[ContainerdRuntime]) -> String {
    let mut text = render_config(layout, super::config_version(), true);
    for h in handlers {
        match moat::install::merge_containerd(&text, h, "containerd test config")
            .unwrap_or_else(|e| panic!("cannot add handler {}: {e}", h.handler))
        {
            moat::install::Merge::Changed(t) => text = t,
            moat::install::Merge::Unchanged => {}
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn layout() -> Layout {
        Layout::under(
            PathBuf::from("/tmp/moat-cri.test"),
            "test",
            "10.213.10".to_string(),
            "/kubepods/moat-cri-test".to_string(),
        )
    }

    fn parse(text: &str) -> toml::Table {
        text.parse()
            .unwrap_or_else(|e| panic!("not TOML ({e}):\n{text}"))
    }

    /// The value at `path` (a plugin id is one element).
    fn at<'a>(table: &'a toml::Table, path: &[&str]) -> Option<&'a toml::Value> {
        let (last, tables) = path.split_last()?;
        let mut t = table;
        for key in tables {
            t = t.get(*key)?.as_table()?;
        }
        t.get(*last)
    }

    /// Where containerd 1.x (version 2) and 2.x (version 3) read each
    /// option the tests set, and its value.
    #[test]
    fn each_cri_option_is_where_its_config_version_reads_it() {
        const V2: &str = "io.containerd.grpc.v1.cri";
        const IMAGES: &str = "io.containerd.cri.v1.images";
        const RUNTIME: &str = "io.containerd.cri.v1.runtime";
        let l = layout();
        let conf_dir = l.cni_conf_dir.display().to_string();
        let expected: Vec<(&[&str], &[&str], toml::Value)> = vec![
            (
                &[V2, "sandbox_image"],
                &[IMAGES, "pinned_images", "sandbox"],
                PAUSE_IMAGE.into(),
            ),
            (
                &[V2, "restrict_oom_score_adj"],
                &[RUNTIME, "restrict_oom_score_adj"],
                true.into(),
            ),
            (
                &[V2, "netns_mounts_under_state_dir"],
                &[RUNTIME, "netns_mounts_under_state_dir"],
                true.into(),
            ),
            (
                &[V2, "stream_server_address"],
                &[V2, "stream_server_address"],
                "127.0.0.1".into(),
            ),
            (
                &[V2, "stream_server_port"],
                &[V2, "stream_server_port"],
                "0".into(),
            ),
            (
                &[V2, "cni", "bin_dir"],
                &[RUNTIME, "cni", "bin_dir"],
                "/usr/lib/cni".into(),
            ),
            (
                &[V2, "cni", "conf_dir"],
                &[RUNTIME, "cni", "conf_dir"],
                conf_dir.as_str().into(),
            ),
            (
                &[V2, "containerd", "default_runtime_name"],
                &[RUNTIME, "containerd", "default_runtime_name"],
                "runc".into(),
            ),
            (
                &[V2, "containerd", "runtimes", "runc", "runtime_type"],
                &[RUNTIME, "containerd", "runtimes", "runc", "runtime_type"],
                "io.containerd.runc.v2".into(),
            ),
        ];
        assert_eq!(expected.len(), cri_options(&l).len(), "an option untested");
        for version in [2, 3] {
            let text = render_config(&l, version, true);
            let doc = parse(&text);
            assert_eq!(at(&doc, &["version"]), Some(&i64::from(version).into()));
            assert_eq!(at(&doc, &["root"]), Some(&"/tmp/moat-cri.test/root".into()));
            assert_eq!(
                at(&doc, &["ttrpc", "address"]),
                Some(&"/tmp/moat-cri.test/containerd.sock.ttrpc".into())
            );
            assert!(at(&doc, &["disabled_plugins"]).is_none(), "{text}");
            for (v2, v3, value) in &expected {
                let path: Vec<&str> = std::iter::once("plugins")
                    .chain(if version == 2 { *v2 } else { *v3 }.iter().copied())
                    .collect();
                assert_eq!(at(&doc, &path), Some(value), "{path:?} in\n{text}");
            }
            let plugins = doc["plugins"].as_table().expect("plugins");
            let cri_keys: usize = CriPlugin::ids(version)
                .iter()
                .map(|id| plugins[*id].as_table().expect("a CRI table").len())
                .sum();
            // version 2: 5 keys and 2 tables in one plugin; 3: 1 + 2 + 4.
            assert_eq!(cri_keys, 7, "{text}");
        }
    }

    /// moat's installer finds the runtimes table the rendering makes, in
    /// either version, and adds a handler beside runc.
    #[test]
    fn a_handler_merges_beside_runc_in_both_versions() {
        let l = layout();
        let handler = ContainerdRuntime::through_runc_shim("moat", "/usr/bin/moat", "/run/m");
        for (version, plugin) in [
            (2, "io.containerd.grpc.v1.cri"),
            (3, "io.containerd.cri.v1.runtime"),
        ] {
            let text = render_config(&l, version, true);
            let merged = match moat::install::merge_containerd(&text, &handler, "test") {
                Ok(moat::install::Merge::Changed(t)) => t,
                other => panic!("version {version}: {other:?}"),
            };
            let doc = parse(&merged);
            let runtimes = ["plugins", plugin, "containerd", "runtimes"];
            for name in ["runc", "moat"] {
                let path: Vec<&str> = runtimes
                    .iter()
                    .copied()
                    .chain([name, "runtime_type"])
                    .collect();
                assert_eq!(
                    at(&doc, &path),
                    Some(&"io.containerd.runc.v2".into()),
                    "version {version}:\n{merged}"
                );
            }
        }
    }

    /// Without CRI: every CRI plugin of the version is off, and no CRI
    /// table is written.
    #[test]
    fn without_cri_the_cri_plugins_are_disabled() {
        let l = layout();
        for (version, ids) in [
            (2, vec!["io.containerd.grpc.v1.cri"]),
            (
                3,
                vec![
                    "io.containerd.cri.v1.images",
                    "io.containerd.grpc.v1.cri",
                    "io.containerd.cri.v1.runtime",
                ],
            ),
        ] {
            let text = render_config(&l, version, false);
            let doc = parse(&text);
            let disabled: Vec<&str> = doc["disabled_plugins"]
                .as_array()
                .expect("disabled_plugins")
                .iter()
                .filter_map(|v| v.as_str())
                .collect();
            assert_eq!(disabled, ids, "{text}");
            let plugins: Vec<&String> =
                doc["plugins"].as_table().expect("plugins").keys().collect();
            assert_eq!(plugins, ["io.containerd.internal.v1.opt"], "{text}");
        }
    }
}
