//! ATTACH decisions, pure: what ATTACH LEAF does with each partition copy a returning leaf holds, whether the
//! heartbeat should start an attach for a leaf's pending copies, and whether ATTACH PARTITION may adopt a copy.
//!
//! Per partition found on a returning leaf (spec 2.7 / 13.3, redundancy 1): an instance the metadata places on
//! this leaf is re-attached; a partition whose database is unknown (dropped while the leaf was away), of another
//! incarnation or of another cluster is a conflict (an error without FORCE, left as an orphan with it); a copy of a
//! partition the metadata places elsewhere is left as an orphan. Nothing is ever deleted by an attach.

use std::collections::BTreeSet;

use canopy_meta::{ClusterMeta, Database, DatabaseId, InstanceRole, NodeId, Term};
use canopy_sql::TableKind;
use canopy_types::PartitionState;
use thiserror::Error;

/// What a leaf reports about one of its local copies (a partition instance, or the reference copy when `ordinal`
/// is None): the facts the decisions below need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyFacts {
    /// The copy's name as the leaf shows it (`db_3`, or `db` for the reference copy).
    pub name: String,
    pub db: String,
    pub ordinal: Option<u32>,
    /// The database incarnation the file records (None for files from before ids).
    pub database_id: Option<DatabaseId>,
    /// The cluster the file records (None for files from before cluster ids).
    pub cluster_id: Option<String>,
    /// The copy's user tables.
    pub tables: Vec<String>,
    /// Whether the copy serves, waits to be attached, or receives a master's log; and the term it is in.
    pub state: PartitionState,
    pub term: Term,
}

/// The ATTACH LEAF decision for one local partition instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The metadata places this instance on this leaf: re-attach it.
    Attach,
    /// Another instance serves the partition, or none is recorded here: leave the copy as an orphan.
    Orphan,
    /// The database no longer exists (or was re-created, or is another cluster's): a conflict that needs FORCE.
    Conflict,
}

/// Decides, for every partition instance a leaf holds, what ATTACH LEAF does with it (reference copies, without
/// an ordinal, are skipped).
pub fn decide(meta: &ClusterMeta, leaf: NodeId, copies: &[CopyFacts]) -> Vec<(String, u32, Decision)> {
    copies
        .iter()
        .filter_map(|c| c.ordinal.map(|o| (c, o)))
        .map(|(c, ordinal)| {
            let decision = decide_one(meta, leaf, &c.db, ordinal, c.database_id, c.cluster_id.as_deref());
            (c.db.clone(), ordinal, decision)
        })
        .collect()
}

/// The decision for one copy of `db:ordinal` (of incarnation `database_id`, made in cluster `cluster_id`) on `leaf`.
pub fn decide_one(
    meta: &ClusterMeta,
    leaf: NodeId,
    db: &str,
    ordinal: u32,
    database_id: Option<DatabaseId>,
    cluster_id: Option<&str>,
) -> Decision {
    match meta.databases.get(db) {
        None => Decision::Conflict,
        // A copy of an earlier database with the same name (dropped and re-created while the leaf was away).
        Some(d) if database_id.is_some_and(|id| id != d.id) => Decision::Conflict,
        // Another cluster's copy (database ids start at 1 in every cluster): never this cluster's data.
        Some(_) if cluster_id.is_some_and(|c| c != meta.cluster_id) => Decision::Conflict,
        Some(d) if d.instances.iter().any(|i| i.ordinal == ordinal && i.node == leaf) => Decision::Attach,
        Some(_) => Decision::Orphan,
    }
}

/// Whether `copy` on `leaf` already serves as the metadata says (a master copy online in its master's term, or a
/// replica copy the metadata records in sync), so an attach leaves it alone. An attach that runs again (a ping
/// sent before an attach finished reports the leaf's copies as pending after it) must neither treat a serving
/// master as a returning one nor record an operation that overwrites the finished attach's SHOW REBALANCE STATUS.
pub fn in_place(meta: &ClusterMeta, leaf: NodeId, copy: &CopyFacts) -> bool {
    let Some(ordinal) = copy.ordinal else { return false };
    let Some(instance) =
        meta.databases.get(&copy.db).and_then(|d| d.instances.iter().find(|i| i.ordinal == ordinal && i.node == leaf))
    else {
        return false;
    };
    match (instance.role, copy.state) {
        (InstanceRole::Master, PartitionState::Online) => copy.term == instance.term,
        (InstanceRole::Replica, PartitionState::Replica) => instance.sync,
        _ => false,
    }
}

/// Whether any of a leaf's pending copies `(db, ordinal, database_id)` is one the metadata places there (orphans
/// are left pending). The leaf's answer passed the identity check, so its copies' cluster is not in question here
/// (the attach checks it).
pub fn any_attachable<'a>(
    meta: &ClusterMeta,
    leaf: NodeId,
    pending: impl IntoIterator<Item = (&'a str, u32, Option<DatabaseId>)>,
) -> bool {
    pending.into_iter().any(|(db, ordinal, id)| decide_one(meta, leaf, db, ordinal, id, None) == Decision::Attach)
}

