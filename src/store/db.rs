//! The SQL both backends run: one statement text, its arguments encoded as each backend
//! encodes them, its rows decoded by column name.
//!
//! A statement is written once, in the subset both dialects share (`$n` parameters,
//! `RETURNING`, `ON CONFLICT`). Its arguments are kept as they were given and bound when it
//! runs, by the backend of the pool, transaction or connection it runs on; where the dialects
//! differ, [`Builder::push_in`] (a set of ids as one argument) and [`Kind`]'s clauses say it
//! per backend. A row type derives [`sqlx::FromRow`], which reads either backend's rows by
//! column name.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::marker::PhantomData;

use futures::TryStreamExt;
use sqlx::error::BoxDynError;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgPool, PgRow, Postgres};
use sqlx::sqlite::{Sqlite, SqliteArguments, SqlitePool, SqliteRow};
use sqlx::{Arguments, ColumnIndex, Decode, Encode, FromRow, Type};

/// Which database a store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The embedded default.
    Sqlite,
    /// The production backend.
    Postgres,
}

impl Kind {
    /// The backend's name, as `Store::backend` answers it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Sqlite => "sqlite",
            Kind::Postgres => "postgres",
        }
    }

    /// The clause that locks the rows a claim selects and passes over those another node's
    /// claim holds: none on SQLite, whose writes go through one connection.
    pub fn skip_locked(self) -> &'static str {
        match self {
            Kind::Sqlite => "",
            Kind::Postgres => "FOR UPDATE SKIP LOCKED",
        }
    }

    /// The time a timed row is due by, in SQL: on PostgreSQL the database's own clock, so
    /// that nodes whose clocks disagree claim a row at the same moment and take over a lease
    /// only once it ran out by one clock; on SQLite (one process) `now`, the bound time.
    pub fn now(self, now: &str) -> String {
        match self {
            Kind::Sqlite => now.to_owned(),
            Kind::Postgres => "statement_timestamp()".to_owned(),
        }
    }

    /// The end of a lease the caller asks to run from `now` until `until` (both bound by
    /// the caller's clock), by [`Kind::now`]'s clock: only its length is taken on PostgreSQL.
    pub fn lease_until(self, until: &str, now: &str) -> String {
        match self {
            Kind::Sqlite => until.to_owned(),
            Kind::Postgres => {
                format!("statement_timestamp() + ({until}::timestamptz - {now}::timestamptz)")
            }
        }
    }

    /// A user's highest seq, in SQL, for the `users` row in scope: on PostgreSQL its
    /// `last_seq`, which every commit bumps; on SQLite the larger of that floor and the
    /// highest seq of the user's notifications (one seek of the (user_id, seq) index), since
    /// a commit there writes no `users` row (SQLite's migration 0032).
    pub fn last_seq(self) -> &'static str {
        match self {
            Kind::Sqlite => {
                "MAX(users.last_seq, COALESCE((SELECT MAX(seq) FROM notifications \
                 WHERE notifications.user_id = users.id), 0))"
            }
            Kind::Postgres => "users.last_seq",
        }
    }

    /// The clause that locks the rows a `SELECT` reads until the transaction ends: none on
    /// SQLite.
    pub fn row_lock(self) -> &'static str {
        match self {
            Kind::Sqlite => "",
            Kind::Postgres => "FOR UPDATE",
        }
    }
}

/// A statement text that differs by backend, built on its first use on each backend and
/// kept: a statement run on every call (an ack, a connect's cursor) allocates no text.
pub(crate) struct PerKind {
    build: fn(Kind) -> String,
    texts: [std::sync::OnceLock<String>; 2],
}

impl PerKind {
    pub(crate) const fn new(build: fn(Kind) -> String) -> Self {
        Self {
            build,
            texts: [std::sync::OnceLock::new(), std::sync::OnceLock::new()],
        }
    }

    /// The text for `kind`'s backend.
    pub(crate) fn get(&self, kind: Kind) -> &str {
        self.texts[kind as usize].get_or_init(|| (self.build)(kind))
    }
}

/// A value either backend can bind.
pub(crate) trait Bind<'q>: Send {
    /// Adds the value to SQLite's arguments.
    fn sqlite(self: Box<Self>, args: &mut SqliteArguments<'q>) -> Result<(), BoxDynError>;
    /// Adds the value to PostgreSQL's arguments.
    fn postgres(self: Box<Self>, args: &mut PgArguments) -> Result<(), BoxDynError>;
}

