//! A database of its own per test, on the server LEDGER_TEST_PG names (./scripts/test
//! finds or starts one). In CI a missing server fails the test; elsewhere it skips.

#![allow(dead_code)]

use tokio_postgres::{Client, Config, NoTls};

pub struct TestDb {
    pub admin: Client,
    pub name: String,
    pub client: Client,
}

pub async fn connect(cfg: &Config) -> Client {
    let (client, conn) = cfg.connect(NoTls).await.expect("connect to PostgreSQL");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// A fresh database of its own for one test, or None (skip) off CI without a server.
pub async fn test_db() -> Option<TestDb> {
    let url = match std::env::var("LEDGER_TEST_PG") {
        Ok(u) if !u.is_empty() => u,
        _ => {
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
            assert!(
                !ci,
                "LEDGER_TEST_PG is not set: run the tests through ./scripts/test, which finds or starts PostgreSQL"
            );
            eprintln!("skipping: no PostgreSQL (set LEDGER_TEST_PG, or run ./scripts/test)");
            return None;
        }
    };
    let cfg: Config = url.parse().expect("LEDGER_TEST_PG is a postgres:// URL");
    let admin = connect(&cfg).await;
    let name = format!(
        "ledger_t_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create a test database");
    let mut mine = cfg.clone();
    mine.dbname(&name);
    let client = connect(&mine).await;
    Some(TestDb {
        admin,
        name,
        client,
    })
}

impl TestDb {
    pub async fn drop_db(self) {
        drop(self.client);
        let _ = self
            .admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await;
    }
}

impl TestDb {
    /// The URL of this test's database (LEDGER_TEST_PG with its database replaced).
    pub fn url(&self) -> String {
        let base = std::env::var("LEDGER_TEST_PG").expect("set when a TestDb exists");
        let authority = base.find("://").map_or(0, |i| i + 3);
        let end = base[authority..]
            .find('/')
            .map_or(base.len(), |i| authority + i);
        format!("{}/{}", &base[..end], self.name)
    }
}