/// Whether ATTACH PARTITION may adopt `copy` of `database`, given the leaf's reference copy: the same incarnation,
/// and exactly the metadata's tables in both files. (Whether another leaf holds a newer copy is the caller's check:
/// it needs the other leaves' answers.)
pub fn check_copy(database: &Database, copy: &CopyFacts, reference: Option<&CopyFacts>) -> Result<(), AttachRefusal> {
    let reference = reference.ok_or(AttachRefusal::NoReferenceCopy)?;
    for file in [copy, reference] {
        if let Some(id) = file.database_id
            && id != database.id
        {
            return Err(AttachRefusal::OtherIncarnation { copy: id.0, current: database.id.0 });
        }
    }
    for (file, kind) in [(copy, TableKind::Distributed), (reference, TableKind::Reference)] {
        let expected: BTreeSet<String> =
            database.tables.values().filter(|t| t.kind == kind).map(|t| t.name.to_ascii_lowercase()).collect();
        let found: BTreeSet<String> = file.tables.iter().map(|t| t.to_ascii_lowercase()).collect();
        let missing: Vec<String> = expected.difference(&found).cloned().collect();
        let extra: Vec<String> = found.difference(&expected).cloned().collect();
        if !missing.is_empty() || !extra.is_empty() {
            return Err(AttachRefusal::SchemaDiffers { file: file.name.clone(), missing, extra });
        }
    }
    Ok(())
}

/// Why ATTACH PARTITION refuses a local copy.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AttachRefusal {
    /// The copy belongs to another incarnation of the database (one dropped and re-created since): its rows are
    /// not this database's.
    #[error("the copy belongs to another incarnation of the database (id {copy}; the database's id is {current})")]
    OtherIncarnation { copy: u64, current: u64 },
    /// A file's tables (the copy's, or the leaf's reference copy's) are not the metadata's: DDL ran while the
    /// partition had no master.
    #[error(
        "the tables of {file} on the leaf differ from the metadata's (missing: {}; not in the metadata: {}); DDL ran without it",
        list(missing),
        list(extra)
    )]
    SchemaDiffers { file: String, missing: Vec<String>, extra: Vec<String> },
    /// Another leaf holds a copy of the same partition and incarnation that is further along: the candidate is
    /// behind it.
    #[error(
        "leaf '{host}':{port} holds a newer copy of the partition (log index {log_index}, this copy {copy_index}); attach that one"
    )]
    NewerCopy { host: String, port: u16, log_index: u64, copy_index: u64 },
    /// The leaf holds no reference copy of the database, which every partition of it needs.
    #[error("the leaf holds no reference copy of the database")]
    NoReferenceCopy,
}

