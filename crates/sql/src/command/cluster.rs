//! The grammar of SingleStore's clustering commands (spec sections 1-7): leaves, aggregators, rebalancing,
//! redundancy, snapshots and the low-level partition commands. It recognises a command by its leading keywords and
//! from then on reports precise errors; it does not decide whether the command may run on this node.

use super::{ClusterCommand, LeafTarget, PartitionAction, PartitionCommand, RebalanceOptions};
use crate::error::SqlError;
use crate::lexer::{Cursor, TokenKind};

const DEFAULT_PORT: u16 = 3306;

/// `Ok(None)` when the statement does not start like a cluster command.
pub(super) fn parse(cur: &mut Cursor) -> Result<Option<ClusterCommand>, SqlError> {
    let Some(first) = cur.peek() else { return Ok(None) };
    let TokenKind::Word(first) = &first.kind else { return Ok(None) };
    let first = first.to_ascii_uppercase();
    let command = match first.as_str() {
        "BOOTSTRAP" => bootstrap(cur)?,
        "ADD" => add(cur)?,
        "REMOVE" => remove(cur)?,
        "CREATE" | "COPY" | "PROMOTE" | "DROP" | "ATTACH" | "DETACH"
            if cur.peek_at(1).is_some_and(|t| t.is_word("PARTITION")) =>
        {
            partition(cur, &first)?
        }
        "ATTACH" => attach_leaf(cur)?,
        "DETACH" => detach(cur)?,
        "COPY" => {
            cur.set_context("COPY");
            cur.advance();
            return Err(cur.error("PARTITION"));
        }
        "PROMOTE" => promote_aggregator(cur)?,
        "REBALANCE" => rebalance(cur)?,
        "RESTORE" => {
            cur.set_context("RESTORE REDUNDANCY");
            cur.advance();
            cur.expect_word("REDUNDANCY")?;
            ClusterCommand::RestoreRedundancy { db: on_database(cur)? }
        }
        "SNAPSHOT" => {
            cur.set_context("SNAPSHOT DATABASE");
            cur.advance();
            cur.eat_word("DATABASE");
            ClusterCommand::SnapshotDatabase { db: cur.expect_ident("a database name")? }
        }
        "_SYNC_SNAPSHOT" => {
            cur.set_context("_SYNC_SNAPSHOT");
            cur.advance();
            ClusterCommand::SyncSnapshot { db: cur.expect_ident("a database name")? }
        }
        "CLEAR" => {
            cur.set_context("CLEAR ORPHAN DATABASES");
            cur.advance();
            cur.expect_word("ORPHAN")?;
            cur.expect_word("DATABASES")?;
            ClusterCommand::ClearOrphanDatabases { explain: false }
        }
        "AGGREGATOR" => {
            cur.set_context("AGGREGATOR SET AS MASTER");
            cur.advance();
            cur.expect_word("SET")?;
            cur.expect_word("AS")?;
            cur.expect_word("MASTER")?;
            ClusterCommand::AggregatorSetAsMaster
        }
        "SHOW" => match show(cur)? {
            Some(command) => command,
            None => return Ok(None),
        },
        "EXPLAIN" => match explain(cur)? {
            Some(command) => command,
            None => return Ok(None),
        },
        _ => return Ok(None),
    };
    cur.expect_end()?;
    Ok(Some(command))
}

fn bootstrap(cur: &mut Cursor) -> Result<ClusterCommand, SqlError> {
    cur.set_context("BOOTSTRAP AGGREGATOR");
    cur.advance();
    cur.expect_word("AGGREGATOR")?;
    let host = cur.expect_string("a quoted host such as 'agg-1'")?;
    let port = if cur.eat_word("PORT") || cur.eat_punct(':') { Some(cur.expect_port()?) } else { None };
    Ok(ClusterCommand::BootstrapAggregator { host, port })
}

/// `user[:'password']@'host'[:port]`
fn user_at_host(cur: &mut Cursor) -> Result<(String, Option<String>, String, u16), SqlError> {
    let user = match cur.peek().map(|t| &t.kind) {
        Some(TokenKind::Word(u) | TokenKind::QuotedIdent(u) | TokenKind::Str(u)) => u.clone(),
        _ => return Err(cur.error("a user name (user[:'password']@'host':port)")),
    };
    cur.advance();
    let password = if cur.eat_punct(':') { Some(cur.expect_string("a quoted password after ':'")?) } else { None };
    cur.expect_punct('@')?;
    let (host, port) = cur.expect_host_port(Some(DEFAULT_PORT))?;
    Ok((user, password, host, port))
}

