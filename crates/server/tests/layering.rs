//! The server's layering, checked on its source: the leaf part (and the role-neutral modules it uses) never
//! imports the master aggregator's, the front end's or query execution's code. A leaf acts only on what a request
//! carries and on its own store; this keeps it so as replication lands there.

use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("the source directory is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// Every `crate::<module>` path in `file` naming one of `forbidden`, as "file: line".
fn offending_imports(file: &Path, forbidden: &[&str]) -> Vec<String> {
    let text = std::fs::read_to_string(file).expect("a source file is readable");
    text.lines()
        .filter(|line| forbidden.iter().any(|m| line.contains(&format!("crate::{m}"))))
        .map(|line| format!("{}: {}", file.display(), line.trim()))
        .collect()
}

#[test]
fn the_leaf_never_imports_the_master_the_front_end_or_query_execution() {
    let src = Path::new(SRC);
    let mut files = rust_files(&src.join("leaf"));
    // The role-neutral modules the leaf uses must not reach those parts either.
    for shared in ["node.rs", "persist.rs", "config.rs", "error.rs", "answer.rs"] {
        files.push(src.join(shared));
    }
    assert!(files.len() > 5, "the leaf's sources were found: {files:?}");
    let offending: Vec<String> =
        files.iter().flat_map(|f| offending_imports(f, &["master", "front", "query"])).collect();
    assert!(offending.is_empty(), "the leaf part imports other roles' code:\n{}", offending.join("\n"));
}

#[test]
fn the_master_never_imports_the_front_end() {
    let files = rust_files(&Path::new(SRC).join("master"));
    assert!(!files.is_empty());
    let offending: Vec<String> = files.iter().flat_map(|f| offending_imports(f, &["front"])).collect();
    assert!(offending.is_empty(), "the master aggregator imports the front end:\n{}", offending.join("\n"));
}

/// The leaf's RPC handler dispatches to the copy and catch-up modules; they share only `leaf/mod.rs` and
/// `leaf/source.rs`, never the handler, so the leaf's modules form no circle.
#[test]
fn the_leaf_handler_is_imported_by_no_other_leaf_module() {
    let leaf = Path::new(SRC).join("leaf");
    let files: Vec<PathBuf> = rust_files(&leaf).into_iter().filter(|f| !f.ends_with("handler.rs")).collect();
    assert!(files.len() >= 3, "the leaf's modules were found: {files:?}");
    let offending: Vec<String> = files.iter().flat_map(|f| offending_imports(f, &["leaf::handler"])).collect();
    assert!(offending.is_empty(), "a leaf module imports the handler:\n{}", offending.join("\n"));
}
