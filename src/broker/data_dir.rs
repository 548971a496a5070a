//! The identity of a data dir and the rules that keep lost metadata from deleting data.
//!
//! `<data_dir>/meta.properties` (Kafka's file name and `key=value` format) records which
//! cluster and node the directory belongs to:
//! ```text
//! # Written by strand when the data dir was first used. Do not edit.
//! version=1
//! cluster.id=<the metadata store's cluster id>
//! node.id=<node.id>
//! ```
//! It is written (temp file, fsync, rename, fsync dir) the first time a broker uses the
//! directory, and checked at every start, before anything in the directory is changed:
//! - partition directories (or `meta.properties`) but no metadata store (`meta/metadata.json`):
//!   refuse to start. A new store would know no topics, and reconciling would treat every
//!   partition as stray. The message names the missing file.
//! - `meta.properties` names another cluster than the store, or another node id than the
//!   configuration: refuse to start, naming the file.
//!
//! Partition directories that match no current topic (unknown name, or a `partition.metadata`
//! topic id that differs from the topic's) are never deleted: they are renamed to
//! `<name>.<random id>-stray` (Kafka's suffix for stray logs) and left for the operator.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// Name of the identity file in the data dir.
pub const META_PROPERTIES: &str = "meta.properties";
/// Suffix of partition directories set aside at start because no topic owns them.
pub const STRAY_SUFFIX: &str = "-stray";

/// What `meta.properties` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub cluster_id: String,
    pub node_id: i32,
}

/// Reads `meta.properties`; `Ok(None)` if the data dir has none.
pub fn read_identity(data_dir: &Path) -> anyhow::Result<Option<Identity>> {
    let path = data_dir.join(META_PROPERTIES);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut cluster_id = None;
    let mut node_id = None;
    let mut version = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            bail!(
                "{} is not a properties file (line `{line}`)",
                path.display()
            );
        };
        match k.trim() {
            "cluster.id" => cluster_id = Some(v.trim().to_string()),
            "node.id" => node_id = v.trim().parse::<i32>().ok(),
            "version" => version = Some(v.trim().to_string()),
            _ => {}
        }
    }
    match (version.as_deref(), cluster_id, node_id) {
        (Some("1"), Some(cluster_id), Some(node_id)) if !cluster_id.is_empty() => {
            Ok(Some(Identity {
                cluster_id,
                node_id,
            }))
        }
        _ => bail!(
            "{} must hold version=1, cluster.id and node.id; refusing to start",
            path.display()
        ),
    }
}

/// Writes `meta.properties` atomically.
pub fn write_identity(data_dir: &Path, id: &Identity) -> std::io::Result<()> {
    let tmp = data_dir.join(format!("{META_PROPERTIES}.tmp"));
    {
        let mut f = fs::File::create(&tmp)?;
        writeln!(
            f,
            "# Written by strand when the data dir was first used. Do not edit."
        )?;
        writeln!(f, "version=1")?;
        writeln!(f, "cluster.id={}", id.cluster_id)?;
        writeln!(f, "node.id={}", id.node_id)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, data_dir.join(META_PROPERTIES))?;
    fs::File::open(data_dir)?.sync_all()
}

/// Parses `<topic>-<partition>` directory names.
pub fn parse_partition_dir(name: &str) -> Option<(&str, i32)> {
    let (topic, index) = name.rsplit_once('-')?;
    let index = index.parse::<i32>().ok().filter(|i| *i >= 0)?;
    (!topic.is_empty()).then_some((topic, index))
}

/// The partition directories of the data dir (`<topic>-<n>`, not being deleted or set aside).
pub fn partition_dirs(data_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(data_dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().to_string();
        if parse_partition_dir(&name).is_some() {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Checks the data dir before the metadata store is opened (see the module docs). `store_exists`
/// says whether the store's file is there.
pub fn check_before_open(
    data_dir: &Path,
    store_exists: bool,
    store_file: &Path,
) -> anyhow::Result<Option<Identity>> {
    let identity = read_identity(data_dir)?;
    if !store_exists {
        let partitions = partition_dirs(data_dir)?;
        if let Some(first) = partitions.first() {
            bail!(
                "data dir {} holds {} partition director{} ({}{}) but no metadata store {}: \
                 refusing to start, because a new store would not know these topics. Restore \
                 {}, or move the partition directories away to start an empty broker.",
                data_dir.display(),
                partitions.len(),
                if partitions.len() == 1 { "y" } else { "ies" },
                first.file_name().unwrap_or_default().to_string_lossy(),
                if partitions.len() > 1 { ", …" } else { "" },
                store_file.display(),
                store_file.display(),
            );
        }
        if let Some(id) = &identity {
            bail!(
                "{} says data dir {} belongs to cluster {}, but its metadata store {} is \
                 missing: refusing to start. Restore {}, or remove {} to start an empty broker.",
                data_dir.join(META_PROPERTIES).display(),
                data_dir.display(),
                id.cluster_id,
                store_file.display(),
                store_file.display(),
                data_dir.join(META_PROPERTIES).display(),
            );
        }
    }
    Ok(identity)
}

/// Checks the identity against the opened store and the configuration, writing it when the
/// data dir has none yet.
pub fn check_identity(
    data_dir: &Path,
    found: Option<Identity>,
    cluster_id: &str,
    node_id: i32,
) -> anyhow::Result<()> {
    let path = data_dir.join(META_PROPERTIES);
    match found {
        Some(id) if id.cluster_id != cluster_id => bail!(
            "{} says data dir {} belongs to cluster {}, but the metadata store is of cluster \
             {cluster_id}: refusing to start on another cluster's data",
            path.display(),
            data_dir.display(),
            id.cluster_id
        ),
        Some(id) if id.node_id != node_id => bail!(
            "{} says data dir {} belongs to node.id {}, but this broker is configured with \
             node.id {node_id}: refusing to start",
            path.display(),
            data_dir.display(),
            id.node_id
        ),
        Some(_) => Ok(()),
        None => write_identity(
            data_dir,
            &Identity {
                cluster_id: cluster_id.to_string(),
                node_id,
            },
        )
        .with_context(|| format!("cannot write {}", path.display())),
    }
}

/// Sets a partition directory that no topic owns aside as `<name>.<random id>-stray`.
pub fn set_aside(data_dir: &Path, dir: &Path) -> std::io::Result<PathBuf> {
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    let target = data_dir.join(format!(
        "{name}.{}{STRAY_SUFFIX}",
        uuid::Uuid::new_v4().simple()
    ));
    fs::rename(dir, &target)?;
    fs::File::open(data_dir)?.sync_all()?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_round_trips_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_identity(dir.path()).unwrap(), None);
        let id = Identity {
            cluster_id: "abc".into(),
            node_id: 3,
        };
        write_identity(dir.path(), &id).unwrap();
        assert_eq!(read_identity(dir.path()).unwrap(), Some(id));
        fs::write(dir.path().join(META_PROPERTIES), "node.id=3\n").unwrap();
        assert!(read_identity(dir.path()).is_err());
    }

    #[test]
    fn partition_dir_names() {
        assert_eq!(parse_partition_dir("orders-3"), Some(("orders", 3)));
        assert_eq!(parse_partition_dir("a-b-0"), Some(("a-b", 0)));
        assert_eq!(parse_partition_dir("meta"), None);
        assert_eq!(parse_partition_dir("t-0.abc-stray"), None);
        assert_eq!(parse_partition_dir("t-0.abc-delete"), None);
        assert_eq!(parse_partition_dir("-1"), None);
    }
}