impl<'q, T> Bind<'q> for T
where
    T: 'q + Send + Encode<'q, Sqlite> + Type<Sqlite> + Encode<'q, Postgres> + Type<Postgres>,
{
    fn sqlite(self: Box<Self>, args: &mut SqliteArguments<'q>) -> Result<(), BoxDynError> {
        args.add(*self)
    }

    fn postgres(self: Box<Self>, args: &mut PgArguments) -> Result<(), BoxDynError> {
        args.add(*self)
    }
}

/// A type either backend's rows decode, by column name.
pub(crate) trait Decoded:
    for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}

impl<T> Decoded for T where
    T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}

/// A column type either backend decodes.
pub(crate) trait Column:
    for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}

impl<T> Column for T where
    T: for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}

/// One argument of a statement.
enum Value<'q> {
    One(Box<dyn Bind<'q> + 'q>),
    /// A set of ids, tested with [`Builder::push_in`].
    Ids(Vec<i64>),
    /// A table of integer pairs, [`Builder::push_pairs`].
    Pairs {
        rows: Vec<(i64, i64)>,
        name: &'static str,
        a: &'static str,
        b: &'static str,
    },
}

impl Value<'_> {
    /// Writes where the value goes in the statement's text on `kind`, its first parameter
    /// numbered `n`; answers how many parameters it took. SQLite's are anonymous (`?`, numbered
    /// in order by SQLite): a named one costs a lookup of its name on every bind, which in a
    /// statement of many values adds up.
    fn render(&self, kind: Kind, n: usize, out: &mut String) -> usize {
        match (self, kind) {
            (Value::One(_), Kind::Sqlite) => {
                out.push('?');
                1
            }
            (Value::One(_), Kind::Postgres) => {
                let _ = write!(out, "${n}");
                1
            }
            (Value::Ids(_), Kind::Sqlite) => {
                out.push_str(" IN (SELECT value FROM json_each(?))");
                1
            }
            (Value::Ids(_), Kind::Postgres) => {
                let _ = write!(out, " = ANY(${n}::bigint[])");
                1
            }
            // `[[a, b], …]` as one JSON text, read back by SQLite's `json_each`.
            (Value::Pairs { name, a, b, .. }, Kind::Sqlite) => {
                let _ = write!(
                    out,
                    "(SELECT value ->> 0 AS {a}, value ->> 1 AS {b} FROM json_each(?)) AS {name}"
                );
                1
            }
            (Value::Pairs { name, a, b, .. }, Kind::Postgres) => {
                let _ = write!(
                    out,
                    "UNNEST(${n}::bigint[], ${}::bigint[]) AS {name}({a}, {b})",
                    n + 1
                );
                2
            }
        }
    }
}

/// Marks where a built statement's value goes, around its index.
const MARK: char = '\u{1}';

/// A built statement's text on `kind`: each value's mark replaced by its parameters.
fn render(text: &str, values: &[Value<'_>], kind: Kind) -> String {
    let mut out = String::with_capacity(text.len() + 16 * values.len());
    let mut n = 1;
    for (i, part) in text.split(MARK).enumerate() {
        if i % 2 == 0 {
            out.push_str(part);
        } else {
            let value = part.parse::<usize>().expect("a value's mark");
            n += values[value].render(kind, n, &mut out);
        }
    }
    out
}

/// A statement and its arguments, run on whichever backend it is given.
#[must_use = "a statement does nothing until it runs"]
pub(crate) struct Query<'q> {
    text: Cow<'q, str>,
    values: Vec<Value<'q>>,
    /// The text marks where each value goes, rendered per backend when it runs (a built
    /// statement); otherwise it has its own `$n`.
    built: bool,
}

/// A statement of fixed text.
pub(crate) fn query(text: &str) -> Query<'_> {
    Query {
        text: Cow::Borrowed(text),
        values: Vec::new(),
        built: false,
    }
}

/// A statement of fixed text whose rows decode as `T`.
pub(crate) fn query_as<T: Decoded>(text: &str) -> QueryAs<'_, T> {
    QueryAs {
        query: query(text),
        row: PhantomData,
    }
}

/// What a statement that returns no rows did.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Done(u64);

