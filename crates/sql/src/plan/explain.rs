//! EXPLAIN of a query: the distributed plan as lines of text, one step per line, as SingleStore's EXPLAIN prints its
//! operators: where the statement runs (one partition, every partition with a merge, a gather onto the aggregator,
//! a reference copy), which partitions, and the SQL each place receives.

use super::Plan;
use crate::merge::{GatherSource, MergeSpec, SortColumn};

/// The lines EXPLAIN prints for `plan`.
pub fn explain(plan: &Plan) -> Vec<String> {
    match plan {
        Plan::Single { db, ordinal, sql } => {
            vec![format!("Single partition {db}:{ordinal}"), format!("  on the partition: {sql}")]
        }
        Plan::Scatter { db, ordinals, partial_sql, merge } => {
            let mut lines = vec![
                format!("Scatter to {} partitions of {db}: {}", ordinals.len(), list(ordinals)),
                format!("  on each partition: {partial_sql}"),
            ];
            lines.push(match merge {
                MergeSpec::Aggregate { sql, .. } => {
                    format!("Merge on the aggregator (partial results as _partial): {sql}")
                }
                MergeSpec::Rows { distinct, order_by, limit, offset, .. } => {
                    let mut steps = vec!["union of the rows".to_string()];
                    if *distinct {
                        steps.push("DISTINCT".into());
                    }
                    if !order_by.is_empty() {
                        let keys: Vec<String> = order_by
                            .iter()
                            .map(|k| {
                                let column = match k.column {
                                    SortColumn::Visible(i) => format!("column {}", i + 1),
                                    SortColumn::Hidden(i) => format!("sort key {}", i + 1),
                                };
                                if k.descending { format!("{column} DESC") } else { column }
                            })
                            .collect();
                        steps.push(format!("ORDER BY {}", keys.join(", ")));
                    }
                    if let Some(limit) = limit {
                        steps.push(format!("LIMIT {limit}"));
                    }
                    if *offset > 0 {
                        steps.push(format!("OFFSET {offset}"));
                    }
                    format!("Merge on the aggregator: {}", steps.join(", then "))
                }
            });
            lines
        }
        Plan::Gather(spec) => {
            let mut lines = vec![format!("Gather {} tables onto the aggregator", spec.sources.len())];
            for source in &spec.sources {
                lines.push(match source {
                    GatherSource::Distributed { db, table, fetch_sql, .. } => {
                        format!("  {db}.{table} from every partition: {fetch_sql}")
                    }
                    GatherSource::Reference { db, table, fetch_sql, .. } => {
                        format!("  {db}.{table} from one reference copy: {fetch_sql}")
                    }
                    GatherSource::Virtual { schema, table } => format!("  {schema}.{table} from the aggregator"),
                });
            }
            lines.push(format!("Run on the aggregator: {}", spec.sql));
            lines
        }
        Plan::Reference { db: Some(db), sql } => {
            vec![format!("Reference tables of {db}: one copy"), format!("  on the copy: {sql}")]
        }
        Plan::Reference { db: None, sql } => vec![format!("No table: the aggregator runs {sql}")],
        Plan::Insert { db, table, per_partition, rows, .. } => {
            let ordinals: Vec<u32> = per_partition.iter().map(|(o, _, _)| *o).collect();
            let mut lines = vec![format!(
                "Insert {rows} rows into {db}.{table}: {} partitions ({})",
                ordinals.len(),
                list(&ordinals)
            )];
            lines.extend(per_partition.iter().map(|(ordinal, sql, _)| format!("  on {db}:{ordinal}: {sql}")));
            lines
        }
        Plan::Write { db, ordinals, sql } => vec![
            format!("Write on {} partitions of {db}: {}", ordinals.len(), list(ordinals)),
            format!("  on each partition: {sql}"),
        ],
        Plan::ReferenceWrite { db, sql, .. } => vec![
            format!("Reference write to {db}: on the reference primary, then every other copy from its log"),
            format!("  on the primary: {sql}"),
        ],
    }
}

/// Ordinals as `0,1,2`.
fn list(ordinals: &[u32]) -> String {
    ordinals.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}
