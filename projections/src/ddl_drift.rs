//! The live tables have two DDL sources: the [`crate::TableSpec`] templates (what a rebuild
//! creates and swaps in) and the migration that creates the version-1 live tables before any
//! rebuild. This test fails when they drift: on a freshly migrated database it creates every
//! table from its templates under a scratch name and compares the catalog (columns, types,
//! nullability, defaults, constraints, indexes) with the migration's table.

use orderflow_testkit::database::TestDatabase;
use sqlx::PgPool;

/// The definition of `table` as the catalog holds it, with the table's name replaced by
/// `{table}` (so index and constraint names compare too).
async fn definition(pool: &PgPool, table: &str) -> Vec<String> {
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT format('column %s %s not null=%s default=%s', a.attname,
                       format_type(a.atttypid, a.atttypmod), a.attnotnull,
                       coalesce(pg_get_expr(d.adbin, d.adrelid), '-'))
         FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
         ORDER BY a.attnum",
    )
    .bind(table)
    .fetch_all(pool)
    .await
    .unwrap();
    let constraints: Vec<String> = sqlx::query_scalar(
        "SELECT format('constraint %s %s', conname, pg_get_constraintdef(oid))
         FROM pg_constraint WHERE conrelid = $1::regclass ORDER BY conname",
    )
    .bind(table)
    .fetch_all(pool)
    .await
    .unwrap();
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexdef::text FROM pg_indexes
         WHERE schemaname = current_schema() AND tablename = $1 ORDER BY indexname",
    )
    .bind(table)
    .fetch_all(pool)
    .await
    .unwrap();
    columns
        .into_iter()
        .chain(constraints)
        .chain(indexes)
        .map(|line| line.replace(table, "{table}"))
        .collect()
}

#[tokio::test]
async fn the_migration_creates_the_tables_the_templates_describe() {
    let db = TestDatabase::fresh().await;
    for projection in crate::all() {
        for spec in projection.tables() {
            let scratch = format!("{}_drift", spec.name);
            for template in std::iter::once(spec.create).chain(spec.indexes.iter().copied()) {
                sqlx::query(&template.replace("{table}", &scratch))
                    .execute(&db.pool)
                    .await
                    .unwrap();
            }
            assert_eq!(
                definition(&db.pool, spec.name).await,
                definition(&db.pool, &scratch).await,
                "{}: the migration's table differs from the templates in {}",
                spec.name,
                projection.name()
            );
        }
    }
}