impl Done {
    /// The rows it inserted, changed or deleted.
    pub(crate) fn rows_affected(&self) -> u64 {
        self.0
    }
}

impl<'q> Query<'q> {
    /// Binds the next `$n`.
    pub(crate) fn bind<T: Bind<'q> + 'q>(mut self, value: T) -> Self {
        self.values.push(Value::One(Box::new(value)));
        self
    }

    /// Whether the connection keeps the statement prepared for the next time its text comes
    /// again. A built statement of many values (a `VALUES` list of a batch) is prepared, run
    /// and let go: its text comes with each batch's length, so it would rarely come again,
    /// and each kept copy holds its text and a type per value in the connection's cache (and
    /// its plan in PostgreSQL's server process) until the connection closes.
    fn persistent(&self) -> bool {
        !self.built || self.values.len() <= KEPT_VALUES_MAX
    }

    /// The statement's text on `kind`, and its values: a fixed text as it was given, a built
    /// one rendered.
    fn into_parts(self, kind: Kind) -> (Cow<'q, str>, Vec<Value<'q>>) {
        if self.built {
            let text = render(&self.text, &self.values, kind);
            (Cow::Owned(text), self.values)
        } else {
            (self.text, self.values)
        }
    }

    fn sqlite_args(values: Vec<Value<'q>>) -> Result<SqliteArguments<'q>, BoxDynError> {
        let mut args = SqliteArguments::default();
        for value in values {
            match value {
                Value::One(v) => v.sqlite(&mut args)?,
                Value::Ids(ids) => args.add(serde_json::to_string(&ids)?)?,
                Value::Pairs { rows, .. } => args.add(serde_json::to_string(&rows)?)?,
            }
        }
        Ok(args)
    }

    fn postgres_args(values: Vec<Value<'q>>) -> Result<PgArguments, BoxDynError> {
        let mut args = PgArguments::default();
        args.reserve(values.len(), 8 * values.len());
        for value in values {
            match value {
                Value::One(v) => v.postgres(&mut args)?,
                Value::Ids(ids) => args.add(ids)?,
                Value::Pairs { rows, .. } => {
                    let (xs, ys): (Vec<i64>, Vec<i64>) = rows.into_iter().unzip();
                    args.add(xs)?;
                    args.add(ys)?;
                }
            }
        }
        Ok(args)
    }

    /// Runs the statement.
    pub(crate) async fn execute<'e>(self, on: impl Into<On<'e>>) -> Result<Done, sqlx::Error> {
        match on.into().run(self, Op::Execute).await? {
            Out::Done(n) => Ok(Done(n)),
            _ => unreachable!("an execution answers what it did"),
        }
    }

    /// Every row the statement returns.
    pub(crate) async fn fetch_all<'e>(
        self,
        on: impl Into<On<'e>>,
    ) -> Result<Vec<Row>, sqlx::Error> {
        match on.into().run(self, Op::All).await? {
            Out::Rows(rows) => Ok(rows),
            _ => unreachable!("a fetch answers rows"),
        }
    }

    /// The first row the statement returns, if any.
    pub(crate) async fn fetch_optional<'e>(
        self,
        on: impl Into<On<'e>>,
    ) -> Result<Option<Row>, sqlx::Error> {
        match on.into().run(self, Op::Optional).await? {
            Out::Row(row) => Ok(row),
            _ => unreachable!("a fetch answers a row"),
        }
    }

    /// The first row the statement returns; `RowNotFound` without one.
    pub(crate) async fn fetch_one<'e>(self, on: impl Into<On<'e>>) -> Result<Row, sqlx::Error> {
        self.fetch_optional(on)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }
}

/// A statement whose rows decode as `T`.
#[must_use = "a statement does nothing until it runs"]
pub(crate) struct QueryAs<'q, T> {
    query: Query<'q>,
    row: PhantomData<fn() -> T>,
}

impl<'q, T: Decoded> QueryAs<'q, T> {
    /// Binds the next `$n`.
    pub(crate) fn bind<V: Bind<'q> + 'q>(mut self, value: V) -> Self {
        self.query = self.query.bind(value);
        self
    }

