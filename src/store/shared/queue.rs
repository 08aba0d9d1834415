//! The review queue: one page of open appeals by review deadline, and the counts per
//! open state (each capped), read in one snapshot: the page in one statement (two on
//! SQLite when a page after a cursor runs on into the appeals without a deadline), the
//! counts in one. They read only the `appeals` row (its queue columns are written by
//! each commit, see `commit.rs`), through the partial indexes on the open appeals
//! (migrations 0009 and 0010; on SQLite also 0012's, one per item). None grows with the
//! queue: the page enters the queue index at its start (or after a cursor) and stops
//! after its rows; each count stops at its cap (a count of one item's claimed appeals
//! in one scenario walks that item's claimed appeals in the state until it does).

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
        let page_sql = |extra: &str, order: &str| {
            format!(
                "SELECT {QUEUE_COLUMNS} FROM appeals a JOIN (
                     SELECT a.id FROM appeals a{}
                     WHERE {FILTERS} AND a.state IN ({}){extra}
                     ORDER BY {order} LIMIT ${n} OFFSET ${}) page ON page.id = a.id
                 ORDER BY {QUEUE_ORDER}",
                Self::QUEUE_INDEX,
                if states.is_empty() { "NULL".to_string() } else { states.join(", ") },
                n + 1
            )
        };
        // The counts: one capped count per open state, each an index range of its own
        // (state, then the claim: `appeals_queue_counts`) that stops at the cap, with
        // only the filters asked for (an absent one is a constant condition). With an
        // item asked for where the backend keeps an index per item (`ITEM_INDEX`), the
        // count reads that index, the item's condition written as the index's is; a
        // scenario with any claim is then counted unclaimed (a range of it) and claimed
        // (walked over the claimers, to the cap) apart, and their sum is held against
        // the cap like one count: past the cap, one part is past it or both are exact.
        let item_index = filter.item.zip(Self::ITEM_INDEX).map(|(i, hint)| (i, hint.replace("{item}", i.as_str())));
        let conds = [
            match (&item_index, item.is_some()) {
                (Some((i, _)), _) => {
                    format!("CAST($1 AS TEXT) IS NOT NULL AND a.items LIKE '{}' ESCAPE '\\'", ItemList::pattern(*i))
                }
                (None, true) => "a.items LIKE $1 ESCAPE '\\'".to_string(),
                (None, false) => "CAST($1 AS TEXT) IS NULL".to_string(),
            },
            equals_if(filter.scenario.as_deref(), "a.scenario", 2),
            equals_if(assignee, "a.assignee", 3),
            if unclaimed { "$4 AND a.assignee IS NULL".to_string() } else { "NOT $4".to_string() },
        ]
        .join(" AND ");
        let hint = item_index.as_ref().map_or("", |(_, hint)| hint.as_str());
        let apart = item_index.is_some() && filter.scenario.is_some() && filter.assignee == AssigneeMatch::Any;
        let counted: Vec<String> = (0..filter.count_states.len())
            .map(|i| {
                let one = |claim: &str| {
                    format!(
                        "(SELECT COUNT(*) FROM (SELECT 1 FROM appeals a{hint}
                           WHERE a.outcome IS NULL AND a.state = ${} AND {conds}{claim} LIMIT $5) c)",
                        i + 6
                    )
                };
                if apart {
                    format!("{} + {}", one(" AND a.assignee IS NULL"), one(" AND a.assignee IS NOT NULL"))
                } else {
                    one("")
                }
            })
            .collect();
        let counts_sql = format!("SELECT {}", if counted.is_empty() { "0".to_string() } else { counted.join(", ") });

        // One snapshot for the page and the counts, so they agree.
        let mut tx = self.reads.begin_with(Self::BEGIN_READ).await?;
        // One part of the queue: `sql` with the filters, the states, a limit and an
        // offset bound, then `after`'s values.
        macro_rules! part {
            ($sql:expr, $limit:expr, $offset:expr, $($after:expr),*) => {{
                let mut q = sqlx::query_as::<_, QueueRow>(sqlx::AssertSqlSafe($sql))
                    .bind(&item)
                    .bind(&filter.scenario)
                    .bind(assignee)
                    .bind(unclaimed);
                for s in &filter.states {
                    q = q.bind(s);
                }
                q = q.bind($limit).bind($offset);
                $(q = q.bind($after);)*
                q.fetch_all(&mut *tx).await?
            }};
        }
        // After a place in the order, the index is entered there rather than read from
        // its start: the appeals with a deadline past the place (as this backend seeks
        // that range, `AFTER_DATED`), then, if the page is not full and that range
        // stopped at them, those without one (which sort last; past a place among them,
        // only the later ones).
        let rows = match &filter.after {
            None => part!(page_sql("", QUEUE_ORDER), filter.limit, filter.offset,),
            Some(k) => {
                let mut rows = Vec::new();
                let (dated, dated_order, runs_on) = Self::AFTER_DATED;
                if let Some(due) = k.review_due_at {
                    let extra = dated
                        .replace("{d}", &format!("${}", n + 2))
                        .replace("{c}", &format!("${}", n + 3))
                        .replace("{i}", &format!("${}", n + 4));
                    let sql = page_sql(&extra, dated_order);
                    rows = part!(sql, filter.limit, 0_i64, Stamp(due), Stamp(k.created_at), &k.id);
                }
                let left = filter.limit - i64::try_from(rows.len()).unwrap_or(filter.limit);
                if left > 0 && k.review_due_at.is_some() && !runs_on {
                    rows.extend(part!(page_sql(Self::UNDATED, "a.created_at, a.id"), left, 0_i64,));
                } else if left > 0 && k.review_due_at.is_none() {
                    let extra = format!("{} AND (a.created_at, a.id) > (${}, ${})", Self::UNDATED, n + 2, n + 3);
                    rows.extend(part!(page_sql(&extra, "a.created_at, a.id"), left, 0_i64, Stamp(k.created_at), &k.id));
                }
                rows
            }
        };
        let mut counting = sqlx::query(sqlx::AssertSqlSafe(counts_sql))
            .bind(&item)
            .bind(&filter.scenario)
            .bind(assignee)
            .bind(unclaimed)
            .bind(filter.count_cap.saturating_add(1));
        for s in &filter.count_states {
            counting = counting.bind(s);
        }
        let row = counting.fetch_one(&mut *tx).await?;
        tx.commit().await?;
        let mut counts = Vec::with_capacity(filter.count_states.len());
        for (i, state) in filter.count_states.iter().enumerate() {
            let n: i64 = sqlx::Row::try_get(&row, i)?;
            counts.push((state.clone(), n.min(filter.count_cap), n > filter.count_cap));
        }
        Ok(QueueSlice { rows, counts })
    }
}
