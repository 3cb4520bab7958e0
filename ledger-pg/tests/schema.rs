//! The schema against a real PostgreSQL: migrations and the chain guard. The server
//! comes from LEDGER_TEST_PG (./scripts/test finds or starts one); in CI a missing
//! server fails these tests, elsewhere they skip with a message.

mod common;

use common::{connect, test_db};
use ledger_pg::{MigrateError, migrate, schema_version};
use tokio_postgres::Config;

#[tokio::test]
async fn migrations_apply_once_and_are_checked() {
    let Some(mut db) = test_db().await else {
        return;
    };
    assert_eq!(schema_version(&db.client).await.unwrap(), 0);
    let r = migrate(&mut db.client).await.unwrap();
    assert_eq!((r.applied, r.version), (vec![1, 2], 2));
    let again = migrate(&mut db.client).await.unwrap();
    assert!(again.applied.is_empty(), "idempotent");
    assert_eq!(schema_version(&db.client).await.unwrap(), 2);

    // An applied migration whose SQL differs from the code's is refused.
    db.client
        .execute(
            "UPDATE ledger_migrations SET sha256 = 'x' WHERE version = 1",
            &[],
        )
        .await
        .unwrap();
    let e = migrate(&mut db.client).await.unwrap_err();
    assert!(matches!(e, MigrateError::Changed { version: 1, .. }), "{e}");
    assert!(matches!(
        schema_version(&db.client).await,
        Err(MigrateError::Changed { .. })
    ));
    // So is a schema newer than the code.
    db.client
        .execute(
            "UPDATE ledger_migrations SET sha256 = $1 WHERE version = 1",
            &[&sha(ledger_pg::MIGRATIONS[0].sql)],
        )
        .await
        .unwrap();
    db.client
        .execute(
            "INSERT INTO ledger_migrations (version, name, sha256) VALUES (99, 'future', 'y')",
            &[],
        )
        .await
        .unwrap();
    let e = migrate(&mut db.client).await.unwrap_err();
    assert!(matches!(e, MigrateError::Newer { db: 99, code: 2 }), "{e}");
    db.drop_db().await;
}

fn sha(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

#[tokio::test]
async fn two_processes_migrating_at_once_apply_each_migration_once() {
    let Some(db) = test_db().await else { return };
    let cfg: Config = std::env::var("LEDGER_TEST_PG").unwrap().parse().unwrap();
    let mut mine = cfg.clone();
    mine.dbname(&db.name);
    let (mut a, mut b) = (connect(&mine).await, connect(&mine).await);
    let (ra, rb) = tokio::join!(migrate(&mut a), migrate(&mut b));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.applied.len() + rb.applied.len(), 2);
    let n: i64 = db
        .client
        .query_one("SELECT count(*) FROM ledger_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    drop((a, b));
    db.drop_db().await;
}

fn leaf(n: u8) -> Vec<u8> {
    vec![n; 32]
}

#[tokio::test]
async fn the_database_refuses_gaps_forks_and_rewrites() {
    let Some(mut db) = test_db().await else {
        return;
    };
    migrate(&mut db.client).await.unwrap();
    let c = &db.client;
    let insert = "INSERT INTO entries (seq, event_id, leaf, prev, bytes)
                  SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bytea[], $4::bytea[], $5::bytea[])";
    // A batch of three that chains: one statement, checked row by row.
    c.execute(
        insert,
        &[
            &vec![0i64, 1, 2],
            &vec!["a", "b", "c"],
            &vec![leaf(1), leaf(2), leaf(3)],
            &vec![leaf(0), leaf(1), leaf(2)],
            &vec![b"x".to_vec(), b"y".to_vec(), b"z".to_vec()],
        ],
    )
    .await
    .expect("a chained batch is accepted");
    let refused = |e: tokio_postgres::Error| {
        e.as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_default()
    };
    // A fork: entry 3 naming a leaf that is not entry 2's.
    let e = c
        .execute(
            insert,
            &[
                &vec![3i64],
                &vec!["d"],
                &vec![leaf(4)],
                &vec![leaf(9)],
                &vec![b"w".to_vec()],
            ],
        )
        .await
        .unwrap_err();
    assert!(refused(e).contains("a fork"));
    // A gap.
    let e = c
        .execute(
            insert,
            &[
                &vec![5i64],
                &vec!["e"],
                &vec![leaf(5)],
                &vec![leaf(3)],
                &vec![b"v".to_vec()],
            ],
        )
        .await
        .unwrap_err();
    assert!(refused(e).contains("gap"));
    // A second writer extending from the same prev: the seq is taken.
    let e = c
        .execute(
            insert,
            &[
                &vec![2i64],
                &vec!["f"],
                &vec![leaf(6)],
                &vec![leaf(2)],
                &vec![b"u".to_vec()],
            ],
        )
        .await
        .unwrap_err();
    assert!(e.as_db_error().is_some());
    // Rewrites and removals.
    let e = c
        .execute("UPDATE entries SET bytes = 'q' WHERE seq = 1", &[])
        .await
        .unwrap_err();
    assert!(refused(e).contains("append-only"));
    let e = c
        .execute("DELETE FROM entries WHERE seq = 2", &[])
        .await
        .unwrap_err();
    assert!(refused(e).contains("append-only"));
    let e = c
        .batch_execute("TRUNCATE entries CASCADE")
        .await
        .unwrap_err();
    assert!(refused(e).contains("append-only"));
    let n: i64 = c
        .query_one("SELECT count(*) FROM entries", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);
    db.drop_db().await;
}