    /// Every row the statement returns.
    pub(crate) async fn fetch_all<'e>(self, on: impl Into<On<'e>>) -> Result<Vec<T>, sqlx::Error> {
        let rows = self.query.fetch_all(on).await?;
        rows.iter().map(Row::decode).collect()
    }

    /// The first row the statement returns, if any.
    pub(crate) async fn fetch_optional<'e>(
        self,
        on: impl Into<On<'e>>,
    ) -> Result<Option<T>, sqlx::Error> {
        match self.query.fetch_optional(on).await? {
            Some(row) => row.decode().map(Some),
            None => Ok(None),
        }
    }

    /// The first row the statement returns; `RowNotFound` without one.
    pub(crate) async fn fetch_one<'e>(self, on: impl Into<On<'e>>) -> Result<T, sqlx::Error> {
        self.query.fetch_one(on).await?.decode()
    }

    /// Hands each row to `each` as it arrives, never holding them all.
    pub(crate) async fn for_each<'e>(
        self,
        on: impl Into<On<'e>>,
        mut each: impl FnMut(T) + Send,
    ) -> Result<(), sqlx::Error> {
        let on = on.into();
        let (text, values) = self.query.into_parts(on.kind());
        if on.kind() == Kind::Sqlite {
            let args = Query::sqlite_args(values).map_err(sqlx::Error::Encode)?;
            match on {
                On::Pool(Pool::Sqlite(p, gate)) => {
                    let _turn = turn(gate).await;
                    each_row(p, &text, args, &mut each).await
                }
                On::Tx(Tx::Sqlite(tx)) => each_row(tx.conn(), &text, args, &mut each).await,
                On::Conn(Conn::Sqlite(c, _)) => each_row(&mut **c, &text, args, &mut each).await,
                _ => unreachable!("the kind is SQLite's"),
            }
        } else {
            let args = Query::postgres_args(values).map_err(sqlx::Error::Encode)?;
            match on {
                On::Pool(Pool::Postgres(p)) => each_row(p, &text, args, &mut each).await,
                On::Tx(Tx::Postgres(tx)) => each_row(&mut **tx, &text, args, &mut each).await,
                On::Conn(Conn::Postgres(c)) => each_row(&mut **c, &text, args, &mut each).await,
                _ => unreachable!("the kind is PostgreSQL's"),
            }
        }
    }
}

/// Hands each row `text` returns on `on` to `each`, decoded, as it arrives.
async fn each_row<'c, 'q, DB, E, T>(
    on: E,
    text: &'q str,
    args: <DB as sqlx::Database>::Arguments<'q>,
    each: &mut (impl FnMut(T) + Send),
) -> Result<(), sqlx::Error>
where
    DB: sqlx::Database,
    <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    E: 'q + sqlx::Executor<'c, Database = DB>,
    T: for<'r> FromRow<'r, DB::Row> + Send + Unpin + 'q,
{
    let mut rows = sqlx::query_as_with::<DB, T, _>(text, args).fetch(on);
    while let Some(row) = rows.try_next().await? {
        each(row);
    }
    Ok(())
}

/// A row of either backend.
pub(crate) enum Row {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

impl Row {
    /// The row as `T`.
    pub(crate) fn decode<T: Decoded>(&self) -> Result<T, sqlx::Error> {
        match self {
            Row::Sqlite(row) => T::from_row(row),
            Row::Postgres(row) => T::from_row(row),
        }
    }

    /// The value of a column, by name or position.
    pub(crate) fn try_get<T, I>(&self, index: I) -> Result<T, sqlx::Error>
    where
        T: Column,
        I: ColumnIndex<SqliteRow> + ColumnIndex<PgRow>,
    {
        use sqlx::Row as _;
        match self {
            Row::Sqlite(row) => row.try_get(index),
            Row::Postgres(row) => row.try_get(index),
        }
    }
}

/// A pool of either backend. SQLite's writer pool has a gate: its one connection is taken
/// under it, and so is SQLite's writer thread's (see [`WriteGate`]).
#[derive(Clone, Debug)]
pub(crate) enum Pool {
    Sqlite(SqlitePool, Option<WriteGate>),
    Postgres(PgPool),
}

/// What every writer to a SQLite file takes in turn, in order: the writer pool's statements,
/// transactions and connections, and each unit of work of the writer thread, which writes on
/// a connection of its own. They would otherwise meet in SQLite's lock, whose waiter sleeps
/// (1, 2, 5, 10 ms …) rather than being woken; and a gate costs none of the round trip to
/// sqlx's worker thread that giving a pool connection back does (its ping).
pub(crate) type WriteGate = std::sync::Arc<tokio::sync::Mutex<()>>;

/// A turn at the gate, held until dropped (none for a pool without one).
pub(crate) type Turn = Option<tokio::sync::OwnedMutexGuard<()>>;

/// Waits for a turn at `gate`.
pub(crate) async fn turn(gate: &Option<WriteGate>) -> Turn {
    match gate {
        Some(gate) => Some(gate.clone().lock_owned().await),
        None => None,
    }
}

impl Pool {
    /// Which backend the pool connects to.
    pub(crate) fn kind(&self) -> Kind {
        match self {
            Pool::Sqlite(..) => Kind::Sqlite,
            Pool::Postgres(_) => Kind::Postgres,
        }
    }