fn list(names: &[String]) -> String {
    if names.is_empty() { "none".to_string() } else { names.join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use canopy_meta::{Command, NodeAddr};

    fn cluster_with_leaves(cluster_id: &str, ports: &[u16]) -> ClusterMeta {
        let mut m = ClusterMeta::bootstrap(cluster_id.into(), NodeAddr { host: "ma".into(), port: 1, rpc_port: 2 });
        for &p in ports {
            let addr = NodeAddr { host: "h".into(), port: p, rpc_port: p + 1 };
            m.apply(Command::AddLeaf { addr, user: "root".into(), password: String::new(), group: None }).unwrap();
        }
        m
    }

    fn create(m: &mut ClusterMeta, partitions: u32) {
        m.apply(crate::placement::create_database(m, "test", partitions, canopy_meta::Durability::Sync)).unwrap();
    }

    fn copy(db: &str, ordinal: Option<u32>, database_id: Option<u64>, tables: &[&str]) -> CopyFacts {
        CopyFacts {
            name: ordinal.map_or(db.to_string(), |o| format!("{db}_{o}")),
            db: db.into(),
            ordinal,
            database_id: database_id.map(DatabaseId),
            cluster_id: None,
            tables: tables.iter().map(|t| t.to_string()).collect(),
            state: PartitionState::Pending,
            term: Term(0),
        }
    }

    /// A copy that already serves as the metadata says, in redundancy 1 as in 2, is in place (a second attach
    /// leaves it and records nothing); a pending copy, a copy in another term, and a master copy the metadata now
    /// calls a replica are not.
    #[test]
    fn only_copies_serving_as_the_metadata_says_are_in_place() {
        let mut m = cluster_with_leaves("c", &[10]);
        create(&mut m, 1);
        let leaf = m.leaves_in_order().next().unwrap().id;
        let term = m.databases["test"].master(0).unwrap().term;
        let serving = CopyFacts { state: PartitionState::Online, term, ..copy("test", Some(0), None, &[]) };
        assert!(in_place(&m, leaf, &serving), "a master copy online in its term, redundancy 1");
        assert!(!in_place(&m, leaf, &CopyFacts { state: PartitionState::Pending, ..serving.clone() }));
        assert!(!in_place(&m, leaf, &CopyFacts { term: Term(term.0 + 1), ..serving.clone() }));
        assert!(!in_place(&m, leaf, &CopyFacts { state: PartitionState::Replica, ..serving.clone() }));
        assert!(!in_place(&m, NodeId(leaf.0 + 100), &serving), "not on another leaf");
    }

    /// ATTACH PARTITION adopts a copy only of this incarnation and with exactly the metadata's tables.
    #[test]
    fn attach_partition_refuses_other_incarnations_and_other_schemas() {
        let mut m = cluster_with_leaves("c", &[10]);
        create(&mut m, 2);
        let table = |name: &str, kind| canopy_sql::TableDef {
            name: name.into(),
            kind,
            columns: Vec::new(),
            primary_key: Vec::new(),
            shard_key: Vec::new(),
            create_sql: String::new(),
            index_sql: Vec::new(),
        };
        for def in [table("X", TableKind::Distributed), table("r", TableKind::Reference)] {
            m.apply(Command::CreateTable { db: "test".into(), def }).unwrap();
        }
        let database = &m.databases["test"];
        let id = database.id.0;
        let reference = copy("test", None, Some(id), &["r"]);
        let check = |c: CopyFacts| check_copy(database, &c, Some(&reference));
        assert_eq!(check(copy("test", Some(1), Some(id), &["x"])), Ok(()));
        assert_eq!(check(copy("test", Some(1), None, &["x"])), Ok(()), "a copy from before ids cannot be told apart");
        assert_eq!(
            check(copy("test", Some(1), Some(id + 7), &["x"])),
            Err(AttachRefusal::OtherIncarnation { copy: id + 7, current: id })
        );
        assert_eq!(
            check(copy("test", Some(1), Some(id), &["old"])),
            Err(AttachRefusal::SchemaDiffers {
                file: "test_1".into(),
                missing: vec!["x".into()],
                extra: vec!["old".into()]
            })
        );
        let good = copy("test", Some(1), Some(id), &["x"]);
        assert_eq!(check_copy(database, &good, None), Err(AttachRefusal::NoReferenceCopy));
        let stale_reference = copy("test", None, Some(id), &[]);
        assert_eq!(
            check_copy(database, &good, Some(&stale_reference)),
            Err(AttachRefusal::SchemaDiffers { file: "test".into(), missing: vec!["r".into()], extra: vec![] })
        );
    }

    /// The heartbeat attaches a leaf for its pending copies only when one is placed there by the metadata.
    #[test]
    fn only_pending_copies_the_metadata_places_on_the_leaf_start_an_attach() {
        let mut m = cluster_with_leaves("c", &[10]);
        create(&mut m, 2);
        let (leaf, id) = (NodeId(2), m.databases["test"].id);
        assert!(any_attachable(&m, leaf, [("gone", 0, Some(DatabaseId(1))), ("test", 1, Some(id))]));
        assert!(!any_attachable(&m, leaf, [("gone", 0, Some(DatabaseId(1)))]), "a dropped database's copy");
        assert!(!any_attachable(&m, leaf, [("test", 1, Some(DatabaseId(id.0 + 1)))]), "another incarnation's copy");
        assert!(!any_attachable(&m, NodeId(9), [("test", 1, Some(id))]), "placed on another leaf");
        assert!(!any_attachable(&m, leaf, []));
    }

    #[test]
    fn returning_leaf_partitions_are_attached_orphaned_or_conflicting() {
        let mut m = cluster_with_leaves("c", &[10, 20]);
        create(&mut m, 4);
        let leaf = NodeId(3); // holds ordinals 1 and 3
        let id = m.databases["test"].id.0;
        // Ordinal 3's copy is of an earlier `test`, dropped and re-created meanwhile.
        let copies = [
            copy("test", Some(1), Some(id), &[]),
            copy("test", Some(2), None, &[]),
            copy("gone", Some(0), None, &[]),
            copy("test", Some(3), Some(99), &[]),
            copy("test", None, Some(id), &[]),
        ];
        assert_eq!(
            decide(&m, leaf, &copies),
            vec![
                ("test".to_string(), 1, Decision::Attach),
                ("test".to_string(), 2, Decision::Orphan),
                ("gone".to_string(), 0, Decision::Conflict),
                ("test".to_string(), 3, Decision::Conflict),
            ]
        );
    }

    /// Database ids start at 1 in every cluster: a copy recording another cluster is never attached, even when its
    /// name, ordinal and database id match this cluster's instance on the leaf.
    #[test]
    fn another_clusters_copy_is_a_conflict() {
        let mut m = cluster_with_leaves("ours", &[10]);
        create(&mut m, 2);
        let id = m.databases["test"].id.0;
        let mut theirs = copy("test", Some(0), Some(id), &[]);
        theirs.cluster_id = Some("theirs".into());
        let mut ours = copy("test", Some(1), Some(id), &[]);
        ours.cluster_id = Some("ours".into());
        assert_eq!(
            decide(&m, NodeId(2), &[theirs, ours]),
            vec![("test".to_string(), 0, Decision::Conflict), ("test".to_string(), 1, Decision::Attach)]
        );
    }
}
