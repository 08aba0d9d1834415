//! The same run's baseline: the statements `review_queue` runs (store/shared/queue.rs),
//! written out by hand and run through raw sqlx in one read snapshot — the page (from the
//! queue index, after a cursor when the case has one) and one capped count per open
//! state — and the raw reads that find a deep case's cursor.

use std::time::Duration;

use appealflow::app::review::{self, AssigneeFilter, QueueQuery};
use appealflow::store::QueueKey;
use appealflow::store::codec::Stamp;

use super::timed;

pub enum Pool {
    Sqlite(sqlx::SqlitePool),
    Pg(sqlx::PgPool),
}

/// The page's filters other than the states.
const FILTERS: &str = "a.outcome IS NULL
    AND (CAST($1 AS TEXT) IS NULL OR a.items LIKE $1 ESCAPE '\\')
    AND (CAST($2 AS TEXT) IS NULL OR a.scenario = $2)
    AND (CAST($3 AS TEXT) IS NULL OR a.assignee = $3)
    AND (NOT $4 OR a.assignee IS NULL)";

const ORDER: &str = "(a.review_due_at IS NULL), a.review_due_at, a.created_at, a.id";

pub struct Raw {
    states: Vec<String>,
    item: Option<String>,
    /// The item's name: on SQLite its counts read the item's own index (0012).
    item_name: Option<&'static str>,
    scenario: Option<String>,
    assignee: Option<String>,
    unclaimed: bool,
    limit: i64,
    offset: i64,
    after: Option<QueueKey>,
    /// Every open state, in the workflow's order: each is counted.
    count_states: Vec<String>,
}

/// The appeals without a deadline, as each backend reads them.
fn undated(sqlite: bool) -> &'static str {
    if sqlite {
        " AND (a.review_due_at IS NULL) = TRUE AND a.review_due_at IS NULL"
    } else {
        " AND a.review_due_at IS NULL"
    }
}

impl Raw {
    /// The page statement with `extra` conditions, ordered by `order`.
    fn page_sql(&self, sqlite: bool, extra: &str, order: &str) -> String {
        let states = self.states.len();
        let list: Vec<String> = (0..states).map(|i| format!("${}", i + 5)).collect();
        let hint = if sqlite { " INDEXED BY appeals_queue" } else { "" };
        let n = states + 5;
        format!(
            "SELECT a.id, a.ticket, a.account, a.state, a.version, a.assignee, a.review_due_at, a.review_fired,
                    a.review_warn_at, a.items, a.scenario, a.created_at
             FROM appeals a JOIN (
                 SELECT a.id FROM appeals a{hint} WHERE {FILTERS} AND a.state IN ({}){extra}
                 ORDER BY {order} LIMIT ${n} OFFSET ${}) page ON page.id = a.id
             ORDER BY {ORDER}",
            list.join(", "),
            n + 1
        )
    }

    /// After a cursor with a deadline: the range past it, its order, and whether it runs
    /// on into the appeals without a deadline (PostgreSQL's four-column row comparison
    /// does; SQLite's, after the flag's equality, does not).
    fn after_due(&self, sqlite: bool) -> (String, &'static str, bool) {
        let n = self.states.len() + 5;
        let (d, c, i) = (n + 2, n + 3, n + 4);
        if sqlite {
            let extra = format!(
                " AND (a.review_due_at IS NULL) = FALSE AND (a.review_due_at, a.created_at, a.id) > (${d}, ${c}, ${i})"
            );
            (extra, "a.review_due_at, a.created_at, a.id", false)
        } else {
            let extra = format!(
                " AND ((a.review_due_at IS NULL), a.review_due_at, a.created_at, a.id) > (FALSE, ${d}, ${c}, ${i})"
            );
            (extra, ORDER, true)
        }
    }

    /// After a cursor without one: the later ones without a deadline.
    fn after_none(&self, sqlite: bool) -> String {
        let n = self.states.len() + 5;
        format!("{} AND (a.created_at, a.id) > (${}, ${})", undated(sqlite), n + 2, n + 3)
    }

    /// One capped count per open state; on SQLite, with an item, from the item's index
    /// (its pattern a literal, as that partial index is written), a scenario with any
    /// claim counted unclaimed and claimed apart.
    fn counts_sql(&self, sqlite: bool) -> String {
        let indexed = self.item_name.filter(|_| sqlite);
        let item = match (indexed, &self.item) {
            (Some(_), Some(p)) => format!("CAST($1 AS TEXT) IS NOT NULL AND a.items LIKE '{p}' ESCAPE '\\'"),
            (_, Some(_)) => "a.items LIKE $1 ESCAPE '\\'".to_string(),
            (_, None) => "CAST($1 AS TEXT) IS NULL".to_string(),
        };
        let conds = [
            item.as_str(),
            if self.scenario.is_some() { "a.scenario = $2" } else { "CAST($2 AS TEXT) IS NULL" },
            if self.assignee.is_some() { "a.assignee = $3" } else { "CAST($3 AS TEXT) IS NULL" },
            if self.unclaimed { "$4 AND a.assignee IS NULL" } else { "NOT $4" },
        ]
        .join(" AND ");
        let hint = indexed.map(|i| format!(" INDEXED BY appeals_item_{i}")).unwrap_or_default();
        let apart = indexed.is_some() && self.scenario.is_some() && self.assignee.is_none() && !self.unclaimed;
        let counted: Vec<String> = (0..self.count_states.len())
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
        format!("SELECT {}", counted.join(", "))
    }
}