    /// Begins a transaction that may write, on a connection of the pool's. On SQLite it takes
    /// the write lock at once (`BEGIN IMMEDIATE`), waiting out the busy timeout for it: a
    /// deferred transaction that read first and then meets another process's write (a second
    /// process on the file, such as an operator's `tickethub` command) would fail at once with
    /// "database is locked", since SQLite cannot wait for a snapshot that has gone stale.
    pub(crate) async fn begin(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Pool::Sqlite(p, gate) => {
                let turn = turn(gate).await;
                Tx::Sqlite(SqliteTx::new(p.begin_with("BEGIN IMMEDIATE").await?, turn))
            }
            Pool::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    /// Begins a transaction that only reads (one snapshot for several statements).
    pub(crate) async fn begin_read(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Pool::Sqlite(p, gate) => {
                let turn = turn(gate).await;
                Tx::Sqlite(SqliteTx::new(p.begin().await?, turn))
            }
            Pool::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    /// Takes a connection of the pool's until it is dropped.
    pub(crate) async fn acquire(&self) -> Result<Conn, sqlx::Error> {
        Ok(match self {
            Pool::Sqlite(p, gate) => {
                let turn = turn(gate).await;
                Conn::Sqlite(p.acquire().await?, turn)
            }
            Pool::Postgres(p) => Conn::Postgres(p.acquire().await?),
        })
    }

    /// Closes every connection; later calls fail.
    pub(crate) async fn close(&self) {
        match self {
            Pool::Sqlite(p, _) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }
}

/// A transaction of either backend, rolled back if dropped before its commit.
#[derive(Debug)]
pub(crate) enum Tx {
    Sqlite(SqliteTx),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

/// A SQLite transaction and the turn at the gate it was begun in. Dropped before its commit
/// (an error path), it keeps the turn until its rollback has run, so that the next writer
/// never meets its locks in SQLite's busy handler, which sleeps rather than being woken.
#[derive(Debug)]
pub(crate) struct SqliteTx {
    /// `None` only once committed or handed to its rollback.
    tx: Option<sqlx::Transaction<'static, Sqlite>>,
    turn: Turn,
}

impl SqliteTx {
    fn new(tx: sqlx::Transaction<'static, Sqlite>, turn: Turn) -> Self {
        Self { tx: Some(tx), turn }
    }

    fn conn(&mut self) -> &mut sqlx::SqliteConnection {
        self.tx.as_mut().expect("open until committed or dropped")
    }

    async fn commit(mut self) -> Result<(), sqlx::Error> {
        self.tx.take().expect("open until committed").commit().await
    }
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        let (Some(tx), Some(turn)) = (self.tx.take(), self.turn.take()) else {
            // Committed, or no gate: sqlx rolls an open transaction back on its own.
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = tx.rollback().await {
                        tracing::warn!(error = %e, "a dropped transaction's rollback failed");
                    }
                    drop(turn);
                });
            }
            // No runtime left to run it on: sqlx's own rollback on drop, the turn given up.
            Err(_) => drop((tx, turn)),
        }
    }
}

impl Tx {
    /// Which backend the transaction runs on.
    pub(crate) fn kind(&self) -> Kind {
        match self {
            Tx::Sqlite(..) => Kind::Sqlite,
            Tx::Postgres(_) => Kind::Postgres,
        }
    }

    /// Commits the transaction.
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        }
    }
}

/// A pooled connection of either backend, given back when dropped.
#[derive(Debug)]
pub(crate) enum Conn {
    Sqlite(
        PoolConnection<Sqlite>,
        #[expect(
            dead_code,
            reason = "held, never read: the turn lasts as the connection does"
        )]
        Turn,
    ),
    Postgres(PoolConnection<Postgres>),
}