fn add(cur: &mut Cursor) -> Result<ClusterCommand, SqlError> {
    cur.advance();
    if cur.eat_word("LEAF") {
        cur.set_context("ADD LEAF");
        let (user, password, host, port) = user_at_host(cur)?;
        let group = if cur.eat_word("INTO") {
            cur.expect_word("GROUP")?;
            let group = match cur.peek().map(|t| &t.kind) {
                Some(TokenKind::Number(n)) if n == "1" => 1,
                Some(TokenKind::Number(n)) if n == "2" => 2,
                _ => return Err(cur.error("availability group 1 or 2")),
            };
            cur.advance();
            Some(group)
        } else {
            None
        };
        Ok(ClusterCommand::AddLeaf { user, password, host, port, group })
    } else if cur.eat_word("AGGREGATOR") {
        cur.set_context("ADD AGGREGATOR");
        let (user, password, host, port) = user_at_host(cur)?;
        Ok(ClusterCommand::AddAggregator { user, password, host, port })
    } else {
        cur.set_context("ADD");
        Err(cur.error("LEAF or AGGREGATOR"))
    }
}

fn remove(cur: &mut Cursor) -> Result<ClusterCommand, SqlError> {
    cur.advance();
    if cur.eat_word("LEAF") {
        cur.set_context("REMOVE LEAF");
        let (host, port) = cur.expect_host_port(Some(DEFAULT_PORT))?;
        let [force, kill, ensure_partition_safety] = cur.eat_flags(["FORCE", "KILL", "ENSURE_PARTITION_SAFETY"])?;
        Ok(ClusterCommand::RemoveLeaf { host, port, force, kill, ensure_partition_safety })
    } else if cur.eat_word("AGGREGATOR") {
        cur.set_context("REMOVE AGGREGATOR");
        let (host, port) = cur.expect_host_port(Some(DEFAULT_PORT))?;
        Ok(ClusterCommand::RemoveAggregator { host, port })
    } else {
        cur.set_context("REMOVE");
        Err(cur.error("LEAF or AGGREGATOR"))
    }
}

fn attach_leaf(cur: &mut Cursor) -> Result<ClusterCommand, SqlError> {
    cur.set_context("ATTACH LEAF");
    cur.advance();
    cur.expect_word("LEAF")?;
    let target = if cur.eat_word("ALL") {
        LeafTarget::All
    } else {
        if !cur.peek().is_some_and(|t| matches!(t.kind, TokenKind::Str(_))) {
            return Err(cur.error("a quoted host or ALL"));
        }
        let (host, port) = cur.expect_host_port(Some(DEFAULT_PORT))?;
        LeafTarget::One { host, port }
    };
    let [force, no_rebalance] = cur.eat_flags(["FORCE", "NO REBALANCE"])?;
    Ok(ClusterCommand::AttachLeaf { target, force, no_rebalance })
}

fn detach(cur: &mut Cursor) -> Result<ClusterCommand, SqlError> {
    cur.advance();
    if cur.eat_word("LEAF") {
        cur.set_context("DETACH LEAF");
        let (host, port) = cur.expect_host_port(Some(DEFAULT_PORT))?;
        let [kill, ensure_partition_safety] = cur.eat_flags(["KILL", "ENSURE_PARTITION_SAFETY"])?;
        Ok(ClusterCommand::DetachLeaf { host, port, kill, ensure_partition_safety })
    } else if cur.eat_word("LEAVES") {
        cur.set_context("DETACH LEAVES");
        cur.expect_punct('(')?;
        let mut leaves = vec![cur.expect_host_port(Some(DEFAULT_PORT))?];
        while cur.eat_punct(',') {
            leaves.push(cur.expect_host_port(Some(DEFAULT_PORT))?);
        }
        cur.expect_punct(')')?;
        let [kill, ensure_partition_safety] = cur.eat_flags(["KILL", "ENSURE_PARTITION_SAFETY"])?;
        Ok(ClusterCommand::DetachLeaves { leaves, kill, ensure_partition_safety })
    } else {
        cur.set_context("DETACH");
        Err(cur.error("LEAF, LEAVES or PARTITION"))
    }
}

