//! How a timestamp is stored on each backend, so one statement and one row mapping
//! serve both: PostgreSQL keeps `timestamptz`; SQLite keeps fixed-width UTC text
//! (`2026-12-02T09:30:00.000000Z`), which orders correctly as a string.
//!
//! JSON columns need no codec of their own: sqlx's `Json<T>` is `jsonb` on PostgreSQL
//! and text on SQLite.

use chrono::{DateTime, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef};
use sqlx::sqlite::{SqliteArgumentsBuffer, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Database, Decode, Encode, Postgres, Sqlite, Type, ValueRef};

/// A point in time as a column holds it (bind it; read it with `#[sqlx(try_from = "Stamp")]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(pub DateTime<Utc>);

/// A nullable timestamp column (`#[sqlx(try_from = "MaybeStamp")]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaybeStamp(pub Option<DateTime<Utc>>);

impl From<Stamp> for DateTime<Utc> {
    fn from(s: Stamp) -> Self {
        s.0
    }
}

impl From<MaybeStamp> for Option<DateTime<Utc>> {
    fn from(s: MaybeStamp) -> Self {
        s.0
    }
}

impl Stamp {
    /// The text SQLite stores.
    pub fn text(self) -> String {
        self.0.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    }

    fn parse(text: &str) -> Result<Self, BoxDynError> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| Stamp(t.with_timezone(&Utc)))
            .map_err(|e| format!("timestamp {text:?} is not RFC 3339: {e}").into())
    }
}

impl Type<Sqlite> for Stamp {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty)
    }
}

impl Encode<'_, Sqlite> for Stamp {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        Encode::<Sqlite>::encode(self.text(), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Stamp {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        Stamp::parse(<&str as Decode<Sqlite>>::decode(value)?)
    }
}

impl Type<Postgres> for Stamp {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <DateTime<Utc> as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for Stamp {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        Encode::<Postgres>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for Stamp {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Stamp(<DateTime<Utc> as Decode<Postgres>>::decode(value)?))
    }
}

// A nullable column: whatever a backend stores a `Stamp` as, or NULL.
impl<DB: Database> Type<DB> for MaybeStamp
where
    Stamp: Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <Stamp as Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <Stamp as Type<DB>>::compatible(ty)
    }
}

impl<'r, DB: Database> Decode<'r, DB> for MaybeStamp
where
    Stamp: Decode<'r, DB>,
{
    fn decode(value: DB::ValueRef<'r>) -> Result<Self, BoxDynError> {
        if value.is_null() {
            return Ok(MaybeStamp(None));
        }
        Ok(MaybeStamp(Some(<Stamp as Decode<'r, DB>>::decode(value)?.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_text_is_fixed_width_and_reads_back() {
        let at = DateTime::parse_from_rfc3339("2026-12-02T09:30:00.5Z").unwrap().with_timezone(&Utc);
        let text = Stamp(at).text();
        assert_eq!(text, "2026-12-02T09:30:00.500000Z");
        assert_eq!(Stamp::parse(&text).unwrap(), Stamp(at));
        assert!(Stamp::parse("yesterday").unwrap_err().to_string().contains("not RFC 3339"));
    }
}