impl Conn {
    /// Which backend the connection is to.
    pub(crate) fn kind(&self) -> Kind {
        match self {
            Conn::Sqlite(..) => Kind::Sqlite,
            Conn::Postgres(_) => Kind::Postgres,
        }
    }
}

/// Where a statement runs: a pool (any connection of it), a transaction or a connection.
pub(crate) enum On<'e> {
    Pool(&'e Pool),
    Tx(&'e mut Tx),
    Conn(&'e mut Conn),
}

impl<'e> From<&'e Pool> for On<'e> {
    fn from(pool: &'e Pool) -> Self {
        On::Pool(pool)
    }
}

impl<'e> From<&'e mut Tx> for On<'e> {
    fn from(tx: &'e mut Tx) -> Self {
        On::Tx(tx)
    }
}

impl<'e> From<&'e mut Conn> for On<'e> {
    fn from(conn: &'e mut Conn) -> Self {
        On::Conn(conn)
    }
}

#[derive(Clone, Copy)]
enum Op {
    Execute,
    All,
    Optional,
}

enum Out<R> {
    Done(u64),
    Rows(Vec<R>),
    Row(Option<R>),
}

impl<R> Out<R> {
    fn map(self, f: impl Fn(R) -> Row) -> Out<Row> {
        match self {
            Out::Done(n) => Out::Done(n),
            Out::Rows(rows) => Out::Rows(rows.into_iter().map(f).collect()),
            Out::Row(row) => Out::Row(row.map(f)),
        }
    }
}

/// The most values a built statement may bind and still be kept prepared (see
/// `Query::persistent`).
const KEPT_VALUES_MAX: usize = 64;

/// Runs `text` on `on` as `op` asks, kept prepared or not; `affected` reads a result's count
/// of rows.
async fn run_on<'c, 'q, DB, E>(
    on: E,
    (text, persistent): (&'q str, bool),
    args: <DB as sqlx::Database>::Arguments<'q>,
    op: Op,
    affected: fn(&DB::QueryResult) -> u64,
) -> Result<Out<DB::Row>, sqlx::Error>
where
    DB: sqlx::Database + sqlx::database::HasStatementCache,
    <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    E: 'q + sqlx::Executor<'c, Database = DB>,
{
    let query = sqlx::query_with::<DB, _>(text, args).persistent(persistent);
    Ok(match op {
        Op::Execute => Out::Done(affected(&query.execute(on).await?)),
        Op::All => Out::Rows(query.fetch_all(on).await?),
        Op::Optional => Out::Row(query.fetch_optional(on).await?),
    })
}

impl On<'_> {
    fn kind(&self) -> Kind {
        match self {
            On::Pool(p) => p.kind(),
            On::Tx(tx) => tx.kind(),
            On::Conn(c) => c.kind(),
        }
    }

    async fn run(self, query: Query<'_>, op: Op) -> Result<Out<Row>, sqlx::Error> {
        let kind = self.kind();
        let persistent = query.persistent();
        let (text, values) = query.into_parts(kind);
        let text = (&*text, persistent);
        if kind == Kind::Sqlite {
            let args = Query::sqlite_args(values).map_err(sqlx::Error::Encode)?;
            let n = sqlx::sqlite::SqliteQueryResult::rows_affected;
            let out = match self {
                On::Pool(Pool::Sqlite(p, gate)) => {
                    let _turn = turn(gate).await;
                    run_on(p, text, args, op, n).await?
                }
                On::Tx(Tx::Sqlite(tx)) => run_on(tx.conn(), text, args, op, n).await?,
                On::Conn(Conn::Sqlite(c, _)) => run_on(&mut **c, text, args, op, n).await?,
                _ => unreachable!("the kind is SQLite's"),
            };
            Ok(out.map(Row::Sqlite))
        } else {
            let args = Query::postgres_args(values).map_err(sqlx::Error::Encode)?;
            let n = sqlx::postgres::PgQueryResult::rows_affected;
            let out = match self {
                On::Pool(Pool::Postgres(p)) => run_on(p, text, args, op, n).await?,
                On::Tx(Tx::Postgres(tx)) => run_on(&mut **tx, text, args, op, n).await?,
                On::Conn(Conn::Postgres(c)) => run_on(&mut **c, text, args, op, n).await?,
                _ => unreachable!("the kind is PostgreSQL's"),
            };
            Ok(out.map(Row::Postgres))
        }
    }
}