fn promote_aggregator(cur: &mut Cursor) -> Result<ClusterCommand, SqlError> {
    cur.set_context("PROMOTE AGGREGATOR");
    cur.advance();
    if !cur.eat_word("AGGREGATOR") {
        cur.set_context("PROMOTE");
        return Err(cur.error("AGGREGATOR or PARTITION"));
    }
    let (host, port) = cur.expect_host_port(Some(DEFAULT_PORT))?;
    cur.expect_word("TO")?;
    cur.expect_word("MASTER")?;
    Ok(ClusterCommand::PromoteAggregatorToMaster { host, port })
}

/// `ON db`
fn on_database(cur: &mut Cursor) -> Result<String, SqlError> {
    cur.expect_word("ON")?;
    cur.expect_ident("a database name")
}

/// `[ON db]` before the rebalance options: None (the current database) when the statement ends or an option follows.
fn optional_on_database(cur: &mut Cursor) -> Result<Option<String>, SqlError> {
    let option = ["FULL", "FORCE", "KILL", "ENSURE_ONLINE_NODES", "CANCEL"].iter().any(|flag| cur.peek_words(&[flag]));
    if cur.is_end() || option { Ok(None) } else { on_database(cur).map(Some) }
}

fn rebalance_options(cur: &mut Cursor) -> Result<RebalanceOptions, SqlError> {
    let [full, force, kill, ensure_online_nodes] = cur.eat_flags(["FULL", "FORCE", "KILL", "ENSURE_ONLINE_NODES"])?;
    Ok(RebalanceOptions { full, force, kill, ensure_online_nodes })
}

fn rebalance(cur: &mut Cursor) -> Result<ClusterCommand, SqlError> {
    cur.advance();
    if cur.eat_word("PARTITIONS") {
        cur.set_context("REBALANCE PARTITIONS");
        let db = optional_on_database(cur)?;
        // `CANCEL` stands alone: it stops the running plan, it does not run one.
        if cur.eat_word("CANCEL") {
            return Ok(ClusterCommand::CancelRebalancePartitions { db });
        }
        Ok(ClusterCommand::RebalancePartitions { db, options: rebalance_options(cur)? })
    } else if cur.eat_words(&["ALL", "DATABASES"]) {
        cur.set_context("REBALANCE ALL DATABASES");
        if cur.eat_word("CANCEL") {
            return Ok(ClusterCommand::CancelRebalanceAllDatabases);
        }
        let [kill, ensure_online_nodes] = cur.eat_flags(["KILL", "ENSURE_ONLINE_NODES"])?;
        Ok(ClusterCommand::RebalanceAllDatabases { kill, ensure_online_nodes })
    } else {
        cur.set_context("REBALANCE");
        Err(cur.error("PARTITIONS or ALL DATABASES"))
    }
}

/// `EXPLAIN REBALANCE ...`, `EXPLAIN RESTORE REDUNDANCY ...`, `EXPLAIN CLEAR ORPHAN DATABASES`; other EXPLAINs are
/// not ours.
fn explain(cur: &mut Cursor) -> Result<Option<ClusterCommand>, SqlError> {
    let command = if cur.peek_words(&["EXPLAIN", "REBALANCE"]) {
        cur.advance();
        cur.advance();
        if cur.eat_word("PARTITIONS") {
            cur.set_context("EXPLAIN REBALANCE PARTITIONS");
            let db = optional_on_database(cur)?;
            ClusterCommand::ExplainRebalancePartitions { db, options: rebalance_options(cur)? }
        } else if cur.eat_words(&["ALL", "DATABASES"]) {
            ClusterCommand::ExplainRebalanceAllDatabases
        } else {
            cur.set_context("EXPLAIN REBALANCE");
            return Err(cur.error("PARTITIONS or ALL DATABASES"));
        }
    } else if cur.peek_words(&["EXPLAIN", "RESTORE"]) {
        cur.set_context("EXPLAIN RESTORE REDUNDANCY");
        cur.advance();
        cur.advance();
        cur.expect_word("REDUNDANCY")?;
        ClusterCommand::ExplainRestoreRedundancy { db: on_database(cur)? }
    } else if cur.peek_words(&["EXPLAIN", "CLEAR"]) {
        cur.set_context("EXPLAIN CLEAR ORPHAN DATABASES");
        cur.advance();
        cur.advance();
        cur.expect_word("ORPHAN")?;
        cur.expect_word("DATABASES")?;
        ClusterCommand::ClearOrphanDatabases { explain: true }
    } else {
        return Ok(None);
    };
    Ok(Some(command))
}

