//! Prepared statements as a session keeps them: the parsed statement of each template, and a plan that later
//! executions may reuse when its partitions follow from the parameter values alone. Pure bookkeeping over
//! `canopy-sql`'s planner: no IO.

use std::sync::Arc;

use canopy_meta::ClusterMeta;
use canopy_sql::plan;
use canopy_sql::{Catalog, TableDef, Value};

/// A prepared statement as this session keeps it.
pub struct Template {
    /// The query or DML statement; None for statements that run as literal text (everything else, and text that
    /// does not parse with its placeholders).
    pub statement: Option<Arc<sqlparser::ast::Statement>>,
    /// A plan made by an earlier execution, reusable while nothing it depends on changed.
    pub reuse: Option<Reuse>,
}

/// A plan whose partition follows from the parameters alone (`plan::reusable_route`): later executions re-hash
/// their values instead of planning again. Valid for the metadata and current database it was made with.
pub struct Reuse {
    meta: Arc<ClusterMeta>,
    db: Option<String>,
    plan: plan::Plan,
    route: plan::ParamRoute,
}

impl Reuse {
    /// The plan for `params`, if this reuse applies to them.
    pub fn plan_for(&self, meta: &Arc<ClusterMeta>, db: Option<&str>, params: &[Value]) -> Option<plan::Plan> {
        if !Arc::ptr_eq(&self.meta, meta) || self.db.as_deref() != db {
            return None;
        }
        if self.route == plan::ParamRoute::Everywhere {
            return Some(self.plan.clone());
        }
        let ordinal = self.route.ordinal(params)?;
        Some(match &self.plan {
            plan::Plan::Single { db, sql, .. } => plan::Plan::Single { db: db.clone(), ordinal, sql: sql.clone() },
            plan::Plan::Write { db, sql, .. } => {
                plan::Plan::Write { db: db.clone(), ordinals: vec![ordinal], sql: sql.clone() }
            }
            _ => return None,
        })
    }

    /// A reuse for `plan`, made for `params`, when `statement` routes by parameters and agrees with the plan.
    pub fn of(
        statement: &sqlparser::ast::Statement,
        plan: &plan::Plan,
        params: &[Value],
        meta: &Arc<ClusterMeta>,
        db: Option<&str>,
    ) -> Option<Reuse> {
        let context = Catalogue(meta);
        let route = plan::reusable_route(statement, db, &context)?;
        let agrees = match (&route, plan) {
            // Every partition whatever the values: the plan does not depend on them (a scatter merge that read a
            // parameter would not run with parameters, and is never offered for reuse).
            (plan::ParamRoute::Everywhere, plan::Plan::Scatter { .. } | plan::Plan::Write { .. }) => true,
            (plan::ParamRoute::Keys { .. }, plan::Plan::Single { ordinal, .. }) => {
                route.ordinal(params) == Some(*ordinal)
            }
            (plan::ParamRoute::Keys { .. }, plan::Plan::Write { ordinals, .. }) => {
                ordinals.len() == 1 && route.ordinal(params) == Some(ordinals[0])
            }
            _ => false,
        };
        agrees.then(|| Reuse { meta: meta.clone(), db: db.map(str::to_string), plan: plan.clone(), route })
    }
}

/// The metadata as a planning catalog, for questions that need no evaluation.
struct Catalogue<'a>(&'a ClusterMeta);

impl Catalog for Catalogue<'_> {
    fn table(&self, db: &str, table: &str) -> Option<&TableDef> {
        self.0.databases.get(db).and_then(|d| d.table(table))
    }

    fn partition_count(&self, db: &str) -> Option<u32> {
        self.0.databases.get(db).map(|d| d.partitions)
    }
}