/// What `query` asks, as the store's statements bind it.
pub fn of(q: &QueueQuery, open_states: &[String]) -> Raw {
    let mut states =
        if q.states.is_empty() { vec!["submitted".into(), "under_review".into()] } else { q.states.clone() };
    states.sort();
    let after = q.after.as_deref().map(|c| review::parse_cursor(c).expect("the bench's cursor"));
    Raw {
        states,
        item: q.item.map(|i| format!("%,{},%", i.as_str().replace('_', "\\_"))),
        item_name: q.item.map(|i| i.as_str()),
        scenario: q.scenario.map(|s| serde_json::to_value(s).unwrap().as_str().unwrap().to_string()),
        assignee: match &q.assignee {
            AssigneeFilter::Named(n) => Some(n.clone()),
            _ => None,
        },
        unclaimed: q.assignee == AssigneeFilter::Unclaimed,
        limit: q.per_page + 1,
        offset: if after.is_some() { 0 } else { (q.page - 1) * q.per_page },
        after,
        count_states: open_states.to_vec(),
    }
}

/// One part of the page: `sql` with the filters, states, limit and offset bound, then
/// `after`'s values.
macro_rules! raw_part {
    ($tx:expr, $r:expr, $sql:expr, $limit:expr, $offset:expr, $($after:expr),*) => {{
        let r = $r;
        let mut q = sqlx::query(sqlx::AssertSqlSafe($sql)).bind(&r.item).bind(&r.scenario).bind(&r.assignee).bind(r.unclaimed);
        for s in &r.states {
            q = q.bind(s);
        }
        q = q.bind($limit).bind($offset);
        $(q = q.bind($after);)*
        q.fetch_all(&mut *$tx).await.unwrap().len()
    }};
}

macro_rules! raw_call {
    ($pool:expr, $begin:expr, $sqlite:expr, $r:expr) => {{
        let r = &$r;
        let mut tx = $pool.begin_with($begin).await.unwrap();
        let mut rows = 0;
        match &r.after {
            None => rows += raw_part!(tx, r, r.page_sql($sqlite, "", ORDER), r.limit, r.offset,),
            Some(k) => {
                let (extra, order, runs_on) = r.after_due($sqlite);
                if let Some(due) = k.review_due_at {
                    let sql = r.page_sql($sqlite, &extra, order);
                    rows += raw_part!(tx, r, sql, r.limit, 0_i64, Stamp(due), Stamp(k.created_at), &k.id);
                }
                let left = r.limit - rows as i64;
                if left > 0 && k.review_due_at.is_some() && !runs_on {
                    rows += raw_part!(tx, r, r.page_sql($sqlite, undated($sqlite), "a.created_at, a.id"), left, 0_i64,);
                } else if left > 0 && k.review_due_at.is_none() {
                    let sql = r.page_sql($sqlite, &r.after_none($sqlite), "a.created_at, a.id");
                    rows += raw_part!(tx, r, sql, left, 0_i64, Stamp(k.created_at), &k.id);
                }
            }
        }
        let mut c = sqlx::query(sqlx::AssertSqlSafe(r.counts_sql($sqlite)))
            .bind(&r.item)
            .bind(&r.scenario)
            .bind(&r.assignee)
            .bind(r.unclaimed)
            .bind(review::COUNT_CAP + 1);
        for s in &r.count_states {
            c = c.bind(s);
        }
        let counts = c.fetch_one(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
        rows + sqlx::Row::len(&counts)
    }};
}

/// `query`'s statements run by hand, `calls` times.
pub async fn timed_run(pool: &Pool, query: &QueueQuery, open_states: &[String], calls: usize) -> Vec<Duration> {
    match pool {
        Pool::Sqlite(p) => {
            timed(calls, || async {
                let _ = raw_call!(p, "BEGIN DEFERRED", true, of(query, open_states));
            })
            .await
        }
        Pool::Pg(p) => {
            timed(calls, || async {
                let _ = raw_call!(p, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", false, of(query, open_states));
            })
            .await
        }
    }
}

/// The cursor of the row at `position` of the default queue (submitted and under
/// review), only appeals asking for `item` when given: where a reader paging on with
/// `next` would stand there. Read once, by hand, before the timed calls.
pub async fn cursor_at(pool: &Pool, item: Option<&str>, position: i64) -> String {
    let like = item.map(|i| format!("%,{},%", i.replace('_', "\\_")));
    let sql = |hint: &str| {
        format!(
            "SELECT a.review_due_at, a.created_at, a.id FROM appeals a{hint}
             WHERE a.outcome IS NULL AND a.state IN ('submitted', 'under_review')
               AND (CAST($1 AS TEXT) IS NULL OR a.items LIKE $1 ESCAPE '\\')
             ORDER BY {ORDER} LIMIT 1 OFFSET $2"
        )
    };
    let (due, created, id): (Option<Stamp>, Stamp, String) = match pool {
        Pool::Sqlite(p) => {
            let q = sqlx::query_as::<_, (Option<String>, String, String)>(sqlx::AssertSqlSafe(sql(
                " INDEXED BY appeals_queue",
            )));
            let (due, created, id) = q.bind(&like).bind(position).fetch_one(p).await.unwrap();
            let at = |t: &str| Stamp(chrono::DateTime::parse_from_rfc3339(t).unwrap().to_utc());
            (due.as_deref().map(at), at(&created), id)
        }
        Pool::Pg(p) => {
            let q = sqlx::query_as::<_, (Option<chrono::DateTime<chrono::Utc>>, chrono::DateTime<chrono::Utc>, String)>(
                sqlx::AssertSqlSafe(sql("")),
            );
            let (due, created, id) = q.bind(&like).bind(position).fetch_one(p).await.unwrap();
            (due.map(Stamp), Stamp(created), id)
        }
    };
    review::cursor(&QueueKey { review_due_at: due.map(|s| s.0), created_at: created.0, id })
}