fn show(cur: &mut Cursor) -> Result<Option<ClusterCommand>, SqlError> {
    let command = if cur.peek_words(&["SHOW", "LEAVES"]) {
        cur.advance();
        cur.advance();
        cur.set_context("SHOW LEAVES");
        ClusterCommand::ShowLeaves
    } else if cur.peek_words(&["SHOW", "AGGREGATORS"]) {
        cur.advance();
        cur.advance();
        cur.set_context("SHOW AGGREGATORS");
        ClusterCommand::ShowAggregators { extended: cur.eat_word("EXTENDED") }
    } else if cur.peek_words(&["SHOW", "PARTITIONS"]) {
        cur.advance();
        cur.advance();
        cur.set_context("SHOW PARTITIONS");
        let extended = cur.eat_word("EXTENDED");
        let db = if cur.peek_words(&["ON"]) { Some(on_database(cur)?) } else { None };
        ClusterCommand::ShowPartitions { db, extended }
    } else if cur.peek_words(&["SHOW", "CLUSTER"]) {
        cur.advance();
        cur.advance();
        cur.set_context("SHOW CLUSTER STATUS");
        cur.expect_word("STATUS")?;
        ClusterCommand::ShowClusterStatus
    } else if cur.peek_words(&["SHOW", "REBALANCE"]) {
        cur.advance();
        cur.advance();
        if cur.eat_words(&["ALL", "DATABASES"]) {
            cur.set_context("SHOW REBALANCE ALL DATABASES STATUS");
            cur.expect_word("STATUS")?;
            ClusterCommand::ShowRebalanceAllDatabasesStatus
        } else {
            cur.set_context("SHOW REBALANCE STATUS");
            cur.expect_word("STATUS")?;
            let db = if cur.peek_words(&["ON"]) { Some(on_database(cur)?) } else { None };
            ClusterCommand::ShowRebalanceStatus { db }
        }
    } else {
        return Ok(None);
    };
    Ok(Some(command))
}

/// `<VERB> PARTITION db:ordinal {ON|TO} 'host':port [flags]`; `verb` is the upper-cased first word.
fn partition(cur: &mut Cursor, verb: &str) -> Result<ClusterCommand, SqlError> {
    cur.advance();
    cur.advance();
    cur.set_context(&format!("{verb} PARTITION"));
    let db = cur.expect_ident("a partition as db:ordinal")?;
    if !cur.eat_punct(':') {
        return Err(cur.error("':' and the ordinal (db:ordinal)"));
    }
    let ordinal = cur.expect_u32("a partition ordinal")?;
    if verb == "COPY" {
        if !(cur.eat_word("TO") || cur.eat_word("ON")) {
            return Err(cur.error("TO or ON"));
        }
    } else {
        cur.expect_word("ON")?;
    }
    let (host, port) = cur.expect_host_port(Some(DEFAULT_PORT))?;
    let action = match verb {
        "COPY" => {
            let [force] = cur.eat_flags(["FORCE"])?;
            PartitionAction::Copy { force }
        }
        "PROMOTE" => {
            let [with_drop, force, with_repoint] = cur.eat_flags(["WITH DROP", "FORCE", "WITH REPOINT"])?;
            PartitionAction::Promote { with_drop, force, with_repoint }
        }
        "DROP" => PartitionAction::Drop,
        "ATTACH" => PartitionAction::Attach,
        "DETACH" => PartitionAction::Detach,
        // The dispatcher only sends the six partition verbs; CREATE is the remaining one.
        _ => PartitionAction::Create,
    };
    Ok(ClusterCommand::Partition(PartitionCommand { action, db, ordinal, host, port }))
}
