//! The review queue: one page of open appeals by review deadline, and the counts per
//! open state, read in one snapshot. Both statements read only the `appeals` row (its
//! queue columns are written by each commit, see `commit.rs`), through the partial
//! indexes of migration 0009 on the open appeals.

use super::*;
use crate::store::{AssigneeMatch, QueueFilter, QueueRow, QueueSlice};

/// The filters other than the states: `$1` an item's `LIKE` pattern, `$2` a scenario,
/// `$3` an assignee, `$4` true for unclaimed only.
const FILTERS: &str = "a.outcome IS NULL
    AND (CAST($1 AS TEXT) IS NULL OR a.items LIKE $1 ESCAPE '\\')
    AND (CAST($2 AS TEXT) IS NULL OR a.scenario = $2)
    AND (CAST($3 AS TEXT) IS NULL OR a.assignee = $3)
    AND (NOT $4 OR a.assignee IS NULL)";

/// The queue's order, as the `appeals_queue` index keeps it: by review deadline (those
/// without one last), then oldest first.
const QUEUE_ORDER: &str = "(a.review_due_at IS NULL), a.review_due_at, a.created_at, a.id";

const QUEUE_COLUMNS: &str = "a.id, a.ticket, a.account, a.state, a.version, a.assignee, a.review_due_at,
    a.review_fired, a.review_warn_at, a.items, a.scenario, a.created_at";

impl Backend {
    pub(super) async fn queue_slice(&self, filter: &QueueFilter) -> Result<QueueSlice, StoreError> {
        let item = filter.item.map(ItemList::pattern);
        let (assignee, unclaimed) = match &filter.assignee {
            AssigneeMatch::Any => (None, false),
            AssigneeMatch::Unclaimed => (None, true),
            AssigneeMatch::Named(name) => (Some(name.as_str()), false),
        };
        // The states as placeholders of their own ($5, $6, ...): a short list the
        // planner reads as such on both backends.
        let states: Vec<String> = (0..filter.states.len()).map(|i| format!("${}", i + 5)).collect();
        let n = filter.states.len() + 5;
        // The page's ids come from the queue index alone (it holds what the filters
        // test), so rows skipped by the offset are never read from the table; only the
        // page's own rows are.
        let page_sql = format!(
            "SELECT {QUEUE_COLUMNS} FROM appeals a JOIN (
                 SELECT a.id FROM appeals a{}
                 WHERE {FILTERS} AND a.state IN ({})
                 ORDER BY {QUEUE_ORDER} LIMIT ${n} OFFSET ${}) page ON page.id = a.id
             ORDER BY {QUEUE_ORDER}",
            Self::QUEUE_INDEX,
            if states.is_empty() { "NULL".to_string() } else { states.join(", ") },
            n + 1
        );
        let counts_sql = format!("SELECT a.state, COUNT(*) FROM appeals a WHERE {FILTERS} GROUP BY a.state");

        // One snapshot for the page and the counts, so they agree.
        let mut tx = self.pool.begin_with(Self::BEGIN_READ).await?;
        let mut page = sqlx::query_as::<_, QueueRow>(sqlx::AssertSqlSafe(page_sql))
            .bind(&item)
            .bind(&filter.scenario)
            .bind(assignee)
            .bind(unclaimed);
        for s in &filter.states {
            page = page.bind(s);
        }
        let rows = page.bind(filter.limit).bind(filter.offset).fetch_all(&mut *tx).await?;
        let counts: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(counts_sql))
            .bind(&item)
            .bind(&filter.scenario)
            .bind(assignee)
            .bind(unclaimed)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(QueueSlice { rows, counts })
    }
}
