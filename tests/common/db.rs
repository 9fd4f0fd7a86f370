//! The test's own database on the machine's PostgreSQL (`TEST_DATABASE_URL`,
//! else 127.0.0.1:5432 as `postgres`), created for one test and dropped
//! when it ends, and what a test reads from it.

use std::time::Duration;

use tokio_postgres::NoTls;

use super::eventually;

/// Admin connection string of the machine's PostgreSQL.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database of the test's own, dropped at the end.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let name = format!(
            "countdown_test_{}_{}",
            std::process::id(),
            rand::random::<u32>()
        );
        let (client, conn) = tokio_postgres::connect(&admin_url(), NoTls)
            .await
            .expect("PostgreSQL must run on 127.0.0.1:5432 (see README)");
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let base = admin_url();
        let url = match base.rfind('/') {
            Some(i) => format!("{}/{name}", &base[..i]),
            None => panic!("bad TEST_DATABASE_URL"),
        };
        TestDb { name, url }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, NoTls).await.unwrap();
        tokio::spawn(conn);
        client
    }

    /// (status, last_sent, target) of every task, by id.
    pub async fn tasks(&self) -> Vec<(String, i32, i32)> {
        self.client()
            .await
            .query(
                "SELECT status, last_sent, target FROM tasks ORDER BY id",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    }

    /// Kinds of `command_errors`, by id.
    pub async fn command_error_kinds(&self) -> Vec<String> {
        self.client()
            .await
            .query("SELECT kind FROM command_errors ORDER BY id", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// Waits until `check` holds for the tasks table (the journal writes
    /// within a fraction of a second).
    pub async fn wait_tasks(
        &self,
        what: &str,
        check: impl Fn(&[(String, i32, i32)]) -> bool,
    ) -> Vec<(String, i32, i32)> {
        eventually(
            what,
            Duration::from_secs(10),
            async || self.tasks().await,
            |tasks| check(tasks),
        )
        .await
    }

    /// The kinds of `command_errors` once there are at least `n`.
    pub async fn wait_command_errors(&self, n: usize) -> Vec<String> {
        eventually(
            &format!("{n} command errors"),
            Duration::from_secs(10),
            async || self.command_error_kinds().await,
            |kinds| kinds.len() >= n,
        )
        .await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin = admin_url();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok((client, conn)) = tokio_postgres::connect(&admin, NoTls).await {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}