/// A statement built piece by piece, as sqlx's `QueryBuilder`, for either backend: each bound
/// value becomes a parameter when it runs (`?` on SQLite, `$n` on PostgreSQL).
pub(crate) struct Builder<'q> {
    text: String,
    values: Vec<Value<'q>>,
}

impl<'q> Builder<'q> {
    /// A statement that starts with `init`.
    pub(crate) fn new(init: impl Into<String>) -> Self {
        Self {
            text: init.into(),
            values: Vec::new(),
        }
    }

    /// Appends SQL text.
    pub(crate) fn push(&mut self, sql: impl std::fmt::Display) -> &mut Self {
        let _ = write!(self.text, "{sql}");
        self
    }

    fn mark(&mut self, value: Value<'q>) -> &mut Self {
        let _ = write!(self.text, "{MARK}{}{MARK}", self.values.len());
        self.values.push(value);
        self
    }

    /// Appends the next parameter and binds `value` to it.
    pub(crate) fn push_bind<T: Bind<'q> + 'q>(&mut self, value: T) -> &mut Self {
        self.mark(Value::One(Box::new(value)))
    }

    /// Appends the test that the column just pushed is one of `ids`, bound as one value so
    /// that the text is the same however many there are (and stays prepared):
    /// `IN (SELECT value FROM json_each(?))` on SQLite, `= ANY($n::bigint[])` on PostgreSQL.
    pub(crate) fn push_in(&mut self, ids: Vec<i64>) -> &mut Self {
        self.mark(Value::Ids(ids))
    }

    /// Appends a table of integer pairs named `name` with columns `a` and `b`, bound as whole
    /// arrays so that however many rows it has the text stays the same: one JSON text read by
    /// `json_each` on SQLite, two arrays `UNNEST`ed on PostgreSQL.
    pub(crate) fn push_pairs(
        &mut self,
        rows: Vec<(i64, i64)>,
        name: &'static str,
        a: &'static str,
        b: &'static str,
    ) -> &mut Self {
        self.mark(Value::Pairs { rows, name, a, b })
    }

    /// Pieces pushed through the returned value are separated by `separator`.
    pub(crate) fn separated<'b>(&'b mut self, separator: &'static str) -> Separated<'b, 'q> {
        Separated {
            builder: self,
            separator,
            first: true,
        }
    }

    /// Appends `VALUES (…), (…)`: one parenthesized tuple per item, which `each` fills.
    pub(crate) fn push_values<I, F>(&mut self, items: I, mut each: F) -> &mut Self
    where
        I: IntoIterator,
        F: FnMut(Separated<'_, 'q>, I::Item),
    {
        self.push("VALUES ");
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.push("(");
            each(self.separated(", "), item);
            self.push(")");
        }
        self
    }

    /// The statement's text on `kind`, as it runs there.
    #[cfg(test)]
    pub(crate) fn sql_on(&self, kind: Kind) -> String {
        render(&self.text, &self.values, kind)
    }

    /// The statement, taken out of the builder (which is left empty).
    pub(crate) fn build(&mut self) -> Query<'q> {
        Query {
            text: Cow::Owned(std::mem::take(&mut self.text)),
            values: std::mem::take(&mut self.values),
            built: true,
        }
    }

    /// The statement whose rows decode as `T`, taken out of the builder.
    pub(crate) fn build_query_as<T: Decoded>(&mut self) -> QueryAs<'q, T> {
        QueryAs {
            query: self.build(),
            row: PhantomData,
        }
    }
}

/// Pieces of a [`Builder`] with a separator between them.
pub(crate) struct Separated<'b, 'q> {
    builder: &'b mut Builder<'q>,
    separator: &'static str,
    first: bool,
}

impl<'q> Separated<'_, 'q> {
    fn separate(&mut self) {
        if !self.first {
            self.builder.push(self.separator);
        }
        self.first = false;
    }

    /// Appends a bound value's `$n` after a separator.
    pub(crate) fn push_bind<T: Bind<'q> + 'q>(&mut self, value: T) -> &mut Self {
        self.separate();
        self.builder.push_bind(value);
        self
    }
}

#[cfg(test)]
mod tests;
