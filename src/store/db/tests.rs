use super::*;

#[test]
fn a_batch_of_many_values_is_not_kept_prepared() {
    let rows: Vec<i64> = (0..KEPT_VALUES_MAX as i64 + 1).collect();
    let batch = |n: usize| {
        let mut q = Builder::new("INSERT INTO t (a) ");
        q.push_values(&rows[..n], |mut row, v| {
            row.push_bind(*v);
        });
        q.build()
    };
    assert!(batch(KEPT_VALUES_MAX).persistent());
    assert!(!batch(KEPT_VALUES_MAX + 1).persistent());
    // A fixed text is kept however many values it binds.
    let fixed = rows.iter().fold(query("SELECT 1"), |q, v| q.bind(*v));
    assert!(fixed.persistent());
}

/// The text `q` is run as on SQLite and on PostgreSQL.
fn assert_renders(q: &Builder, sqlite: &str, postgres: &str) {
    assert_eq!(q.sql_on(Kind::Sqlite), sqlite);
    assert_eq!(q.sql_on(Kind::Postgres), postgres);
}

#[test]
fn an_id_set_is_rendered_for_each_backend() {
    let mut q = Builder::new("SELECT id FROM users WHERE id");
    q.push_in(vec![1, 2])
        .push(" AND role = ")
        .push_bind("ADMIN");
    assert_renders(
        &q,
        "SELECT id FROM users WHERE id IN (SELECT value FROM json_each(?)) AND role = ?",
        "SELECT id FROM users WHERE id = ANY($1::bigint[]) AND role = $2",
    );
}

#[test]
fn pairs_take_one_parameter_on_sqlite_and_two_on_postgres() {
    let mut q = Builder::new("SELECT r.user_id FROM ");
    q.push_pairs(vec![(1, 2), (3, 4)], "r", "user_id", "seq")
        .push(" WHERE r.seq > ")
        .push_bind(0_i64);
    assert_renders(
        &q,
        "SELECT r.user_id FROM (SELECT value ->> 0 AS user_id, value ->> 1 AS seq \
         FROM json_each(?)) AS r WHERE r.seq > ?",
        "SELECT r.user_id FROM UNNEST($1::bigint[], $2::bigint[]) AS r(user_id, seq) \
         WHERE r.seq > $3",
    );
}

#[test]
fn values_are_separated_tuples() {
    let mut q = Builder::new("INSERT INTO t (a, b) ");
    q.push_values([(1_i64, "x"), (2, "y")], |mut t, (a, b)| {
        t.push_bind(a).push_bind(b);
    });
    assert_renders(
        &q,
        "INSERT INTO t (a, b) VALUES (?, ?), (?, ?)",
        "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)",
    );
}

/// A built statement's values reach SQLite as its text numbers them, whether its rows
/// are fetched or streamed.
#[tokio::test]
async fn a_built_statement_runs_with_its_values_where_its_text_puts_them() {
    let pool = Pool::Sqlite(SqlitePool::connect("sqlite::memory:").await.unwrap(), None);
    let built = || {
        let mut q = Builder::new("SELECT p.a, p.b FROM ");
        q.push_pairs(vec![(1, 10), (2, 20), (3, 30)], "p", "a", "b")
            .push(" WHERE p.a")
            .push_in(vec![1, 3])
            .push(" AND p.b > ")
            .push_bind(10_i64);
        q
    };
    let rows: Vec<(i64, i64)> = built().build_query_as().fetch_all(&pool).await.unwrap();
    assert_eq!(rows, [(3, 30)]);
    let mut streamed = Vec::new();
    built()
        .build_query_as::<(i64, i64)>()
        .for_each(&pool, |row| streamed.push(row))
        .await
        .unwrap();
    assert_eq!(streamed, rows);
    let row = query("SELECT $2 AS b, $1 AS a")
        .bind(1_i64)
        .bind("two")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(row.try_get::<String, _>("b").unwrap(), "two");
    assert_eq!(row.try_get::<i64, _>("a").unwrap(), 1);
}
