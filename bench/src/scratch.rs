//! A fresh scratch directory for one benchmark run (node data, SQLite files), removed with everything in it when
//! dropped, also on error or Ctrl-C. Shared by the benchmark programs.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;

/// A fresh directory for this run's files, removed (with everything in it) when dropped.
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    pub fn create(parent: Option<&Path>) -> anyhow::Result<ScratchDir> {
        let parent = match parent {
            Some(p) => std::path::absolute(p).with_context(|| format!("cannot resolve {}", p.display()))?,
            None => std::env::temp_dir(),
        };
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let path = parent.join(format!("canopy-bench-{}-{nanos:09}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(ScratchDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    /// `CANOPY_BENCH_KEEP=1` keeps the directory (node logs and data) for a look afterwards.
    fn drop(&mut self) {
        if std::env::var_os("CANOPY_BENCH_KEEP").is_some_and(|v| v == "1") {
            eprintln!("CANOPY_BENCH_KEEP=1: keeping {}", self.path.display());
            return;
        }
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!("warning: cannot remove {}: {e}", self.path.display());
        }
    }
}
